import os

import pytest

from orp_stack import make_pool


@pytest.fixture
def procs():
    """Processes a test starts; killed if still running when it ends."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.fixture
def orp_pool():
    path = make_pool()
    yield path
    if os.path.exists(path):
        os.unlink(path)
