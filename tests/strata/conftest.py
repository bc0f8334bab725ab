"""Fixtures for the Strata tests: fresh pools on /dev/shm, the shim env."""
import os
import subprocess
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "strata")
CRASHWRITER = os.path.join(BUILD, "strata_crashwriter")
LIBSTRATA = os.path.join(ROOT, "strata", "libstrata.so")


def strata_cli(*args, pool, check=True):
    """Run the `strata` CLI in a child (each child mounts the pool itself)."""
    return subprocess.run([sys.executable, "-m", "strata.cli", "--pool", pool, *args],
                          cwd=ROOT, capture_output=True, text=True, check=check, timeout=60)


def shim_env(pool, **extra):
    env = dict(os.environ, STRATA_POOL=pool, LD_PRELOAD=LIBSTRATA, PYTHONPATH=ROOT,
               STRATA_MOUNT="/strata")
    env.update(extra)
    return env


@pytest.fixture
def pool_path():
    path = f"/dev/shm/strata-test-{uuid.uuid4().hex[:8]}.pool"
    yield path
    if os.path.exists(path):
        os.unlink(path)


@pytest.fixture
def pool(pool_path):
    """A small pool: 64 MiB, 8 slots of 1 MiB logs (digests happen often)."""
    strata_cli("mkfs", "--size", "64M", "--slots", "8", "--log-size", "1M", "--inodes", "1024",
               pool=pool_path)
    return pool_path


def fsck_clean(pool):
    r = strata_cli("fsck", pool=pool, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clean" in r.stdout
