"""tas-run: run an unmodified program with its TCP sockets on TAS.

    tas-run [--instance NAME] [--run-dir DIR] -- CMD ARGS...

Preloads tas/libtas/libtas.so (the socket shim) and execs CMD; AF_INET stream
sockets then go through the TAS daemon NAME, everything else to the kernel.
"""
import argparse
import os
import sys

from kb.execprog import exec_program

LIBTAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libtas", "libtas.so")


def environ(instance=None, run_dir=None, base=None):
    """The environment that runs a program over TAS."""
    env = dict(os.environ if base is None else base)
    preload = env.get("LD_PRELOAD")
    env["LD_PRELOAD"] = f"{LIBTAS}:{preload}" if preload else LIBTAS
    if instance:
        env["TAS_INSTANCE"] = instance
    if run_dir:
        env["TAS_RUN_DIR"] = run_dir
    return env


def main(argv=None):
    p = argparse.ArgumentParser(prog="tas-run",
                                description="Run a program with its TCP sockets on TAS.")
    p.add_argument("--instance", help="TAS instance (default: $TAS_INSTANCE or tas0)")
    p.add_argument("--run-dir", help="daemon socket directory (default /run/tas)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("no command given (tas-run -- CMD ARGS)")
    if not os.path.exists(LIBTAS):
        sys.exit(f"tas-run: {LIBTAS} is not built (python deploy/native_build.py)")
    try:
        exec_program(cmd, environ(args.instance, args.run_dir))
    except OSError as e:
        sys.exit(f"tas-run: {cmd[0]}: {e.strerror}")


if __name__ == "__main__":
    main()
