"""The slow path's event loop: exception packets, timers, shutdown.

Runs on the daemon's main lcore.  It blocks in select() on the fast path's
exception eventfd, the signal wake-up pipe and the next timer deadline, so an
idle daemon costs no CPU.
"""
import select
import time

from tas.slowpath.arp import ArpTable
from tas.slowpath.icmp import echo_reply
from tas.slowpath.packets import (ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, Eth, IPv4, ip_bytes,
                                  mac_bytes)

TICK_S = 0.1
MAX_FRAME = 10240


class SlowPath:
    def __init__(self, cfg, fp, stats):
        self.fp, self.stats = fp, stats
        self.ffi, self.lib = fp.ffi, fp.lib
        self.my_mac = mac_bytes(cfg.tas.mac)
        self.my_ip = ip_bytes(cfg.tas.ip)
        self.arp = ArpTable(self.my_mac, self.my_ip, self.send, stats)
        self.handlers = {}     # IP protocol -> handler(eth, ip); TCP plugs in here
        self.handlers[IPPROTO_ICMP] = self._icmp
        self.timers = [self.arp.tick]
        self._buf = self.ffi.new("uint8_t[]", MAX_FRAME)
        self._reason = self.ffi.new("uint32_t *")

    def send(self, frame):
        r = self.lib.tas_fp_sp_send(self.fp.handle, frame, len(frame))
        if r != 0:
            self.stats.add("sp_tx_drops")

    def run(self, stop_fd, should_stop):
        sp_fd = self.lib.tas_fp_sp_fd(self.fp.handle)
        next_tick = time.monotonic()
        while not should_stop():
            timeout = max(0.0, next_tick - time.monotonic())
            readable, _, _ = select.select([sp_fd, stop_fd], [], [], timeout)
            if sp_fd in readable:
                self.drain()
            if time.monotonic() >= next_tick:
                for timer in self.timers:
                    timer()
                next_tick = time.monotonic() + TICK_S

    def drain(self):
        while True:
            n = self.lib.tas_fp_sp_recv(self.fp.handle, self._buf, MAX_FRAME, self._reason)
            if n <= 0:
                return
            self.handle(bytes(self.ffi.buffer(self._buf, n)))

    def handle(self, frame):
        self.stats.add("sp_rx_pkts")
        try:
            eth = Eth.parse(frame)
            if eth.ethertype == ETH_P_ARP:
                self.arp.handle(eth.src, eth.payload)
            elif eth.ethertype == ETH_P_IP:
                ip = IPv4.parse(eth.payload)
                handler = self.handlers.get(ip.proto)
                if handler is None:
                    self.stats.add("sp_unhandled")
                else:
                    handler(eth, ip)
            else:
                self.stats.add("sp_unhandled")
        except ValueError:
            self.stats.add("sp_drop_malformed")

    def _icmp(self, eth, ip):
        reply = echo_reply(eth, ip)
        if reply is not None:
            self.arp.learn(ip.src, eth.src)
            self.send(reply)
            self.stats.add("icmp_echo_replies")
