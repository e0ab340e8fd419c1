/* SPDX-License-Identifier: MIT */
/*
 * shmfs on-media format.  This is the only place the layout of a region is
 * defined; mkfs, the daemon, fsck, dump and the unit tests all include it.
 *
 * A region is one byte range that every host maps MAP_SHARED (a devdax
 * device, an ivshmem BAR, a file on /dev/shm or hugetlbfs).  Offsets below
 * are relative to the start of the region (after any user-given offset).
 *
 *   0        +---------------------------+
 *            | superblock (primary)      |  4 KiB  struct shmfs_super
 *   4 KiB    +---------------------------+
 *            | control page              |  4 KiB  struct shmfs_ctl:
 *            |                           |         metadata lock word
 *   8 KiB    +---------------------------+
 *            | superblock (backup)       |  4 KiB  same bytes as primary
 *   12 KiB   +---------------------------+
 *            | host table                |  sb_max_hosts * 256 B, rounded
 *            |                           |  up to 4 KiB; struct shmfs_host
 *   log_off  +---------------------------+
 *            | metadata log              |  sb_log_size bytes of records
 *            |  rec rec rec ... 0 0 0 0  |  (struct shmfs_log_rec + payload)
 *            +---------------------------+
 *            | (pad to sb_alloc_unit)    |
 *   data_off +---------------------------+
 *            | data area                 |  sb_data_size bytes, in units of
 *            |                           |  sb_alloc_unit; file bytes only
 *   end      +---------------------------+
 *
 * The backup superblock sits at a fixed offset so that it can be found
 * when the primary is unreadable; it lives in its own page, away from the
 * lock word that every host hammers.
 *
 * Rules that hold for every structure here:
 *  - every integer wider than a byte is fixed width and little-endian (a
 *    shmfs_le* type), read and written as a plain host integer: the build
 *    refuses any host that is not little-endian (#error below), so host
 *    order is media order;
 *  - every struct has explicit padding and a static_assert on its size and
 *    on the offsets readers depend on;
 *  - a checksum field is the last field of what it covers;
 *  - checksums are XXH3-64 (xxhash 0.8); record checksums are seeded with
 *    sb_log_seed, a random value chosen by each mkfs, so a record left over
 *    from an earlier format never validates;
 *  - nothing read from the region is trusted: every offset, length, count
 *    and index is bounds-checked by its reader.
 *
 * The metadata log (see fs/log.c for the protocol) is an append-only array
 * of 8-byte aligned records.  A record is published by one atomic
 * compare-and-exchange (release) of its lr_seq word from 0 to its sequence
 * number, after its header and payload are written.  Readers acquire-load
 * lr_seq and verify the checksum before using anything else.
 */
#ifndef SHMFS_FORMAT_H
#define SHMFS_FORMAT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Fields are little-endian.  Several of them are also atomic words shared
 * between hosts (lr_seq, ctl_lock, hs_token, hs_heartbeat), which a
 * big-endian host could not update in place, so shmfs builds only for
 * little-endian machines (x86-64, arm64, riscv64: every CXL host).
 */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shmfs supports little-endian hosts only"
#endif

/*
 * Little-endian on-media integer types.  They are plain host integers, which
 * is right only because of the #error above; they mark every field that a
 * big-endian port would have to read through le*toh() and write through
 * htole*() (and whose shared atomic words it could not use at all).
 */
typedef uint16_t shmfs_le16;
typedef uint32_t shmfs_le32;
typedef uint64_t shmfs_le64;

#define SHMFS_KIB 1024ull
#define SHMFS_MIB (1024ull * 1024)
#define SHMFS_GIB (1024ull * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* Geometry constants                                                  */
/* ------------------------------------------------------------------ */

#define SHMFS_PAGE           4096u  /* metadata page; smallest alloc unit */
#define SHMFS_SB_OFF         0u     /* primary superblock */
#define SHMFS_CTL_OFF        4096u  /* control page */
#define SHMFS_BACKUP_OFF     8192u  /* backup superblock */
#define SHMFS_HOSTS_OFF      12288u /* host table */
#define SHMFS_HOST_SLOT_SIZE 256u
#define SHMFS_MAX_HOSTS      4096u  /* upper bound for --max-hosts */
#define SHMFS_DEFAULT_HOSTS  64u
#define SHMFS_MIN_LOG        (256u * 1024)      /* smallest metadata log */
#define SHMFS_MAX_LOG        (64ull * SHMFS_GIB)
#define SHMFS_MAX_ALLOC_UNIT (1ull * SHMFS_GIB)
#define SHMFS_NAME_MAX       255u   /* bytes per path component */
#define SHMFS_SYMLINK_MAX    4096u  /* bytes in a symlink target */
#define SHMFS_XATTR_NAME_MAX 255u
#define SHMFS_XATTR_SIZE_MAX 65536u
#define SHMFS_ROOT_INO       1u
#define SHMFS_DEFAULT_LEASE_MS     2000u
#define SHMFS_DEFAULT_HEARTBEAT_MS 200u

/* ------------------------------------------------------------------ */
/* Superblock                                                          */
/* ------------------------------------------------------------------ */

#define SHMFS_SB_MAGIC   0x31425353464d4853ull /* "SHMFSSB1" as bytes */
#define SHMFS_VERSION    1u                    /* this format */
#define SHMFS_LABEL_MAX  64u                   /* incl. terminating NUL */

/*
 * Feature masks.  A reader that finds an unknown bit in sb_feature_incompat
 * must refuse the region; an unknown bit in sb_feature_ro_compat allows a
 * read-only mount; unknown compat bits are ignored.  None are defined yet.
 */
#define SHMFS_FEATURE_COMPAT_SUPP    UINT64_C(0)
#define SHMFS_FEATURE_RO_COMPAT_SUPP UINT64_C(0)
#define SHMFS_FEATURE_INCOMPAT_SUPP  UINT64_C(0)

struct shmfs_super {
	shmfs_le64 sb_magic;            /*   0: SHMFS_SB_MAGIC */
	shmfs_le32 sb_version;          /*   8: SHMFS_VERSION at mkfs */
	shmfs_le32 sb_flags;            /*  12: SHMFS_SB_* (none yet, 0) */
	shmfs_le64 sb_feature_compat;   /*  16 */
	shmfs_le64 sb_feature_ro_compat;/*  24 */
	shmfs_le64 sb_feature_incompat; /*  32 */
	uint8_t    sb_uuid[16];         /*  40: filesystem identity */
	char       sb_label[SHMFS_LABEL_MAX]; /* 56: NUL-terminated, NUL-padded */
	shmfs_le64 sb_region_size;      /* 120: bytes covered by this fs */
	shmfs_le64 sb_map_align;        /* 128: mapping alignment of the region
	                                 *      at mkfs (power of two >= 4096) */
	shmfs_le64 sb_alloc_unit;       /* 136: data allocation unit (power of
	                                 *      two, >= 4096, multiple of
	                                 *      sb_map_align) */
	shmfs_le64 sb_ctl_off;          /* 144: SHMFS_CTL_OFF */
	shmfs_le64 sb_hosts_off;        /* 152: SHMFS_HOSTS_OFF */
	shmfs_le32 sb_max_hosts;        /* 160: slots in the host table */
	shmfs_le32 sb_host_slot_size;   /* 164: SHMFS_HOST_SLOT_SIZE */
	shmfs_le64 sb_log_off;          /* 168: 4 KiB aligned */
	shmfs_le64 sb_log_size;         /* 176: multiple of 4 KiB */
	shmfs_le64 sb_backup_off;       /* 184: SHMFS_BACKUP_OFF */
	shmfs_le64 sb_data_off;         /* 192: multiple of sb_alloc_unit */
	shmfs_le64 sb_data_size;        /* 200: multiple of sb_alloc_unit */
	shmfs_le64 sb_log_seed;         /* 208: record checksum seed, random */
	shmfs_le64 sb_mkfs_time;        /* 216: CLOCK_REALTIME ns */
	shmfs_le32 sb_lease_ms;         /* 224: a host silent this long is dead */
	shmfs_le32 sb_heartbeat_ms;     /* 228: how often live hosts beat */
	shmfs_le64 sb_root_ino;         /* 232: SHMFS_ROOT_INO */
	shmfs_le64 sb_reserved[33];     /* 240: zero */
	shmfs_le64 sb_checksum;         /* 512-8: XXH3-64 of bytes [0, 504) */
};
#define SHMFS_SB_SIZE 512u
static_assert(sizeof(struct shmfs_super) == SHMFS_SB_SIZE, "superblock size");
static_assert(offsetof(struct shmfs_super, sb_label) == 56, "sb_label");
static_assert(offsetof(struct shmfs_super, sb_region_size) == 120, "sb_region_size");
static_assert(offsetof(struct shmfs_super, sb_root_ino) == 232, "sb_root_ino");
static_assert(offsetof(struct shmfs_super, sb_checksum) == SHMFS_SB_SIZE - 8, "sb_checksum last");

/* ------------------------------------------------------------------ */
/* Control page: the cross-host metadata lock                          */
/* ------------------------------------------------------------------ */

#define SHMFS_CTL_MAGIC 0x314c5443534d4853ull /* "SHMSCTL1" */

/*
 * ctl_lock: 0 in the owner field means free.
 *   bits 63..48  owner: host slot + 1 (0 = unlocked)
 *   bits 47..0   generation: incremented by every acquisition, so a waiter
 *                can tell a lock that is changing hands from a stuck one.
 * The owner proves it is alive through its host slot's hs_heartbeat.
 */
#define SHMFS_LOCK_OWNER_SHIFT 48
#define SHMFS_LOCK_GEN_MASK    ((1ull << SHMFS_LOCK_OWNER_SHIFT) - 1)

struct shmfs_ctl {
	shmfs_le64 ctl_magic;           /*   0: SHMFS_CTL_MAGIC */
	shmfs_le64 ctl_pad0[7];         /*   8: rest of cache line 0 */
	shmfs_le64 ctl_lock;            /*  64: metadata lock word (atomic) */
	shmfs_le64 ctl_pad1[7];         /*  72: rest of cache line 1 */
	shmfs_le64 ctl_reserved[496];   /* 128: zero */
};
static_assert(sizeof(struct shmfs_ctl) == SHMFS_PAGE, "ctl size");
static_assert(offsetof(struct shmfs_ctl, ctl_lock) == 64, "ctl_lock on its own line");

/* ------------------------------------------------------------------ */
/* Host table                                                          */
/* ------------------------------------------------------------------ */

enum shmfs_host_state {
	SHMFS_HOST_FREE    = 0, /* slot unused */
	SHMFS_HOST_JOINING = 1, /* claimed, identity being written */
	SHMFS_HOST_ACTIVE  = 2, /* mounted and beating */
	SHMFS_HOST_TOOL    = 3, /* a tool (mkfs, fsck) holding the slot briefly */
};

#define SHMFS_HOST_NAME_MAX 64u

/*
 * One slot per mounted host, one cache-line multiple each so heartbeats of
 * different hosts never share a line.  A host claims a free (or expired)
 * slot by compare-and-exchange of hs_token from the value it observed to a
 * fresh random nonzero token; everything else in the slot is written only
 * by its claimant.  hs_ident_csum covers the identity fields (those that
 * do not change while the slot is held).
 */
#define SHMFS_HOST_PINS 4u
struct shmfs_host {
	shmfs_le64 hs_token;            /*   0: claim token; 0 = never claimed */
	shmfs_le64 hs_heartbeat;        /*   8: counter, bumped while alive */
	shmfs_le64 hs_heartbeat_ns;     /*  16: CLOCK_REALTIME of last beat (info) */
	shmfs_le64 hs_applied_seq;      /*  24: last log record it has applied */
	shmfs_le64 hs_pin_seq;          /*  32: every log seq from this one on
	                                 *      counts as pinned (0 = none) */
	shmfs_le32 hs_state;            /*  40: enum shmfs_host_state */
	shmfs_le32 hs_flags;            /*  44: SHMFS_HOST_F_* */
	shmfs_le64 hs_mount_ns;         /*  48: CLOCK_REALTIME of the claim */
	shmfs_le32 hs_pid;              /*  56: daemon pid on its own host */
	shmfs_le32 hs_pad0;             /*  60 */
	char       hs_name[SHMFS_HOST_NAME_MAX];     /*  64: host=NAME, NUL-padded */
	char       hs_hostname[SHMFS_HOST_NAME_MAX]; /* 128: uname nodename */
	uint8_t    hs_boot_id[16];      /* 192: /proc/sys/kernel/random/boot_id */
	shmfs_le64 hs_pins[SHMFS_HOST_PINS]; /* 208: log seqs of records that
	                                 *      freed space the host may still reach
	                                 *      (an open file's old data); 0 = unused.
	                                 *      Those beyond these four: hs_pin_seq */
	shmfs_le64 hs_ident_csum;       /* 240: XXH3-64 of token, state-free
	                                 *      identity: see shmfs_host_ident_csum */
	shmfs_le64 hs_pad1;             /* 248 */
};
#define SHMFS_HOST_F_READONLY 0x1u
static_assert(sizeof(struct shmfs_host) == SHMFS_HOST_SLOT_SIZE, "host slot size");
static_assert(offsetof(struct shmfs_host, hs_heartbeat) == 8, "hs_heartbeat");
static_assert(offsetof(struct shmfs_host, hs_name) == 64, "hs_name");
static_assert(offsetof(struct shmfs_host, hs_ident_csum) == 240, "hs_ident_csum");

/* ------------------------------------------------------------------ */
/* Metadata log records                                                */
/* ------------------------------------------------------------------ */

/*
 * lr_seq is the publication word.  Values:
 *   0                         unpublished: the log ends here
 *   n (1 <= n < 2^62)         record number n, published
 *   SHMFS_LR_SEAL | n         the slot where record n would have started was
 *                             abandoned by a holder whose lease was broken;
 *                             record n starts SHMFS_LOG_SEAL_SKIP bytes on.
 * Records are numbered from 1 without gaps; a record's seq must be exactly
 * one more than the previous record's.
 */
#define SHMFS_LR_SEAL     (1ull << 63)
#define SHMFS_LR_SEQ_MAX  ((1ull << 62) - 1)
#define SHMFS_LOG_ALIGN   8u
#define SHMFS_LR_PAYLOAD_MAX (SHMFS_XATTR_SIZE_MAX + 4096u)
#define SHMFS_LOG_SEAL_SKIP  (128u * 1024) /* > header + SHMFS_LR_PAYLOAD_MAX */

enum shmfs_lr_type {
	SHMFS_LR_NOOP         = 0,  /* padding / test record; no effect */
	SHMFS_LR_CREATE       = 1,  /* new inode + its first name (any type) */
	SHMFS_LR_LINK         = 2,  /* another name for an existing non-dir */
	SHMFS_LR_UNLINK       = 3,  /* remove a non-directory name */
	SHMFS_LR_RMDIR        = 4,  /* remove an empty directory */
	SHMFS_LR_RENAME       = 5,  /* move/replace/exchange names */
	SHMFS_LR_SETATTR      = 6,  /* mode, uid, gid, size, times */
	SHMFS_LR_EXTENT_MAP   = 7,  /* give a file a data extent */
	SHMFS_LR_EXTENT_UNMAP = 8,  /* release a file range's data */
	SHMFS_LR_XATTR_SET    = 9,
	SHMFS_LR_XATTR_REMOVE = 10,
	SHMFS_LR_RELEASE      = 11, /* free an orphan kept by SHMFS_LR_F_KEEP */
	SHMFS_LR_TYPE_COUNT
};

struct shmfs_log_rec {
	shmfs_le64 lr_seq;              /*  0: publication word, see above */
	shmfs_le16 lr_type;             /*  8: enum shmfs_lr_type */
	shmfs_le16 lr_flags;            /* 10: per-type SHMFS_*_F flags */
	shmfs_le32 lr_len;              /* 12: payload bytes after the header */
	shmfs_le16 lr_host;             /* 16: writer's host slot */
	shmfs_le16 lr_pad0;             /* 18: zero */
	shmfs_le32 lr_lock_gen;         /* 20: low 32 bits of the lock generation */
	shmfs_le64 lr_time;             /* 24: CLOCK_REALTIME ns of the operation */
	shmfs_le64 lr_csum;             /* 32: XXH3-64(header[0,32),
	                                 *       seed = XXH3-64(payload, sb_log_seed)) */
};
#define SHMFS_LR_HDR_SIZE 40u
static_assert(sizeof(struct shmfs_log_rec) == SHMFS_LR_HDR_SIZE, "record header");
static_assert(offsetof(struct shmfs_log_rec, lr_csum) == SHMFS_LR_HDR_SIZE - 8, "lr_csum last");
static_assert(SHMFS_LOG_SEAL_SKIP >= SHMFS_LR_HDR_SIZE + SHMFS_LR_PAYLOAD_MAX, "seal skip");

/* A record occupies its header and payload rounded up to SHMFS_LOG_ALIGN. */
static inline uint64_t shmfs_lr_stride(uint32_t payload_len)
{
	return ((uint64_t)SHMFS_LR_HDR_SIZE + payload_len + SHMFS_LOG_ALIGN - 1) &
	       ~(uint64_t)(SHMFS_LOG_ALIGN - 1);
}

/* Time as seconds (signed) and nanoseconds, like struct timespec. */
struct shmfs_time {
	shmfs_le64 t_sec;               /* 0: two's complement seconds */
	shmfs_le32 t_nsec;              /* 8: < 1e9 */
	shmfs_le32 t_pad;               /* 12: zero */
};
static_assert(sizeof(struct shmfs_time) == 16, "shmfs_time");

/*
 * File types in cr_mode follow POSIX S_IF* values (S_IFREG 0100000 and so
 * on); the permission bits are the low 12.  Payloads are followed by their
 * variable-length names, unterminated; the record length must equal the
 * fixed part plus those lengths exactly.
 */

/* SHMFS_LR_CREATE: ino is new; parent is a directory; name is free in it.
 * For the root (the first record mkfs writes) parent is 0 and name empty.
 * Times (atime, mtime, ctime, birth) are lr_time; the parent's mtime and
 * ctime become lr_time. */
struct shmfs_lr_create {
	shmfs_le64 cr_ino;              /*  0 */
	shmfs_le64 cr_parent;           /*  8 */
	shmfs_le32 cr_mode;             /* 16: type and permission bits */
	shmfs_le32 cr_uid;              /* 20 */
	shmfs_le32 cr_gid;              /* 24 */
	shmfs_le32 cr_pad;              /* 28: zero */
	shmfs_le64 cr_rdev;             /* 32: device number for S_IFCHR/S_IFBLK */
	shmfs_le16 cr_name_len;         /* 40: 1..SHMFS_NAME_MAX (0 for root) */
	shmfs_le16 cr_target_len;       /* 42: symlink target bytes, else 0 */
	shmfs_le32 cr_pad2;             /* 44: zero */
	/* 48: name[cr_name_len], then target[cr_target_len] */
};
static_assert(sizeof(struct shmfs_lr_create) == 48, "lr_create");

/* SHMFS_LR_LINK: name a non-directory inode again in dir. */
struct shmfs_lr_link {
	shmfs_le64 ln_dir;              /*  0 */
	shmfs_le64 ln_ino;              /*  8 */
	shmfs_le16 ln_name_len;         /* 16 */
	uint8_t    ln_pad[6];           /* 18: zero */
	/* 24: name */
};
static_assert(sizeof(struct shmfs_lr_link) == 24, "lr_link");
static_assert(offsetof(struct shmfs_lr_link, ln_ino) == 8, "link and unlink share a layout");

/*
 * lr_flags of SHMFS_LR_UNLINK and SHMFS_LR_RENAME: if this removes the last
 * name of a non-directory, keep the inode and its data as an orphan owned
 * by the writing host (lr_host), because that host still has it open.  The
 * owner frees it with SHMFS_LR_RELEASE at last close; any host may release
 * the orphans of a host whose lease has expired.
 */
#define SHMFS_LR_F_KEEP 0x1u

/* SHMFS_LR_UNLINK / SHMFS_LR_RMDIR: remove name from dir; it must refer to
 * ul_ino (a check that the writer saw the same namespace). */
struct shmfs_lr_unlink {
	shmfs_le64 ul_dir;              /*  0 */
	shmfs_le64 ul_ino;              /*  8 */
	shmfs_le16 ul_name_len;         /* 16 */
	uint8_t    ul_pad[6];           /* 18: zero */
	/* 24: name */
};
static_assert(sizeof(struct shmfs_lr_unlink) == 24, "lr_unlink");

#define SHMFS_RENAME_NOREPLACE 0x1u  /* as RENAME_NOREPLACE */
#define SHMFS_RENAME_EXCHANGE  0x2u  /* as RENAME_EXCHANGE */

/* SHMFS_LR_RENAME: move (olddir, oldname) -> (newdir, newname).  rn_ino is
 * what oldname names; rn_target is what newname names beforehand (0 = none),
 * which is replaced, or with EXCHANGE swapped. */
struct shmfs_lr_rename {
	shmfs_le64 rn_olddir;           /*  0 */
	shmfs_le64 rn_newdir;           /*  8 */
	shmfs_le64 rn_ino;              /* 16 */
	shmfs_le64 rn_target;           /* 24 */
	shmfs_le32 rn_flags;            /* 32: SHMFS_RENAME_* */
	shmfs_le16 rn_oldname_len;      /* 36 */
	shmfs_le16 rn_newname_len;      /* 38 */
	/* 40: oldname, then newname */
};
static_assert(sizeof(struct shmfs_lr_rename) == 40, "lr_rename");

#define SHMFS_SA_MODE  0x01u
#define SHMFS_SA_UID   0x02u
#define SHMFS_SA_GID   0x04u
#define SHMFS_SA_SIZE  0x08u
#define SHMFS_SA_ATIME 0x10u
#define SHMFS_SA_MTIME 0x20u
#define SHMFS_SA_CTIME 0x40u
#define SHMFS_SA_ALL   0x7fu

/* SHMFS_LR_SETATTR: apply the fields named in sa_valid.  A smaller size
 * releases every extent unit wholly beyond the new size. */
struct shmfs_lr_setattr {
	shmfs_le64 sa_ino;              /*  0 */
	shmfs_le32 sa_valid;            /*  8: SHMFS_SA_* */
	shmfs_le32 sa_mode;             /* 12: permission bits only (07777) */
	shmfs_le32 sa_uid;              /* 16 */
	shmfs_le32 sa_gid;              /* 20 */
	shmfs_le64 sa_size;             /* 24 */
	struct shmfs_time sa_atime;     /* 32 */
	struct shmfs_time sa_mtime;     /* 48 */
	struct shmfs_time sa_ctime;     /* 64 */
};
static_assert(sizeof(struct shmfs_lr_setattr) == 80, "lr_setattr");

#define SHMFS_EXT_F_SIZE  0x1u /* lr_flags: also set the file size */
#define SHMFS_EXT_F_AHEAD 0x2u /* lr_flags: room a writer reserved ahead of a
                                * stream beyond EOF; it unmaps what it did not
                                * use at its last close (else fsck may).  On
                                * an unmap: the file's room reserved ahead
                                * ends (what of it is mapped stays, as if
                                * fallocated; the range may be unmapped) */

/* SHMFS_LR_EXTENT_MAP: file bytes [ex_foff, ex_foff+ex_len) now live at data
 * area bytes [ex_doff, ex_doff+ex_len).  All three are multiples of
 * sb_alloc_unit; the data range must be free and the file range unmapped.
 * With SHMFS_EXT_F_SIZE, the file's size becomes ex_size. */
struct shmfs_lr_extent {
	shmfs_le64 ex_ino;              /*  0 */
	shmfs_le64 ex_foff;             /*  8 */
	shmfs_le64 ex_doff;             /* 16: relative to sb_data_off */
	shmfs_le64 ex_len;              /* 24 */
	shmfs_le64 ex_size;             /* 32 */
};
static_assert(sizeof(struct shmfs_lr_extent) == 40, "lr_extent");

/* SHMFS_LR_EXTENT_UNMAP: release the data of file bytes [ex_foff,
 * ex_foff+ex_len) (unit multiples); ex_doff must be 0.  Holes read as zero.
 * lr_flags: 0 or SHMFS_EXT_F_AHEAD. */

#define SHMFS_XATTR_CREATE  0x1u  /* as XATTR_CREATE */
#define SHMFS_XATTR_REPLACE 0x2u  /* as XATTR_REPLACE */

/* SHMFS_LR_XATTR_SET / SHMFS_LR_XATTR_REMOVE (value_len 0, no value). */
struct shmfs_lr_xattr {
	shmfs_le64 xa_ino;              /*  0 */
	shmfs_le32 xa_flags;            /*  8: SHMFS_XATTR_* */
	shmfs_le32 xa_value_len;        /* 12: <= SHMFS_XATTR_SIZE_MAX */
	shmfs_le16 xa_name_len;         /* 16: 1..SHMFS_XATTR_NAME_MAX */
	uint8_t    xa_pad[6];           /* 18: zero */
	/* 24: name, then value */
};
static_assert(sizeof(struct shmfs_lr_xattr) == 24, "lr_xattr");

/* SHMFS_LR_RELEASE: free orphan rl_ino (it has no names left). */
struct shmfs_lr_release {
	shmfs_le64 rl_ino;              /*  0 */
};
static_assert(sizeof(struct shmfs_lr_release) == 8, "lr_release");

static_assert(SHMFS_LR_PAYLOAD_MAX >= sizeof(struct shmfs_lr_create) + SHMFS_NAME_MAX +
	      SHMFS_SYMLINK_MAX, "payload max fits symlink");
static_assert(SHMFS_LR_PAYLOAD_MAX >= sizeof(struct shmfs_lr_xattr) + SHMFS_XATTR_NAME_MAX +
	      SHMFS_XATTR_SIZE_MAX, "payload max fits xattr");

#endif /* SHMFS_FORMAT_H */
