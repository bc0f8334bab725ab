"""Helpers for the zIO tests: where the built programs are, how to run the
zio CLI with the freshly built libzio."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ZIO_BUILD_DIR", os.path.join(ROOT, "build"))


def built(name):
    """libzio.so from build/zio/, test programs from build/tests/zio/."""
    path = os.path.join(BUILD, "zio" if name.endswith(".so") else os.path.join("tests", "zio"), name)
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: run `python deploy/native_build.py`")
    return path


def zio_cli(*args, env, **kw):
    """Run the zio CLI to completion."""
    return subprocess.run([sys.executable, "-m", "zio.cli", *args], env=env, **kw)


def zio_start(*args, env, **kw):
    """Start the zio CLI (e.g. `zio run -- server`) in the background."""
    return subprocess.Popen([sys.executable, "-m", "zio.cli", *args], env=env, **kw)
