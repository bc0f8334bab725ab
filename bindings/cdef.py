"""Extract the cffi-readable part of a C header.

Shared-memory layouts are written once, in C headers under include/.  The part
of each header between `/* CDEF-BEGIN */` and `/* CDEF-END */` holds only
declarations cffi's parser accepts; cffi reads exactly that text, and the
compiled module #includes the whole header, so C and Python cannot drift.
"""
import os
import re

INCLUDE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "include")
_BLOCK = re.compile(r"/\* CDEF-BEGIN \*/(.*?)/\* CDEF-END \*/", re.S)


def cdef_of(header):
    """Return the concatenated CDEF blocks of include/<header>."""
    with open(os.path.join(INCLUDE_DIR, header)) as f:
        text = f.read()
    blocks = _BLOCK.findall(text)
    if not blocks:
        raise ValueError(f"{header}: no CDEF-BEGIN/CDEF-END block")
    return "\n".join(blocks)
