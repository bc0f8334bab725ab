"""`tasctl`: operator CLI for a running TAS daemon (stats, cores, instances) and
the applications on it (app-stats: libtas's counters)."""
import argparse
import json
import os
import socket
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


def cmd_app_stats(args):
    """libtas's counters in one application (kbstats.libtas.<pid>)."""
    if args.pid is None:
        pids = kbstats.instances("libtas")
        print("\n".join(pids) if pids else "no application runs under libtas")
        return 0
    counters = kbstats.read("libtas", str(args.pid))
    if args.prometheus:
        sys.stdout.write(kbstats.prometheus("libtas", str(args.pid), counters))
    else:
        print(kbstats.format_table(counters, title=f"libtas pid {args.pid}"))
    return 0


def cmd_list(args):
    for inst in kbstats.instances("tas"):
        print(inst)


def admin(args, cmd, **params):
    """One request to the daemon's admin socket."""
    inst = _instance(args)
    path = os.path.join(args.run_dir, f"{inst}.admin")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
        except OSError as e:
            raise kbstats.StatsError(f"cannot reach {path}: {e.strerror}") from None
        s.sendall(json.dumps({"cmd": cmd, **params}).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    reply = json.loads(data)
    if "error" in reply:
        raise kbstats.StatsError(reply["error"])
    return inst, reply


def print_rows(rows, columns):
    if not rows:
        print("(none)")
        return
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(columns, widths)))


def cmd_flows(args):
    inst, reply = admin(args, "flows")
    if args.json:
        print(json.dumps(reply["flows"], indent=1))
        return
    print_rows(reply["flows"], ["flow_id", "peer", "peer_port", "local_port", "state", "app",
                                "rate_kbps", "rtt_us", "snd_wnd", "tx_sent", "tx_avail",
                                "rx_avail", "acked_bytes", "fast_rexmits"])


def cmd_cores(args):
    extra = {"set": args.set} if args.set is not None else {"auto": True} if args.auto else {}
    inst, reply = admin(args, "cores", **extra)
    if args.json:
        print(json.dumps(reply, indent=1))
        return 0
    rows = reply["cores"]
    for r in rows:
        r["busy_pct"] = f"{100 * r['busy_cycles'] / max(r['total_cycles'], 1):.1f}"
    sc = reply["scaling"]
    print(f"tas instance {inst}: {sc['active']} of {sc['max']} fast-path cores active, "
          f"scaling {'automatic' if sc['auto'] else 'pinned'}, idle cores {sc['idle_cores']}")
    print_rows(rows, ["core", "active", "busy_pct", "busy_cycles", "total_cycles",
                      "queue_rx_pkts", "queue_tx_pkts"])
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="tasctl", description="Administer a running TAS daemon")
    p.add_argument("-i", "--instance", help="daemon instance (default: the only one running)")
    p.add_argument("--run-dir", default="/run/tas", help="the daemon's tas.run_dir")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stats", help="show the daemon's counters")
    s.add_argument("--prometheus", action="store_true", help="Prometheus text format")
    s.set_defaults(func=cmd_stats)
    a = sub.add_parser("app-stats",
                       help="libtas counters of an application (no PID: list them)")
    a.add_argument("pid", type=int, nargs="?")
    a.add_argument("--prometheus", action="store_true", help="Prometheus text format")
    a.set_defaults(func=cmd_app_stats)
    sub.add_parser("list", help="list running instances").set_defaults(func=cmd_list)
    c = sub.add_parser("cores", help="fast-path core usage and scaling")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--set", type=int, metavar="N", help="pin N active cores (stops autoscaling)")
    g.add_argument("--auto", action="store_true", help="scale cores automatically again")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cores)
    f = sub.add_parser("flows", help="connections and their fast-path state")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_flows)
    args = p.parse_args(argv)
    try:
        return args.func(args) or 0
    except kbstats.StatsError as e:
        print(f"tasctl: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
