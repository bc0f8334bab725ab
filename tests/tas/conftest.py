import pytest


@pytest.fixture
def procs():
    """Processes a test starts; killed if still running when it ends."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.communicate()
