"""Generate the C source of one cffi API-mode module (run by Meson).

usage: build_ffi.py MODULE OUTPUT.c
Meson compiles the emitted C into a Python extension, so all C goes through
the one Meson build and API mode can reach DPDK's static inline functions.
"""
import os
import sys

import cffi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdef import cdef_of  # noqa: E402
import ffi_modules  # noqa: E402


def main():
    name, out = sys.argv[1], sys.argv[2]
    spec = ffi_modules.MODULES[name]
    ffi = cffi.FFI()
    ffi.cdef(spec.get("pre_cdef", ""))
    for header in spec.get("headers", []):
        ffi.cdef(cdef_of(header))
    ffi.cdef(spec.get("cdef", ""))
    ffi.set_source(f"bindings.{name}", spec["source"])
    ffi.emit_c_code(out)


if __name__ == "__main__":
    main()
