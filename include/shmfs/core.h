/* SPDX-License-Identifier: MIT */
/*
 * The filesystem object: a validated superblock over a mapped region, this
 * host's slot, the metadata lock, the log position this host has applied,
 * and the namespace built by replaying the log.
 *
 * Writers (the daemon, mkfs) change metadata only through
 *
 *     shmfs_fs_lock()      take the cross-host lock, replay to the tail
 *     shmfs_fs_commit()    check a record against the namespace, append
 *                          and publish it, apply it locally
 *     shmfs_fs_unlock()
 *
 * so every host applies exactly the same records in the same order.
 */
#ifndef SHMFS_CORE_H
#define SHMFS_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/coord.h"
#include "shmfs/format.h"
#include "shmfs/log.h"
#include "shmfs/region.h"
#include "shmfs/super.h"

struct shmfs_ns;
struct shmfs_ns_changes;
struct shmfs_rec;

struct shmfs_fs_opts {
	bool readonly;          /* never append, never take the lock */
	/* set before the initial replay (fsck, dump) */
	void (*on_reject)(void *ctx, const struct shmfs_log_entry *e, const char *why);
	void *on_reject_ctx;
	bool join;              /* claim a host slot (mounts, writers) */
	const char *host_name;  /* hs_name; NULL: the machine's hostname */
	uint32_t lease_ms;      /* 0: sb_lease_ms */
	bool tool;              /* slot state SHMFS_HOST_TOOL instead of ACTIVE */
};

/* Counters of what replay met; all hosts count the same things. */
struct shmfs_replay_stats {
	uint64_t records;       /* applied */
	uint64_t rejected;      /* well-checksummed but invalid: skipped */
	uint64_t seals;         /* abandoned slots stepped over */
	bool stuck;             /* a published record failed verification */
	uint64_t stuck_pos;     /* where */
	char stuck_why[160];
	uint64_t resumed;       /* times replay went on past where it was stuck
	                         * (the record was repaired) */
	char last_reject[200];  /* why the most recent rejected record was */
};

struct shmfs_fs {
	struct shmfs_region *region;
	struct shmfs_super sb;          /* validated private copy */
	struct shmfs_log log;
	struct shmfs_ns *ns;
	struct shmfs_coord coord;       /* our slot, the lock; its _locked state
	                                 * under replay_lock */
	bool readonly;

	pthread_mutex_t replay_lock;    /* serialises replay within a process */
	uint64_t pos;                   /* under replay_lock: next record's byte */
	uint64_t seq;                   /* under replay_lock: next record's seq */
	struct shmfs_replay_stats stats;/* under replay_lock */
	uint8_t *rbuf;                  /* under replay_lock: payload buffer */
	int fatal;                      /* sticky: a failed commit stops writes */
	/* told of every record replay applies (records of other hosts, and
	 * this slot's from an earlier life) with what it changed in the
	 * namespace, under replay_lock */
	void (*on_change)(void *ctx, const struct shmfs_rec *r,
			  const struct shmfs_ns_changes *changes);
	void *on_change_ctx;
	/* told of every record replay rejects (checksum fine, contents not),
	 * with the reason; for fsck and dump */
	void (*on_reject)(void *ctx, const struct shmfs_log_entry *e, const char *why);
	void *on_reject_ctx;
};

/* Write a fresh filesystem onto a region: control page, empty host table
 * and log (zeroed without touching the data area), both superblocks, and
 * the root directory's record.  sb receives the superblock written. */
int shmfs_fs_format(struct shmfs_region *r, const struct shmfs_mkfs_params *p,
		    uint32_t root_mode, uint32_t root_uid, uint32_t root_gid,
		    struct shmfs_super *sb, char *err, size_t errlen);

/* Validate the superblock, optionally join the host table, replay the log.
 * The region must stay open while the fs is. */
int shmfs_fs_open(struct shmfs_region *r, const struct shmfs_fs_opts *o,
		  struct shmfs_fs **out, char *err, size_t errlen);
void shmfs_fs_close(struct shmfs_fs *fs);

/* shmfs_fs_open in two steps, for a daemon that must join the host table
 * before it forks but start helper threads (the namespace's) after:
 * prepare validates and joins; finish builds the namespace by replay. */
int shmfs_fs_prepare(struct shmfs_region *r, const struct shmfs_fs_opts *o,
		     struct shmfs_fs **out, char *err, size_t errlen);
int shmfs_fs_finish(struct shmfs_fs *fs, char *err, size_t errlen);

/* Apply records other hosts published since the last call.  Returns the
 * number applied, or -EUCLEAN if replay is stuck on a bad record. */
int shmfs_fs_replay(struct shmfs_fs *fs);

/* Has another host published records this host has not applied?  One
 * atomic load, no lock: for request paths that must not queue behind a
 * writer. */
bool shmfs_fs_behind(struct shmfs_fs *fs);

int shmfs_fs_lock(struct shmfs_fs *fs);
void shmfs_fs_unlock(struct shmfs_fs *fs);

/*
 * Commit one record (type, flags, payload) under the lock: it is checked
 * against the namespace first, so an invalid request never reaches the log
 * (returns the errno a caller would expect: -ENOENT, -EEXIST, -ENOTEMPTY,
 * ...).  -ENOSPC when the log is full.
 */
int shmfs_fs_commit(struct shmfs_fs *fs, uint16_t type, uint16_t flags,
		    const void *payload, uint32_t len);

/* Renew this host's heartbeat (the daemon calls this periodically). */
void shmfs_fs_heartbeat(struct shmfs_fs *fs);

/*
 * Free the metadata lock if its word names this host's slot while no thread
 * of this host holds or is taking it: an earlier life of the slot died
 * holding it, or another host wrote the word.  Waiters would otherwise wait
 * for ever, since this host's heartbeat keeps moving.  One atomic load when
 * there is nothing to do; the daemon calls it periodically.
 */
void shmfs_fs_free_stray_lock(struct shmfs_fs *fs);

/*
 * Allocate up to want units of data for a writer holding the lock: first
 * release freed space that no live host can reach any more, then find a
 * run.  The space is the caller's to map with an extent record.
 */
int shmfs_fs_alloc(struct shmfs_fs *fs, uint64_t want, uint64_t *first, uint64_t *got);

/* Release freed space no live host can reach any more (periodically). */
uint64_t shmfs_fs_reap(struct shmfs_fs *fs);

/*
 * Out of space, but space freed by other records is still pending: it is
 * reused only once every live host has applied the record that freed it,
 * and a host that has just mounted counts every slot in use as live until
 * it has watched it for a lease (a host killed long ago included).  Wait
 * for that, as ext4 waits for a journal commit before it reports ENOSPC:
 * true (after a short sleep when needed) while it is worth trying again,
 * until *deadline (0: set to 1.5 leases from now).  Space held by a pin
 * (a file still open on a live host) is not waited for.
 */
bool shmfs_fs_wait_pending(struct shmfs_fs *fs, uint64_t *deadline);

/* Our host slot, -1 when we have none (read-only mounts, tools). */
static inline int shmfs_fs_slot(const struct shmfs_fs *fs) { return fs->coord.slot; }


/* Local open handles pin an inode's data against reuse by any host. */
void shmfs_fs_open_inode(struct shmfs_fs *fs, uint64_t ino);
void shmfs_fs_close_inode(struct shmfs_fs *fs, uint64_t ino);

#endif /* SHMFS_CORE_H */
