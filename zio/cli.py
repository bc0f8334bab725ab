"""zio: run programs under libzio, read its counters, profile their copies.

    zio run [--threshold BYTES] [--ratio R] [--gc-max N] [--link-max BYTES] [--verbose]
            [--fallback] -- CMD ARGS
    zio profile [--threshold BYTES] -- CMD ARGS
    zio stats [PID]
"""
import glob
import json
import os
import subprocess
import sys
import tempfile

from kb.execprog import default_signals, exec_program

LIB_NAME = "libzio.so"

# option -> (environment variable, converter, takes a value)
RUN_OPTIONS = {
    "--threshold": ("ZIO_THRESHOLD", int, True),
    "--ratio": ("ZIO_RATIO", float, True),
    "--gc-max": ("ZIO_GC_MAX", int, True),
    "--link-max": ("ZIO_LINK_MAX", int, True),   # copies from stack originals below it: linked
    "--link-out-min": ("ZIO_LINK_OUT_MIN", int, True),  # a linked part sent as its original from here
    "--verbose": ("ZIO_VERBOSE", None, False),
    "--fallback": ("ZIO_FORCE_FALLBACK", None, False),
}
PROFILE_OPTIONS = {k: RUN_OPTIONS[k] for k in ("--threshold", "--verbose")}


class UsageError(Exception):
    pass


def library_path():
    """libzio.so: $ZIO_LIB, else the one the build links into this package."""
    path = os.environ.get("ZIO_LIB") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     LIB_NAME)
    if not os.path.exists(path):
        raise UsageError(f"{path} not found: build it with `python deploy/native_build.py`")
    return os.path.realpath(path)


def parse_launch(args, options):
    """Split `[options] [--] CMD ARGS` into ({env var: value}, command)."""
    env, i = {}, 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        name, _, inline = arg.partition("=")
        if name not in options:
            raise UsageError(f"unknown option {name!r} (known: {', '.join(options)})")
        var, conv, takes_value = options[name]
        if not takes_value:
            env[var] = "1"
            i += 1
            continue
        if not inline:
            if i + 1 >= len(args):
                raise UsageError(f"{name} needs a value")
            inline, i = args[i + 1], i + 1
        try:
            value = conv(inline)
        except ValueError:
            raise UsageError(f"{name}: not a number: {inline!r}") from None
        if value < 0:
            raise UsageError(f"{name} must not be negative")
        env[var] = str(value)
        i += 1
    command = args[i:]
    if not command:
        raise UsageError("no command given (use: -- CMD ARGS)")
    return env, command


def launch_env(extra):
    env = dict(os.environ)
    preload = env.get("LD_PRELOAD", "")
    env["LD_PRELOAD"] = library_path() + (":" + preload if preload else "")
    env.update(extra)
    return env


def cmd_run(args):
    extra, command = parse_launch(args, RUN_OPTIONS)
    extra["ZIO_MODE"] = "elide"
    env = launch_env(extra)
    try:
        exec_program(command, env)
    except OSError as e:
        raise UsageError(f"cannot run {command[0]}: {e.strerror}") from None


def format_profile(reports):
    copies = {}
    for r in reports:
        for c in r["classes"]:
            n, b = copies.get(c["class"], (0, 0))
            copies[c["class"]] = (n + c["copies"], b + c["bytes"])
    total = sum(b for _, b in copies.values())
    elide = sum(r["would_elide_bytes"] for r in reports)
    threshold = reports[0]["threshold"]
    lines = [f"zio profile: {len(reports)} process(es), threshold {threshold} bytes",
             f"  {'size class':<10} {'copies':>12} {'bytes':>16}"]
    lines += [f"  {k:<10} {n:>12,} {b:>16,}" for k, (n, b) in copies.items() if n]
    share = 100.0 * elide / total if total else 0.0
    lines.append(f"  inputs recorded as IO buffers: "
                 f"{sum(r['inputs_recorded'] for r in reports):,}")
    lines.append(f"  copies zIO would elide: {sum(r['would_elide_copies'] for r in reports):,}"
                 f", bytes: {elide:,} ({share:.1f}% of all copied bytes)")
    lines.append("  verdict: " + ("zIO is likely to help" if share >= 20 else
                                  "little to gain from zIO" if elide else
                                  "zIO would elide nothing"))
    return "\n".join(lines)


def cmd_profile(args):
    extra, command = parse_launch(args, PROFILE_OPTIONS)
    with tempfile.TemporaryDirectory(prefix="zio-profile-") as tmp:
        extra.update(ZIO_MODE="profile", ZIO_PROFILE_DIR=tmp)
        try:
            rc = subprocess.call(command, env=launch_env(extra))
        except OSError as e:
            raise UsageError(f"cannot run {command[0]}: {e.strerror}") from None
        reports = []
        for path in sorted(glob.glob(os.path.join(tmp, "profile.*.json"))):
            with open(path) as f:
                reports.append(json.load(f))
    if reports:
        print(format_profile(reports), file=sys.stderr)
    else:
        print("zio profile: no report (did the program exit normally?)", file=sys.stderr)
    return rc


def alive_or_prune(pid):
    """A page whose process is gone (it left with _exit or a signal, so its
    destructor never ran) is stale: remove it."""
    from bindings import stats
    try:
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        try:
            os.unlink(stats.page_path("zio", pid))
        except OSError:
            pass
        return False
    except (PermissionError, ValueError):
        return True


def cmd_stats(args):
    from bindings import stats
    if len(args) > 1 or (args and not args[0].isdigit()):
        raise UsageError("usage: zio stats [PID]")
    if not args:
        prefix = stats.page_path("zio", "")
        pids = sorted(p[len(prefix):] for p in glob.glob(prefix + "*")
                      if alive_or_prune(p[len(prefix):]))
        print("\n".join(pids) if pids else "no process is running under zio")
        return 0
    try:
        counters = stats.read("zio", args[0])
    except stats.StatsError:
        print(f"zio: no zIO stats page for pid {args[0]} "
              f"(not running, or not started with `zio run`)", file=sys.stderr)
        return 1
    print(stats.format_table(counters, title=f"zio pid {args[0]}"))
    return 0


COMMANDS = {"run": cmd_run, "profile": cmd_profile, "stats": cmd_stats}


def main(argv=None):
    default_signals()     # `zio stats PID | head` ends quietly
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"zio: unknown command {argv[0]!r} (run, profile, stats)", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except UsageError as e:
        print(f"zio {argv[0]}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
