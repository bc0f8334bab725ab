"""The fast path's listener table (include/tas/synfast.h) as the slow-path
unit tests' stand-in fast paths keep it: listeners, their buffer pools and
the held 4-tuples and TIME_WAIT pairs, in Python.  No SYN reaches a fast path in those tests,
so no connection is ever opened there (tas_fp_syn_sweep gives
none)."""
import collections


class ListenerTable:
    def __init__(self):
        self.listeners = {}                      # slot -> [args, accepting]
        self.pools = collections.defaultdict(list)
        self.held = collections.Counter()
        self.opened = collections.Counter()
        self.gone = collections.Counter()
        self.time_wait = {}
        self.neigh = {}                          # ip -> mac (the connects' table)
        self.ctx_connector = {}                  # fast-path context -> connector slot

    def tas_fp_syn_configure(self, handle, conf):
        self.syn_conf = conf

    def tas_fp_listener_add(self, handle, lid, port, ctx, app_id, handoff, backlog, ctr):
        slot = len(self.listeners)
        self.listeners[slot] = [(lid, port, ctx, app_id, handoff, backlog), False]
        return slot

    def tas_fp_listener_accepting(self, handle, slot):
        self.listeners[slot][1] = True

    def tas_fp_listener_primary(self, handle, slot):
        self.listeners[slot].append("primary")

    def tas_fp_listener_remove(self, handle, slot):
        del self.listeners[slot]

    def tas_fp_listener_pool_count(self, handle, slot):
        return len(self.pools[slot])

    def tas_fp_listener_pool_push(self, handle, slot, b):
        self.pools[slot].append((b.rx_off, b.tx_off))
        return 0

    def tas_fp_listener_pool_pop(self, handle, slot, out):
        if not self.pools[slot]:
            return 0
        out.rx_off, out.tx_off = self.pools[slot].pop()
        return 1

    def tas_fp_listener_opened(self, handle, slot):
        self.opened[slot] += 1

    def tas_fp_listener_gone(self, handle, slot):
        self.gone[slot] += 1

    def tas_fp_syn_sweep(self, handle, s):
        """(include/tas/syn_sweep.h) nothing opened, so nothing to sweep"""
        for name in ("nopen", "ndone", "nlst", "npeers", "collected", "closed", "recycled",
                     "time_wait", "tw_reused", "pending", "more"):
            setattr(s, name, 0)

    def tas_fp_syn_hold(self, handle, ip, local_port, peer_port, delta):
        self.held[(ip, local_port, peer_port)] += delta

    def tas_fp_tw_add(self, handle, ip, local_port, peer_port, rcv_nxt):
        self.time_wait[(ip, local_port, peer_port)] = rcv_nxt
        return 0

    def tas_fp_tw_del(self, handle, ip, local_port, peer_port):
        self.time_wait.pop((ip, local_port, peer_port), None)

    def tas_fp_connector_add(self, handle, lid, app_id):
        return self.tas_fp_listener_add(handle, lid, 0, 0, app_id, 1, 0, None)

    def tas_fp_ctx_connector(self, handle, ctx, slot):
        self.ctx_connector[ctx] = slot

    def tas_fp_neigh_set(self, handle, ip, mac):
        self.neigh[ip] = bytes(mac)

    def tas_fp_neigh_del(self, handle, ip):
        self.neigh.pop(ip, None)

    def tas_fp_flow_lookup(self, handle, ip, local_port, peer_port):
        """(no connection is opened in these fast paths: no 4-tuple is taken)"""
        return -1

    def tas_fp_conn_slow(self, handle, out, n):
        return 0
