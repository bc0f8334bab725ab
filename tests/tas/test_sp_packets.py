"""Slow-path packet codecs (tas/slowpath/packets.py, tcp_packets.py), checked
against scapy as an independent implementation: what we build scapy parses
with valid checksums, what scapy builds we parse to the same fields, and
damaged input is refused with ValueError (never half-parsed)."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP as ScapyTCP
from scapy.layers.l2 import ARP, Ether

from tas.slowpath import packets as pk
from tas.slowpath.tcp_packets import ACK, FIN, SYN, Tcp, TcpOptions, frame, seq_lt

pytestmark = pytest.mark.fast

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
ports = st.integers(1, 65535)
u32 = st.integers(0, 2**32 - 1)
options = st.builds(TcpOptions,
                    mss=st.none() | st.integers(1, 65535),
                    wscale=st.none() | st.integers(0, 14),
                    ts=st.none() | st.tuples(u32, u32))
segments = st.builds(Tcp, sport=ports, dport=ports, seq=u32, ack=u32,
                     flags=st.integers(0, 0xFF), window=st.integers(0, 65535),
                     options=options, payload=st.binary(max_size=300))
fast = settings(max_examples=150, deadline=None)


def _ip(ip_bytes):
    return ".".join(map(str, ip_bytes))


@fast
@given(src_mac=macs, dst_mac=macs, src=ips, dst=ips, seg=segments, tos=st.integers(0, 255))
def test_built_tcp_frames_parse_in_scapy_with_valid_checksums(src_mac, dst_mac, src, dst, seg,
                                                               tos):
    raw = frame(src_mac, dst_mac, src, dst, seg, tos)
    e = Ether(raw)
    ip, t = e[IP], e[ScapyTCP]
    assert (e.src, e.dst) == (pk.mac_str(src_mac), pk.mac_str(dst_mac))
    assert (ip.src, ip.dst, ip.tos, ip.proto) == (_ip(src), _ip(dst), tos, pk.IPPROTO_TCP)
    assert (t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window) == \
        (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window)
    assert bytes(t.payload) == seg.payload
    # scapy recomputes both checksums when the fields are cleared
    ip_sum, tcp_sum = ip.chksum, t.chksum
    del ip.chksum, t.chksum
    again = Ether(bytes(e))
    assert (again[IP].chksum, again[ScapyTCP].chksum) == (ip_sum, tcp_sum)
    opts = dict(t.options)
    if seg.options.mss is not None:
        assert opts["MSS"] == seg.options.mss
    if seg.options.wscale is not None:
        assert opts["WScale"] == seg.options.wscale
    if seg.options.ts is not None:
        assert opts["Timestamp"] == seg.options.ts


@fast
@given(src=ips, dst=ips, seg=segments)
def test_scapy_built_segments_parse_to_the_same_fields(src, dst, seg):
    opts = []
    if seg.options.mss is not None:
        opts.append(("MSS", seg.options.mss))
    if seg.options.wscale is not None:
        opts.append(("WScale", seg.options.wscale))
    if seg.options.ts is not None:
        opts.append(("Timestamp", seg.options.ts))
    pkt = IP(src=_ip(src), dst=_ip(dst)) / ScapyTCP(
        sport=seg.sport, dport=seg.dport, seq=seg.seq, ack=seg.ack, flags=seg.flags,
        window=seg.window, options=opts) / seg.payload
    ip = pk.IPv4.parse(bytes(pkt))
    t = Tcp.parse(ip)
    assert (ip.src, ip.dst, ip.proto) == (src, dst, pk.IPPROTO_TCP)
    assert (t.sport, t.dport, t.seq, t.ack, t.flags, t.window, t.payload) == \
        (seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.window, seg.payload)
    assert (t.options.mss, t.options.wscale, t.options.ts) == \
        (seg.options.mss, seg.options.wscale, seg.options.ts)


@fast
@given(op=st.sampled_from([pk.ARP_REQUEST, pk.ARP_REPLY]), sha=macs, spa=ips, tha=macs, tpa=ips)
def test_arp_roundtrip_against_scapy(op, sha, spa, tha, tpa):
    ours = pk.Arp(op, sha, spa, tha, tpa).pack()
    s = ARP(ours)
    assert (s.op, s.hwsrc, s.psrc, s.hwdst, s.pdst) == \
        (op, pk.mac_str(sha), _ip(spa), pk.mac_str(tha), _ip(tpa))
    theirs = bytes(ARP(op=op, hwsrc=pk.mac_str(sha), psrc=_ip(spa), hwdst=pk.mac_str(tha),
                       pdst=_ip(tpa)))
    assert pk.Arp.parse(theirs) == pk.Arp(op, sha, spa, tha, tpa)


@fast
@given(data=st.binary(max_size=200))
def test_checksum_of_data_with_its_checksum_is_zero(data):
    data += b"\0" * (len(data) % 2)
    c = pk.checksum(data)
    assert pk.checksum(data + struct.pack("!H", c)) == 0


def _good_segment():
    return pk.IPv4(b"\x0a\0\0\x01", b"\x0a\0\0\x02", pk.IPPROTO_TCP,
                   Tcp(1234, 80, 1, 2, SYN, 1000, TcpOptions(mss=1460)).pack(
                       b"\x0a\0\0\x01", b"\x0a\0\0\x02")).pack()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:19], "short IPv4 header"),
    (lambda b: b"\x65" + b[1:], "bad IPv4 header lengths"),               # version 6
    (lambda b: b[:10] + bytes([b[10] ^ 1]) + b[11:], "bad IPv4 header checksum"),
    (lambda b: b[:20] + b[20:30], "bad IPv4 header lengths"),            # truncated payload
    (lambda b: b[:36] + bytes([b[36] ^ 0x40]) + b[37:], "bad TCP checksum"),  # flags byte
    (lambda b: b[:32] + b"\x10" + b[33:], "bad TCP data offset"),        # offset 4 words
    (lambda b: b[:32] + b"\xf0" + b[33:], "bad TCP data offset"),        # past the end
])
def test_damaged_segments_are_refused(damage, message):
    raw = damage(_good_segment())
    with pytest.raises(ValueError, match=message):
        Tcp.parse(pk.IPv4.parse(raw))


@pytest.mark.parametrize("opts", [b"\x02", b"\x02\x01\x00\x00", b"\x08\x0a\x00"])
def test_malformed_tcp_options_are_refused(opts):
    with pytest.raises(ValueError, match="malformed TCP option"):
        TcpOptions.parse(opts)


def test_unknown_options_are_skipped_and_wscale_capped():
    o = TcpOptions.parse(b"\x01\x01\x03\x03\x0f\x1e\x04\xaa\xbb\x04\x02\x00")
    assert (o.wscale, o.sack_ok, o.mss) == (14, True, None)


@given(a=u32, d=st.integers(1, 2**31 - 1))
def test_seq_lt_is_modular(a, d):
    b = (a + d) & 0xFFFFFFFF
    assert seq_lt(a, b) and not seq_lt(b, a)
    assert not seq_lt(a, a)


def test_ack_and_fin_flags_survive_a_roundtrip():
    src, dst = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    raw = Tcp(1, 2, 0xFFFFFFFF, 7, FIN | ACK, 0).pack(src, dst)
    t = Tcp.parse(pk.IPv4(src, dst, pk.IPPROTO_TCP, raw))
    assert t.flags == FIN | ACK and t.seq == 0xFFFFFFFF
