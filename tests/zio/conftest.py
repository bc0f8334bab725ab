"""Fixtures for the zIO tests."""
import os
import subprocess
import sys
import uuid

import pytest

from zio_testlib import ROOT, built

# The tests check the mechanism at the paper's 16 KiB threshold (also
# libzio's default), whatever ZIO_THRESHOLD the caller's environment has;
# every process they start inherits this.
os.environ["ZIO_THRESHOLD"] = "16384"


@pytest.fixture(scope="session")
def libzio():
    return built("libzio.so")


@pytest.fixture(scope="session")
def zio_env(libzio):
    """Environment for `python -m zio.cli` using the freshly built libzio."""
    return dict(os.environ, ZIO_LIB=libzio, PYTHONPATH=ROOT)


@pytest.fixture(scope="session")
def input_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("zio") / "input.bin"
    path.write_bytes(os.urandom(3 << 20))
    return str(path)


@pytest.fixture
def strata_pool():
    """A fresh Strata pool (64 MiB, 8 slots of 4 MiB logs) on /dev/shm."""
    path = f"/dev/shm/zio-test-{uuid.uuid4().hex[:8]}.pool"
    subprocess.run([sys.executable, "-m", "strata.cli", "--pool", path, "mkfs", "--size", "64M",
                    "--slots", "8", "--log-size", "4M", "--inodes", "1024"],
                   cwd=ROOT, check=True, capture_output=True, timeout=60)
    yield path
    os.unlink(path)
