"""ICMP echo: answer pings addressed to the daemon."""
import struct

from tas.slowpath.packets import (ETH_P_IP, ICMP_ECHO, ICMP_ECHO_REPLY, ICMP_HDR,
                                  IPPROTO_ICMP, Eth, IPv4, checksum)


def echo_reply(eth, ip):
    """Return the reply frame for an echo request, or None if it is not one.
    Raises ValueError on a malformed message."""
    msg = ip.payload
    if len(msg) < ICMP_HDR.size:
        raise ValueError("short ICMP message")
    if checksum(msg) != 0:
        raise ValueError("bad ICMP checksum")
    icmp_type, code, _, ident, seq = ICMP_HDR.unpack_from(msg)
    if icmp_type != ICMP_ECHO:
        return None
    body = ICMP_HDR.pack(ICMP_ECHO_REPLY, code, 0, ident, seq) + msg[ICMP_HDR.size:]
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    reply = IPv4(ip.dst, ip.src, IPPROTO_ICMP, body, ident=ip.ident)
    return Eth(eth.src, eth.dst, ETH_P_IP, reply.pack()).pack()
