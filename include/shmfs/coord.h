/* SPDX-License-Identifier: MIT */
/*
 * Coordination between hosts: host-table slots with heartbeats, and the
 * metadata lock word.  See fs/coord.c.
 */
#ifndef SHMFS_COORD_H
#define SHMFS_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"

struct shmfs_fs;

/* Checksum over a slot's identity fields (token, mount time, pid, names,
 * boot id): what a reader uses to tell a real claim from garbage. */
uint64_t shmfs_host_ident_csum(const struct shmfs_host *h);

/* Claim a host slot: a free one at once, else one whose heartbeat has not
 * moved for a whole lease.  -EUSERS when every slot is live. */
int shmfs_host_join(struct shmfs_fs *fs, const char *name, uint32_t state, char *err,
		    size_t errlen);
void shmfs_host_leave(struct shmfs_fs *fs);
/* Record a new pid in our slot (after a daemon forks). */
void shmfs_host_restamp(struct shmfs_fs *fs);
void shmfs_host_beat(struct shmfs_fs *fs);
/* Has our slot's token changed under us?  Then another host took the slot
 * over (we were silent for a lease) or overwrote it: as far as the others
 * can tell our lease is over -- they may release our orphans, reuse space
 * we pin, break a lock we hold -- so we must not change metadata again:
 * shmfs_lock_acquire() refuses with -ESTALE. */
bool shmfs_host_lost(const struct shmfs_fs *fs);

/* Is the host in slot i alive, as far as this host has watched it?  A slot
 * is dead when free, or when its heartbeat stood still for a lease of our
 * own watching.  Caller holds fs->replay_lock (it updates fs->watch). */
bool shmfs_host_live_locked(struct shmfs_fs *fs, uint32_t i);

/* The first log sequence number whose freed space some live host may still
 * reach: space freed by records below it may be reused, except by the
 * records live hosts list as pinned (hs_pins), which this leaves in
 * fs->pins[0 .. fs->npins).  Hosts whose heartbeat stood still for a lease
 * do not count (their lease ended).  Caller holds fs->replay_lock. */
uint64_t shmfs_hosts_safe_seq(struct shmfs_fs *fs);

/* Take the cross-host metadata lock.  *broke is set when a dead holder's
 * lease was broken (the caller must then seal the log tail). */
int shmfs_lock_acquire(struct shmfs_fs *fs, bool *broke);
/* Release it; -ESTALE if it had been broken meanwhile. */
int shmfs_lock_release(struct shmfs_fs *fs);
/* Do we still hold it? */
bool shmfs_lock_held(const struct shmfs_fs *fs);

static inline uint32_t shmfs_lock_owner(uint64_t word) { return (uint32_t)(word >> SHMFS_LOCK_OWNER_SHIFT); }
static inline uint64_t shmfs_lock_gen(uint64_t word) { return word & SHMFS_LOCK_GEN_MASK; }

#endif /* SHMFS_COORD_H */
