"""Admin socket for tasctl: one JSON request per connection, one JSON reply.

    {"cmd": "flows"}   per-flow state and congestion-control feedback
    {"cmd": "flows", "time_wait": true}  and the TIME_WAIT pairs
    {"cmd": "kill", "flow_id": F}  reset flow F (RST to the peer, the app sees a reset)
    {"cmd": "apps"}    attached apps: credentials, contexts, flows, listeners,
                       flows provisioned for their hand-over listeners
    {"cmd": "config"}  the configuration the daemon runs with
    {"cmd": "cores"}   fast-path core load and scaling state
    {"cmd": "cores", "set": N}     pin N active cores (automatic scaling off)
    {"cmd": "cores", "auto": true} automatic core scaling on again
    {"cmd": "arena"}   the NVM payload arena: slices, owners, quarantined bytes
    {"cmd": "config"}  where payload buffers live (kbrun --orp reads it)
"""
import json
import os
import socket

from tas.slowpath.packets import mac_str
from tas.slowpath.sockfile import bind_unix_socket


class AdminServer:
    def __init__(self, cfg, fp, tcp, scaler, apps, quota):
        self.cfg, self.fp, self.tcp, self.scaler, self.apps, self.quota = (
            cfg, fp, tcp, scaler, apps, quota)
        self.lib = fp.lib
        self.ffi = fp.ffi
        self.ncores = len(cfg.dpdk.fp_cores)
        self.cfg = cfg
        self.path = os.path.join(cfg.tas.run_dir, f"{cfg.tas.instance}.admin")
        self.sock = bind_unix_socket(self.path, socket.SOCK_STREAM, 0o600)
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.commands = {"flows": self.flows, "cores": self.cores, "kill": self.kill,
                         "apps": self.list_apps, "config": self.config,
                         "arena": self.arena}

    def fileno(self):
        return self.sock.fileno()

    def readable(self, _fd=None):
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(1.0)
            try:
                req = json.loads(conn.recv(4096) or b"{}")
                handler = self.commands.get(req.get("cmd"))
                reply = handler(req) if handler else {"error": f"unknown command {req.get('cmd')!r}"}
            except (ValueError, OSError) as e:
                reply = {"error": str(e)}
            try:
                conn.sendall(json.dumps(reply).encode())
            except OSError:
                pass

    def arena(self, _req):
        a = self.apps.arena()
        if a is None:
            return {"error": 'no NVM arena: buffers.backing is "shm"'}
        return {"arena": a}

    def flows(self, req):
        out = []
        for conn in self.tcp.conns.values():
            row = {"peer": ".".join(map(str, conn.key[0])), "local_port": conn.key[1],
                   "peer_port": conn.key[2], "state": self.tcp.state_of(conn),
                   "app": conn.app.id, "uid": conn.app.uid, "pid": conn.app.pid,
                   "flow_id": conn.flow_id, "orphan": conn.orphan}
            if conn.flow_id >= 0 and conn.state == "ESTABLISHED":
                f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
                row.update(peer_mac=mac_str(bytes(f.peer_mac)), rate_kbps=f.tx_rate_kbps,
                           rtt_us=f.rtt_est_us, snd_wnd=f.snd_wnd, tx_sent=f.tx_sent,
                           tx_avail=f.tx_avail, rx_avail=f.rx_avail, acked_bytes=f.cnt_ackb,
                           ecn_bytes=f.cnt_ecnb, fast_rexmits=f.cnt_frexmits,
                           ooo_len=f.rx_ooo_len)
            out.append(row)
        if req.get("time_wait"):
            out += self.tcp.time_wait_rows()
        return {"flows": out}

    def kill(self, req):
        fid = req.get("flow_id")
        if not isinstance(fid, int) or isinstance(fid, bool):
            raise ValueError(f"flow_id: expected a flow id, got {fid!r}")
        conn = next((c for c in self.tcp.conns.values() if c.flow_id == fid), None)
        if conn is None:
            raise ValueError(f"no flow {fid}")
        row = {"flow_id": fid, "peer": ".".join(map(str, conn.key[0])), "peer_port": conn.key[2],
               "local_port": conn.key[1], "app": conn.app.id, "state": conn.state}
        self.tcp.kill(conn)
        return {"killed": row}

    def list_apps(self, _req):
        rows = []
        for state, apps in (("attached", list(self.apps.apps.values())),
                            ("lingering", list(self.apps.lingering))):
            for app in apps:
                rows.append({"app": app.id, "pid": app.pid, "uid": app.uid, "gid": app.gid,
                             "state": state if app.segment is not None else "unregistered",
                             "contexts": len(app.ctxs), "flows": len(app.conns),
                             "listeners": sorted(lst.port for lst in app.listeners),
                             # flows' buffers provisioned for SYNs the fast
                             # path answers (charged to the uid like flows)
                             "provisioned": sum(self.tcp.pool_count(lst)
                                                for lst in app.listeners)})
        quota = {str(uid): held for uid, held in self.quota.snapshot().items()}
        return {"apps": rows, "per_uid": quota, "caps": self.quota.caps}

    def config(self, _req):
        """As a config file would say it (modes in octal)."""
        return {"config": {sec: {k: f"{v:04o}" if k.endswith("_mode") else v
                                 for k, v in keys.items()}
                           for sec, keys in self.cfg.items()}}

    def cores(self, req):
        if "set" in req:
            n = req["set"]
            if not isinstance(n, int) or isinstance(n, bool):
                raise ValueError(f"set: expected a core count, got {n!r}")
            self.scaler.set_manual(n)
        elif req.get("auto"):
            self.scaler.set_auto()
        busy, total = self.ffi.new("uint64_t *"), self.ffi.new("uint64_t *")
        rows = []
        for i in range(self.ncores):
            self.lib.tas_fp_core_load(self.fp.handle, i, busy, total)
            row = {"core": i, "active": i < self.scaler.active,
                   "busy_cycles": busy[0], "total_cycles": total[0]}
            # Core i also owns NIC queue pair i (served by core i mod active).
            if self.lib.tas_fp_queue_packets(self.fp.handle, i, busy, total) == 0:
                row.update(queue_rx_pkts=busy[0], queue_tx_pkts=total[0])
            rows.append(row)
        status = self.scaler.status()
        status["reta_size"] = self.lib.tas_fp_reta_size(self.fp.handle)
        return {"cores": rows, "scaling": status}

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
