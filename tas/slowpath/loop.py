"""The slow path's event loop: exception packets, timers, shutdown.

Runs on the daemon's main lcore.  It blocks in select() on the fast path's
exception eventfd, the signal wake-up pipe and the next timer deadline, so an
idle daemon costs no CPU.
"""
import os
import select
import time
import traceback

from tas.slowpath import cc
from tas.slowpath.admin import AdminServer
from tas.slowpath.apps import AppServer
from tas.slowpath.arp import ArpTable
from tas.slowpath.icmp import echo_reply
from tas.slowpath.scaling import CoreScaler
from tas.slowpath.packets import (ETH_P_ARP, ETH_P_IP, IPPROTO_ICMP, IPPROTO_TCP, Eth, IPv4,
                                  ip_bytes, mac_bytes)
from tas.slowpath.tcp import TcpManager

TICK_S = 0.01
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
        self.tcp = TcpManager(cfg, fp, stats, self.arp, self.send)
        self.tcp.cc_factory = cc.factory(cfg, fp)
        self.handlers[IPPROTO_TCP] = self._tcp
        self.apps = AppServer(cfg, fp, stats, self.tcp)
        self.scaler = CoreScaler(cfg, fp, stats)
        self.admin = AdminServer(cfg, fp, self.tcp, self.scaler)
        self.timers = [self.arp.tick, self.tcp.tick, self.scaler.tick,
                       lambda: self.lib.tas_fp_flush_notifications(self.fp.handle)]
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
            readable, _, _ = select.select([sp_fd, stop_fd, self.admin.fileno(),
                                            *self.apps.fds()], [], [], timeout)
            for fd in readable:
                if fd == stop_fd:
                    # Signal wake-up bytes: drain them, or select() spins.
                    # Stopping itself is should_stop's business.
                    self._drain_fd(stop_fd)
                elif fd == sp_fd:
                    self.drain()
                elif fd == self.admin.fileno():
                    self._guarded(self.admin.readable, fd)
                else:
                    self._guarded(self.apps.readable, fd)
            if time.monotonic() >= next_tick:
                for timer in self.timers:
                    timer()
                next_tick = time.monotonic() + TICK_S

    def close(self):
        self.apps.close()
        self.admin.close()

    @staticmethod
    def _drain_fd(fd):
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def drain(self):
        while True:
            n = self.lib.tas_fp_sp_recv(self.fp.handle, self._buf, MAX_FRAME, self._reason)
            if n <= 0:
                return
            self._guarded(self.handle, bytes(self.ffi.buffer(self._buf, n)))

    def _guarded(self, fn, arg):
        """A bug in handling one packet or request must not stop the daemon:
        count it, report it, carry on."""
        try:
            fn(arg)
        except Exception:
            self.stats.add("sp_errors")
            traceback.print_exc()

    def _tcp(self, eth, ip):
        self.tcp.handle(eth, ip, self._frame, self._reason[0])

    def handle(self, frame):
        self.stats.add("sp_rx_pkts")
        self._frame = frame
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
