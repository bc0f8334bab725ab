"""The slow path's event loop: exception packets, timers, shutdown.

Runs on the daemon's main lcore.  It blocks in epoll on the fast path's
exception eventfd, the signal wake-up pipe, the admin and app sockets and
the next timer deadline, so an idle daemon costs no CPU.  epoll, not
select(): app connections can push descriptor numbers past 1023.
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
from tas.slowpath.quota import UidQuota
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
        self.quota = UidQuota(cfg, stats)
        self.tcp = TcpManager(cfg, fp, stats, self.arp, self.send, self.quota)
        self.tcp.cc_factory = cc.factory(cfg, fp)
        self.handlers[IPPROTO_TCP] = self._tcp
        self.poller = select.epoll()
        self.fd_handlers = {}  # fd -> handler(fd), for the epoll loop
        self.want_write = set()  # fds registered for EPOLLOUT too
        self.apps = AppServer(cfg, fp, stats, self.tcp, self.quota, self.watch, self.unwatch)
        self.scaler = CoreScaler(cfg, fp, stats)
        self.admin = AdminServer(cfg, fp, self.tcp, self.scaler, self.apps, self.quota)
        self.watch(self.admin.fileno(), self.admin.readable)
        self.timers = [self._slow_connects, self.arp.tick, self.tcp.tick, self.scaler.tick,
                       self.apps.tick,
                       self.apps.forked.tick,
                       lambda: self.lib.tas_fp_flush_notifications(self.fp.handle)]
        self._buf = self.ffi.new("uint8_t[]", MAX_FRAME)
        self._reason = self.ffi.new("uint32_t *")

    def send(self, frame):
        r = self.lib.tas_fp_sp_send(self.fp.handle, frame, len(frame))
        if r != 0:
            self.stats.add("sp_tx_drops")

    def watch(self, fd, handler):
        self.fd_handlers[fd] = handler
        self.poller.register(fd, select.EPOLLIN)

    def _sync_write_interest(self):
        """App sockets with deferred control messages (apps.py outq) also
        wait for room to write; the others for input only."""
        want = {fd for fd in self.apps.pending_fds() if fd in self.fd_handlers}
        for fd in want ^ self.want_write:
            try:
                self.poller.modify(fd, select.EPOLLIN | (select.EPOLLOUT if fd in want else 0))
            except OSError:
                pass    # closed meanwhile
        self.want_write = want

    def unwatch(self, fd):
        self.want_write.discard(fd)
        if self.fd_handlers.pop(fd, None) is not None:
            try:
                self.poller.unregister(fd)
            except OSError:
                pass    # already closed: epoll dropped it

    def run(self, stop_fd, should_stop, on_tick=None):
        """on_tick: called with the timers (the daemon's SIGHUP reload)."""
        # Signal wake-up bytes: drain them, or epoll reports them forever.
        # Stopping itself is should_stop's business.
        sp_fd = self.lib.tas_fp_sp_fd(self.fp.handle)
        admin_fd = self.admin.fileno()
        self.watch(stop_fd, self._drain_fd)
        self.watch(sp_fd, lambda _fd: self.drain())
        next_tick = time.monotonic()
        while not should_stop():
            timeout = max(0.0, next_tick - time.monotonic())
            self._sync_write_interest()
            events_ready = self.poller.poll(timeout)
            if any(fd == admin_fd for fd, _ in events_ready):
                # tasctl lists and names any connection: take all those the
                # fast path opened first.  An app's request that names one
                # takes it itself (TcpManager.close, fork_conns._find); taking
                # them all at every request (a proxy's connect() to its
                # upstream) left none for the sweep to close in C.
                self._guarded(lambda _: self.tcp.sync_fast(), None)
            for fd, events in events_ready:
                if events & select.EPOLLOUT:
                    self._guarded(self.apps.writable, fd)
                handler = self.fd_handlers.get(fd)
                if handler is not None and events & ~select.EPOLLOUT:
                    self._guarded(handler, fd)   # (an earlier event may have closed it)
            if time.monotonic() >= next_tick:
                for timer in self.timers + ([on_tick] if on_tick else []):
                    self._guarded(lambda t: t(), timer)
                next_tick = time.monotonic() + TICK_S

    def close(self):
        self.apps.close()
        self.admin.close()
        self.poller.close()

    @staticmethod
    def _drain_fd(fd):
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def drain(self):
        # The fast path wakes us when a listener's pool runs low: the sweep
        # closes what is over (its buffers go back to the pools) and refills
        # them.  (A segment of a connection still in the sweep's list makes
        # TcpManager.handle take them all.)
        self._guarded(lambda _: self.tcp.sync_fast(mode=0), None)
        self._guarded(lambda _: self._slow_connects(), None)
        while True:
            n = self.lib.tas_fp_sp_recv(self.fp.handle, self._buf, MAX_FRAME, self._reason)
            if n <= 0:
                return
            self._guarded(self.handle, bytes(self.ffi.buffer(self._buf, n)))

    def _slow_connects(self):
        """Connects the fast path left to us (connector.py)."""
        self.tcp.connectors.drain_slow(self.apps)

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
