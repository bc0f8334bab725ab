"""Header formats the slow path builds and parses (Ethernet, ARP, IPv4, ICMP).

The slow path only sees exceptions, so plain struct packing is fast enough;
the fast path has already dropped frames too short for their headers.
"""
import socket
import struct
from dataclasses import dataclass

ETH = struct.Struct("!6s6sH")
ARP = struct.Struct("!HHBBH6s4s6s4s")
IPV4 = struct.Struct("!BBHHHBBH4s4s")
ICMP_HDR = struct.Struct("!BBHHH")

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ARP_REQUEST, ARP_REPLY = 1, 2
IPPROTO_ICMP, IPPROTO_TCP = 1, 6
ICMP_ECHO_REPLY, ICMP_ECHO = 0, 8
BROADCAST = b"\xff" * 6


def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_str(b):
    return ":".join(f"{x:02x}" for x in b)


def ip_bytes(ip):
    return socket.inet_aton(ip)


def checksum(data):
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


@dataclass
class Eth:
    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes

    @classmethod
    def parse(cls, frame):
        if len(frame) < ETH.size:
            raise ValueError("short Ethernet frame")
        dst, src, et = ETH.unpack_from(frame)
        return cls(dst, src, et, frame[ETH.size:])

    def pack(self):
        return ETH.pack(self.dst, self.src, self.ethertype) + self.payload


@dataclass
class Arp:
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes

    @classmethod
    def parse(cls, data):
        if len(data) < ARP.size:
            raise ValueError("short ARP packet")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = ARP.unpack_from(data)
        if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
            raise ValueError("ARP for something other than Ethernet/IPv4")
        return cls(op, sha, spa, tha, tpa)

    def pack(self):
        return ARP.pack(1, ETH_P_IP, 6, 4, self.op, self.sha, self.spa, self.tha, self.tpa)


@dataclass
class IPv4:
    src: bytes
    dst: bytes
    proto: int
    payload: bytes
    ttl: int = 64
    ident: int = 0
    tos: int = 0

    @classmethod
    def parse(cls, data):
        if len(data) < IPV4.size:
            raise ValueError("short IPv4 header")
        vihl, tos, total, ident, frag, ttl, proto, _, src, dst = IPV4.unpack_from(data)
        ihl = (vihl & 0xF) * 4
        if vihl >> 4 != 4 or ihl < IPV4.size or total < ihl or total > len(data):
            raise ValueError("bad IPv4 header lengths")
        if checksum(data[:ihl]) != 0:
            raise ValueError("bad IPv4 header checksum")
        if frag & 0x3FFF:
            raise ValueError("IPv4 fragment")
        return cls(src, dst, proto, data[ihl:total], ttl, ident, tos)

    def pack(self):
        hdr = IPV4.pack(0x45, self.tos, IPV4.size + len(self.payload), self.ident,
                        0x4000, self.ttl, self.proto, 0, self.src, self.dst)
        c = checksum(hdr)
        return hdr[:10] + struct.pack("!H", c) + hdr[12:] + self.payload
