"""Build every C component with Meson and link the results into the packages.

Usable on its own (`python deploy/native_build.py`) for a quick rebuild.
"""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")


def _run(cmd):
    subprocess.run(cmd, check=True, cwd=ROOT)


def build():
    meson = shutil.which("meson")
    if meson is None:
        raise SystemExit("meson not found: run deploy/setup (installs meson, ninja, DPDK, PMDK)")
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        _run([meson, "setup", BUILD, f"-Dpython={sys.executable}", "--buildtype=debugoptimized"])
    _run([meson, "compile", "-C", BUILD])
    link_outputs()


def link_outputs():
    """Symlink each built .so into the source package directory it belongs to."""
    out = subprocess.run(["meson", "introspect", "--targets", BUILD],
                         check=True, capture_output=True, text=True).stdout
    for target in json.loads(out):
        for built in target["filename"]:
            if not built.endswith(".so"):
                continue
            rel = os.path.relpath(os.path.dirname(built), BUILD)
            dest_dir = os.path.join(ROOT, rel)
            if not os.path.isdir(dest_dir):
                continue
            dest = os.path.join(dest_dir, os.path.basename(built))
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(os.path.relpath(built, dest_dir), dest)


if __name__ == "__main__":
    build()
