"""The cffi modules of the project: which headers and declarations each exposes."""

MODULES = {
    # Stats pages (contract 6): no DPDK, so every CLI can import it.
    "_stats": {
        "headers": ["kb/stats.h"],
        "cdef": """
            struct kb_stats_page *kb_stats_create(const char *component, const char *instance);
            uint64_t *kb_stats_counter(struct kb_stats_page *page, const char *name);
            void kb_stats_close(struct kb_stats_page *page, const char *component,
                                const char *instance, int unlink_file);
        """,
        "source": '#include "kb/stats.h"\n',
        "link": ["kbstats"],
    },
}
