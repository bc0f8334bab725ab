"""Run a checker program the native build makes (build/tests/...): it prints
"ok N" after N cases and exits 0, or says what differed."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_check(relpath, min_cases):
    path = os.path.join(ROOT, "build", "tests", relpath)
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: run `python deploy/native_build.py`")
    r = subprocess.run([path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ok ") and int(r.stdout.split()[1]) > min_cases, r.stdout
