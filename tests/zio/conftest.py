"""Fixtures for the zIO tests."""
import os

import pytest

from zio_testlib import ROOT, built

# The tests check the mechanism, so they elide copies down to 16 KiB (the
# paper's threshold) whatever the performance default of libzio is; every
# process they start inherits this.
os.environ.setdefault("ZIO_THRESHOLD", "16384")


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
