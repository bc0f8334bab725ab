"""Daemon configuration: one TOML file over built-in defaults.

Every key is declared once in SCHEMA with its default, parser and the form it
expects, so an unknown key or a bad value is rejected with a message naming
the key and the expected form.  The defaults are the embedded set-up: a
net_af_packet device on a veth pair whose other end lives in the `tas-peer`
namespace (net_af_xdp on the same veth, and net_tap, the slower tap device,
by configuration), and NVM
emulated by a file in /dev/shm (Strata's default pool).
"""
import ipaddress
import re
import tomllib
from dataclasses import dataclass


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Field:
    default: object
    parse: object      # callable(value) -> parsed value; raises ValueError
    expected: str      # the expected form, for error messages


def _ipv4(v):
    return str(ipaddress.IPv4Address(v))


def _mac(v):
    if not isinstance(v, str) or not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", v):
        raise ValueError
    if int(v[:2], 16) & 1:
        raise ValueError  # multicast bit set: not a unicast station address
    return v.lower()


def _int_range(lo, hi):
    def parse(v):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError
        return v
    return parse


def _pow2(lo, hi):
    rng = _int_range(lo, hi)

    def parse(v):
        v = rng(v)
        if v & (v - 1):
            raise ValueError
        return v
    return parse


def _choice(*options):
    def parse(v):
        if v not in options:
            raise ValueError
        return v
    return parse


def _port_range(v):
    m = re.fullmatch(r"(\d+)-(\d+)", str(v))
    if m is None or not 1024 <= int(m[1]) <= int(m[2]) <= 65535:
        raise ValueError
    return f"{int(m[1])}-{int(m[2])}"


def port_range(v):
    """tcp.ephemeral_ports as a range."""
    lo, hi = v.split("-")
    return range(int(lo), int(hi) + 1)


def _str(pattern=r".+"):
    def parse(v):
        if not isinstance(v, str) or not re.fullmatch(pattern, v):
            raise ValueError
        return v
    return parse


def _int_list(lo, hi):
    def parse(v):
        if not isinstance(v, list) or not v or len(set(v)) != len(v):
            raise ValueError
        return [_int_range(lo, hi)(x) for x in v]
    return parse


def _int_list_or_empty(lo, hi):
    item = _int_range(lo, hi)

    def parse(v):
        if not isinstance(v, list) or len(set(v)) != len(v):
            raise ValueError
        return [item(x) for x in v]
    return parse


def _mode(v):
    """A permission mode written in octal: '0660' (or an integer like 0o660)."""
    if isinstance(v, str) and re.fullmatch(r"0?[0-7]{3}", v):
        return int(v, 8)
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0o777:
        return v
    raise ValueError


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError
    return v


def _float_range(v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
        raise ValueError
    return float(v)


def _str_list(v):
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError
    return list(v)


_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?)?", re.I)


def _size(v):
    """A byte size: an integer or a string like '256M' / '1GiB'."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    m = _SIZE.fullmatch(v.strip()) if isinstance(v, str) else None
    if not m:
        raise ValueError
    unit = (m.group(2) or "").upper()[:1]
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]


# Flow buffers are addressed by 32-bit offsets in their app's segment
# (include/tas/flow.h, shm.h, synfast.h), so a segment holds at most 4 GiB.
MAX_APP_SEGMENT = 1 << 32
# "auto": with shm a segment is a sparse memfd (pages come as buffers are
# used), so it gets the most the offsets allow: about 8,000 connections at
# the default buffers, where 1G stopped redis-server at 2,015 clients.  With
# nvm it is a slice of the pool's ref area, sized at `strata mkfs`.
AUTO_APP_SEGMENT = {"shm": MAX_APP_SEGMENT, "nvm": 1 << 30}


def _segment_size(v):
    if v == "auto":
        return v
    v = _size(v)
    if not 1 << 20 <= v <= MAX_APP_SEGMENT:
        raise ValueError
    return v


NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}"

SCHEMA = {
    "tas": {
        "instance": Field("tas0", _str(NAME), "a name of 1-15 letters, digits, '_.-'"),
        "ip": Field("10.0.0.2", _ipv4, "an IPv4 address like 10.0.0.2"),
        "prefix_len": Field(24, _int_range(1, 32), "an integer 1..32"),
        "mac": Field("02:00:00:00:00:02", _mac, "a unicast MAC like 02:00:00:00:00:02"),
        "run_dir": Field("/run/tas", _str(r"/.*"), "an absolute directory path"),
        "socket_mode": Field(0o666, _mode, "a file mode like '0660' (string, octal)"),
        "socket_group": Field("", _str(r"|[A-Za-z0-9_][A-Za-z0-9_.-]*|\d+"),
                              "a group name or number, or '' for the daemon's own group"),
        "stats_mode": Field(0o600, _mode, "a file mode like '0640' (string, octal)"),
        "stats_group": Field("", _str(r"|[A-Za-z0-9_][A-Za-z0-9_.-]*|\d+"),
                             "a group name or number, or '' for the daemon's own group"),
    },
    "limits": {
        "connections_per_uid": Field(128, _int_range(1, 1 << 20),
                                     "app-socket connections one uid may hold (1..1048576)"),
        "contexts_per_uid": Field(128, _int_range(1, 256),
                                  "app contexts one uid may hold (1..256; the daemon has 256)"),
        "flows_per_uid": Field(16384, _int_range(1, 65536),
                               "TCP connections one uid may hold (1..65536)"),
        "listeners_per_uid": Field(256, _int_range(1, 65536),
                                   "listening ports one uid may hold (1..65536)"),
        "buffer_bytes_per_uid": Field("4G", _size,
                                      "flow-buffer bytes one uid may hold, like '4G'"),
        "low_port_uids": Field([], _int_list_or_empty(0, (1 << 32) - 2),
                               "a list of uids besides root allowed to listen below 1024"),
        "register_timeout_ms": Field(5000, _int_range(1, 3_600_000),
                                     "milliseconds an app-socket connection may stay "
                                     "unregistered (1..3600000)"),
    },
    "dpdk": {
        "device": Field("net_af_packet",
                        _choice("net_af_packet", "net_af_xdp", "net_tap", "net_memif", "pci"),
                        "one of net_af_packet, net_af_xdp, net_tap, net_memif, pci"),
        "iface": Field("tas0", _str(NAME), "a Linux interface name (1-15 chars)"),
        "pci_addr": Field("", _str(r"|[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"),
                          "a PCI address like 0000:03:00.0"),
        "memif_role": Field("server", _choice("server", "client"), "server or client"),
        "memif_socket": Field("/run/tas/memif.sock", _str(r"/.*"), "an absolute socket path"),
        "main_core": Field(0, _int_range(0, 127), "an lcore number"),
        "fp_cores": Field([1], _int_list(0, 127), "a non-empty list of distinct lcore numbers"),
        "hugepages": Field("auto", _choice("auto", "yes", "no"), "auto, yes or no"),
        "mem_mb": Field(512, _int_range(64, 1 << 20), "megabytes of DPDK memory (>= 64)"),
        "mbufs": Field(16383, _int_range(1023, 1 << 22), "an mbuf count"),
        "rx_desc": Field(1024, _pow2(64, 16384), "a power of two 64..16384"),
        "tx_desc": Field(1024, _pow2(64, 16384), "a power of two 64..16384"),
        "rx_interrupts": Field(True, _bool, "true or false"),
        "mtu": Field(1500, _int_range(576, 9000),
                     "an IP MTU in bytes (576..9000); the peer side gets the same"),
        "eal_extra": Field([], _str_list, "a list of extra EAL argument strings"),
    },
    "fastpath": {
        "idle_block_us": Field(10000, _int_range(0, 10_000_000),
                               "microseconds of idle before blocking (0..1e7)"),
        "poll_sleep_us": Field(50, _int_range(1, 1_000_000),
                               "microseconds (1..1000000) of a blocked core's first sleep "
                               "between device polls, when its device has no RX interrupts"),
        "poll_sleep_max_us": Field(200, _int_range(1, 1_000_000),
                                   "microseconds (1..1000000, at least poll_sleep_us): the "
                                   "sleeps between polls double up to this while nothing "
                                   "comes"),
        "sp_ring_size": Field(4096, _pow2(64, 1 << 20), "a power of two"),
        "yield_when_idle": Field(True, _bool, "true or false"),
        # Apps run their TAS thread on the CPU of the core serving them: the
        # bytes the core copies into an app's buffer are read there, in that
        # CPU's cache, instead of crossing to the other CPU (on a VM whose two
        # CPUs sit on different dies that crossing is slow)
        "pin_apps": Field(False, _bool, "true or false"),
        "max_flows": Field(65536, _int_range(1, 65536),
                           "a flow count 1..65536 (connections installed at once)"),
        "delack_us": Field(100, _int_range(0, 10_000),
                           "microseconds (0..10000) an owed ACK of in-order data may "
                           "wait for more (0: ACK at the end of every RX burst)"),
    },
    "fault": {
        "rx_loss_ppm": Field(0, _int_range(0, 1_000_000), "parts per million (0..1000000)"),
        "rx_dup_ppm": Field(0, _int_range(0, 1_000_000), "parts per million (0..1000000)"),
        "rx_reorder_ppm": Field(0, _int_range(0, 1_000_000), "parts per million (0..1000000)"),
        "tx_loss_ppm": Field(0, _int_range(0, 1_000_000), "parts per million (0..1000000)"),
        "tx_reorder_ppm": Field(0, _int_range(0, 1_000_000), "parts per million (0..1000000)"),
        # tests of tas/fanout.py: the daemon takes the PMD's fanout group first
        "af_packet_fanout_taken": Field(False, _bool, "true or false"),
    },
    "peer": {
        "netns": Field("tas-peer", _str(r"|" + NAME), "a network namespace name, or '' for none"),
        "ip": Field("10.0.0.1", _ipv4, "an IPv4 address like 10.0.0.1"),
        "mac": Field("02:00:00:00:00:01", _mac, "a unicast MAC"),
        "steer_rx": Field(False, _bool, "true or false"),
    },
    "buffers": {
        "rx_buf": Field(262144, _size, "a size like 65536 or '64K'"),
        "tx_buf": Field(262144, _size, "a size like 65536 or '64K'"),
        "backing": Field("shm", _choice("shm", "nvm"),
                         "shm or nvm (nvm: app segments in nvm.pool_path's Strata ref area)"),
        "app_segment": Field("auto", _segment_size,
                             "'auto' (4G with shm, 1G with nvm) or a size from '1M' to '4G' "
                             "(per application; flow buffers have 32-bit offsets in it)"),
    },
    "tcp": {
        "mss": Field(0, _int_range(0, 8960),
                     "an MSS in bytes (536..8960), or 0 for dpdk.mtu - 40"),
        "handshake_timeout_ms": Field(50, _int_range(1, 60000), "milliseconds (1..60000)"),
        "handshake_retries": Field(8, _int_range(0, 100), "a retry count (0..100)"),
        "syn_pool": Field(32, _int_range(0, 256),
                          "flows (0..256) each hand-over listener keeps provisioned so "
                          "that the fast path answers its SYNs (0: the slow path does); "
                          "closed connections give theirs back up to twice that"),
        "connect_pool": Field(128, _int_range(0, 256),
                              "flows (0..256) each app that connects keeps provisioned so "
                              "that the fast path opens its connects (0: the slow path "
                              "does); closed connections give theirs back up to twice that"),
        "rto_min_ms": Field(200, _int_range(1, 60000), "milliseconds (1..60000)"),
        "rto_intervals": Field(2, _int_range(1, 100),
                               "control intervals without progress before a timeout"),
        "time_wait_ms": Field(2000, _int_range(0, 240000), "milliseconds (0..240000)"),
        "ephemeral_ports": Field("32768-60999", _port_range,
                                 "local ports of connects, 'LO-HI' (1024..65535, as Linux's "
                                 "ip_local_port_range)"),
        "time_wait_reuse": Field(False, _bool,
                                 "true or false: a connect may take a port pair in TIME_WAIT "
                                 "for a second or more (Linux tcp_tw_reuse=1)"),
        "ts_refresh_s": Field(600, _int_range(1, 1800),
                              "seconds (1..1800): an idle flow sends an ACK this often so "
                              "its microsecond timestamps never look wrapped to the peer"),
        "fin_wait2_ms": Field(60000, _int_range(0, 600000), "milliseconds"),
        "ecn": Field(True, _bool, "true or false"),
        "invalid_ratelimit_ms": Field(500, _int_range(0, 60000),
                                      "milliseconds (0..60000) between two challenge ACKs "
                                      "of one connection (Linux tcp_invalid_ratelimit)"),
        "challenge_ack_limit": Field(1000, _int_range(0, 1 << 31),
                                     "challenge ACKs per second in all "
                                     "(Linux tcp_challenge_ack_limit)"),
    },
    "cc": {
        "algorithm": Field("dctcp-rate", _choice("dctcp-rate", "timely", "const-rate", "none"),
                           "one of dctcp-rate, timely, const-rate, none"),
        "interval_rtts": Field(2, _int_range(1, 1000), "control interval in RTTs"),
        "init_kbps": Field(10000, _int_range(100, 100_000_000), "a rate in kbps"),
        "step_kbps": Field(10000, _int_range(1, 100_000_000), "a rate in kbps"),
        "dctcp_g": Field(0.0625, lambda v: _float_range(v, 0.0, 1.0), "a number in (0, 1]"),
        "const_kbps": Field(1_000_000, _int_range(100, 100_000_000), "a rate in kbps"),
        "timely_tlow_us": Field(30, _int_range(1, 10_000_000), "microseconds"),
        "timely_thigh_us": Field(150, _int_range(1, 10_000_000), "microseconds"),
        "timely_beta": Field(0.8, lambda v: _float_range(v, 0.0, 1.0), "a number in (0, 1]"),
    },
    "scaling": {
        "auto": Field(True, _bool, "true or false"),
        "min_cores": Field(1, _int_range(1, 16), "a core count (1..16)"),
        "interval_ms": Field(10, _int_range(1, 10_000), "milliseconds (1..10000)"),
        "hold_intervals": Field(10, _int_range(0, 10_000),
                                "intervals to wait after a change (0..10000)"),
        "add_below_idle": Field(0.2, lambda v: _float_range(v, 0.0, 64.0),
                                "idle cores (a number)"),
        "remove_above_idle": Field(1.25, lambda v: _float_range(v, 0.0, 64.0),
                                   "idle cores (a number)"),
    },
    "metrics": {
        "listen": Field("", _str(r"|[0-9A-Za-z.\-]*:\d{1,5}"),
                        "'' (off) or ADDR:PORT for a Prometheus /metrics endpoint"),
    },
    "nvm": {
        # The Strata pool (made by `strata mkfs`, which sizes it) whose ref
        # area holds the app segments with buffers.backing = "nvm".
        "pool_path": Field("/dev/shm/strata.pool", _str(r"/.*"),
                           "an absolute path to a Strata pool"),
    },
}


class Config(dict):
    """Section -> {key: value}; attribute access for sections (cfg.tas.ip)."""

    def __getattr__(self, name):
        try:
            return _Section(self[name])
        except KeyError:
            raise AttributeError(name) from None


class _Section(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def validate(raw, source="config"):
    """Merge `raw` (parsed TOML) over the defaults; raise ConfigError on bad input."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a table")
    cfg = Config({sec: {k: f.parse(f.default) for k, f in fields.items()}
                  for sec, fields in SCHEMA.items()})
    for sec, table in raw.items():
        if sec not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{sec}] "
                              f"(expected one of: {', '.join(SCHEMA)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{sec}] must be a table")
        for key, value in table.items():
            field = SCHEMA[sec].get(key)
            if field is None:
                raise ConfigError(f"{source}: unknown key {sec}.{key} "
                                  f"(known keys in [{sec}]: {', '.join(SCHEMA[sec])})")
            try:
                cfg[sec][key] = field.parse(value)
            except (ValueError, TypeError, AttributeError):
                raise ConfigError(f"{source}: bad value for {sec}.{key}: {value!r} "
                                  f"(expected {field.expected})") from None
    _check_cross(cfg, source)
    return cfg


def _check_cross(cfg, source):
    if cfg["dpdk"]["main_core"] in cfg["dpdk"]["fp_cores"]:
        raise ConfigError(f"{source}: dpdk.fp_cores must not contain dpdk.main_core "
                          f"({cfg['dpdk']['main_core']}): the slow path runs there")
    if len(cfg["dpdk"]["fp_cores"]) > 16:
        raise ConfigError(f"{source}: dpdk.fp_cores lists {len(cfg['dpdk']['fp_cores'])} cores "
                          f"(at most 16 fast-path cores)")
    if cfg["scaling"]["add_below_idle"] >= cfg["scaling"]["remove_above_idle"]:
        raise ConfigError(f"{source}: scaling.add_below_idle must be below "
                          f"scaling.remove_above_idle (or cores would flap)")
    if cfg["dpdk"]["device"] == "pci" and not cfg["dpdk"]["pci_addr"]:
        raise ConfigError(f"{source}: dpdk.pci_addr is required when dpdk.device = 'pci'")
    if cfg["dpdk"]["device"] == "net_af_xdp":
        _check_af_xdp(cfg, source)
    mtu, mss = cfg["dpdk"]["mtu"], cfg["tcp"]["mss"]
    if mss == 0:
        cfg["tcp"]["mss"] = mtu - 40
    elif mss < 536:
        raise ConfigError(f"{source}: bad value for tcp.mss: {mss} (expected 536..8960, "
                          f"or 0 for dpdk.mtu - 40)")
    elif mss > mtu - 40:
        raise ConfigError(f"{source}: tcp.mss = {mss} does not fit dpdk.mtu = {mtu} "
                          f"(at most mtu - 40 = {mtu - 40})")
    fp = cfg["fastpath"]
    if fp["poll_sleep_max_us"] < fp["poll_sleep_us"]:
        raise ConfigError(f"{source}: fastpath.poll_sleep_max_us = {fp['poll_sleep_max_us']} "
                          f"is below fastpath.poll_sleep_us = {fp['poll_sleep_us']} "
                          f"(the sleeps start at poll_sleep_us and grow up to the max)")
    buf = cfg["buffers"]
    if buf["app_segment"] == "auto":
        buf["app_segment"] = AUTO_APP_SEGMENT[buf["backing"]]
    if cfg["peer"]["ip"] == cfg["tas"]["ip"]:
        raise ConfigError(f"{source}: peer.ip must differ from tas.ip")


# net_af_xdp (DPDK 22.11) receives a frame into one mbuf of its UMEM, without
# multi-buffer: the mbuf must lie within one page, so a frame holds what is
# left of 4 KiB after the mempool header, the mbuf, its headroom and the
# kernel's 256-byte XDP headroom (fp_port.c sizes the mbufs the same way).
AF_XDP_MAX_MTU = 3442


def _check_af_xdp(cfg, source):
    d = cfg["dpdk"]
    if d["mtu"] > AF_XDP_MAX_MTU:
        raise ConfigError(f"{source}: dpdk.mtu = {d['mtu']} is too big for dpdk.device = "
                          f"'net_af_xdp' (at most {AF_XDP_MAX_MTU}: DPDK 22.11's AF_XDP PMD "
                          f"receives a frame into one page-sized buffer; use net_af_packet "
                          f"for jumbo frames)")
    # On the veth the daemon makes (peer.netns set); an interface of the
    # machine's own (peer.netns = '') has the queues it has, and the PMD
    # refuses more than its combined channels when the port is probed.
    if len(d["fp_cores"]) > 1 and cfg["peer"]["netns"]:
        raise ConfigError(f"{source}: dpdk.fp_cores lists {len(d['fp_cores'])} cores, but "
                          f"dpdk.device = 'net_af_xdp' has one queue on a veth (the PMD takes "
                          f"only as many queues as the interface has combined channels, and "
                          f"a veth reports none); use net_af_packet for several cores")


def load(path=None, overrides=None):
    """Load the TOML file at `path` (None: defaults only), then apply overrides
    given as {"section.key": value}."""
    raw = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        sec, _, key = dotted.partition(".")
        raw.setdefault(sec, {})[key] = value
    return validate(raw, source)
