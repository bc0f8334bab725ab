"""EAL arguments from the config, and hugepage detection."""
import os


def hugepages_free_mb():
    """Free 2 MiB/1 GiB hugepage memory usable through a mounted hugetlbfs."""
    try:
        with open("/proc/mounts") as f:
            if not any(line.split()[2] == "hugetlbfs" for line in f if line.strip()):
                return 0
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                k, v = line.split(":", 1)
                info[k] = v.split()
        return int(info["HugePages_Free"][0]) * int(info["Hugepagesize"][0]) // 1024
    except (OSError, KeyError, ValueError, IndexError):
        return 0


def use_hugepages(cfg):
    """(use hugepages?, reason) for the configured hugepages mode."""
    mode = cfg.dpdk.hugepages
    free = hugepages_free_mb()
    if mode == "no":
        return False, "hugepages disabled by config"
    if free >= cfg.dpdk.mem_mb:
        return True, f"{free} MiB of hugepages free"
    if mode == "yes":
        raise RuntimeError(f"dpdk.hugepages = 'yes' but only {free} MiB of hugepages are free "
                           f"(need {cfg.dpdk.mem_mb}); run deploy/setup or set hugepages = 'auto'")
    return False, f"only {free} MiB of hugepages free: running DPDK with --no-huge"


AF_XDP_BUSY_BUDGET = 0


def vdev_args(cfg, index=0):
    """--no-pci and the --vdev of dpdk.device; index numbers the vdev (a
    probe after a failed one needs another name, tas/fanout.py)."""
    d = cfg.dpdk
    ncores = len(d.fp_cores)
    if d.device == "net_tap":
        return ["--no-pci", f"--vdev=net_tap0,iface={d.iface}"]
    if d.device == "net_af_packet":
        # qdisc_bypass: frames go straight to the veth's xmit (the PMD's
        # default in 22.11, said here so that it stays so)
        base = f"--vdev=net_af_packet{index},iface={d.iface},qpairs={ncores},qdisc_bypass=1"
        if d.mtu <= 1500:
            return ["--no-pci", base]
        # A PACKET_MMAP slot holds the tpacket header and a whole Ethernet
        # frame; one slot per block (the PMD indexes slots as contiguous), and
        # no bigger than an mbuf (fp_port.c sizes both the same way).
        frame = (d.mtu + 128 + 4095) // 4096 * 4096
        return ["--no-pci", f"{base},framesz={frame},blocksz={frame},framecnt=512"]
    if d.device == "net_af_xdp":
        # A queue per core (one on the veth: config.py refuses more cores
        # there).  busy_budget=0: the PMD would otherwise call recvfrom() on
        # every empty poll to busy-poll the interface's NAPI, which pulls the
        # kernel's receive work (XDP and the copy into the UMEM) onto the
        # fast path's core.
        return ["--no-pci", f"--vdev=net_af_xdp0,iface={d.iface},start_queue=0,"
                f"queue_count={ncores},busy_budget={AF_XDP_BUSY_BUDGET}"]
    if d.device == "net_memif":
        os.makedirs(os.path.dirname(d.memif_socket), exist_ok=True)
        # memif's 2048-byte buffers would chain a jumbo frame over several
        # descriptors, which arrives as a chained mbuf the fast path drops:
        # give each buffer room for a whole frame (a power of two)
        bsize = "" if d.mtu <= 1500 else f",bsize={1 << (d.mtu + 18 - 1).bit_length()}"
        return ["--no-pci", f"--vdev=net_memif0,role={d.memif_role},socket={d.memif_socket},"
                f"mac={cfg.tas.mac}{bsize}"]
    return ["-a", d.pci_addr]


def lcore_map(lcores, cpus=None):
    """EAL --lcores value: each lcore on the CPU of the same number if this
    process may run there, else on an allowed CPU round-robin (so a 2-CPU test
    machine can run more fast-path cores than it has CPUs)."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus
    return ",".join(f"{lc}@{lc if lc in cpus else cpus[lc % len(cpus)]}" for lc in lcores)


def eal_args(cfg, huge):
    d = cfg.dpdk
    args = ["tas", "--lcores", lcore_map([d.main_core] + d.fp_cores),
            "--main-lcore", str(d.main_core), "--no-telemetry",
            f"--file-prefix={cfg.tas.instance}", "--log-level=*:warning"]
    # --in-memory leaves no hugepage files behind; --no-huge cannot be combined
    # with it, and --no-shconf keeps that mode from writing a runtime config.
    args += (["--in-memory", "-m", str(d.mem_mb)] if huge
             else ["--no-huge", "--no-shconf", "-m", str(d.mem_mb)])
    return args + vdev_args(cfg) + list(d.eal_extra)
