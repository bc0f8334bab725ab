"""ACK coalescing (issue 14, fewer packets): a Linux peer sends bulk data
and TAS sends at most one ACK per two full-sized segments (or one at the end
of an RX burst), as Linux does; out-of-order data is still ACKed at once, so
loss recovery works (the lossy case moves the same bytes)."""
from bindings import stats
from deploy import transfers
from tas.app import TasApp
from tasd import Daemon

LOSSY = """
[fault]
rx_loss_ppm = 5000
rx_reorder_ppm = 5000
"""


def linux_sends(tmp_path, port, size, seed, extra="", **daemon):
    """A Linux peer sends `size` bytes to a TAS app; the bytes and the
    daemon's counters after the transfer."""
    d = Daemon(tmp_path, extra=extra, **daemon).start()
    try:
        with TasApp(d.instance) as a:
            n, same, _ = transfers.linux_to_tas(d.netns, a, port, size, seed)
        return n, same, stats.read("tas", d.instance)
    finally:
        d.stop()


def test_fewer_acks_than_data_segments(tmp_path, require_root):
    n, same, c = linux_sends(tmp_path, 5201, 16 << 20, 21)
    assert n == 16 << 20 and same
    assert c["tcp_rx_segs"] > (16 << 20) // 1460
    # every second full-sized segment at most, plus a few (PSH, burst ends)
    assert c["tcp_acks_sent"] < 0.7 * c["tcp_rx_segs"]


def test_out_of_order_data_is_acked_at_once(tmp_path, require_root):
    n, same, c = linux_sends(tmp_path, 5202, 8 << 20, 22, extra=LOSSY)
    assert n == 8 << 20 and same
    assert c["fault_dropped"] > 0 and c["tcp_ooo_accepted"] > 0
    # still coalesced in between the holes
    assert c["tcp_acks_sent"] < c["tcp_rx_segs"]


def test_jumbo_segments_count_as_full_on_net_tap(tmp_path, require_root):
    """net_tap at MTU 9000: TAS sends 1,460-byte frames (the tap PMD's limit)
    but takes the peer's 8,948-byte segments.  Counted in the send MSS every
    jumbo segment was "two full segments" and ACKed at once, and a window
    update under one jumbo segment left the peer waiting for its persist
    timer (6-34 MB/s).  Counted in the MSS we advertised: every second one."""
    n, same, c = linux_sends(tmp_path, 5203, 16 << 20, 23, device="net_tap",
                             dpdk_extra="mtu = 9000")
    assert n == 16 << 20 and same
    assert c["tcp_rx_bytes"] > 4000 * c["tcp_rx_segs"]      # jumbo segments came
    assert c["tcp_acks_sent"] < 0.7 * c["tcp_rx_segs"]
