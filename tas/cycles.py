"""Where the fast path's cycles go: the per-stage counters of the
`tascyc` stats page (fp_cyc_<stage>, fp_cyc_<stage>_n, tsc_hz) turned into
cycles per packet, with the daemon's packet counters (`tas` page).  Used by
`tasctl stats` and bench/tas_bulk.py."""

# stage, what one unit is, the counter that counts units (None: the
# stage's own entries)
STAGES = (
    ("rx_drv", "rx pkt", "rx_pkts"),          # rte_eth_rx_burst
    ("rx", "rx pkt", "rx_pkts"),              # classify + TCP receive + copy in
    ("ack", "ack", None),                     # building a pure ACK
    ("notify", "notification", None),         # app queue entry + wake-up
    ("tx", "tx segment", "tcp_tx_segs"),      # segment generation + copy out
    ("tx_drv", "tx pkt", "tx_pkts"),          # rte_eth_tx_burst
    ("app", "command batch", None),           # app commands
    ("loop", "pkt (rx+tx)", None),            # polling and bookkeeping between
)


def breakdown(cyc, tas):
    """[(stage, cycles, units, cycles per unit, unit)] from counter deltas
    (or totals) of the two pages."""
    rows = []
    for stage, unit, counter in STAGES:
        cycles = cyc.get(f"fp_cyc_{stage}", 0)
        if stage == "loop":
            units = tas.get("rx_pkts", 0) + tas.get("tx_pkts", 0)
        elif counter is None:
            units = cyc.get(f"fp_cyc_{stage}_n", 0)
        else:
            units = tas.get(counter, 0)
        rows.append((stage, cycles, units, cycles / units if units else 0.0, unit))
    return rows


def per_packet(cyc, tas):
    """Fast-path cycles per packet (RX and TX packets alike), all stages but
    idle, and the share of each stage."""
    rows = breakdown(cyc, tas)
    total = sum(r[1] for r in rows)
    pkts = tas.get("rx_pkts", 0) + tas.get("tx_pkts", 0)
    return (total / pkts if pkts else 0.0,
            {r[0]: (r[1] / total if total else 0.0) for r in rows})


def delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items()}
