/* SPDX-License-Identifier: MIT */
/*
 * Namespace: the in-memory view a host builds by replaying the log
 * (inodes, directory entries, extent maps, xattrs, free space).
 *
 * Concurrency: one writer at a time (the replayer, under the caller's
 * lock) mutates; readers run under rcu_read_lock() (urcu mb flavour, RCU_MB
 * defined by the build) and never block.  Attributes, extent maps and xattr sets are immutable
 * objects replaced by pointer (rcu_assign_pointer) and freed after a grace
 * period, so a reader always sees one consistent version.
 */
#ifndef SHMFS_NS_H
#define SHMFS_NS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu.h>
#include <urcu/rculfhash.h>
#include <urcu/rculist.h>

#include "shmfs/alloc.h"
#include "shmfs/format.h"
#include "shmfs/rec.h"

struct shmfs_attr {
	uint32_t mode, uid, gid, nlink;
	uint64_t rdev, size;
	uint64_t blocks_bytes;          /* data bytes allocated */
	struct shmfs_time atime, mtime, ctime, btime;
	struct rcu_head rcu;
};

struct shmfs_extent {
	uint64_t foff, doff, len;       /* bytes; doff relative to the data area */
};

struct shmfs_extmap {
	uint32_t n;
	struct rcu_head rcu;
	struct shmfs_extent e[];        /* sorted by foff, non-overlapping */
};

struct shmfs_xattr {
	uint16_t name_len;
	uint32_t value_len;
	uint8_t *name, *value;          /* point into the owning set's storage */
};

struct shmfs_xattrs {
	uint32_t n;
	struct rcu_head rcu;
	struct shmfs_xattr x[];         /* followed by names and values */
};

struct shmfs_inode {
	struct cds_lfht_node hnode;     /* in ns->inodes, keyed by ino */
	uint64_t ino;
	uint32_t type;                  /* S_IFMT bits, immutable */
	struct shmfs_attr *attr;        /* RCU */
	struct shmfs_extmap *ext;       /* RCU; regular files, NULL = empty */
	uint64_t layout_seq;            /* record that last changed ext */
	struct shmfs_xattrs *xattrs;    /* RCU; NULL = none */
	char *target;                   /* symlink target, immutable */
	uint32_t target_len;
	/* directories */
	uint64_t parent;                /* ".." (root: itself) */
	struct cds_list_head children;  /* RCU list of dentries, cookie order */
	uint64_t nchildren;             /* under the writer's lock */
	uint64_t next_cookie;           /* under the writer's lock */
	uint64_t ahead_from;            /* lowest file offset mapped with
	                                 * SHMFS_EXT_F_AHEAD and not unmapped since
	                                 * (0: none); under the writer's lock */
	uint32_t ahead_host;            /* slot + 1 of the host whose record
	                                 * reserved it last (with ahead_from) */
	/* lifetime */
	uint32_t orphan_host;           /* slot + 1 of the host that keeps this
	                                 * nameless inode (SHMFS_LR_F_KEEP), 0 */
	bool gone;                      /* removed by the log but still open
	                                 * here: readable, invisible to records */
	int nopen;                      /* local open handles (atomic) */
	/* local write state (atomics): size written but not yet logged,
	 * whether data changed since the last flush, how far speculative
	 * preallocation reaches, kernel lookup count */
	uint64_t wsize;
	uint32_t wdirty;
	uint64_t prealloc_end;
	uint64_t nlookup;
	uint64_t remote_gen;            /* bumped by replay of others' records */
	struct rcu_head rcu;
};

struct shmfs_dentry {
	struct cds_lfht_node hnode;     /* in ns->dentries, keyed by (dir, name) */
	struct cds_list_head sibling;   /* in the directory's children */
	uint64_t dir, ino;
	uint64_t cookie;                /* readdir position, > 2, increasing */
	uint32_t type;                  /* S_IFMT of ino */
	uint16_t name_len;
	struct rcu_head rcu;
	char name[];                    /* NUL-terminated for convenience */
};


/* Space freed by record `seq` that some host may still be reading. */
struct shmfs_pending {
	uint64_t first, n;              /* units */
	uint64_t seq;
	uint64_t ino;
	bool pinned;                    /* another host freed it while ino was
	                                 * open here: our handles may be reading */
};

struct shmfs_ns {
	struct cds_lfht *inodes;
	struct cds_lfht *dentries;
	struct shmfs_alloc alloc;
	uint64_t data_size, unit;
	uint64_t next_ino;              /* one more than the largest ever used */
	uint64_t ninodes;
	uint64_t norphans;              /* inodes kept as orphans (atomic reads) */
	uint32_t ahead_by[SHMFS_MAX_HOSTS]; /* inodes with room reserved ahead,
	                                 * by reserving slot (atomic reads) */
	bool exclusive;                 /* no readers yet (mount-time replay):
	                                 * change in place, free at once */
	uint64_t wseq;                  /* odd while a record is being applied */
	uint64_t cur_seq;               /* record being applied */
	uint16_t cur_host;              /* its writer's slot */
	int self_host;                  /* this host's slot, -1 if none */
	struct shmfs_pending *pending;  /* under the writer's lock */
	size_t npending, cap_pending;
};

/* expected_entries sizes the hash tables (0: small; they grow). */
struct shmfs_ns *shmfs_ns_new(uint64_t data_size, uint64_t unit, uint64_t expected_entries);
void shmfs_ns_free(struct shmfs_ns *ns);

/*
 * Check a shape-checked record against the namespace and, unless dry_run,
 * apply it.  Never mutates anything when it fails.  Returns 0, or the errno
 * an application would see (-ENOENT, -EEXIST, -ENOTDIR, -EISDIR,
 * -ENOTEMPTY, -EINVAL, -EMLINK, -ENODATA), or -EUCLEAN for what only
 * corruption produces (an extent overlapping used space or outside the
 * data area); why says what.  Caller holds the writer's lock and is a
 * registered RCU thread.
 */
int shmfs_ns_apply(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const void *payload,
		   bool dry_run, char *why, size_t whylen);

/*
 * What an applied record changed, for caches above the namespace (the
 * daemon tells the kernel to forget them).  Names point into the record's
 * payload copy: valid while the caller holds it.
 */
enum shmfs_ns_change_kind {
	SHMFS_NS_ENTRY,         /* name in dir now names ino (0: something) or
	                         * nothing: forget the entry */
	SHMFS_NS_ENTRY_GONE,    /* name in dir no longer names ino */
	SHMFS_NS_ATTR,          /* ino's attributes changed (links, times) */
	SHMFS_NS_CONTENT,       /* ino's size, data layout or xattrs changed */
};
struct shmfs_ns_change {
	enum shmfs_ns_change_kind kind;
	uint64_t dir, ino;
	const char *name;
	uint16_t name_len;
};
struct shmfs_ns_changes {
	unsigned n;
	struct shmfs_ns_change c[8];
};

/* shmfs_ns_apply for a decoded, shape-checked record (shmfs_rec_check);
 * changes (may be NULL) gets what it changed when it was applied. */
int shmfs_ns_apply_rec(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry_run,
		       struct shmfs_ns_changes *changes, char *why, size_t whylen);

/*
 * A record changes several objects (a rename: two entries, two directories,
 * an inode).  Readers that must see all of a record or none of it copy what
 * they need between these two calls and retry if a record was applied
 * meanwhile (a sequence lock: readers never block the replayer).
 */
static inline uint64_t shmfs_ns_read_begin(const struct shmfs_ns *ns)
{
	uint64_t s;

	while ((s = __atomic_load_n(&ns->wseq, __ATOMIC_ACQUIRE)) & 1)
		caa_cpu_relax();
	return s;
}

static inline bool shmfs_ns_read_retry(const struct shmfs_ns *ns, uint64_t s)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&ns->wseq, __ATOMIC_RELAXED) != s;
}

/* Lookups: call under rcu_read_lock(); results valid until unlock.
 * shmfs_ns_iget also finds inodes that are gone but still open here. */
struct shmfs_inode *shmfs_ns_iget(struct shmfs_ns *ns, uint64_t ino);
struct shmfs_dentry *shmfs_ns_lookup(struct shmfs_ns *ns, uint64_t dir, const char *name,
				     size_t len);

/*
 * Space that was freed is reusable once every live host has applied the
 * freeing record and none still has the file open: the caller computes
 * safe_seq from the host table, and units freed by records below it are
 * released unless this host itself still has their file open.  Writer's
 * lock held.  Returns the number of units released.
 */
uint64_t shmfs_ns_reap(struct shmfs_ns *ns, uint64_t safe_seq, const uint64_t *pins,
		       size_t npins);
/*
 * The freeing records whose space this host still reaches (an open file's
 * old data), as it publishes them: pins[0 .. n) is the list it published
 * last (hs_pins), updated in place -- a record keeps its entry while it is
 * pinned, records no longer pinned leave theirs, new ones take free entries
 * oldest first -- and the return value the oldest pinned record that found
 * no entry (hs_pin_seq: it and every later one count as pinned), or 0.
 */
uint64_t shmfs_ns_pins(struct shmfs_ns *ns, uint64_t *pins, size_t n);
/* Drop an inode that is gone from the log once its last local open
 * handle is closed.  Writer's lock held. */
void shmfs_ns_forget(struct shmfs_ns *ns, uint64_t ino);

#endif /* SHMFS_NS_H */
