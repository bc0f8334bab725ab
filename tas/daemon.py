"""`tas`: the TAS daemon.  Fast path on DPDK lcores, slow path in this thread.

Start-up order matters: the instance lock first (refuse to start twice), then
topology that must exist before the port (af_packet/af_xdp veth), EAL and the port,
the fast-path lcores, and only then the peer side of a tap (the interface
exists once the port has started).  Shutdown undoes it in reverse, on SIGINT
or SIGTERM, and removes every shared-memory file the daemon created.
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import sys

from bindings import stats as kbstats
from tas import config, eal, fanout, peer
from tas.instance import AlreadyRunning, InstanceLock
from tas.slowpath.packets import ip_bytes, mac_bytes
from tas.slowpath.sockfile import group_id


DPDK_RUN_DIR = "/var/run/dpdk"


class DaemonError(Exception):
    pass


class FastPath:
    """The C fast path behind cffi: EAL, port, lcores."""

    def __init__(self, cfg, stats_page):
        from bindings import _tasfp
        self.ffi, self.lib = _tasfp.ffi, _tasfp.lib
        self.handle = None
        self.cfg = cfg
        self.stats_page = stats_page
        self.ncores = len(cfg.dpdk.fp_cores)

    def init_eal(self, args):
        self._argv = [self.ffi.new("char[]", a.encode()) for a in args]
        argv = self.ffi.new("char *[]", self._argv)
        if self.lib.rte_eal_init(len(args), argv) < 0:
            err = self.ffi.string(self.lib.rte_strerror(self.lib.tas_rte_errno())).decode()
            raise DaemonError(f"DPDK EAL init failed: {err} (args: {' '.join(args)})")

    def create(self):
        d = self.cfg.dpdk
        c = self.ffi.new("struct tas_fp_conf *")
        c.ip = int.from_bytes(ip_bytes(self.cfg.tas.ip), "big")
        c.prefix_len = self.cfg.tas.prefix_len
        c.mac = mac_bytes(self.cfg.tas.mac)
        c.ncores = len(d.fp_cores)
        for i, lc in enumerate(d.fp_cores):
            c.lcores[i] = lc
        c.nb_mbufs = d.mbufs
        c.mtu = d.mtu
        c.rx_desc, c.tx_desc = d.rx_desc, d.tx_desc
        c.sp_ring_size = self.cfg.fastpath.sp_ring_size
        c.idle_block_us = self.cfg.fastpath.idle_block_us
        c.poll_sleep_us = self.cfg.fastpath.poll_sleep_us
        c.poll_sleep_max_us = self.cfg.fastpath.poll_sleep_max_us
        c.yield_idle = 1 if self.cfg.fastpath.yield_when_idle else 0
        c.pin_apps = 1 if self.cfg.fastpath.pin_apps else 0
        c.no_rx_intr = 0 if d.rx_interrupts else 1
        fault = self.cfg.fault
        c.fault_rx_loss_ppm, c.fault_rx_dup_ppm = fault.rx_loss_ppm, fault.rx_dup_ppm
        c.fault_rx_reorder_ppm = fault.rx_reorder_ppm
        c.fault_tx_loss_ppm, c.fault_tx_reorder_ppm = fault.tx_loss_ppm, fault.tx_reorder_ppm
        c.invalid_ratelimit_ms = self.cfg.tcp.invalid_ratelimit_ms
        c.challenge_ack_limit = self.cfg.tcp.challenge_ack_limit
        c.max_flows = self.cfg.fastpath.max_flows
        c.delack_us = self.cfg.fastpath.delack_us
        h = self.lib.tas_fp_create(c, self.stats_page)
        if h == self.ffi.NULL:
            raise DaemonError(f"fast path: {self.ffi.string(self.lib.tas_fp_error()).decode()}")
        self.handle = h

    def start(self):
        if self.lib.tas_fp_start(self.handle) != 0:
            raise DaemonError(f"fast path: {self.ffi.string(self.lib.tas_fp_error()).decode()}")

    def close(self):
        if self.handle is not None:
            self.lib.tas_fp_stop(self.handle)
            self.lib.tas_fp_destroy(self.handle)
            self.handle = None
        self.lib.rte_eal_cleanup()
        # EAL's runtime directory for our file prefix: nothing else uses it.
        shutil.rmtree(os.path.join(DPDK_RUN_DIR, self.cfg.tas.instance), ignore_errors=True)


def raise_fd_limit():
    """Every app connection and context costs descriptors: use all we may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Daemon:
    def __init__(self, cfg, log=print, config_path=None, overrides=None):
        """config_path/overrides: where SIGHUP re-reads the settings from."""
        self.cfg = cfg
        self.log = log
        self.config_path, self.overrides = config_path, overrides or {}
        self.reload_pending = False
        self.lock = InstanceLock(cfg.tas.run_dir, cfg.tas.instance)
        self.stats = None
        self.fp = None
        self.stopping = False
        self._undo = []

    def start(self):
        from bindings import _tasfp
        cfg = self.cfg
        self.lock.acquire()
        self._undo.append(self.lock.release)
        raise_fd_limit()
        if cfg.buffers.backing == "nvm":   # a bad pool fails before the port is touched
            from tas.slowpath.arena import StrataArena
            StrataArena.check(cfg, _tasfp.ffi, _tasfp.lib)
        def page(component):
            w = kbstats.Writer(component, cfg.tas.instance, module=_tasfp,
                               mode=cfg.tas.stats_mode, gid=group_id(cfg.tas.stats_group))
            self._undo.append(w.close)
            return w
        self.stats = page("tas")
        # cycles per fast-path stage: a page of their own (the daemon's is
        # nearly full); closed after the fast path stops, like the other
        self.cycles = page("tascyc")
        # SYNs the fast path answered or left to the slow path, by reason
        self.syn_stats = page("tassyn")
        huge, why = eal.use_hugepages(cfg)
        self.log(f"tas: {why}")
        peer.setup_before_port(cfg)
        if cfg.dpdk.device == "net_af_xdp":
            # libxdp would first look for a bpffs to load its multi-program
            # dispatcher, and say on stderr that it falls back to one program
            os.environ.setdefault("LIBXDP_SKIP_DISPATCHER", "1")
        self._undo.append(lambda: peer.teardown(cfg))
        self.fp = FastPath(cfg, self.stats.page)
        holder = None
        if cfg.fault.af_packet_fanout_taken and cfg.dpdk.device == "net_af_packet":
            holder = fanout.hold_group(fanout.pmd_group(socket.if_nametoindex(cfg.dpdk.iface)))
        self.fp.init_eal(eal.eal_args(cfg, huge))
        self._undo.append(self.fp.close)
        if cfg.dpdk.device == "net_af_packet" and cfg.peer.netns:
            n = fanout.probe_again(self.fp, cfg, self.log, peer.setup_before_port,
                                   lambda c, i: eal.vdev_args(c, i)[1][len("--vdev="):])
            self.stats.set("port_probe_retries", n)
        if holder is not None:
            holder.close()
        self.fp.create()
        self.fp.lib.tas_fp_cycle_stats(self.fp.handle, self.cycles.page)
        self.fp.lib.tas_fp_syn_stats(self.fp.handle, self.syn_stats.page)
        self.fp.lib.tas_fp_conn_stats(self.fp.handle, self.syn_stats.page)
        self.fp.syn_stats = self.syn_stats
        self.fp.start()
        peer.setup_after_port(cfg)
        from tas.slowpath.loop import SlowPath
        self.sp = SlowPath(cfg, self.fp, self.stats)
        self._undo.append(self.sp.close)
        from tas import port_drops
        if port_drops.applies(cfg.dpdk.device):
            drops = port_drops.RingDrops(self.stats, cfg.dpdk.device)
            self._undo.append(drops.close)
            self.sp.timers.append(drops.tick)
        self.stats.set("fp_cores", len(cfg.dpdk.fp_cores))
        if cfg.metrics.listen:
            from tas.metrics import MetricsServer
            metrics = MetricsServer(cfg.metrics.listen)
            self._undo.append(metrics.close)
            self.log(f"tas: metrics on http://{metrics.address}/metrics")
        intr = "rx interrupts" if self.fp.lib.tas_fp_rx_intr(self.fp.handle) else "polling"
        self.log(f"tas: ready instance={cfg.tas.instance} ip={cfg.tas.ip} "
                 f"device={cfg.dpdk.device} fp_cores={cfg.dpdk.fp_cores} idle={intr}")

    def catch_signals(self):
        """Install SIGINT/SIGTERM handlers before start-up, so a signal at any
        point leads to the orderly teardown in stop()."""
        self._wake_r, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wfd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def run(self):
        self.sp.run(self._wake_r, lambda: self.stopping, self._maybe_reload)

    def _on_signal(self, signum, frame):
        if signum == signal.SIGHUP:
            self.reload_pending = True
        else:
            self.stopping = True

    def _maybe_reload(self):
        if self.reload_pending:
            self.reload_pending = False
            from tas.reload import reload
            reload(self.cfg, self.config_path, self.overrides, self.sp, self.log)

    def stop(self):
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as e:  # keep tearing down the rest
                self.log(f"tas: cleanup step failed: {e}")
        self.log("tas: stopped")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="tas", description="TAS daemon (TCP acceleration service)")
    p.add_argument("-c", "--config", help="TOML config file (default: built-in defaults)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (value in TOML syntax), repeatable")
    return p.parse_args(argv)


def overrides_from(pairs):
    import tomllib
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise config.ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value  # a bare word: take it as a string
    return out


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        overrides = overrides_from(args.set)
        cfg = config.load(args.config, overrides)
    except config.ConfigError as e:
        print(f"tas: {e}", file=sys.stderr)
        return 2
    d = Daemon(cfg, log=lambda m: print(m, flush=True), config_path=args.config,
               overrides=overrides)
    d.catch_signals()
    try:
        d.start()
        d.run()
    except AlreadyRunning as e:
        print(f"tas: {e}", file=sys.stderr)
        return 1
    except (DaemonError, peer.PeerError, RuntimeError, OSError) as e:
        print(f"tas: {e}", file=sys.stderr)
        return 1
    finally:
        d.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
