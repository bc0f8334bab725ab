"""Fast-path packets per second per core against DPDK's own testpmd.

  python bench/tas_pps.py [--seconds 3] [--repeat 3] [--mtu 1500]

On the same virtual device pair (two processes joined by net_memif, one
lcore on each CPU), interleaved, in one run:
  testpmd:  a txonly generator sends frames of MTU + 14 bytes, a second
            testpmd receives them (rxonly, or io forwarding them back):
            packets per second of the receiving core, which does nothing else
  tas:      unmodified iperf3 between two TAS daemons; the receiving daemon's
            fast path takes the data segments and sends the ACKs: packets
            (RX + TX) per second of wall time, and per second of the cycles
            its stages spent (tas/cycles.py: everything but idle polling),
            which is what one core could carry if it did only that
Prints min/median/max of each, the ratio tas/testpmd (per busy core), the
load average, and writes JSON to bench/results/.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bindings import stats  # noqa: E402
from deploy.report import print_table, write_json  # noqa: E402
from tas import cycles  # noqa: E402
from tas.run import environ  # noqa: E402
from tas_benchlib import start_memif_pair  # noqa: E402
from tas_bulk import iperf  # noqa: E402

NAMES = ("ppsa", "ppsb")
# testpmd's default pool (about 340 MB) fails when other daemons hold most
# of the machine's hugepages; a few rings' worth is all forwarding needs
MBUFS = "--total-num-mbufs=16384"


def testpmd(tmp, mode, frame, seconds):
    """txonly -> `mode` over memif; packets/s received by the second one."""
    sock = os.path.join(tmp, "testpmd.sock")
    # line-buffered: we wait for its prompt on a pipe
    common = ["stdbuf", "-oL", "dpdk-testpmd", "--no-pci", "--in-memory", "-m", "128"]
    gen = subprocess.Popen(
        [*common, "-l", "0,1", "--file-prefix=pmdgen",
         f"--vdev=net_memif0,role=server,socket={sock}", "--",
         "--forward-mode=txonly", f"--txpkts={frame}", "--nb-cores=1", MBUFS],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(gen, "Press enter to exit")
        rx = subprocess.Popen(
            [*common, "--lcores", "0@1,1@0", "--file-prefix=pmdrx",
             f"--vdev=net_memif0,role=client,socket={sock}", "--",
             f"--forward-mode={mode}", "--nb-cores=1", MBUFS],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(rx, "Press enter to exit")
        t0 = time.monotonic()
        time.sleep(seconds)
        out, _ = rx.communicate("\n", timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        if gen.poll() is None:
            gen.communicate("\n", timeout=60)
    pkts = [int(line.split()[1]) for line in out.splitlines()
            if line.strip().startswith("RX-packets:")]
    if not pkts:
        raise RuntimeError("testpmd printed no statistics:\n" + out[-2000:])
    return pkts[-1] / elapsed


def wait_for(proc, text):
    seen = []
    for line in proc.stdout:
        if text in line:
            return
        seen.append(line)
    raise RuntimeError(f"testpmd exited before '{text}':\n" + "".join(seen[-20:]))


def tas_run(pair, seconds, port):
    """iperf3 TAS to TAS: the receiving daemon's packets per wall second
    and per busy-core second."""
    inst = pair[0].instance
    c0, y0 = stats.read("tas", inst), stats.read("tascyc", inst)
    t0 = time.monotonic()
    mbs = iperf(environ(NAMES[0]), [], environ(NAMES[1]), "10.1.0.1", port, 1, seconds)
    elapsed = time.monotonic() - t0
    c, y = cycles.delta(stats.read("tas", inst), c0), cycles.delta(stats.read("tascyc", inst), y0)
    pkts = c["rx_pkts"] + c["tx_pkts"]
    busy = sum(y.get(f"fp_cyc_{st}", 0) for st, _, _ in cycles.STAGES if st != "loop")
    hz = stats.read("tascyc", inst)["tsc_hz"]
    return {"mb_s": mbs, "pps_wall": pkts / elapsed, "pps_busy_core": pkts / (busy / hz),
            "cycles_per_pkt": busy / pkts}


def spread(vals):
    return f"{min(vals) / 1e3:.0f}", f"{statistics.median(vals) / 1e3:.0f}", \
        f"{max(vals) / 1e3:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mtu", type=int, default=1500)
    args = ap.parse_args()
    frame = args.mtu + 14
    res = {"rxonly": [], "io": [], "tas": []}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for mode in ("rxonly", "io"):
                res[mode].append(testpmd(tmp, mode, frame, args.seconds))
                print(f"  rep {rep} testpmd {mode}: {res[mode][-1] / 1e3:.0f} kpps", flush=True)
            pair = start_memif_pair(tmp, extra=f"mtu = {args.mtu}", names=NAMES)
            try:
                r = tas_run(pair, args.seconds, 5471 + rep)
            finally:
                for d in pair:
                    d.stop()
            res["tas"].append(r)
            loads.append(os.getloadavg()[0])
            print(f"  rep {rep} tas: {r['mb_s']:.0f} MB/s, {r['pps_wall'] / 1e3:.0f} kpps wall, "
                  f"{r['pps_busy_core'] / 1e3:.0f} kpps per busy core, load {loads[-1]:.1f}",
                  flush=True)
    base = statistics.median(res["rxonly"])
    tas_busy = [r["pps_busy_core"] for r in res["tas"]]
    tas_wall = [r["pps_wall"] for r in res["tas"]]
    rows = [["testpmd txonly -> rxonly (per core)", *spread(res["rxonly"]), "1.00"],
            ["testpmd txonly -> io fwd (per core)", *spread(res["io"]),
             f"{statistics.median(res['io']) / base:.2f}"],
            ["TAS fast path, per busy core", *spread(tas_busy),
             f"{statistics.median(tas_busy) / base:.2f}"],
            ["TAS fast path, per wall second", *spread(tas_wall),
             f"{statistics.median(tas_wall) / base:.2f}"]]
    print()
    print_table(["config", "min kpps", "median", "max", "x testpmd rxonly"], rows)
    print(f"load average during the runs: {', '.join(f'{x:.1f}' for x in loads)}")
    write_json("tas_pps.json", {"seconds": args.seconds, "repeat": args.repeat,
                                "frame": frame, "testpmd_rxonly_pps": res["rxonly"],
                                "testpmd_io_pps": res["io"], "tas": res["tas"],
                                "loadavg": loads,
                                "ratio_busy": statistics.median(tas_busy) / base})


if __name__ == "__main__":
    main()
