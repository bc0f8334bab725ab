/*
 * The TAS payload arena's ownership table (buffers.backing = "nvm").
 *
 * The arena is the reference area of a Strata pool (strata_super.off_ref,
 * ref_bytes): Strata log entries may reference bytes there (WRITE_REF), so an
 * app's segment -- header, queues and RX/TX rings -- lives in one slice of it
 * and Strata can log received bytes without copying them.  Page 0 of the
 * arena is this table (Strata never writes it); the daemon persists a row
 * before it tells the app about the slice, and clears it only after the
 * owner is gone and Strata recovery has digested every log that could
 * reference the slice.  The table outlives the daemon: at start it is
 * reconciled, never reformatted.
 *
 * Row write order (each step flushed before the next): fields, then state.
 */
#ifndef TAS_ARENA_H
#define TAS_ARENA_H

#include <stdint.h>

/* CDEF-BEGIN */
#define TAS_ARENA_MAGIC 0x31414e5241534154ULL /* "TASARNA1" */
#define TAS_ARENA_VERSION 1
#define TAS_ARENA_ROWS 84

#define TAS_ARENA_FREE 0
#define TAS_ARENA_LIVE 1         /* owner attached to the running daemon */
#define TAS_ARENA_QUARANTINED 2  /* owner gone (or daemon restarted): waits for recovery */

struct tas_arena_row {           /* 48 bytes */
    uint32_t state;
    int32_t pid;                 /* owner, from SO_PEERCRED */
    uint32_t uid;
    uint32_t app_id;             /* the daemon's app number (informational) */
    uint64_t start;              /* owner's start time, /proc/pid/stat field 22 */
    uint64_t off;                /* pool file offset of the slice (what apps mmap) */
    uint64_t len;
    uint64_t reserved;
};

struct tas_arena_table {         /* 4096 bytes: arena page 0 */
    uint64_t magic;
    uint32_t version;
    uint32_t nrows;
    uint64_t arena_off;          /* pool offset of the arena when formatted */
    uint64_t arena_bytes;
    uint64_t pad[4];
    struct tas_arena_row row[84];
};
/* CDEF-END */

_Static_assert(sizeof(struct tas_arena_row) == 48, "arena row is 48 bytes");
_Static_assert(sizeof(struct tas_arena_table) == 4096, "arena table is one page");

#endif
