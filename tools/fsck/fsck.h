/* SPDX-License-Identifier: MIT */
/*
 * fsck.shmfs's private header: the state of one run and what its files
 * share.
 *
 * One run is a struct fsck.  It holds the region, the log and its scanner,
 * the liveness of each host slot as watched, and two struct checks: what
 * the first check found (c1) and what the re-check after a repair found
 * (c2).  ck->c points at the one being filled; the passes add problems to
 * it with fsck_problem().  Every pass takes the run as its first argument:
 * main.c owns the one fsck.shmfs uses, the fuzz target its own.
 *
 * The files, one pass or role each:
 *
 *   check.c     problems, messages and progress; one whole check (the
 *               passes in order)
 *   super.c     pass 1, the superblocks
 *   hosts.c     watching the host table; pass 2, control page and hosts
 *   log.c       pass 3, the log walk and what it does at damage
 *   describe.c  what a record does, in words
 *   ns.c        pass 4, the namespace: names, links, cycles
 *   alloc.c     pass 4, data space: extents and the allocator
 *   repair.c    the repairs, in order, and the replay that verifies them
 *   main.c      arguments, the report, main()
 */
#ifndef SHMFS_TOOLS_FSCK_H
#define SHMFS_TOOLS_FSCK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"
#include "shmfs/log.h"
#include "shmfs/ns.h"
#include "shmfs/region.h"

#define PROG "fsck.shmfs"

#define FSCK_OK          0
#define FSCK_CORRECTED   1
#define FSCK_UNCORRECTED 4
#define FSCK_ERROR       8
#define FSCK_USAGE       16

/* No position (nothing found); the stride of the largest record. */
#define NONE          UINT64_MAX
#define STRIDE_MAX    shmfs_lr_stride(SHMFS_LR_PAYLOAD_MAX)

enum mode { M_ASK, M_CHECK, M_PREEN, M_YES };

enum fix {
	FIX_NONE = 0,
	FIX_SUPER,       /* a = copy to overwrite (0, 1) */
	FIX_CTL,         /* control page magic and padding */
	FIX_LOCK,        /* a = lock word seen: release, seal the tail */
	FIX_HOST,        /* a = slot, b = token seen, c = heartbeat seen */
	FIX_SEQ,         /* a = pos, c = seq: restore the lr_seq word */
	FIX_SEAL,        /* a = pos, c = seq: restore a seal word */
	FIX_FILL,        /* a = pos, b = end, c = first seq, d = count: NOOPs */
	FIX_NOOP,        /* a = pos, b = stride, c = seq: rejected record */
	FIX_CUT,         /* a = pos, b = end: the log ends at a */
	FIX_RELEASE,     /* a = ino: release record for an orphan */
	FIX_UNMAP,       /* a = ino, b = from, c = to: extent-unmap */
};

struct problem {
	const char *code;               /* format.h word */
	char *loc;
	char *msg;
	enum fix fix;
	bool safe;                      /* -p may do it */
	uint64_t a, b, c, d;
	uint64_t ref_ino, ref_dir;      /* resolved to paths at the end */
	bool repaired;
	char *action;                   /* what the repair did, or why not */
};

struct plist {
	struct problem *v;
	size_t n, cap;
};

struct slot {
	uint64_t token, beat0;
	uint32_t state;
	bool moved;                     /* hs_heartbeat changed while watched */
	bool live;
};

/* What one pass over the region found (the first one, and the re-check). */
struct check {
	struct plist pb;
	struct shmfs_super sb;
	bool have_sb;
	uint64_t lock_seen;
	bool lock_dead;                 /* held by a host that is not live */
	/* log */
	uint64_t end_pos, end_seq, end_word;
	uint64_t junk_from;             /* first nonzero byte after the end */
	bool tail_bad;                  /* the log ends at a cut (FIX_CUT) */
	uint64_t records, noops, seals, rejected, lost;
	/* namespace */
	struct shmfs_ns *ns;
	uint64_t inodes, dirs, files, symlinks, others, orphans;
	uint64_t bytes_used;
};

struct fsck {
	enum mode mode;
	bool force, verbose, json, progress;
	const char *spec;

	struct shmfs_region r;
	bool region_open;
	struct shmfs_log log;
	struct shmfs_log_scan scan;     /* resynchronising past damage */
	uint8_t *buf, *buf2;

	struct slot *slots;
	uint32_t nslots, nlive;
	bool watched;

	struct check c1, c2;            /* before and after repair */
	struct check *c;                /* the one being filled */
	bool after;                     /* c == &c2 */

	bool repaired_any, op_error, refused, modified;
	char refuse_why[1024];
	uint64_t t0, last_progress;
	bool progress_shown;
};

/* One inode as pass 4 sees it (ns.c, alloc.c). */
struct inode_info {
	uint64_t ino;
	struct shmfs_inode *ip;
	struct shmfs_dentry *first;     /* one name of it */
	uint32_t ndent, nsub;
	uint64_t nchild;
	uint8_t color;                  /* cycle search: 0 new, 1 on path, 2 done */
};

/* Pass 4's tables: the inodes sorted by number, the data units owned. */
struct ns_pass {
	struct inode_info *ii;
	size_t nii;
	uint64_t unit, nunits;
	uint64_t *owned;                /* bitmap of nunits: claimed by an extent */
};

static inline uint64_t load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* check.c */
char *fsck_xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
char *fsck_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *fsck_esc(const void *p, size_t len, char *buf, size_t buflen);
struct problem *fsck_problem(struct fsck *ck, const char *code, enum fix fix, bool safe,
			     const char *loc, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
void fsck_out_problem(struct fsck *ck, const struct problem *p, bool after);
void fsck_verbose(struct fsck *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fsck_progress(struct fsck *ck, const char *what, uint64_t done, uint64_t total);
void fsck_progress_done(struct fsck *ck);
int fsck_run_check(struct fsck *ck, struct check *c, bool after);

/* super.c */
int fsck_pass_super(struct fsck *ck);

/* hosts.c */
int fsck_watch_hosts(struct fsck *ck);
bool fsck_slot_live(const struct fsck *ck, uint32_t i);
void fsck_host_ident(const struct fsck *ck, uint32_t i, char *buf, size_t len);
void fsck_pass_hosts(struct fsck *ck);

/* log.c */
int fsck_pass_log(struct fsck *ck);
bool fsck_root_fits(uint64_t P, uint64_t S, uint64_t gap, uint64_t k);
void fsck_root_record(const struct shmfs_super *sb, struct shmfs_log_rec *h,
		      struct shmfs_lr_create *cr);

/* describe.c */
void fsck_describe(const struct shmfs_log_rec *h, const uint8_t *p, uint32_t plen, char *buf,
		   size_t len, uint64_t *ino, uint64_t *dir);
const char *fsck_rec_code(unsigned type);

/* ns.c */
void fsck_pass_ns(struct fsck *ck);

/* alloc.c */
void fsck_check_extents(struct fsck *ck, struct ns_pass *np, const struct shmfs_inode *ip,
			const char *loc);
void fsck_check_alloc(struct fsck *ck, const struct ns_pass *np);

/* repair.c */
bool fsck_may_repair(struct fsck *ck);
void fsck_repair(struct fsck *ck);
void fsck_verify_by_open(struct fsck *ck);

#endif
