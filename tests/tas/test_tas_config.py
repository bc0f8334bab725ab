"""Config: defaults, overrides, and clear errors that name the bad key."""
import subprocess
import sys

import pytest

from tas import config

pytestmark = pytest.mark.fast


def test_defaults_are_the_embedded_setup():
    cfg = config.load()
    assert cfg.dpdk.device == "net_af_packet"   # the fastest kernel-facing device
    assert cfg.peer.netns == "tas-peer"
    assert cfg.nvm.pool_path.startswith("/dev/shm/")
    assert cfg.dpdk.main_core not in cfg.dpdk.fp_cores


def test_file_values_override_defaults(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[tas]\nip = "192.168.7.9"\n[buffers]\nrx_buf = "1M"\n')
    cfg = config.load(p)
    assert cfg.tas.ip == "192.168.7.9"
    assert cfg.buffers.rx_buf == 1 << 20


@pytest.mark.parametrize("text, needle", [
    ('[tas]\nipp = "1.2.3.4"\n', "unknown key tas.ipp"),
    ('[tass]\nip = "1.2.3.4"\n', "unknown section [tass]"),
    ('[tas]\nip = "1.2.3"\n', "tas.ip: '1.2.3' (expected an IPv4 address"),
    ('[tas]\nmac = "01:00:00:00:00:01"\n', "tas.mac"),
    ('[dpdk]\nfp_cores = []\n', "dpdk.fp_cores"),
    ('[dpdk]\nrx_desc = 1000\n', "dpdk.rx_desc: 1000 (expected a power of two"),
    ('[dpdk]\ndevice = "net_foo"\n', "expected one of net_af_packet, net_af_xdp, net_tap"),
    ('[dpdk]\ndevice = "net_af_xdp"\nmtu = 9000\n',
     "dpdk.mtu = 9000 is too big for dpdk.device = 'net_af_xdp'"),
    ('[dpdk]\nfp_cores = [0]\n', "must not contain dpdk.main_core"),
    ('[buffers]\nrx_buf = "lots"\n', "buffers.rx_buf"),
    ('[scaling]\nadd_below_idle = 1.5\n', "scaling.add_below_idle must be below"),
    ('[scaling]\nmin_cores = 0\n', "scaling.min_cores"),
    ('[fastpath]\npoll_sleep_us = 200\npoll_sleep_max_us = 100\n',
     "fastpath.poll_sleep_max_us = 100 is below fastpath.poll_sleep_us = 200"),
    ('[fastpath]\npoll_sleep_max_us = 0\n', "fastpath.poll_sleep_max_us"),
    ('[dpdk]\nfp_cores = [%s]\n' % ",".join(map(str, range(1, 18))), "at most 16"),
    ('[tas\n', "not valid TOML"),
    # flow buffers have 32-bit offsets in their segment: more would wrap
    ('[buffers]\napp_segment = "8G"\n', "buffers.app_segment: '8G' (expected 'auto'"),
    ('[buffers]\napp_segment = "64K"\n', "buffers.app_segment: '64K'"),
])
def test_bad_config_names_the_key(tmp_path, text, needle):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert needle in str(e.value)


def test_app_segment_auto_follows_the_backing():
    assert config.load().buffers.app_segment == 4 << 30            # a sparse memfd
    nvm = config.load(overrides={"buffers.backing": "nvm"})
    assert nvm.buffers.app_segment == 1 << 30                     # a slice of the ref area
    assert config.load(overrides={"buffers.app_segment": "4G"}).buffers.app_segment == 4 << 30


def test_daemon_rejects_bad_config_before_touching_anything(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[dpdk]\nhugepagez = "yes"\n')
    r = subprocess.run([sys.executable, "-m", "tas.daemon", "-c", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "unknown key dpdk.hugepagez" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tas.daemon", "--set", "tas.prefix_len=40"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "tas.prefix_len: 40 (expected an integer 1..32)" in r.stderr


@pytest.mark.parametrize("dotted", [f"{sec}.{key}" for sec, fields in config.SCHEMA.items()
                                    for key in fields])
def test_every_key_accepts_its_default_and_names_itself_when_wrong(dotted):
    sec, key = dotted.split(".")
    default = config.SCHEMA[sec][key].default
    cfg = config.load(overrides={dotted: default})        # the default round-trips
    derived = {"tcp.mss": 1460,                          # 0: dpdk.mtu - 40
               "buffers.app_segment": 1 << 32}           # auto with shm
    assert cfg[sec][key] == derived.get(dotted, config.SCHEMA[sec][key].parse(default))
    with pytest.raises(config.ConfigError) as e:
        config.load(overrides={dotted: {"not": "a value"}})  # a TOML table fits no key
    assert f"bad value for {dotted}:" in str(e.value)
    assert f"(expected {config.SCHEMA[sec][key].expected})" in str(e.value)
