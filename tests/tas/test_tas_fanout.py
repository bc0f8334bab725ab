"""net_af_packet's PACKET_FANOUT group taken by another socket (tas/fanout.py):
the PMD refuses the port ("could not set PACKET_FANOUT"), which once in
hundreds of daemon starts here stopped the daemon.  With the group held on
purpose (fault.af_packet_fanout_taken), the daemon makes its veth again (a new
ifindex: another group), probes a new vdev and serves."""
import pytest

from libtas_helpers import counters
from tasd import Daemon

pytestmark = pytest.mark.root  # a daemon on DPDK with a peer namespace


def test_a_taken_fanout_group_costs_one_more_probe(tmp_path):
    d = Daemon(tmp_path, extra="[fault]\naf_packet_fanout_taken = true\n").start()
    try:
        assert counters(d)["port_probe_retries"] == 1
        d.poll_output()
        said = "".join(d.output)
        assert "could not set PACKET_FANOUT" in said            # the PMD's own refusal
        assert "making the veth again, attempt 1" in said
        ping = d.ns_run("ping", "-c", "3", "-i", "0.2", "-W", "5", "10.0.0.2", timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        d.stop()
