"""TCP conformance cases, run with scapy from a peer namespace against one
server (the Linux stack or TAS).  Each case drives a raw connection and
returns what the server did, in terms that do not depend on the stack
(sequence numbers relative to the ISNs, flag names, option kinds), so the
test can assert that TAS answers exactly as Linux does.

    python3 tcp_conformance_cases.py IFACE SRC_MAC DST_MAC SRC_IP DST_IP CASE...

prints one JSON object: case name -> observation.  The kernel in the
namespace must not answer for the raw connections (the test drops its RSTs
for source ports RAW_PORTS with nftables).

Absence of a reply is never waited for by time alone: after the segment
under test a marker (one in-window data byte) is sent, and whatever arrives
before the marker's ACK is the answer to the segment under test.
"""
import json
import random
import sys
import time

from scapy.all import IP, TCP, Ether, IPOption, Raw, conf

ECHO, SINK, GREET, CLOSED = 7100, 7101, 7102, 7199
RAW_PORTS = (40000, 49999)
GUARD_S = 5.0            # hang guard for an expected reply, not a performance bound
MSS = 1460


def opt_kinds(tcp):
    return sorted({name for name, _ in tcp.options if name not in ("NOP", "EOL")})


def opt(tcp, name):
    return next((v for n, v in tcp.options if n == name), None)


class Wire:
    def __init__(self, iface, src_mac, dst_mac, src_ip, dst_ip):
        self.sock = conf.L2socket(iface=iface)
        self.src_mac, self.dst_mac, self.src_ip, self.dst_ip = src_mac, dst_mac, src_ip, dst_ip

    def send(self, sport, dport, flags, seq, ack=0, payload=b"", options=(), window=64240,
             bad_csum=False, ip_options=()):
        ip = IP(src=self.src_ip, dst=self.dst_ip, options=list(ip_options))
        p = (Ether(src=self.src_mac, dst=self.dst_mac) / ip /
             TCP(sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF,
                 ack=ack & 0xFFFFFFFF, window=window, options=list(options)))
        if payload:
            p = p / Raw(payload)
        if bad_csum:
            p = Ether(bytes(p))
            p[TCP].chksum ^= 0x5A5A
        self.sock.send(p)

    def recv(self, sport, dport, timeout=GUARD_S):
        """The next segment of this connection from the server, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.sock.recv()
            if (p is None or IP not in p or TCP not in p or p[IP].src != self.dst_ip or
                    p[TCP].sport != dport or p[TCP].dport != sport):
                continue
            return p[TCP]
        return None


class Conn:
    """One raw connection from our side, sequence numbers tracked."""

    def __init__(self, wire, dport, options=None, window=64240):
        self.w, self.dport = wire, dport
        self.sport = random.randint(*RAW_PORTS)
        self.iss = random.getrandbits(32)
        self.snd_nxt = self.iss + 1
        self.window = window
        self.options = options if options is not None else [
            ("MSS", MSS), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("WScale", 7)]
        self.synack = None
        self.irs = None
        self.rcv_nxt = None
        self.got = b""           # in-order data from the server
        self.fin = False

    def send(self, flags, seq=None, payload=b"", **kw):
        self.w.send(self.sport, self.dport, flags, self.snd_nxt if seq is None else seq,
                    self.rcv_nxt or 0, payload, window=kw.pop("window", self.window), **kw)

    def recv(self, timeout=GUARD_S):
        t = self.w.recv(self.sport, self.dport, timeout)
        if t is not None and self.rcv_nxt is not None and "R" not in t.flags:
            self._take(t)
        return t

    def _take(self, t):
        data = bytes(t.payload)
        if data and (t.seq - self.rcv_nxt) & 0xFFFFFFFF == 0:
            self.got += data
            self.rcv_nxt = (self.rcv_nxt + len(data)) & 0xFFFFFFFF
        if "F" in t.flags and (t.seq + len(data) - self.rcv_nxt) & 0xFFFFFFFF == 0:
            self.fin = True
            self.rcv_nxt = (self.rcv_nxt + 1) & 0xFFFFFFFF

    def syn(self):
        self.w.send(self.sport, self.dport, "S", self.iss, 0, options=self.options,
                    window=self.window)
        self.synack = self.w.recv(self.sport, self.dport)
        return self.synack

    def open(self):
        t = self.syn()
        assert t is not None and t.flags == "SA", f"no SYN-ACK: {t!r}"
        self.irs = t.seq
        self.rcv_nxt = (t.seq + 1) & 0xFFFFFFFF
        self.send("A")
        return self

    def rel_ack(self, t):
        return (t.ack - self.iss) & 0xFFFFFFFF

    def rel_seq(self, t):
        return (t.seq - self.irs) & 0xFFFFFFFF

    def until(self, pred, what):
        """Segments received until pred(segment) holds (inclusive)."""
        seen = []
        while True:
            t = self.recv()
            assert t is not None, f"gave up waiting for {what}; saw {describe(seen)}"
            seen.append(t)
            if pred(t):
                return seen

    def marker(self):
        """Send one data byte at snd_nxt; return what came before its ACK."""
        target = (self.snd_nxt + 1) & 0xFFFFFFFF
        self.send("PA", payload=b"m")
        self.snd_nxt = target
        seen = self.until(lambda t: "R" in t.flags or
                          ("A" in t.flags and (t.ack - target) & 0xFFFFFFFF < 1 << 31),
                          "the marker's ACK")
        # A copy of the handshake's SYN-ACK is the server's handshake timer
        # (TAS 50 ms, Linux 1 s) firing before our final ACK got there on a
        # loaded machine: timing, not the behaviour a case compares.  (A
        # SYN-ACK answering another SYN acknowledges that one instead.)
        before = [t for t in seen[:-1] if not (t.flags == "SA" and t.seq == self.irs and
                                                t.ack == (self.iss + 1) & 0xFFFFFFFF)]
        return before, seen[-1]

    def echo(self, payload, **kw):
        """Send payload at snd_nxt to the echo server; wait for it back."""
        want = self.got + payload
        self.send("PA", payload=payload, **kw)
        self.snd_nxt = (self.snd_nxt + len(payload)) & 0xFFFFFFFF
        self.until(lambda t: self.got == want, "the echo")
        return self.got.decode()

    def abort(self):
        self.send("R")


def describe(segs):
    return [str(t.flags) for t in segs]


def flags_of(segs):
    return [str(t.flags) for t in segs]


# ---- cases -------------------------------------------------------------------

def case_handshake_options(w):
    full = Conn(w, ECHO)
    t = full.syn()
    bare = Conn(w, ECHO, options=[("MSS", 1000)])
    u = bare.syn()
    res = {"flags": str(t.flags), "ack": full.rel_ack(t), "options": opt_kinds(t),
           "mss_le_ours": opt(t, "MSS") <= MSS,
           "ts_echo": opt(t, "Timestamp")[1] == 1000,
           "bare_flags": str(u.flags), "bare_options": opt_kinds(u)}
    for c, s in ((full, t), (bare, u)):
        w.send(c.sport, c.dport, "R", c.iss + 1)
    return res


def case_data_behind_handshake_ack(w):
    c = Conn(w, ECHO).open()
    res = {"echo": c.echo(b"ping")}     # right behind the final ACK
    c.abort()
    return res


def case_out_of_order_interval(w):
    c = Conn(w, ECHO).open()
    c.send("PA", seq=c.snd_nxt + 100, payload=b"b" * 100)
    t = c.recv()
    sack = opt(t, "SAck")
    res = {"dupack_flags": str(t.flags), "dupack_ack": c.rel_ack(t),
           "sack": [((x - c.iss) & 0xFFFFFFFF) for x in sack] if sack else None}
    c.send("PA", payload=b"a" * 100)
    c.snd_nxt += 200
    seen = c.until(lambda t: c.rel_ack(t) >= 201, "the ACK covering both")
    res["filled_ack"] = c.rel_ack(seen[-1])
    c.until(lambda t: len(c.got) == 200, "the echo")
    res["echo"] = c.got.decode()[:1] + c.got.decode()[-1:] + str(len(c.got))
    c.abort()
    return res


def case_bad_checksum(w):
    c = Conn(w, ECHO).open()
    c.send("PA", payload=b"XXXX", bad_csum=True)
    before, ack = c.marker()
    c.until(lambda t: c.got == b"m", "the marker's echo")
    res = {"before_marker": flags_of(before), "marker_ack": c.rel_ack(ack), "echo": c.got.decode()}
    c.abort()
    return res


def case_ip_options(w):
    """Data in packets with IP options (NOPs): taken like any other."""
    c = Conn(w, ECHO).open()
    c.marker()
    c.until(lambda t: c.got == b"m", "the marker's echo")
    res = {"echo": c.echo(b"opt", ip_options=[IPOption(b"\x01\x01\x01\x00")])}
    c.abort()
    return res


def case_rst_out_of_window(w):
    c = Conn(w, ECHO).open()
    c.send("R", seq=c.snd_nxt + (1 << 30))
    c.send("R", seq=c.snd_nxt - (1 << 20))
    before, ack = c.marker()
    res = {"before_marker": flags_of(before), "marker": str(ack.flags)}
    c.abort()
    return res


def case_rst_in_window(w):
    c = Conn(w, ECHO).open()
    c.send("R", seq=c.snd_nxt + 100)
    before, ack = c.marker()
    res = {"before_marker": flags_of(before),
           "challenge_ack": [c.rel_ack(t) for t in before], "marker": str(ack.flags)}
    c.abort()
    return res


def case_rst_exact(w):
    c = Conn(w, ECHO).open()
    c.send("R")                  # right behind the final ACK, data right behind it
    c.send("PA", payload=b"m")
    t = c.recv()
    res = {"after_rst": str(t.flags) if t is not None else None,
           "rst_seq_is_our_ack": t is not None and t.seq == c.rcv_nxt}
    return res


def case_syn_on_established(w):
    c = Conn(w, ECHO).open()
    c.w.send(c.sport, c.dport, "S", random.getrandbits(32), 0, options=c.options)
    before, ack = c.marker()
    res = {"before_marker": flags_of(before),
           "challenge": [(c.rel_ack(t), c.rel_seq(t)) for t in before],
           "marker": str(ack.flags)}
    c.abort()
    return res


def case_fin_from_peer(w):
    c = Conn(w, ECHO).open()
    c.send("FA")
    c.snd_nxt += 1
    seen = c.until(lambda t: c.fin, "the server's FIN")
    res = {"fin_acked": any(c.rel_ack(t) == 2 for t in seen), "server_fin_seq": c.rel_seq(seen[-1])}
    c.send("A")
    return res


def case_fin_from_server(w):
    c = Conn(w, GREET).open()
    c.until(lambda t: c.fin, "the greeting and FIN")
    res = {"data": c.got.decode()}
    c.send("A")
    c.send("FA")
    c.snd_nxt += 1
    t = c.until(lambda t: "A" in t.flags and c.rel_ack(t) == 2, "the ACK of our FIN")[-1]
    res["last"] = str(t.flags)
    return res


def fill_window(c):
    """Send in-window data to a server that does not read until it offers a
    zero window; returns the last ACK."""
    scale = opt(c.synack, "WScale") or 0
    wnd, t = c.synack.window, None
    for _ in range(2000):
        n = min(1000, (wnd << scale) if t is not None else wnd)
        if n <= 0:
            return t
        c.send("PA", payload=b"z" * n)
        c.snd_nxt = (c.snd_nxt + n) & 0xFFFFFFFF
        t = c.until(lambda s: "A" in s.flags, "an ACK while filling the window")[-1]
        c.snd_nxt = t.ack                # what it took is all it ever takes
        wnd = t.window
    raise AssertionError("the window never closed")


def case_zero_window_probe(w):
    c = Conn(w, SINK).open()
    t = fill_window(c)
    edge = c.snd_nxt
    c.send("A", seq=edge, payload=b"p")      # a window probe carrying one byte
    p = c.until(lambda s: "A" in s.flags, "the probe's ACK")[-1]
    c.send("A", seq=edge - 1)                # and the empty kind (keepalive style)
    q = c.until(lambda s: "A" in s.flags, "the empty probe's ACK")[-1]
    res = {"closed_window": t.window, "probe_ack_at_edge": p.ack == edge, "probe_window": p.window,
           "empty_probe_ack_at_edge": q.ack == edge, "empty_probe_window": q.window}
    c.abort()
    return res


def case_data_beyond_window(w):
    c = Conn(w, ECHO).open()
    scale = opt(c.synack, "WScale") or 0
    beyond = c.snd_nxt + (c.synack.window << scale) + 10000
    c.send("PA", seq=beyond, payload=b"q" * 500)
    before, ack = c.marker()
    c.until(lambda t: len(c.got) >= 1, "the marker's echo")
    res = {"before_marker": flags_of(before),
           "dupacks": [c.rel_ack(t) for t in before], "echo": c.got.decode()}
    c.abort()
    return res


def case_mss_and_window_scale_honoured(w):
    mss, scale, window = 536, 2, 250          # 1000 bytes of window
    c = Conn(w, ECHO, options=[("MSS", mss), ("WScale", scale)], window=window).open()
    data = bytes(random.getrandbits(8) for _ in range(3000))
    sent = 0
    while sent < len(data):                   # their MSS is 1460 or more: 536 fits
        c.send("PA", payload=data[sent:sent + 500])
        c.snd_nxt += len(data[sent:sent + 500])
        sent += 500
    sizes, over, acked = [], 0, c.rcv_nxt
    while len(c.got) < len(data):
        t = c.recv()
        assert t is not None, f"echo stalled at {len(c.got)}"
        n = len(bytes(t.payload))
        if n:
            sizes.append(n)
            over = max(over, ((t.seq + n - acked) & 0xFFFFFFFF) - (window << scale))
            c.send("A")                       # acknowledge each segment as it comes
            acked = c.rcv_nxt
    beyond = over
    res = {"max_segment_le_mss": max(sizes) <= mss, "never_beyond_window": beyond <= 0,
           "echo_intact": c.got == data}
    c.abort()
    return res


def case_time_wait_reuse(w):
    """The server closed first and holds the port pair in TIME_WAIT; a new
    SYN above the old sequence space opens a new connection at once."""
    c = Conn(w, GREET).open()
    c.until(lambda t: c.fin, "the greeting and FIN")
    c.send("A")
    c.send("FA")
    c.snd_nxt += 1
    c.until(lambda t: "A" in t.flags and c.rel_ack(t) == 2, "the ACK of our FIN")
    again = Conn(w, GREET)
    again.sport, again.iss = c.sport, (c.snd_nxt + 100000) & 0xFFFFFFFF
    again.snd_nxt = again.iss + 1
    t = again.syn()
    res = {"syn_in_time_wait": str(t.flags) if t is not None else None}
    if t is not None and t.flags == "SA":
        again.irs, again.rcv_nxt = t.seq, (t.seq + 1) & 0xFFFFFFFF
        again.send("A")
        again.until(lambda t: again.fin, "the second greeting")
        res["data"] = again.got.decode()
        again.send("A")
        again.abort()
    return res


def case_closed_port_rst(w):
    c = Conn(w, CLOSED)
    t = c.syn()
    res = {"syn": str(t.flags), "syn_rst_ack": c.rel_ack(t), "syn_rst_seq": t.seq}
    c.w.send(c.sport, c.dport, "A", 5000, 777777)
    u = c.w.recv(c.sport, c.dport)
    res.update(ack=str(u.flags), ack_rst_seq=u.seq)
    return res


def case_duplicate_syn(w):
    c = Conn(w, ECHO)
    t = c.syn()
    u = c.syn()
    res = {"first": str(t.flags), "again": str(u.flags) if u else None,
           "same_isn": u is not None and u.seq == t.seq, "ack": c.rel_ack(u) if u else None}
    w.send(c.sport, c.dport, "R", c.iss + 1)
    return res


def case_synack_retransmitted(w):
    """Our ACK of the SYN-ACK never comes: the server sends the SYN-ACK
    again (the same one), and the connection completes with the late ACK."""
    c = Conn(w, ECHO)
    t = c.syn()
    u = c.w.recv(c.sport, c.dport)
    res = {"first": str(t.flags), "again": str(u.flags) if u else None,
           "same_isn": u is not None and u.seq == t.seq, "ack": c.rel_ack(u) if u else None}
    if u is not None and u.flags == "SA":
        c.irs, c.rcv_nxt = u.seq, (u.seq + 1) & 0xFFFFFFFF
        c.send("A")
        res["echo"] = c.echo(b"late")
    c.abort()
    return res


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    iface, src_mac, dst_mac, src_ip, dst_ip, *names = sys.argv[1:]
    conf.verb = 0
    w = Wire(iface, src_mac, dst_mac, src_ip, dst_ip)
    out = {}
    for name in names or CASES:
        try:
            out[name] = CASES[name](w)
        except AssertionError as e:
            out[name] = {"error": str(e)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
