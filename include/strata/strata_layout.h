/*
 * On-pool layout of the Strata NVM pool (architecture contract 7: defined once,
 * here; the version is checked on attach).
 *
 *   block 0            superblock (static part checksummed; mutable tail not)
 *   slot headers       one 256-byte header per per-process operation log
 *   logs               nslots x log_bytes, append-only, reset by digest
 *   inode table        ninodes x 128 bytes (inode 1 is the root directory)
 *   dirent table       ndirents x 256 bytes, open-addressing hash on (parent, name)
 *   block bitmap       one bit per pool block
 *   ref area           extents that log entries may reference (contract 3); its
 *                      first STRATA_REF_TABLE bytes are the TAS daemon's ownership
 *                      table (Strata never writes them, no reference points there)
 *   data blocks        file blocks, allocated by digest
 *
 * Block numbers are pool-relative 4 KiB block indices; 0 means "none".
 */
#ifndef STRATA_LAYOUT_H
#define STRATA_LAYOUT_H

#include <stdint.h>

/* CDEF-BEGIN */
#define STRATA_MAGIC 0x31305441525453ULL /* "STRAT01" */
/* 2: ref area size chosen at mkfs with its table page; inode uid, gid and
 * nlink; SETATTR field masks; LINK entries.  3: a triple-indirect block in
 * the inode, in the place of its 16th direct block (files up to about
 * 4 TiB, 4 GiB before).  Attach refuses any other. */
#define STRATA_VERSION 3
#define STRATA_BLOCK 4096
#define STRATA_COMMIT 0x1FB9              /* log entry commit marker, written last */
#define STRATA_NAME_MAX 239
#define STRATA_NDIRECT 15
#define STRATA_PTRS_PER_BLOCK 1024
#define STRATA_ROOT_INO 1
#define STRATA_ORPHAN 0xFFFFFFFFu     /* inode.parent of an unlinked file still open */
#define STRATA_REF_TABLE 4096         /* ref area page 0: TAS ownership table */
#define STRATA_E_MORE 1               /* entry.flags: the transaction continues */

struct strata_super {
    uint64_t magic;
    uint32_t version;
    uint32_t block_size;
    uint64_t pool_size;
    uint64_t fs_id;          /* random per mkfs; seeds every checksum */
    uint32_t nslots;
    uint32_t ninodes;
    uint32_t ndirents;
    uint32_t pad0;
    uint64_t log_bytes;      /* per slot */
    uint64_t off_slots, off_logs, off_inodes, off_dirents, off_bitmap;
    uint64_t off_ref, ref_bytes; /* ref area, incl. its table page; size set at mkfs */
    uint64_t off_data;       /* first data block byte offset */
    uint64_t nblocks;        /* blocks in the whole pool */
    uint32_t digest_pct;     /* log fill that triggers a digest */
    uint32_t crc;            /* over everything above this field */
    /* mutable part, not checksummed */
    uint64_t free_blocks;
    int32_t dirty_pid;       /* set while a process mutates the shared area */
    uint32_t pad1;
    uint64_t dirty_start;    /* its start time (pids are reused) */
    uint64_t mounts;
    uint64_t punch_gen;      /* bumped by every hole punch in the data area */
};

struct strata_slot {
    int32_t owner_pid;       /* 0 = free */
    uint32_t epoch;          /* entries of an older epoch are dead */
    uint64_t ns_applied;     /* log offset up to which namespace entries are applied */
    uint64_t credits;        /* data blocks reserved for undigested writes */
    uint32_t digest_request; /* set by `strata digest` for a live owner */
    uint32_t pad;
    uint64_t owner_start;    /* owner's start time (/proc/pid/stat), pids are reused */
    uint8_t reserved[216];
};

enum strata_kind {
    STRATA_E_CREATE = 1,
    STRATA_E_MKDIR = 2,
    STRATA_E_UNLINK = 3,
    STRATA_E_RMDIR = 4,
    STRATA_E_RENAME = 5,
    STRATA_E_WRITE = 6,      /* payload: inline data */
    STRATA_E_WRITE_REF = 7,  /* payload: struct strata_ref (contract 3) */
    STRATA_E_TRUNCATE = 8,
    STRATA_E_SETATTR = 9,    /* metadata, applied eagerly like namespace ops: ino2 says
                              * which (STRATA_ATTR_*; 0 = mode only); mode in len,
                              * uid << 32 | gid in off, mtime seconds in gen2 */
    STRATA_E_LINK = 10,      /* another name (parent, name) for inode ino/gen */
};

#define STRATA_ATTR_MODE 1
#define STRATA_ATTR_OWNER 2
#define STRATA_ATTR_MTIME 4

/* 64-byte header; payload follows; entries are 64-byte aligned. */
struct strata_entry {
    uint16_t commit;         /* STRATA_COMMIT, persisted after everything else */
    uint8_t kind;
    uint8_t flags;           /* STRATA_E_MORE: a later entry closes this transaction */
    uint32_t epoch;
    uint32_t entry_len;      /* header + payload, rounded up to 64 */
    uint32_t crc;            /* header (commit=crc=0) + payload, seeded by fs_id */
    uint32_t ino, gen;
    uint64_t off;            /* write offset; create/mkdir: uid << 32 | gid */
    uint64_t len;            /* data length, new size, or mode */
    uint32_t parent, parent2;
    uint32_t ino2, gen2;     /* rename victim */
    uint16_t name_len, name2_len;
    uint32_t mtime_s;
};

/* WRITE_REF payload: an extent already in the pool (inside the ref area). */
struct strata_ref {
    uint64_t pool_off;
    uint64_t len;
    uint32_t crc;            /* of the referenced bytes */
    uint32_t pad;
};

struct strata_inode {
    uint32_t mode;           /* 0 = free */
    uint32_t gen;            /* bumped on every allocation */
    uint32_t parent;         /* directories: parent inode; STRATA_ORPHAN: see above */
    int32_t lease_pid;       /* write lease holder (0 = none); orphans: the opener */
    uint64_t size;
    int64_t mtime_s;
    int64_t ctime_s;
    uint32_t direct[15];     /* STRATA_NDIRECT (16 before version 3) */
    uint32_t ind;            /* a block of STRATA_PTRS_PER_BLOCK data block numbers */
    uint32_t dind;           /* ... of indirect blocks */
    uint32_t tind;           /* ... of double-indirect blocks */
    uint32_t uid, gid;       /* owner: the creator's effective ids */
    uint32_t nlink;          /* names of a file (hard links); 0 (as created) means 1 */
    uint8_t mapped;          /* hint: an mmap shadow of it may exist (strata/mmap_shadow.c) */
    uint8_t pad[3];
};

struct strata_dirent {
    uint32_t state;          /* 0 empty, 1 used, 2 deleted (tombstone) */
    uint32_t parent;
    uint32_t ino;
    uint16_t name_len;
    uint16_t pad;
    char name[240];
};
/* CDEF-END */

_Static_assert(sizeof(struct strata_entry) == 64, "entry header is one cache line");
_Static_assert(sizeof(struct strata_inode) == 128, "inode size");
_Static_assert(sizeof(((struct strata_inode *)0)->direct) == STRATA_NDIRECT * sizeof(uint32_t),
               "STRATA_NDIRECT direct blocks");
_Static_assert(sizeof(struct strata_dirent) == 256, "dirent size");
_Static_assert(sizeof(struct strata_slot) == 256, "slot header size");
_Static_assert(sizeof(struct strata_super) <= STRATA_BLOCK, "superblock fits a block");

#endif
