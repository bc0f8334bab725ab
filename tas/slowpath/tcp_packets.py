"""TCP segments the slow path parses and builds (handshake, teardown, RST)."""
import struct
from dataclasses import dataclass, field

from tas.slowpath.packets import ETH_P_IP, IPPROTO_TCP, Eth, IPv4, checksum

TCP = struct.Struct("!HHIIBBHHH")
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


@dataclass
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None
    ts: tuple | None = None        # (tsval, tsecr)
    sack_ok: bool = False

    @classmethod
    def parse(cls, data):
        o = cls()
        i = 0
        while i < len(data):
            kind = data[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= len(data) or data[i + 1] < 2 or i + data[i + 1] > len(data):
                raise ValueError("malformed TCP option")
            ln = data[i + 1]
            body = data[i + 2:i + ln]
            if kind == 2 and ln == 4:
                o.mss = struct.unpack("!H", body)[0]
            elif kind == 3 and ln == 3:
                o.wscale = min(body[0], 14)
            elif kind == 4 and ln == 2:
                o.sack_ok = True
            elif kind == 8 and ln == 10:
                o.ts = struct.unpack("!II", body)
            i += ln
        return o

    def pack(self):
        out = b""
        # Linux's order and packing: MSS, SACK-permitted folded into the
        # timestamp option's padding, window scale.
        if self.mss is not None:
            out += struct.pack("!BBH", 2, 4, self.mss)
        if self.ts is not None:
            out += struct.pack("!BBBBII", *((4, 2) if self.sack_ok else (1, 1)), 8, 10, *self.ts)
        elif self.sack_ok:
            out += struct.pack("!BBBB", 1, 1, 4, 2)
        if self.wscale is not None:
            out += struct.pack("!BBBB", 1, 3, 3, self.wscale)
        return out


@dataclass
class Tcp:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    options: TcpOptions = field(default_factory=TcpOptions)
    payload: bytes = b""

    @classmethod
    def parse(cls, ip):
        d = ip.payload
        if len(d) < TCP.size:
            raise ValueError("short TCP header")
        sport, dport, seq, ack, off, flags, win, _, _ = TCP.unpack_from(d)
        thl = (off >> 4) * 4
        if thl < TCP.size or thl > len(d):
            raise ValueError("bad TCP data offset")
        pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, IPPROTO_TCP, len(d))
        if checksum(pseudo + d) != 0:
            raise ValueError("bad TCP checksum")
        return cls(sport, dport, seq, ack, flags, win, TcpOptions.parse(d[TCP.size:thl]),
                   d[thl:])

    def pack(self, src_ip, dst_ip):
        opts = self.options.pack()
        opts += b"\0" * (-len(opts) % 4)
        thl = TCP.size + len(opts)
        hdr = TCP.pack(self.sport, self.dport, self.seq & 0xFFFFFFFF, self.ack & 0xFFFFFFFF,
                       (thl // 4) << 4, self.flags, self.window, 0, 0) + opts
        seg = hdr + self.payload
        pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, IPPROTO_TCP, len(seg))
        c = checksum(pseudo + seg)
        return seg[:16] + struct.pack("!H", c) + seg[18:]


def frame(src_mac, dst_mac, src_ip, dst_ip, tcp, tos=0):
    ip = IPv4(src_ip, dst_ip, IPPROTO_TCP, tcp.pack(src_ip, dst_ip), tos=tos)
    return Eth(dst_mac, src_mac, ETH_P_IP, ip.pack()).pack()


def seq_lt(a, b):
    return ((a - b) & 0xFFFFFFFF) > 0x7FFFFFFF
