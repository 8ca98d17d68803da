"""Assemble the report of ``benchmarks/gpu_check.sh``: one JSON and one markdown file.

Usage: ``python benchmarks/gpu_report.py --work DIR --out DIR``. ``--work`` holds what the script's steps
left: ``steps.tsv`` (name, status, exit code, seconds, log file; tab-separated), ``junit_<selection>.xml``
from pytest, and ``bench_<suite>.json`` / ``bench_<suite>.txt`` from ``fastgan bench``. Writes
``gpu_report.json`` and ``gpu_report.md`` into ``--out`` (atomically) and prints the markdown path.
"""
from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: use this checkout's fastgan
    sys.path.insert(0, str(REPO))

from fastgan.bench import environment  # noqa: E402
from fastgan.utils.io import atomic_write_text  # noqa: E402

LOG_TAIL = 3000  # characters of a failed step's log kept in the report


def read_steps(work: Path) -> List[Dict]:
    """The steps recorded in ``steps.tsv``, each with the tail of its log when it did not succeed."""
    steps = []
    path = work / "steps.tsv"
    if not path.is_file():
        return steps
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, status, rc, seconds, log = (line.split("\t") + [""] * 5)[:5]
        step = {"name": name, "status": status, "rc": int(rc) if rc.lstrip("-").isdigit() else None,
                "seconds": float(seconds) if seconds else None}
        if status != "ok" and log and (work / log).is_file():
            step["log_tail"] = (work / log).read_text(errors="replace")[-LOG_TAIL:]
        steps.append(step)
    return steps


def read_junit(path: Path) -> Dict:
    """Counts of one pytest junit XML file by outcome, the failed tests with their messages, top skip reasons."""
    counts = collections.Counter(passed=0, failed=0, errors=0, skipped=0)
    failures, skips = [], collections.Counter()
    for case in ET.parse(path).getroot().iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            bad = kinds.get("failure", kinds.get("error"))
            counts["failed" if "failure" in kinds else "errors"] += 1
            failures.append({"test": test, "message": (bad.get("message") or bad.text or "")[:500]})
        elif "skipped" in kinds:
            counts["skipped"] += 1
            skips[(kinds["skipped"].get("message") or "")[:200]] += 1
        else:
            counts["passed"] += 1
    reasons = [{"reason": r, "count": n} for r, n in skips.most_common(10)]
    return {**counts, "failures": failures, "skip_reasons": reasons}


def read_benches(work: Path) -> Dict[str, Dict]:
    """Per ``fastgan bench`` suite, in the order they ran: its printed table and its JSON data (None where
    it left none)."""
    out = {}
    for txt in sorted(work.glob("bench_*.txt"), key=lambda p: p.stat().st_mtime_ns):
        suite = txt.stem[len("bench_"):]
        data_path = txt.with_suffix(".json")
        data = json.loads(data_path.read_text()) if data_path.is_file() else None
        out[suite] = {"text": txt.read_text(errors="replace").rstrip(), "data": data}
    return out


def driver_version() -> Optional[str]:
    """The NVIDIA driver version reported by nvidia-smi, or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    r = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                       capture_output=True, text=True, timeout=30)
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None


def build_report(work: Path) -> Dict:
    env = environment()
    env["driver"] = driver_version()
    steps = read_steps(work)
    tests = {p.stem[len("junit_"):]: read_junit(p) for p in sorted(work.glob("junit_*.xml"))}
    ok = all(s["status"] == "ok" for s in steps) and all(t["failed"] == t["errors"] == 0 for t in tests.values())
    return {"ok": ok, "environment": env, "steps": steps, "tests": tests, "bench": read_benches(work)}


def _device_line(env: Dict) -> str:
    gpu = env.get("gpu")
    dev = (f"{gpu['name']} (compute capability {gpu['capability']}, {gpu['memory_GiB']} GiB, "
           f"{gpu['multiprocessors']} SMs, {gpu['count']} visible)") if gpu else "no GPU"
    return (f"{dev}; driver {env.get('driver') or '?'}; torch {env['torch']} (CUDA {env['torch_cuda']}, "
            f"cuDNN {env['cudnn']}); triton {env['triton']}; Python {env['python']}; {env['cpu_threads']} CPU threads")


def to_markdown(report: Dict) -> str:
    lines = ["# fastgan GPU check", "", f"Result: **{'pass' if report['ok'] else 'FAIL'}**", "",
             f"Machine: {_device_line(report['environment'])}", "", "## Steps", "",
             "| step | status | exit code | seconds |", "|---|---|---|---|"]
    for s in report["steps"]:
        secs = "" if s["seconds"] is None else f"{s['seconds']:.0f}"
        lines.append(f"| {s['name']} | {s['status']} | {'' if s['rc'] is None else s['rc']} | {secs} |")
    lines += ["", "## Tests", "", "| selection | passed | failed | errors | skipped |", "|---|---|---|---|---|"]
    for name, t in report["tests"].items():
        lines.append(f"| {name} | {t['passed']} | {t['failed']} | {t['errors']} | {t['skipped']} |")
    for name, t in report["tests"].items():
        if t["failures"]:
            lines += ["", f"Failed in {name}:", ""]
            lines += [f"- `{f['test']}`: {f['message'].splitlines()[0] if f['message'] else ''}" for f in t["failures"]]
        if t["skip_reasons"]:
            lines += ["", f"Skipped in {name} (most common reasons):", ""]
            lines += [f"- {r['count']} x {r['reason']}" for r in t["skip_reasons"]]
    lines += ["", "## Benchmarks (`fastgan bench SUITE --quick`; `train` full)"]
    status = {s["name"]: s["status"] for s in report["steps"]}
    for suite, b in report["bench"].items():
        lines += ["", f"### {suite} ({status.get('bench_' + suite, 'not run')})", "", "```", b["text"], "```"]
    for s in report["steps"]:
        if "log_tail" in s:
            lines += ["", f"## Log tail: {s['name']} ({s['status']})", "", "```", s["log_tail"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="folder with the steps' outputs")
    ap.add_argument("--out", required=True, type=Path, help="folder for gpu_report.json and gpu_report.md")
    args = ap.parse_args(argv)
    report = build_report(args.work)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "gpu_report.json", json.dumps(report, indent=1))
    atomic_write_text(args.out / "gpu_report.md", to_markdown(report))
    print(args.out / "gpu_report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
