import os

import pytest

from tasd import Daemon

# Tests that need root carry the `root` marker (tests/README.md): a user run
# deselects them with -m "not root"; reaching these fixtures anyway is an error.
NEEDS_ROOT = "this test needs root (namespaces, DPDK, hugepages): deselect with -m 'not root'"


@pytest.fixture
def require_root():
    if os.geteuid() != 0:
        pytest.fail(NEEDS_ROOT)


@pytest.fixture
def tas_daemon(tmp_path, require_root):
    """A running daemon on the default device (net_af_packet on a veth) with
    the kernel peer in its own namespace."""
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
        pytest.fail(NEEDS_ROOT)
    d = Daemon(tmp_path_factory.mktemp("tas")).start()
    try:
        yield d
    finally:
        d.stop()


ROOT_FIXTURES = {"require_root", "tas_daemon", "make_daemon", "daemon"}


def pytest_collection_modifyitems(config, items):
    """A test that uses a root fixture is a root test even if its module
    forgot the marker; a fast test must not use one."""
    for item in items:
        if ROOT_FIXTURES & set(item.fixturenames):
            if item.get_closest_marker("fast"):
                raise pytest.UsageError(f"{item.nodeid} is marked fast but needs root")
            if not item.get_closest_marker("root"):
                item.add_marker(pytest.mark.root)


@pytest.fixture
def procs():
    """Processes a test starts; killed if still running when it ends."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.communicate()
