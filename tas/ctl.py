"""`tasctl`: operator CLI for a running TAS daemon (stats, cores, instances)."""
import argparse
import sys

from bindings import stats as kbstats


def _instance(args):
    if args.instance:
        return args.instance
    running = kbstats.instances("tas")
    if len(running) == 1:
        return running[0]
    if not running:
        raise kbstats.StatsError("no TAS daemon is running")
    raise kbstats.StatsError(f"several daemons run ({', '.join(running)}): pick one with -i")


def cmd_stats(args):
    inst = _instance(args)
    counters = kbstats.read("tas", inst)
    if args.prometheus:
        sys.stdout.write(kbstats.prometheus("tas", inst, counters))
    else:
        print(kbstats.format_table(counters, title=f"tas instance {inst}"))


def cmd_list(args):
    for inst in kbstats.instances("tas"):
        print(inst)


def cmd_cores(args):
    inst = _instance(args)
    c = kbstats.read("tas", inst)
    print(f"tas instance {inst}: {c.get('fp_cores', 0)} fast-path cores, "
          f"{c.get('fp_sleeps', 0)} sleeps / {c.get('fp_wakeups', 0)} wake-ups")


def main(argv=None):
    p = argparse.ArgumentParser(prog="tasctl", description="Administer a running TAS daemon")
    p.add_argument("-i", "--instance", help="daemon instance (default: the only one running)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stats", help="show the daemon's counters")
    s.add_argument("--prometheus", action="store_true", help="Prometheus text format")
    s.set_defaults(func=cmd_stats)
    sub.add_parser("list", help="list running instances").set_defaults(func=cmd_list)
    sub.add_parser("cores", help="fast-path core usage").set_defaults(func=cmd_cores)
    args = p.parse_args(argv)
    try:
        args.func(args)
    except kbstats.StatsError as e:
        print(f"tasctl: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
