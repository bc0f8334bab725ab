"""Jumbo frames: dpdk.mtu up to 9000 on the kernel-facing virtual devices,
MSS from it, both directions under loss, duplication and reordering."""
import pytest

from bindings import stats
from deploy import transfers
from tas.app import TasApp
from tas.config import ConfigError, validate
from tasd import Daemon

# tx loss 2 %: an 8 MiB transfer is about 940 jumbo segments, and at
# 0.5 % one run in a hundred lost none of ours, leaving nothing for the
# retransmission assertion to see.
LOSSY = """
[fault]
rx_loss_ppm = 5000
rx_reorder_ppm = 5000
rx_dup_ppm = 5000
tx_loss_ppm = 20000
tx_reorder_ppm = 5000
"""


@pytest.mark.parametrize("device", ["net_tap", "net_af_packet"])
def test_jumbo_frames_both_directions_under_loss(tmp_path, require_root, device):
    d = Daemon(tmp_path, device=device, dpdk_extra="mtu = 9000", extra=LOSSY).start()
    try:
        assert "mtu 9000" in d.ns_run("ip", "link").stdout   # the kernel peer's side too
        with TasApp(d.instance) as a:
            assert transfers.both_ways_intact(d.netns, a, 5101, 8 << 20, 11)
        c = stats.read("tas", d.instance)
        # segments carried more than a 1500-byte MTU could (the tap PMD of
        # DPDK 22.11 sends at most 1500: TAS sends smaller segments there)
        assert c["tcp_rx_bytes"] / c["tcp_rx_segs"] > 1460
        if device != "net_tap":
            assert c["tcp_tx_bytes"] / c["tcp_tx_segs"] > 1460
        assert c["fault_dropped"] > 0 and c["tcp_fast_rexmits"] + c["tcp_rto_rexmits"] > 0
    finally:
        d.stop()


def test_mss_follows_the_mtu():
    assert validate({"dpdk": {"mtu": 9000}}).tcp.mss == 8960
    assert validate({}).tcp.mss == 1460
    assert validate({"dpdk": {"mtu": 9000}, "tcp": {"mss": 4000}}).tcp.mss == 4000


@pytest.mark.parametrize("raw, key", [
    ({"dpdk": {"mtu": 9001}}, "dpdk.mtu"),
    ({"dpdk": {"mtu": 100}}, "dpdk.mtu"),
    ({"tcp": {"mss": 1461}}, "tcp.mss"),
    ({"tcp": {"mss": 100}}, "tcp.mss"),
])
def test_bad_mtu_or_mss_names_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(raw)
