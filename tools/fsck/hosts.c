/* SPDX-License-Identifier: MIT */
/*
 * Who is live, and pass 2: the control page and the host table.
 *
 * Liveness is watched once, before the first check: a slot is live if
 * its hs_heartbeat moves within a lease, the rule every host applies
 * before taking a slot or breaking the lock.  What the watch saw decides
 * what may be repaired: a live host's slot is never touched, a lock held
 * by a host that is not live is released (FIX_LOCK, and the log tail
 * sealed as a lock breaker would), and any live host at all blocks
 * repairs unless --force.  A slot claimed again since the watch (a new
 * hs_token) counts as live.
 *
 * Pass 2 checks ctl_magic and the zero fields of the control page, the
 * lock word, and each slot: its state, hs_ident_csum, a stale lease, and
 * garbage (pins, padding) in a free slot.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmfs/coord.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#include "fsck.h"

static struct shmfs_host *hslot(const struct fsck *ck, uint32_t i)
{
	return shmfs_host_slot(ck->r.base, &ck->c->sb, i);
}

static uint64_t lock_word(const struct fsck *ck)
{
	return load64(&((struct shmfs_ctl *)(ck->r.base + ck->c->sb.sb_ctl_off))->ctl_lock);
}

static void fmt_time_ns(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	if (!ns || !gmtime_r(&t, &tm) || tm.tm_year > 9999 - 1900) {
		snprintf(buf, len, ns ? "%" PRIu64 " ns" : "never", ns);
		return;
	}
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Stop as soon as every slot in use has moved. */
int fsck_watch_hosts(struct fsck *ck)
{
	const struct shmfs_super *sb = &ck->c->sb;
	uint32_t n = sb->sb_max_hosts, waiting = 0;
	uint64_t lease = (uint64_t)sb->sb_lease_ms * 1000000ull, start;

	ck->slots = calloc(n, sizeof(*ck->slots));
	if (!ck->slots)
		return -ENOMEM;
	ck->nslots = n;
	uint32_t owner = shmfs_lock_owner(lock_word(ck));
	for (uint32_t i = 0; i < n; i++) {
		struct shmfs_host *h = hslot(ck, i);
		ck->slots[i].token = load64(&h->hs_token);
		ck->slots[i].beat0 = load64(&h->hs_heartbeat);
		ck->slots[i].state = __atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE);
		if (ck->slots[i].state != SHMFS_HOST_FREE || owner == i + 1)
			waiting++;
	}
	if (waiting)
		fsck_verbose(ck, "Watching %u host slot%s for up to %u ms (the lease)", waiting,
			     waiting == 1 ? "" : "s", sb->sb_lease_ms);
	start = shmfs_mono_ns();
	while (waiting) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
		waiting = 0;
		for (uint32_t i = 0; i < n; i++) {
			struct slot *s = &ck->slots[i];
			if (!s->moved && load64(&hslot(ck, i)->hs_heartbeat) != s->beat0)
				s->moved = true;
			if (!s->moved && (s->state != SHMFS_HOST_FREE || owner == i + 1))
				waiting++;
		}
		if (shmfs_mono_ns() - start >= lease)
			break;
		if (ck->progress)
			fsck_progress(ck, "Watching the host table", shmfs_mono_ns() - start, lease);
	}
	fsck_progress_done(ck);
	ck->nlive = 0;
	for (uint32_t i = 0; i < n; i++) {
		ck->slots[i].live = ck->slots[i].moved && ck->slots[i].state != SHMFS_HOST_FREE;
		ck->nlive += ck->slots[i].live;
	}
	ck->watched = true;
	return 0;
}

/* Live now: as watched; a slot claimed since (new token) counts as live. */
bool fsck_slot_live(const struct fsck *ck, uint32_t i)
{
	if (i >= ck->nslots)
		return false;
	struct shmfs_host *h = hslot(ck, i);
	if (load64(&h->hs_token) != ck->slots[i].token &&
	    __atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE) != SHMFS_HOST_FREE)
		return true;
	return ck->slots[i].live;
}

void fsck_host_ident(const struct fsck *ck, uint32_t i, char *buf, size_t len)
{
	struct shmfs_host h;
	char name[100], hn[100], t[64];

	memcpy(&h, hslot(ck, i), sizeof(h));
	fmt_time_ns(h.hs_mount_ns, t, sizeof(t));
	snprintf(buf, len, "host slot %u (name %s, hostname %s, pid %" PRIu32 ", mounted since %s)",
		 i, fsck_esc(h.hs_name, strnlen(h.hs_name, sizeof(h.hs_name)), name, sizeof(name)),
		 fsck_esc(h.hs_hostname, strnlen(h.hs_hostname, sizeof(h.hs_hostname)), hn,
			  sizeof(hn)),
		 h.hs_pid, t);
}

static const char *state_name(uint32_t s)
{
	switch (s) {
	case SHMFS_HOST_FREE: return "FREE";
	case SHMFS_HOST_JOINING: return "JOINING";
	case SHMFS_HOST_ACTIVE: return "ACTIVE";
	case SHMFS_HOST_TOOL: return "TOOL";
	default: return "invalid";
	}
}

/* ctl_magic, the zero fields, and who holds ctl_lock. */
static void check_control(struct fsck *ck)
{
	const struct shmfs_super *sb = &ck->c->sb;
	struct shmfs_ctl ctl;
	char who[400];

	memcpy(&ctl, ck->r.base + sb->sb_ctl_off, sizeof(ctl));
	if (ctl.ctl_magic != SHMFS_CTL_MAGIC)
		fsck_problem(ck, "ctl_magic", FIX_CTL, true, "control page",
			     "ctl_magic is 0x%016" PRIx64 ", not 0x%016llx: mounts refuse the region "
			     "(repair: rewrite it)",
			     ctl.ctl_magic, (unsigned long long)SHMFS_CTL_MAGIC);
	else if (!shmfs_all_zero(ctl.ctl_pad0, sizeof(ctl.ctl_pad0)) ||
		 !shmfs_all_zero(ctl.ctl_pad1, sizeof(ctl.ctl_pad1)) ||
		 !shmfs_all_zero(ctl.ctl_reserved, sizeof(ctl.ctl_reserved)))
		fsck_problem(ck, "ctl_reserved", FIX_CTL, true, "control page",
			     "padding or reserved fields are not zero (repair: zero them)");

	uint64_t lock = lock_word(ck);
	uint32_t owner = shmfs_lock_owner(lock);
	ck->c->lock_seen = lock;
	ck->c->lock_dead = false;
	if (owner > sb->sb_max_hosts) {
		ck->c->lock_dead = true;
		fsck_problem(ck, "ctl_lock", FIX_LOCK, true, "control page",
			     "ctl_lock 0x%016" PRIx64 " names host slot %u, but there are only %u "
			     "(repair: release it and seal the log tail)",
			     lock, owner - 1, sb->sb_max_hosts)->a = lock;
	} else if (owner && !fsck_slot_live(ck, owner - 1)) {
		ck->c->lock_dead = true;
		fsck_host_ident(ck, owner - 1, who, sizeof(who));
		fsck_problem(ck, "ctl_lock", FIX_LOCK, true, "control page",
			     "ctl_lock is held by %s, which is not live (repair: release it, and "
			     "seal the log tail where its next record would have gone)", who)->a =
			lock;
	}
}

static void check_slot(struct fsck *ck, uint32_t i)
{
	const struct shmfs_super *sb = &ck->c->sb;
	struct shmfs_host h;
	bool live = fsck_slot_live(ck, i);
	struct problem *p = NULL;
	char who[400], loc[64];

	memcpy(&h, hslot(ck, i), sizeof(h));
	snprintf(loc, sizeof(loc), "host slot %u", i);
	bool pad = h.hs_pad0 || h.hs_pad1;
	bool garbage = pad || !shmfs_all_zero(h.hs_pins, sizeof(h.hs_pins));
	if (h.hs_state == SHMFS_HOST_FREE) {
		if (i < ck->nslots && ck->slots[i].moved && ck->slots[i].state == SHMFS_HOST_FREE &&
		    load64(&h.hs_token) == ck->slots[i].token)
			fsck_problem(ck, "hs_state", FIX_NONE, false, loc,
				     "hs_state is FREE but hs_heartbeat moves: a live host whose slot "
				     "was overwritten");
		else if (garbage)
			p = fsck_problem(ck, "hs_pins", FIX_HOST, true, loc,
					 "free slot holds garbage: pins or padding not zero (repair: "
					 "zero the slot)");
	} else if (h.hs_state > SHMFS_HOST_TOOL) {
		p = fsck_problem(ck, "hs_state", live ? FIX_NONE : FIX_HOST, true, loc,
				 "hs_state %" PRIu32 " is invalid%s", h.hs_state,
				 live ? " (but its hs_heartbeat moves: not touched)" :
				 " (repair: free the slot)");
	} else if (h.hs_state != SHMFS_HOST_JOINING &&
		   shmfs_host_ident_csum(&h) != h.hs_ident_csum) {
		fsck_host_ident(ck, i, who, sizeof(who));
		p = fsck_problem(ck, "hs_ident_csum", live ? FIX_NONE : FIX_HOST, true, loc,
				 "hs_ident_csum does not match the identity of %s%s", who,
				 live ? " (but its hs_heartbeat moves: not touched)" :
				 " (repair: free the slot)");
	} else if (!live) {
		fsck_host_ident(ck, i, who, sizeof(who));
		p = fsck_problem(ck, "hs_heartbeat", FIX_HOST, true, loc,
				 "stale lease: %s is %s but its hs_heartbeat stood still for the "
				 "whole lease, %u ms (repair: free the slot)", who,
				 state_name(h.hs_state), sb->sb_lease_ms);
	} else if (pad) {
		fsck_problem(ck, "hs_pad0", FIX_NONE, false, loc,
			     "padding not zero in the slot of a live host");
	} else {
		fsck_host_ident(ck, i, who, sizeof(who));
		fsck_verbose(ck, "  live: %s, %s, applied record %" PRIu64, who,
			     state_name(h.hs_state), h.hs_applied_seq);
	}
	if (p) {
		p->a = i;
		p->b = load64(&h.hs_token);
		p->c = load64(&h.hs_heartbeat);
	}
}

void fsck_pass_hosts(struct fsck *ck)
{
	fsck_verbose(ck, "Pass 2: control page and host table");
	check_control(ck);
	for (uint32_t i = 0; i < ck->c->sb.sb_max_hosts; i++)
		check_slot(ck, i);
}
