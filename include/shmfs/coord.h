/* SPDX-License-Identifier: MIT */
/*
 * Coordination between hosts: host-table slots with heartbeats, what each
 * host publishes there (log position, pinned records), the metadata lock
 * word, and the reuse of freed space that follows from them.  See
 * fs/coord.c.
 *
 * struct shmfs_coord is built from a mapped region and its validated
 * superblock, not from the filesystem object; it owns every store into the
 * host table and the lock word.  The filesystem (fs/core.c) embeds one and
 * serialises the calls marked _locked with its replay lock.
 */
#ifndef SHMFS_COORD_H
#define SHMFS_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"

struct shmfs_ns;

/* What this host saw of another host's slot, on its own monotonic clock. */
struct shmfs_coord_watch {
	uint64_t token, beat, since;
};

struct shmfs_coord {
	uint8_t *base;                  /* the region's first byte */
	const struct shmfs_super *sb;   /* validated private copy (the owner's) */
	struct shmfs_ctl *ctl;          /* in the region */
	bool readonly;                  /* never claims a slot or the lock */
	uint64_t lease_ns;
	int slot;                       /* our host slot, -1 if none */
	uint64_t token;                 /* our claim token */
	/* under the owner's replay lock: */
	struct shmfs_coord_watch *watch;/* other hosts' beats, sb_max_hosts */
	uint64_t *pins;                 /* records other hosts pin, as found by
	                                 * the last shmfs_coord_safe_seq_locked */
	size_t npins;
	uint64_t pub_pins[SHMFS_HOST_PINS]; /* what we publish in hs_pins */
	bool locked;                    /* we hold ctl_lock */
	uint64_t lock_word;             /* its value while we hold it */
};

/* Set up c over a region whose superblock sb has been validated (sb must
 * outlive c); lease_ms 0 takes sb_lease_ms.  0 or -ENOMEM. */
int shmfs_coord_init(struct shmfs_coord *c, uint8_t *base, const struct shmfs_super *sb,
		     bool readonly, uint32_t lease_ms);
/* Leaves the slot if one is held (the lock must have been released). */
void shmfs_coord_fini(struct shmfs_coord *c);

/* Checksum over a slot's identity fields (token, mount time, pid, names,
 * boot id): what a reader uses to tell a real claim from garbage. */
uint64_t shmfs_host_ident_csum(const struct shmfs_host *h);

/* Claim a host slot: a free one at once, else one whose heartbeat has not
 * moved for a whole lease.  -EUSERS when every slot is live. */
int shmfs_host_join(struct shmfs_coord *c, const char *name, uint32_t state, char *err,
		    size_t errlen);
void shmfs_host_leave(struct shmfs_coord *c);
/* Record a new pid in our slot (after a daemon forks). */
void shmfs_host_restamp(struct shmfs_coord *c);
void shmfs_host_beat(struct shmfs_coord *c);
/* Has our slot's token changed under us?  Then another host took the slot
 * over (we were silent for a lease) or overwrote it: as far as the others
 * can tell our lease is over -- they may release our orphans, reuse space
 * we pin, break a lock we hold -- so we must not change metadata again:
 * shmfs_lock_acquire() refuses with -ESTALE. */
bool shmfs_host_lost(const struct shmfs_coord *c);

/* Is the host in slot i alive, as far as this host has watched it?  A slot
 * is dead when free, or when its heartbeat stood still for a lease of our
 * own watching.  Caller holds the owner's replay lock (c->watch). */
bool shmfs_host_live_locked(struct shmfs_coord *c, uint32_t i);

/* The first log sequence number whose freed space some live host may still
 * reach (next_seq: the next record this host will apply): space freed by
 * records below it may be reused, except by the records live hosts list as
 * pinned (hs_pins), which this leaves in c->pins[0 .. c->npins).  Hosts
 * whose heartbeat stood still for a lease do not count.  Replay lock. */
uint64_t shmfs_hosts_safe_seq(struct shmfs_coord *c, uint64_t next_seq);

/*
 * Tell other hosts what we have applied (up to next_seq - 1) and which
 * freed space of ns we still reach.  See fs/coord.c for the order of the
 * stores.  Replay lock.
 */
void shmfs_coord_publish_locked(struct shmfs_coord *c, struct shmfs_ns *ns, uint64_t next_seq);

/* Release the space of ns freed by records no live host can reach any
 * more; the number of units released.  Replay lock. */
uint64_t shmfs_coord_reap_locked(struct shmfs_coord *c, struct shmfs_ns *ns, uint64_t next_seq);

/* After a reap: is space free now, or is some of what stays pending freed
 * by a record a live host has not applied yet (worth waiting for)? */
enum shmfs_coord_pending {
	SHMFS_PENDING_READY,    /* free units that are not pending exist */
	SHMFS_PENDING_WAIT,     /* a live host has yet to apply a freeing record */
	SHMFS_PENDING_NONE,     /* nothing to wait for: pinned or really full */
};
enum shmfs_coord_pending shmfs_coord_pending_locked(struct shmfs_coord *c, struct shmfs_ns *ns,
						    uint64_t next_seq);

/* Take the cross-host metadata lock.  *broke is set when a dead holder's
 * lease was broken (the caller must then seal the log tail). */
int shmfs_lock_acquire(struct shmfs_coord *c, bool *broke);
/* Release it; -ESTALE if it had been broken meanwhile. */
int shmfs_lock_release(struct shmfs_coord *c);
/* Do we still hold it? */
bool shmfs_lock_held(const struct shmfs_coord *c);
/* Does the lock word name our slot? (one atomic load) */
bool shmfs_lock_names_us(const struct shmfs_coord *c);

static inline uint32_t shmfs_lock_owner(uint64_t word) { return (uint32_t)(word >> SHMFS_LOCK_OWNER_SHIFT); }
static inline uint64_t shmfs_lock_gen(uint64_t word) { return word & SHMFS_LOCK_GEN_MASK; }

#endif /* SHMFS_COORD_H */
