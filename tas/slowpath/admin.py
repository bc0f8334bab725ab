"""Admin socket for tasctl: one JSON request per connection, one JSON reply.

    {"cmd": "flows"}   per-flow state and congestion-control feedback
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


class AdminServer:
    def __init__(self, cfg, fp, tcp, scaler, apps):
        self.fp, self.tcp, self.scaler, self.apps = fp, tcp, scaler, apps
        self.lib = fp.lib
        self.ffi = fp.ffi
        self.ncores = len(cfg.dpdk.fp_cores)
        self.cfg = cfg
        self.path = os.path.join(cfg.tas.run_dir, f"{cfg.tas.instance}.admin")
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(8)
        self.sock.setblocking(False)
        self.commands = {"flows": self.flows, "cores": self.cores, "config": self.config,
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

    def flows(self, _req):
        out = []
        for conn in self.tcp.conns.values():
            row = {"peer": ".".join(map(str, conn.key[0])), "local_port": conn.key[1],
                   "peer_port": conn.key[2], "state": conn.state, "app": conn.app.id,
                   "flow_id": conn.flow_id}
            if conn.flow_id >= 0 and conn.state == "ESTABLISHED":
                f = self.lib.tas_fp_flow(self.fp.handle, conn.flow_id)
                row.update(peer_mac=mac_str(bytes(f.peer_mac)), rate_kbps=f.tx_rate_kbps,
                           rtt_us=f.rtt_est_us, snd_wnd=f.snd_wnd, tx_sent=f.tx_sent,
                           tx_avail=f.tx_avail, rx_avail=f.rx_avail, acked_bytes=f.cnt_ackb,
                           ecn_bytes=f.cnt_ecnb, fast_rexmits=f.cnt_frexmits,
                           ooo_len=f.rx_ooo_len)
            out.append(row)
        return {"flows": out}

    def config(self, _req):
        c = self.cfg
        return {"instance": c.tas.instance, "backing": c.buffers.backing,
                "pool_path": os.path.realpath(c.nvm.pool_path)}

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
        if os.path.exists(self.path):
            os.unlink(self.path)
