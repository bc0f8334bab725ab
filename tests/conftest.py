import os

import pytest

from tasd import Daemon


@pytest.fixture
def require_root():
    if os.geteuid() != 0:
        pytest.fail("these tests need root (namespaces, DPDK, hugepages)")


@pytest.fixture
def tas_daemon(tmp_path, require_root):
    """A running daemon on net_tap with the kernel peer in its own namespace."""
    d = Daemon(tmp_path).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def make_daemon(tmp_path, require_root):
    """Factory for daemons with a non-default device or extra config."""
    made = []

    def make(**kw):
        d = Daemon(tmp_path, **kw)
        made.append(d)
        return d
    try:
        yield make
    finally:
        for d in made:
            d.stop()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon shared by a test module's tests (they use distinct ports)."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root (namespaces, DPDK, hugepages)")
    d = Daemon(tmp_path_factory.mktemp("tas")).start()
    try:
        yield d
    finally:
        d.stop()
