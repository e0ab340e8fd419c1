/* SPDX-License-Identifier: MIT */
/*
 * Pass 4: data space.  Free space is derived state, rebuilt by replay and
 * never read from the region, so what is checked here is that replay and
 * the files agree.
 *
 * Each file's extents lie inside the data area, aligned to the allocation
 * unit, sorted without overlap, and own their units once (the units they
 * claim are marked in np->owned); the bytes they hold are the bytes the
 * inode counts.  Room a writer reserved ahead of EOF and never gave back
 * is leaked preallocation, unmapped by a repair (FIX_UNMAP) unless a live
 * host may still be writing it.  Then the allocator: what replay marked
 * used is exactly what the extents own, and its free count is its bitmap's.
 */
#include <inttypes.h>
#include <stdio.h>

#include "shmfs/ns.h"
#include "shmfs/util.h"

#include "fsck.h"

/* Marks unit u owned; false if another extent owns it already. */
static bool own(struct ns_pass *np, uint64_t u)
{
	uint64_t bit = 1ull << (u % 64);

	if (np->owned[u / 64] & bit)
		return false;
	np->owned[u / 64] |= bit;
	return true;
}

/* Extents of one inode: inside the data area, sorted, owned once. */
void fsck_check_extents(struct fsck *ck, struct ns_pass *np, const struct shmfs_inode *ip,
			const char *loc)
{
	struct check *c = ck->c;
	const struct shmfs_attr *a = ip->attr;
	const struct shmfs_extmap *m = ip->ext;
	uint64_t unit = np->unit, sum = 0, last_end = 0, beyond = 0;
	uint64_t need = shmfs_round_up(a->size, unit);

	for (uint32_t x = 0; m && x < m->n; x++) {
		const struct shmfs_extent *e = &m->e[x];
		sum += e->len;
		if (e->foff % unit || e->doff % unit || e->len % unit || !e->len ||
		    e->doff >= c->sb.sb_data_size || e->len > c->sb.sb_data_size - e->doff) {
			fsck_problem(ck, "ex_doff", FIX_NONE, false, loc, "extent file [%" PRIu64
				     ", +%" PRIu64 ") at data %" PRIu64 " is unaligned or outside "
				     "the data area", e->foff, e->len, e->doff);
			continue;
		}
		if (x && e->foff < last_end)
			fsck_problem(ck, "ex_foff", FIX_NONE, false, loc, "extents overlap in the "
				     "file at %" PRIu64, e->foff);
		last_end = e->foff + e->len;
		/* Only room a writer reserved ahead (SHMFS_EXT_F_AHEAD) and never
		 * gave back is leaked; fallocate(KEEP_SIZE) space is wanted. */
		uint64_t from = SHMFS_MAX(need, shmfs_round_down(ip->ahead_from, unit));
		if (ip->ahead_from && last_end > from)
			beyond += last_end - SHMFS_MAX(from, e->foff);
		for (uint64_t u = e->doff / unit, end = u + e->len / unit; u < end; u++) {
			if (!own(np, u)) {
				fsck_problem(ck, "ex_doff", FIX_NONE, false, loc, "data unit %" PRIu64
					     " is owned by another inode too", u);
				break;
			}
		}
	}
	if (sum != a->blocks_bytes)
		fsck_problem(ck, "ex_len", FIX_NONE, false, loc, "counts %" PRIu64 " allocated "
			     "bytes, its extents hold %" PRIu64, a->blocks_bytes, sum);
	c->bytes_used += sum;
	if (!beyond || (ip->orphan_host && !a->nlink))
		return;
	if (ck->nlive) {
		fsck_verbose(ck, "  %s: %" PRIu64 " bytes mapped beyond EOF (a live host may be "
			     "writing it)", loc, beyond);
		return;
	}
	struct problem *p =
		fsck_problem(ck, "ex_foff", FIX_UNMAP, true, loc, "%" PRIu64 " bytes of extents "
			     "lie wholly beyond the unit holding EOF (size %" PRIu64 "): leaked "
			     "preallocation (repair: unmap it)", beyond, a->size);
	p->a = ip->ino;
	/* what the report counts, as a live host gives it back */
	p->b = SHMFS_MAX(need, shmfs_round_down(ip->ahead_from, unit));
	p->c = last_end;
	p->ref_ino = ip->ino;
}

/* The allocator: what replay marked used is what the extents hold. */
void fsck_check_alloc(struct fsck *ck, const struct ns_pass *np)
{
	const struct shmfs_ns *ns = ck->c->ns;
	uint64_t nunits = np->nunits;
	uint64_t leaked = 0, unmarked = 0, first_leak = NONE, first_unmarked = NONE, used = 0;

	for (uint64_t w = 0; w <= nunits / 64; w++) {
		uint64_t mask = w == nunits / 64 ? (nunits % 64 ? (1ull << (nunits % 64)) - 1 : 0)
					       : ~0ull;
		uint64_t al = ns->alloc.bits[w] & mask, ow = np->owned[w] & mask;
		used += (uint64_t)__builtin_popcountll(al);
		if (al & ~ow) {
			leaked += (uint64_t)__builtin_popcountll(al & ~ow);
			if (first_leak == NONE)
				first_leak = w * 64 + (uint64_t)__builtin_ctzll(al & ~ow);
		}
		if (ow & ~al) {
			unmarked += (uint64_t)__builtin_popcountll(ow & ~al);
			if (first_unmarked == NONE)
				first_unmarked = w * 64 + (uint64_t)__builtin_ctzll(ow & ~al);
		}
	}
	if (leaked)
		fsck_problem(ck, "ex_len", FIX_NONE, false, "data area", "%" PRIu64 " units are "
			     "marked used but no file owns them (first: unit %" PRIu64 "): leaked "
			     "space", leaked, first_leak);
	if (unmarked)
		fsck_problem(ck, "ex_doff", FIX_NONE, false, "data area", "%" PRIu64 " units owned "
			     "by files are free for the allocator (first: unit %" PRIu64 "): they "
			     "would be handed out twice", unmarked, first_unmarked);
	if (ns->alloc.nfree != nunits - used)
		fsck_problem(ck, "ex_len", FIX_NONE, false, "data area", "the allocator counts %"
			     PRIu64 " free units, its bitmap %" PRIu64, ns->alloc.nfree,
			     nunits - used);
}
