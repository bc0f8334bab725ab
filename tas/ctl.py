"""`tasctl`: operator CLI for a running TAS daemon.

    tasctl stats | list | apps | config | cores | top
    tasctl flows [--port P] [--peer IP] [--app ID] [--state S] [--time-wait]
    tasctl flow kill FLOW_ID
    tasctl arena
    tasctl app-stats [PID]      (libtas's counters in one application)

Every command takes --json (machine-readable output, one document; `top`
prints one per interval).
"""
import argparse
import json
import os
import socket
import sys
import time

from bindings import stats as kbstats
from kb.execprog import default_signals
from tas import cycles


def _instance(args):
    if args.instance:
        return args.instance
    running = kbstats.instances("tas")
    if len(running) == 1:
        return running[0]
    if not running:
        raise kbstats.StatsError("no TAS daemon is running")
    raise kbstats.StatsError(f"several daemons run ({', '.join(running)}): pick one with -i")


def emit(args, doc):
    """--json: print doc and say so."""
    if args.json:
        print(json.dumps(doc, indent=1), flush=True)
        return True
    return False


def cmd_stats(args):
    inst = _instance(args)
    counters = kbstats.read("tas", inst)
    try:
        cyc = kbstats.read("tascyc", inst)
    except (OSError, kbstats.StatsError):
        cyc = {}
    try:
        syn = kbstats.read("tassyn", inst)
    except (OSError, kbstats.StatsError):
        syn = {}                  # a daemon from before the SYN page
    if emit(args, {"instance": inst, "counters": counters, "cycles": cyc, "syn": syn}):
        return
    try:
        cyc = kbstats.read("tascyc", inst)
    except (OSError, kbstats.StatsError):
        cyc = {}                  # a daemon without the cycles page
    if args.prometheus:
        sys.stdout.write(kbstats.prometheus("tas", inst, counters))
        if syn:
            sys.stdout.write(kbstats.prometheus("tassyn", inst, syn))
        if cyc:
            sys.stdout.write(kbstats.prometheus("tascyc", inst, cyc))
    else:
        print(kbstats.format_table(counters, title=f"tas instance {inst}"))
        if syn:
            print(kbstats.format_table(syn, title="SYNs answered by the fast path "
                                                  "(syn_fast) or left to the slow path"))
        if cyc:
            print_cycles(cyc, counters)


def print_cycles(cyc, counters):
    """Fast-path cycles per stage since start (tas/cycles.py)."""
    print(f"fast-path cycles per stage (TSC {cyc.get('tsc_hz', 0) / 1e9:.2f} GHz)")
    print_rows([{"stage": st, "cycles": c, "units": n, "cycles_per_unit": f"{per:.0f}",
                 "unit": unit} for st, c, n, per, unit in cycles.breakdown(cyc, counters)],
               ["stage", "cycles", "units", "cycles_per_unit", "unit"])


def cmd_app_stats(args):
    """libtas's counters in one application (kbstats.libtas.<pid>)."""
    if args.pid is None:
        pids = kbstats.instances("libtas")
        if not emit(args, {"pids": pids}):
            print("\n".join(pids) if pids else "no application runs under libtas")
        return 0
    counters = kbstats.read("libtas", str(args.pid))
    if emit(args, counters):
        return 0
    if args.prometheus:
        sys.stdout.write(kbstats.prometheus("libtas", str(args.pid), counters))
    else:
        print(kbstats.format_table(counters, title=f"libtas pid {args.pid}"))
    return 0


def cmd_list(args):
    running = kbstats.instances("tas")
    if not emit(args, {"instances": running}):
        for inst in running:
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
    def cell(r, c):
        v = r.get(c, "")
        return "-" if v is None else str(v)     # (a TIME_WAIT pair has no app)
    widths = [max(len(c), *(len(cell(r, c)) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in rows:
        print("  ".join(cell(r, c).rjust(w) for c, w in zip(columns, widths)))


FLOW_COLUMNS = ["flow_id", "peer", "peer_port", "local_port", "state", "app", "uid",
                "rate_kbps", "rtt_us", "snd_wnd", "tx_sent", "tx_avail", "rx_avail",
                "acked_bytes", "fast_rexmits"]


def flow_matches(row, args):
    return ((args.port is None or args.port in (row["local_port"], row["peer_port"])) and
            (args.peer is None or row["peer"] == args.peer) and
            (args.app is None or row["app"] == args.app) and
            (args.state is None or row["state"] == args.state.upper()))


def cmd_flows(args):
    inst, reply = admin(args, "flows", time_wait=args.time_wait)
    rows = [r for r in reply["flows"] if flow_matches(r, args)]
    if not emit(args, {"instance": inst, "flows": rows}):
        print_rows(rows, FLOW_COLUMNS)


def cmd_flow_kill(args):
    inst, reply = admin(args, "kill", flow_id=args.flow_id)
    if not emit(args, {"instance": inst, **reply}):
        k = reply["killed"]
        print(f"flow {k['flow_id']} ({k['peer']}:{k['peer_port']} -> port {k['local_port']}, "
              f"app {k['app']}, {k['state']}): reset")


def cmd_apps(args):
    inst, reply = admin(args, "apps")
    if emit(args, {"instance": inst, **reply}):
        return
    rows = [dict(r, listeners=",".join(map(str, r["listeners"])) or "-") for r in reply["apps"]]
    print_rows(rows, ["app", "pid", "uid", "gid", "state", "contexts", "flows", "listeners"])
    caps = reply["caps"]
    print("per-uid use (caps: " + ", ".join(f"{k} {v}" for k, v in caps.items()) + ")")
    print_rows([{"uid": uid, **held} for uid, held in reply["per_uid"].items()],
               ["uid", *caps])


def cmd_config(args):
    inst, reply = admin(args, "config")
    if emit(args, {"instance": inst, **reply}):
        return
    for section, keys in reply["config"].items():
        print(f"[{section}]")
        for key, value in keys.items():
            print(f"{key} = {json.dumps(value)}")
        print()


TOP_COUNTERS = ["rx_pkts", "tx_pkts", "tcp_rx_bytes", "tcp_tx_bytes", "exc_tcp_ctrl",
                "tcp_rst_sent", "app_bad_cmd", "app_bad_ctx", "app_notify_deferred",
                "fp_wakeups"]


def cmd_top(args):
    """Live view: rates of the main counters and the busiest flows."""
    inst = _instance(args)
    prev, prev_t = kbstats.read("tas", inst), time.monotonic()
    n = 0
    while args.count is None or n < args.count:
        time.sleep(args.interval)
        now, t = kbstats.read("tas", inst), time.monotonic()
        dt = max(t - prev_t, 1e-9)
        rates = {k: round((now.get(k, 0) - prev.get(k, 0)) / dt, 1) for k in TOP_COUNTERS}
        _, reply = admin(args, "flows")
        flows = sorted(reply["flows"], key=lambda r: -r.get("rate_kbps", 0))[:args.flows]
        gauges = {k: now.get(k, 0) for k in ("tcp_conns", "apps_active", "fp_cores")}
        doc = {"instance": inst, "interval_s": round(dt, 3), "rates_per_s": rates,
               "gauges": gauges, "flows": flows}
        if not emit(args, doc):
            if sys.stdout.isatty():
                print("\033[H\033[J", end="")
            print(f"tas instance {inst}  " + "  ".join(f"{k} {v}" for k, v in gauges.items()))
            print_rows([{"counter": k, "per_s": v} for k, v in rates.items()],
                       ["counter", "per_s"])
            print_rows(flows, FLOW_COLUMNS[:8])
            print(flush=True)
        prev, prev_t = now, t
        n += 1


def cmd_cores(args):
    extra = {"set": args.set} if args.set is not None else {"auto": True} if args.auto else {}
    inst, reply = admin(args, "cores", **extra)
    if emit(args, {"instance": inst, **reply}):
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


def cmd_arena(args):
    inst, reply = admin(args, "arena")
    a = reply["arena"]
    if emit(args, a):
        return 0
    live = sum(1 for r in a["slices"] if r["state"] == "live")
    print(f"tas instance {inst}: NVM arena = Strata pool {a['pool']} ref area "
          f"{a['ref_off']}+{a['ref_bytes']}: {live} live slice(s), "
          f"{len(a['slices']) - live} quarantined ({a['quarantined_bytes']} bytes), "
          f"{a['free_bytes']} bytes free{', digest running' if a['digest_running'] else ''}")
    print_rows(a["slices"], ["row", "state", "pid", "owner_alive", "uid", "app", "off", "len"])
    return 0


def main(argv=None):
    default_signals()     # `tasctl stats | head` ends quietly
    p = argparse.ArgumentParser(prog="tasctl", description="Administer a running TAS daemon")
    p.add_argument("-i", "--instance", help="daemon instance (default: the only one running)")
    p.add_argument("--run-dir", default="/run/tas", help="the daemon's tas.run_dir")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(name, func, helptext, parent=sub):
        c = parent.add_parser(name, help=helptext, parents=[common])
        c.set_defaults(func=func)
        return c
    s = command("stats", cmd_stats, "show the daemon's counters")
    s.add_argument("--prometheus", action="store_true", help="Prometheus text format")
    a = command("app-stats", cmd_app_stats,
                "libtas counters of an application (no PID: list them)")
    a.add_argument("pid", type=int, nargs="?")
    a.add_argument("--prometheus", action="store_true", help="Prometheus text format")
    command("list", cmd_list, "list running instances")
    c = command("cores", cmd_cores, "fast-path core usage and scaling")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--set", type=int, metavar="N", help="pin N active cores (stops autoscaling)")
    g.add_argument("--auto", action="store_true", help="scale cores automatically again")
    f = command("flows", cmd_flows, "connections and their fast-path state (like ss -t)")
    f.add_argument("--port", type=int, help="local or peer port")
    f.add_argument("--peer", help="peer IPv4 address")
    f.add_argument("--app", type=int, help="app id (see tasctl apps)")
    f.add_argument("--state", help="SYN_SENT, SYN_RCVD, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, "
                   "CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK or CLOSED (as Linux names them)")
    f.add_argument("--time-wait", action="store_true",
                   help="also the TIME_WAIT pairs (no app owns them; expires_ms left)")
    fl = sub.add_parser("flow", help="act on one connection")
    fsub = fl.add_subparsers(dest="flow_cmd", required=True)
    k = command("kill", cmd_flow_kill, "reset a connection (RST to the peer)", fsub)
    k.add_argument("flow_id", type=int)
    command("apps", cmd_apps, "attached apps, their credentials and per-uid use")
    command("config", cmd_config, "the configuration the daemon runs with")
    t = command("top", cmd_top, "live view of rates and the busiest flows")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between updates")
    t.add_argument("--count", type=int, help="stop after this many updates")
    t.add_argument("--flows", type=int, default=10, help="flows to show")
    command("arena", cmd_arena, "NVM payload arena: slices, owners, quarantine")
    args = p.parse_args(argv)
    try:
        return args.func(args) or 0
    except kbstats.StatsError as e:
        print(f"tasctl: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
