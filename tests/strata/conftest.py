"""Fixtures for the Strata tests: fresh pools on /dev/shm."""
import os
import struct
import uuid

import pytest

from strata_helpers import strata_cli


@pytest.fixture
def pool_path():
    path = f"/dev/shm/strata-test-{uuid.uuid4().hex[:8]}.pool"
    yield path
    if os.path.exists(path):
        with open(path, "rb") as f:  # fs_id (superblock offset 24) names its lock and shadow files
            fs_id = struct.unpack_from("<Q", f.read(32).ljust(32, b"\0"), 24)[0]
        os.unlink(path)
        for name in os.listdir("/dev/shm"):
            if name.startswith(f"strata.{fs_id:016x}."):
                os.unlink(os.path.join("/dev/shm", name))


@pytest.fixture
def pool(pool_path):
    """A small pool: 64 MiB, 8 slots of 1 MiB logs (digests happen often)."""
    strata_cli("mkfs", "--size", "64M", "--slots", "8", "--log-size", "1M", "--inodes", "1024",
               pool=pool_path)
    return pool_path
