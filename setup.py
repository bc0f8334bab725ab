"""The Python install drives the one native build (Meson) for all C code.

`pip install -e .` (or a wheel build) runs deploy/native_build.py: meson setup +
compile into ./build, then every built shared library and cffi extension is
linked next to the Python package that uses it (tas/libtas/libtas.so, zio/libzio.so,
bindings/_dpdk*.so, ...).
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "deploy"))
import native_build  # noqa: E402


class BuildPyWithNative(build_py):
    def run(self):
        native_build.build()
        super().run()


setup(cmdclass={"build_py": BuildPyWithNative})
