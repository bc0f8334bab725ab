"""ARP: answer requests for our address, resolve peers, cache with expiry."""
import time

from tas.slowpath.packets import ARP_REPLY, ARP_REQUEST, BROADCAST, ETH_P_ARP, Arp, Eth


class ArpTable:
    """IPv4 -> MAC cache.  Entries expire after `ttl` seconds; unresolved
    lookups send a request and are retried with exponential backoff."""

    def __init__(self, my_mac, my_ip, send, stats, ttl=60.0,
                 retry_initial=0.0005, retry_max=10.0):
        self.my_mac, self.my_ip = my_mac, my_ip
        self.send, self.stats = send, stats
        self.ttl = ttl
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.entries = {}      # ip bytes -> (mac bytes, expiry)
        self.pending = {}      # ip bytes -> (next retry time, current timeout)
        self.on_resolved = None   # called with (ip, mac) when a pending lookup resolves
        self.on_change = None     # called with (ip, mac) when an entry is new or changes,
                                  # (ip, None) when it expires

    def lookup(self, ip, now=None):
        """MAC for `ip` if known and fresh; otherwise start resolving, return None."""
        now = time.monotonic() if now is None else now
        e = self.entries.get(ip)
        if e is not None and e[1] > now:
            return e[0]
        if ip not in self.pending:
            self.pending[ip] = (now + self.retry_initial, self.retry_initial)
            self._request(ip)
        return None

    def learn(self, ip, mac, now=None):
        now = time.monotonic() if now is None else now
        old = self.entries.get(ip)
        self.entries[ip] = (mac, now + self.ttl)
        if self.on_change is not None and (old is None or old[0] != mac):
            self.on_change(ip, mac)
        if self.pending.pop(ip, None) is not None and self.on_resolved is not None:
            self.on_resolved(ip, mac)

    def handle(self, frame_src, payload):
        arp = Arp.parse(payload)
        self.stats.add("arp_rx")
        if arp.tpa == self.my_ip or arp.spa in self.pending or arp.spa in self.entries:
            self.learn(arp.spa, arp.sha)
        if arp.op == ARP_REQUEST and arp.tpa == self.my_ip:
            reply = Arp(ARP_REPLY, self.my_mac, self.my_ip, arp.sha, arp.spa)
            self.send(Eth(arp.sha, self.my_mac, ETH_P_ARP, reply.pack()).pack())
            self.stats.add("arp_replies")

    def tick(self, now=None):
        """Retry pending resolutions; drop expired entries."""
        now = time.monotonic() if now is None else now
        for ip, (when, timeout) in list(self.pending.items()):
            if when <= now:
                timeout = min(timeout * 2, self.retry_max)
                self.pending[ip] = (now + timeout, timeout)
                self._request(ip)
        for ip in [ip for ip, (_, exp) in self.entries.items() if exp <= now]:
            del self.entries[ip]
            if self.on_change is not None:
                self.on_change(ip, None)

    def _request(self, ip):
        req = Arp(ARP_REQUEST, self.my_mac, self.my_ip, b"\0" * 6, ip)
        self.send(Eth(BROADCAST, self.my_mac, ETH_P_ARP, req.pack()).pack())
        self.stats.add("arp_requests")
