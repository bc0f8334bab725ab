"""Symbols of built objects, read with nm (tests/test_exports.py,
tests/test_call_graph.py)."""
import ctypes.util
import os
import subprocess


def nm(path, *flags):
    out = subprocess.run(["nm", *flags, path], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def dynamic_exports(path):
    """Names of the defined dynamic symbols (nm -D --defined-only)."""
    return {line.split()[-1].split("@")[0] for line in nm(path, "-D", "--defined-only")
            if len(line.split()) == 3}


def libc_names():
    for cand in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"):
        if os.path.exists(cand):
            return dynamic_exports(cand)
    name = ctypes.util.find_library("c")
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    path = next(line.split("=> ")[1] for line in out.splitlines() if line.strip().startswith(name))
    return dynamic_exports(path)


def object_symbols(path):
    """(defined global names, undefined names) of one object file."""
    defined, undefined = set(), set()
    for line in nm(path):
        f = line.split()
        if len(f) == 2 and f[0] == "U":
            undefined.add(f[1])
        elif len(f) == 3 and f[1] in "TDBRVWGSC":   # global: text, data, bss, rodata, weak, common
            defined.add(f[2])
    return defined, undefined
