"""benchmarks/gpu_check.sh and its report: the no-GPU message, usage errors, the step bookkeeping, the report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
REPORT = ROOT / "benchmarks" / "gpu_report.py"


def _script(*args, python=sys.executable, hide_gpu=True, timeout=120):
    env = dict(os.environ, PYTHON=str(python))
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    out = tmp_path / "report"
    r = _script("--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "gpu_check: no CUDA GPU available" in r.stdout and "nothing to check" in r.stdout
    assert not out.exists()  # nothing built, run or written


@pytest.mark.parametrize("args, message", [(["--bogus"], "unknown argument '--bogus'"),
                                           (["--budget", "5m"], "--budget must be a whole number of seconds"),
                                           (["--out"], "[--out DIR]")])
def test_bad_usage_exits_2(args, message):
    r = _script(*args)
    assert r.returncode == 2 and message in r.stderr, (r.stdout, r.stderr)


def test_python_without_torch_exits_2(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n")
    fake.chmod(0o755)
    r = _script(python=fake)
    assert r.returncode == 2 and "cannot import torch" in r.stderr and "No module named torch" in r.stderr


def test_with_a_gpu_and_no_time_left_every_step_is_skipped_and_reported(tmp_path):
    """The GPU path's bookkeeping: a python that reports a GPU, a zero budget; the report still comes out."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\ncase "$2" in *cuda.is_available*) echo "2.4.0 12.4 1"; exit 0 ;; esac\n'
                    f'exec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    out = tmp_path / "report"
    r = _script("--out", str(out), "--budget", "0", python=fake)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "build skipped: time budget spent" in r.stdout
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["ok"] is False
    names = [s["name"] for s in report["steps"]]
    assert names[:3] == ["build", "import_cuda_extension", "tests_gpu"]
    assert names[-6:] == [f"bench_{s}" for s in ("ops", "conv", "filtered", "models", "metrics", "train")]
    assert {s["status"] for s in report["steps"]} == {"skipped"}
    md = (out / "gpu_report.md").read_text()
    assert "Result: **FAIL**" in md and "| build | skipped |" in md
    assert sorted(p.name for p in out.iterdir()) == ["bench.log", "gpu_report.json", "gpu_report.md"]


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="2" tests="6">
<testcase classname="tests.test_a" name="test_ok[0]" time="0.1"/>
<testcase classname="tests.test_a" name="test_ok[1]" time="0.1"/>
<testcase classname="tests.test_a" name="test_bad" time="0.2">
  <failure message="AssertionError: 1 != 2">trace</failure></testcase>
<testcase classname="tests.test_b" name="test_err" time="0.0"><error message="fixture broke">trace</error></testcase>
<testcase classname="tests.test_b" name="test_s1" time="0.0"><skipped message="no kernel"/></testcase>
<testcase classname="tests.test_b" name="test_s2" time="0.0"><skipped message="no kernel"/></testcase>
</testsuite></testsuites>
"""


def test_report_from_step_outputs(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    (work / "steps.tsv").write_text("build\tok\t0\t95\tbuild.log\n"
                                    "tests_gpu\tfailed\t1\t40\ttests.log\n"
                                    "bench_ops\ttimeout\t124\t45\tbench_ops.txt\n")
    (work / "build.log").write_text("compiled\n")
    (work / "tests.log").write_text("x" * 5000 + "\n1 failed, 2 passed\n")
    (work / "junit_gpu.xml").write_text(JUNIT)
    (work / "bench_ops.txt").write_text("op  backend  median ms\nupsample2d triton 0.10\n")
    (work / "bench_ops.json").write_text(json.dumps({"device": "cuda", "rows": [{"op": "upsample2d"}]}))
    r = subprocess.run([sys.executable, str(REPORT), "--work", str(work), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["ok"] is False
    t = report["tests"]["gpu"]
    assert (t["passed"], t["failed"], t["errors"], t["skipped"]) == (2, 1, 1, 2)
    assert [f["test"] for f in t["failures"]] == ["tests.test_a::test_bad", "tests.test_b::test_err"]
    assert t["failures"][0]["message"] == "AssertionError: 1 != 2"
    assert t["skip_reasons"] == [{"reason": "no kernel", "count": 2}]
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["build"] == {"name": "build", "status": "ok", "rc": 0, "seconds": 95.0}  # no log kept when ok
    tail = steps["tests_gpu"]["log_tail"]
    assert tail.endswith("1 failed, 2 passed\n") and len(tail) == 3000
    assert steps["bench_ops"]["status"] == "timeout" and steps["bench_ops"]["rc"] == 124
    assert report["bench"]["ops"]["data"]["device"] == "cuda"
    env = report["environment"]
    assert {"torch", "torch_cuda", "triton", "python", "gpu", "driver"} <= set(env)
    md = (out / "gpu_report.md").read_text()
    assert "Result: **FAIL**" in md
    assert "| gpu | 2 | 1 | 1 | 2 |" in md
    assert "- `tests.test_a::test_bad`: AssertionError: 1 != 2" in md
    assert "### ops (timeout)" in md and "upsample2d triton 0.10" in md
    assert r.stdout.strip() == str(out / "gpu_report.md")


@pytest.mark.parametrize("device", [torch.device("cuda"), ("triton", torch.device("cuda"))], ids=["plain", "tuple"])
def test_tests_parametrized_with_a_cuda_device_are_gpu_cases(request, device):
    """tests/conftest.py marks them `gpu` (so gpu_check.sh selects them); constructing the device needs no GPU."""
    assert request.node.get_closest_marker("gpu") is not None


def test_environment_describes_this_process():
    import importlib.metadata
    import platform

    from fastgan.bench import environment
    env = environment()
    assert (env["torch"], env["torch_cuda"], env["python"]) == (torch.__version__, torch.version.cuda,
                                                                platform.python_version())
    assert env["cpu_threads"] == torch.get_num_threads()
    try:
        assert env["triton"] == importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        assert env["triton"] is None
    if torch.cuda.is_available():
        assert env["gpu"]["name"] == torch.cuda.get_device_name(0) and env["gpu"]["count"] == torch.cuda.device_count()
    else:
        assert env["gpu"] is None
