"""Shared fixtures for the zIO tests: where the built programs are, how to run
a program plainly and under libzio."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("ZIO_BUILD_DIR", os.path.join(ROOT, "build"))


def built(name):
    path = os.path.join(BUILD, "zio", name)
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: run `python deploy/native_build.py`")
    return path


@pytest.fixture(scope="session")
def libzio():
    return built("libzio.so")


@pytest.fixture(scope="session")
def zio_env(libzio):
    """Environment for `python -m zio.cli` using the freshly built libzio."""
    env = dict(os.environ, ZIO_LIB=libzio, PYTHONPATH=ROOT)
    return env


def zio_cli(*args, env, **kw):
    """Run the zio CLI to completion."""
    return subprocess.run([sys.executable, "-m", "zio.cli", *args], env=env, **kw)


def zio_start(*args, env, **kw):
    """Start the zio CLI (e.g. `zio run -- server`) in the background."""
    return subprocess.Popen([sys.executable, "-m", "zio.cli", *args], env=env, **kw)


@pytest.fixture(scope="session")
def input_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("zio") / "input.bin"
    path.write_bytes(os.urandom(3 << 20))
    return str(path)
