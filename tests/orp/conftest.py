import os

import pytest

from orp_stack import make_pool


@pytest.fixture
def orp_pool():
    path = make_pool()
    yield path
    if os.path.exists(path):
        os.unlink(path)
