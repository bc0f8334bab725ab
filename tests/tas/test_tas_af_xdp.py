"""net_af_xdp: DPDK's AF_XDP PMD on the same veth as net_af_packet (its XSK
program on the daemon's end, the peer end in the namespace unchanged).
TCP both ways with the kernel peer, at MTU 1500 and at the largest MTU it
carries (one page per frame in DPDK 22.11's PMD: no 9000-byte frames), and
the combinations it cannot run refused with the key named."""
import subprocess

import pytest

from bindings import stats
from deploy import transfers
from tas.app import TasApp
from tas.config import AF_XDP_MAX_MTU, ConfigError, validate
from tasd import Daemon

LOSSY = """
[fault]
rx_loss_ppm = 5000
rx_reorder_ppm = 5000
tx_loss_ppm = 5000
"""


@pytest.mark.root
@pytest.mark.parametrize("mtu, extra, hugepages", [
    (1500, "", "auto"),
    (AF_XDP_MAX_MTU, LOSSY, "auto"),
    (1500, "", "no"),        # the UMEM is then the mbuf pool in plain memory
], ids=["mtu1500", "max-mtu-lossy", "no-hugepages"])
def test_af_xdp_carries_tcp_both_ways(tmp_path, require_root, mtu, extra, hugepages):
    d = Daemon(tmp_path, device="net_af_xdp", dpdk_extra=f"mtu = {mtu}", extra=extra,
               hugepages=hugepages).start()
    try:
        link = d.ns_run("ip", "link", "show", d.iface).stdout
        assert f"mtu {mtu}" in link
        # the daemon's end runs the XSK program in the driver (native XDP)
        assert "xdp " in subprocess.run(["ip", "link", "show", d.port_iface],
                                        capture_output=True, text=True).stdout
        with TasApp(d.instance) as a:
            assert transfers.both_ways_intact(d.netns, a, 5111, 8 << 20, 21)
        c = stats.read("tas", d.instance)
        assert c["tcp_rx_bytes"] / c["tcp_rx_segs"] > (1400 if mtu == 1500 else 1460)
        if mtu > 1500:     # frames bigger than 1500 went both ways
            assert c["tcp_tx_bytes"] / c["tcp_tx_segs"] > 1460
            assert c["fault_dropped"] > 0 and c["tcp_fast_rexmits"] + c["tcp_rto_rexmits"] > 0
        assert c["rx_drop_bad_csum"] == 0
    finally:
        d.stop()


@pytest.mark.fast
@pytest.mark.parametrize("raw, key", [
    ({"dpdk": {"device": "net_af_xdp", "mtu": 9000}}, "dpdk.mtu"),
    ({"dpdk": {"device": "net_af_xdp", "mtu": AF_XDP_MAX_MTU + 1}}, "dpdk.mtu"),
    ({"dpdk": {"device": "net_af_xdp", "fp_cores": [1, 2]}}, "dpdk.fp_cores"),
])
def test_af_xdp_bad_combination_names_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*net_af_xdp"):
        validate(raw)
    validate({"dpdk": {"device": "net_af_xdp", "mtu": AF_XDP_MAX_MTU}})


@pytest.mark.fast
def test_af_xdp_on_an_interface_of_its_own_takes_a_queue_per_core():
    """With peer.netns = '' the daemon binds an existing interface (a NIC):
    as many queues as cores, checked by the PMD against its channels."""
    from tas.eal import vdev_args
    cfg = validate({"dpdk": {"device": "net_af_xdp", "iface": "eth9", "fp_cores": [1, 2]},
                    "peer": {"netns": ""}})
    vdev = [a for a in vdev_args(cfg) if a.startswith("--vdev=")]
    assert vdev == ["--vdev=net_af_xdp0,iface=eth9,start_queue=0,queue_count=2,busy_budget=0"]
    one = validate({"dpdk": {"device": "net_af_xdp", "iface": "tas0"}})
    assert "queue_count=1," in " ".join(vdev_args(one))
