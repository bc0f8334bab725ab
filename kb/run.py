"""kbrun: run an unmodified program on the whole stack.

    kbrun [--orp] [--no-tas] [--no-zio] [--no-strata] [-i INSTANCE]
          [--run-dir DIR] [--pool PATH] [--threshold BYTES] -- CMD ARGS...

Preloads, in the one order that works (docs/orp-contract.md):
    libzio  (sees every libc IO call first, resolves intermediates)
    libtas  (AF_INET stream sockets on the TAS daemon)
    libstrata (files under the Strata mount prefix, last before glibc)

--orp (optimistic receiver persistence) asks the daemon which NVM pool its
receive buffers live in and refuses to run unless they are in a Strata pool
(`buffers.backing = "nvm"`); the program's Strata files then go to that same
pool, so large received values reach the file system log as references to
the receive ring with no copy.  It also sets TAS_REQUIRE_NVM=1: libtas then
refuses TCP sockets (ENETDOWN, with a message) unless its segment lies in the
program's Strata pool -- never a quiet fall back to kernel sockets or shm
rings.  Users other than root cannot read the daemon's admin socket; for them
that libtas check is the one that applies (give --pool, or $STRATA_POOL).
"""
import argparse
import json
import os
import socket
import sys

from kb.execprog import exec_program
from strata import api
from strata.cli import SHARED_WRITERS_HELP

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBS = {
    "zio": os.path.join(HERE, "zio", "libzio.so"),
    "tas": os.path.join(HERE, "tas", "libtas", "libtas.so"),
    "strata": os.path.join(HERE, "strata", "libstrata.so"),
}
ORDER = ("zio", "tas", "strata")
DEFAULT_POOL = "/dev/shm/strata.pool"


class RunError(Exception):
    pass


def daemon_config(instance, run_dir):
    """The running daemon's buffer placement (its admin socket's `config`)."""
    path = os.path.join(run_dir, f"{instance}.admin")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except PermissionError:
            raise
        except OSError as e:
            raise RunError(f"--orp: no TAS daemon at {path}: {e.strerror}") from None
        s.sendall(json.dumps({"cmd": "config"}).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    reply = json.loads(data or b"{}")
    if "error" in reply:
        raise RunError(f"--orp: daemon {instance}: {reply['error']}")
    return reply


def orp_pool(instance, run_dir, pool):
    """The pool ORP uses.  The daemon's admin socket is root's: for other
    users the check is left to libtas (TAS_REQUIRE_NVM), which refuses TCP
    sockets unless the segment it is given lies in this process's pool."""
    try:
        cfg = daemon_config(instance, run_dir)["config"]
    except PermissionError:
        return pool

    backing = cfg["buffers"]["backing"]
    if backing != "nvm":
        raise RunError(f"--orp: daemon {instance} keeps receive buffers in {backing!r} memory; "
                       "start it with buffers.backing = \"nvm\" and nvm.pool_path on a Strata pool")
    daemon_pool = cfg["nvm"]["pool_path"]
    if pool is not None and os.path.realpath(pool) != os.path.realpath(daemon_pool):
        raise RunError(f"--orp: --pool {pool} is not the daemon's NVM pool {daemon_pool}; "
                       "with ORP the files and the receive buffers share one pool")
    return daemon_pool


def environ(layers, instance=None, run_dir=None, pool=None, threshold=None, base=None):
    """The environment that runs a program over the chosen layers."""
    env = dict(os.environ if base is None else base)
    libs = []
    for name in ORDER:
        if name in layers:
            if not os.path.exists(LIBS[name]):
                raise RunError(f"{LIBS[name]} is not built (python3 deploy/native_build.py)")
            libs.append(LIBS[name])
    rest = [p for p in env.get("LD_PRELOAD", "").split(":") if p and p not in libs]
    env["LD_PRELOAD"] = ":".join(libs + rest)
    if "zio" in layers:
        env["ZIO_MODE"] = "elide"
        if threshold is not None:
            env["ZIO_THRESHOLD"] = str(threshold)
    if "tas" in layers:
        if instance:
            env["TAS_INSTANCE"] = instance
        if run_dir:
            env["TAS_RUN_DIR"] = run_dir
    if "strata" in layers:
        env["STRATA_POOL"] = pool or env.get("STRATA_POOL") or DEFAULT_POOL
    return env


def parse(argv):
    p = argparse.ArgumentParser(prog="kbrun", description=__doc__.split("\n\n")[0])
    p.add_argument("--orp", action="store_true",
                   help="require the daemon's receive buffers in this Strata pool")
    for name in ORDER:
        p.add_argument(f"--no-{name}", action="store_true", help=f"leave lib{name} out")
    p.add_argument("-i", "--instance", default=os.environ.get("TAS_INSTANCE", "tas0"))
    p.add_argument("--run-dir", default=os.environ.get("TAS_RUN_DIR", "/run/tas"))
    p.add_argument("--pool", help=f"Strata pool (default $STRATA_POOL or {DEFAULT_POOL})")
    p.add_argument("--threshold", type=int, help="zIO copy-size threshold in bytes")
    p.add_argument("--shared-writers", action="store_true", help=SHARED_WRITERS_HELP)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = p.parse_args(argv)
    args.cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not args.cmd:
        p.error("no command given (kbrun -- CMD ARGS)")
    if args.threshold is not None and args.threshold < 0:
        p.error("--threshold must not be negative")
    return args


def main(argv=None):
    args = parse(argv)
    layers = {n for n in ORDER if not getattr(args, f"no_{n}")}
    try:
        pool = args.pool
        if args.orp:
            if not {"zio", "tas", "strata"} <= layers:
                raise RunError("--orp needs all three layers (zio, tas, strata)")
            pool = orp_pool(args.instance, args.run_dir, pool)
        env = environ(layers, args.instance, args.run_dir, pool, args.threshold)
        if args.orp:
            env["TAS_REQUIRE_NVM"] = "1"
        if args.shared_writers and "strata" in layers:
            env["STRATA_SHARED_WRITERS"] = "1"
        if "strata" in layers:   # as `strata run`: refused before the program starts
            api.check_runnable(env["STRATA_POOL"])
    except (RunError, api.StrataError) as e:
        sys.exit(f"kbrun: {e}")
    try:
        exec_program(args.cmd, env)
    except OSError as e:
        sys.exit(f"kbrun: {args.cmd[0]}: {e.strerror}")


if __name__ == "__main__":
    main()
