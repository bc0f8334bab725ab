"""Connections shared over fork (TAS_CTL_CLAIM, TAS_CTL_FL_FORKED).

A server that accepts and then forks a process per connection (PostgreSQL,
Python's ForkingTCPServer, sshd) hands the connection to the child: the
child uses the inherited socket, the parent closes its copy.  On Linux both
hold the same socket, and its FIN goes when the last of them closes it.

Here a connection's flow belongs to one app.  A forked child that first uses
an inherited connection claims it: the flow moves to the child's context
with the bytes not yet read (tas_fp_flow_move), and the parent is told it
moved (unless it closed its copy already).  Only a descendant of the owner
may claim: fork is how the socket came to it.  A parent's close of a
connection that children forked meanwhile may hold (libtas records their
pids at fork) does not send the FIN: it waits, as Linux's last close would,
until those children have exited (a pidfd each) or let go of what they
inherited (their libtas fork marker is gone: closed, or dropped by an exec
that kept none of the connections), unless one claims it.
"""
import errno
import os
import time

from tas.slowpath.appctx import wait_commands_taken
from tas.slowpath.tcp import ESTABLISHED

PPID_DEPTH = 16     # how far up a claimer's parents are searched for the owner
HOLD_CHECK_S = 0.1  # how often held children are checked for their marker
MARKER = "/memfd:libtas-fork"   # tas/libtas/fork_child.c


def holds_marker(pid):
    """Whether pid still holds connections inherited over fork that it has
    not taken over: libtas keeps its fork marker open as long as it does
    (and an exec keeps it only if one of them survives the exec)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(MARKER):
                return True
        except OSError:
            continue
    return False


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descends_from(pid, ancestor):
    for _ in range(PPID_DEPTH):
        pid = parent_of(pid)
        if pid <= 1:
            return False
        if pid == ancestor:
            return True
    return False


class ForkedConns:
    def __init__(self, tcp, stats, watch, unwatch):
        self.tcp, self.stats, self.lib = tcp, stats, tcp.lib
        self.watch, self.unwatch = watch, unwatch
        self.held = {}          # pidfd -> conn whose close waits for that child
        self.next_check = 0.0

    def _find(self, flow_id, app=None):
        """The connection of flow_id (among app's, if given), with its state
        brought up to date (the fast path finishes handshakes without
        telling us).  The sweep's connections are taken first: the one
        named may still be there."""
        self.tcp.sync_fast()
        conns = app.conns if app is not None else self.tcp.conns.values()
        conn = next((c for c in conns if c.flow_id == flow_id), None)
        if conn is not None and self.tcp.quietly_established(conn):
            self.tcp.establish(conn, None)
        return conn

    def claim(self, app, ctx, flow_id):
        """(status, conn): conn now app's, or -errno."""
        conn = self._find(flow_id)
        if conn is None or conn.app is app or conn.app_closed or conn.state != ESTABLISHED:
            self.stats.add("tcp_claims_refused")
            return -errno.ENOTCONN, None
        if not descends_from(app.pid, conn.app.pid):
            self.stats.add("tcp_claims_refused")
            return -errno.EPERM, None
        old_app, closed_by_owner = conn.app, conn.fork_holds is not None
        if not old_app.gone and not wait_commands_taken(self.tcp.fp, old_app):
            return -errno.EAGAIN, None    # (its last releases must reach the flow first)
        old = self.tcp.move_flow(conn, app, ctx, self.lib.TAS_CLAIM_LISTENER, accepted=True,
                                 tell_old=not closed_by_owner)
        if not isinstance(old, tuple):
            return (-errno.EAGAIN if old == -errno.EBUSY else old), None
        self.lib.tas_fp_quiesce(self.tcp.fp.handle)   # no core reads the old buffers now
        self.tcp.release_moved(*old)
        self._unhold(conn)
        conn.orphan = False
        if old_app.gone and not old_app.conns and old_app in old_app.server.lingering:
            old_app.server.release(old_app)      # its last connection went to the child
        self.stats.add("tcp_conns_claimed")
        return 0, conn

    def close(self, app, flow_id, pids):
        """The owner closed a connection its children may hold: the FIN
        waits until they are gone.  -EBADF if app has no such connection."""
        conn = self._find(flow_id, app)
        if conn is None:
            return -errno.EBADF
        if conn.state != ESTABLISHED:
            return 0
        fds = {}
        for pid in pids:
            if pid <= 0 or parent_of(pid) != app.pid or not holds_marker(pid):
                continue            # gone, holding nothing, or its pid reused
            try:
                fds[os.pidfd_open(pid)] = pid
            except OSError:
                continue
        if not fds:
            self._close_now(conn)
            return 0
        conn.fork_holds = fds
        for fd in fds:
            self.held[fd] = conn
            self.watch(fd, self._child_exited)
        self.stats.add("tcp_closes_held_for_children")
        return 0

    def _close_now(self, conn):
        f = self.lib.tas_fp_flow(self.tcp.fp.handle, conn.flow_id)
        self.tcp.close_for_app(conn, f, "tcp_closed_after_children")

    def tick(self):
        """A held child that let go of what it inherited no longer counts."""
        now = time.monotonic()
        if not self.held or now < self.next_check:
            return
        self.next_check = now + HOLD_CHECK_S
        for fd, conn in list(self.held.items()):
            if not holds_marker((conn.fork_holds or {}).get(fd, 0)):
                self._child_exited(fd)

    def _child_exited(self, fd):
        conn = self.held.pop(fd, None)
        self.unwatch(fd)
        os.close(fd)
        if conn is None or conn.fork_holds is None:
            return
        conn.fork_holds.pop(fd, None)
        if conn.fork_holds:
            return
        conn.fork_holds = None
        if conn.state == ESTABLISHED:
            self._close_now(conn)

    def _unhold(self, conn):
        for fd in list(conn.fork_holds or ()):
            self.held.pop(fd, None)
            self.unwatch(fd)
            os.close(fd)
        conn.fork_holds = None

    def close_all(self):
        for conn in list(self.held.values()):
            self._unhold(conn)
