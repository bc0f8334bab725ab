"""Each preload library exports only the libc names it interposes and the
public API of its header: its internals can neither be hijacked by a program
that defines the same names nor shadow the program's own.

The allowed set is derived, not listed twice: libc's own dynamic symbols
(interposers must carry a libc name) plus the functions the public header
declares.  The reverse check catches an interposer that a version script
forgot (it would silently never be called).
"""
import os
import re
import subprocess

import pytest

from elf_symbols import dynamic_exports, libc_names

pytestmark = pytest.mark.fast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")

# library -> (built shared object, its object-file directory, public header or None)
LIBS = {
    "libtas": ("tas/libtas/libtas.so", "tas/libtas/libtas.so.p", None),
    "libzio": ("zio/libzio.so", "zio/libzio.so.p", "include/zio/zio_api.h"),
    "libstrata": ("strata/libstrata.so", "strata/libstrata.so.p", "include/strata/strata_api.h"),
}
API_PREFIX = {"libtas": "tas_", "libzio": "zio_", "libstrata": "strata_"}


def header_api(header, prefix):
    """Functions a public header declares (header-only static inline helpers
    are not library symbols)."""
    text = open(os.path.join(ROOT, header)).read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    pattern = r"\b(" + prefix + r"\w+)\s*\("
    inline = set(re.findall(r"^static[^;{]*?" + pattern, text, flags=re.M))
    return set(re.findall(pattern, text)) - inline


def default_visibility_functions(objdir):
    """Global functions of default visibility defined in the library's objects."""
    names = set()
    for obj in sorted(os.listdir(objdir)):
        if not obj.endswith(".o"):
            continue
        out = subprocess.run(["readelf", "-sW", os.path.join(objdir, obj)], check=True,
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            f = line.split()
            # Num: Value Size Type Bind Vis Ndx Name
            if len(f) == 8 and f[3] == "FUNC" and f[4] in ("GLOBAL", "WEAK") \
                    and f[5] == "DEFAULT" and f[6] != "UND":
                names.add(f[7])
    return names


@pytest.fixture(scope="module")
def libc():
    names = libc_names()
    assert {"open", "memcpy", "socket"} <= names, "could not read libc's symbol table"
    return names


def _built(lib):
    so, objdir, header = LIBS[lib]
    path = os.path.join(BUILD, so)
    if not os.path.exists(path):
        pytest.fail(f"{path} missing: run `python deploy/native_build.py`")
    return path, os.path.join(BUILD, objdir), header


@pytest.mark.parametrize("lib", sorted(LIBS))
def test_exports_only_interposers_and_api(lib, libc):
    path, _, header = _built(lib)
    exported = dynamic_exports(path)
    api = header_api(header, API_PREFIX[lib]) if header else set()
    leaked = sorted(exported - libc - api)
    assert not leaked, f"{lib} exports internals: {leaked}"
    interposed = exported & libc
    assert interposed, f"{lib} interposes nothing?"
    print(f"{lib}: {len(interposed)} interposed libc names, {len(exported & api)} API functions")


@pytest.mark.parametrize("lib", sorted(n for n in LIBS if LIBS[n][2]))
def test_public_api_is_exported(lib):
    path, _, header = _built(lib)
    missing = sorted(header_api(header, API_PREFIX[lib]) - dynamic_exports(path))
    assert not missing, f"{lib} declares but does not export: {missing}"


@pytest.mark.parametrize("lib", sorted(LIBS))
def test_every_interposer_is_exported(lib, libc):
    """A libc-named function defined for interposition but hidden by the
    version script would never run: the map must list it."""
    path, objdir, _ = _built(lib)
    defined = default_visibility_functions(objdir) & libc
    assert defined, f"no interposers found in {objdir}"
    missing = sorted(defined - dynamic_exports(path))
    assert not missing, f"{lib} defines but does not export: {missing}"


def test_program_defining_libstrata_names_does_not_hijack_it(tmp_path):
    """tests/strata/hijack.c defines G, log_append, file_size and strata_open,
    aborting if libstrata calls any of them, and uses Strata through the shim."""
    prog = os.path.join(BUILD, "tests", "strata", "strata_hijack")
    if not os.path.exists(prog):
        pytest.fail(f"{prog} missing: run `python deploy/native_build.py`")
    pool = f"/dev/shm/strata-hijack-{os.getpid()}.pool"
    try:
        r = subprocess.run([prog, pool], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, STRATA_POOL=pool, STRATA_MOUNT="/strata"))
    finally:
        if os.path.exists(pool):
            os.unlink(pool)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stdout + r.stderr
