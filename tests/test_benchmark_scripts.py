"""The scripts under ``benchmarks/`` import what they use and parse their options.

They are not run in the suite (each times real workloads for minutes); ``--help`` loads every module
they import and builds their argument parser, so a renamed helper or a bad option breaks here.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if not p.name.startswith("test_"))


def test_scripts_found():
    assert len(SCRIPTS) >= 5, f"expected the benchmark scripts under {BENCHMARKS}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help(script: Path):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {script.name}"), proc.stdout[:500]
