"""The cffi modules of the project: which headers and declarations each exposes."""

# The stats writer API, exposed by every module that publishes counters.
STATS_API = """
    struct kb_stats_page *kb_stats_create(const char *component, const char *instance);
    struct kb_stats_page *kb_stats_create_mode(const char *component, const char *instance,
                                               unsigned mode, int gid);
    uint64_t *kb_stats_counter(struct kb_stats_page *page, const char *name);
    void kb_stats_close(struct kb_stats_page *page, const char *component,
                        const char *instance, int unlink_file);
"""

MODULES = {
    # Stats pages (contract 6): no DPDK, so every CLI can import it.
    "_stats": {
        "headers": ["kb/stats.h"],
        "cdef": STATS_API,
        "source": '#include "kb/stats.h"\n',
    },
    # The daemon's DPDK side: EAL, port, fast path control, exception path.
    "_tasfp": {
        "headers": ["kb/stats.h", "tas/fastpath.h", "tas/shm.h", "tas/flow.h", "tas/synfast.h",
                    "tas/syn_sweep.h", "tas/arena.h",
                    "strata/strata_layout.h"],
        "cdef": """
            int rte_eal_init(int argc, char **argv);
            int rte_eal_cleanup(void);
            const char *rte_strerror(int errnum);
            int rte_dev_probe(const char *devargs);
            uint16_t rte_eth_dev_count_avail(void);
        """ + STATS_API,
        "source": '#include <rte_eal.h>\n#include <rte_errno.h>\n#include <rte_dev.h>\n'
                  '#include <rte_ethdev.h>\n'
                  '#include "kb/stats.h"\n#include "tas/fastpath.h"\n'
                  '#include "tas/shm.h"\n#include "tas/flow.h"\n'
                  '#include "tas/synfast.h"\n#include "tas/syn_sweep.h"\n'
                  '#include "tas/arena.h"\n#include "strata/strata_layout.h"\n',
    },
    # The application side (libtas core) for the Python low-level API.
    "_tasapp": {
        # struct iovec (rx_peek) is libc's: declared before the headers
        "pre_cdef": "struct iovec { void *iov_base; size_t iov_len; };",
        "headers": ["tas/shm.h", "tas/app.h"],
        "source": '#include "tas/shm.h"\n#include "tas/app.h"\n',
    },
    # libstrata's public C API (strata_api.h's CDEF block) for strata/api.py.
    # The module links libstrata.so, so loading it loads the library once.
    "_strata": {
        "headers": ["strata/strata_api.h"],
        "source": '#include "strata/strata_api.h"\n',
    },
}
