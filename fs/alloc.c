/* SPDX-License-Identifier: MIT */
/*
 * Data-area allocator: a bitmap of allocation units, one bit per unit
 * (1 = owned by some file's extent).  It is derived state: replay sets and
 * clears bits as extent records come by, and nothing of it is stored in the
 * region, so a peer cannot corrupt it.  A 1 TiB area of 4 KiB units costs
 * 32 MiB of bitmap per host; of 2 MiB units, 64 KiB.
 *
 * Writers pick free runs next-fit from a cursor so consecutive allocations
 * of one stream stay contiguous.
 */
#include "shmfs/alloc.h"
#include "shmfs/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int shmfs_alloc_init(struct shmfs_alloc *a, uint64_t nunits, uint64_t unit)
{
	memset(a, 0, sizeof(*a));
	a->bits = calloc((nunits + 63) / 64 + 1, sizeof(uint64_t));
	a->pend = calloc((nunits + 63) / 64 + 1, sizeof(uint64_t));
	if (!a->bits || !a->pend) {
		free(a->bits);
		free(a->pend);
		return -ENOMEM;
	}
	a->nunits = nunits;
	a->unit = unit;
	a->nfree = nunits;
	return 0;
}

void shmfs_alloc_destroy(struct shmfs_alloc *a)
{
	free(a->bits);
	free(a->pend);
	a->bits = a->pend = NULL;
}

static inline bool bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

/* Count set bits of b in [first, first+n); n is bounded by the caller. */
static uint64_t count_set(const uint64_t *b, uint64_t first, uint64_t n)
{
	uint64_t c = 0, i = first, end = first + n;

	while (i < end && i % 64)
		c += bit(b, i++);
	while (i + 64 <= end) {
		c += (uint64_t)__builtin_popcountll(b[i / 64]);
		i += 64;
	}
	while (i < end)
		c += bit(b, i++);
	return c;
}

static void set_range(uint64_t *b, uint64_t first, uint64_t n, bool on)
{
	uint64_t i = first, end = first + n;

	while (i < end && i % 64) {
		if (on)
			b[i / 64] |= 1ull << (i % 64);
		else
			b[i / 64] &= ~(1ull << (i % 64));
		i++;
	}
	while (i + 64 <= end) {
		b[i / 64] = on ? ~0ull : 0;
		i += 64;
	}
	for (; i < end; i++) {
		if (on)
			b[i / 64] |= 1ull << (i % 64);
		else
			b[i / 64] &= ~(1ull << (i % 64));
	}
}

/* A unit the allocator may not hand out: owned, or freed but pending. */
static inline bool busy(const struct shmfs_alloc *a, uint64_t i)
{
	return bit(a->bits, i) || bit(a->pend, i);
}

static inline uint64_t busy_word(const struct shmfs_alloc *a, uint64_t w)
{
	return a->bits[w] | a->pend[w];
}

bool shmfs_alloc_is_free(const struct shmfs_alloc *a, uint64_t first, uint64_t n)
{
	if (first > a->nunits || n > a->nunits - first)
		return false;
	return count_set(a->bits, first, n) == 0;
}

void shmfs_alloc_mark(struct shmfs_alloc *a, uint64_t first, uint64_t n, bool used)
{
	if (first > a->nunits || n > a->nunits - first)
		return;
	a->nfree += count_set(a->bits, first, n);
	set_range(a->bits, first, n, used);
	a->nfree -= used ? n : 0;
}

void shmfs_alloc_pend(struct shmfs_alloc *a, uint64_t first, uint64_t n, bool pend)
{
	if (first > a->nunits || n > a->nunits - first)
		return;
	a->npend -= count_set(a->pend, first, n);
	set_range(a->pend, first, n, pend);
	a->npend += pend ? n : 0;
}

/* Length of the free run starting at i (bounded by limit). */
static uint64_t free_run(const struct shmfs_alloc *a, uint64_t i, uint64_t limit)
{
	uint64_t s = i;

	while (i < a->nunits && i - s < limit) {
		if (i % 64 == 0 && busy_word(a, i / 64) == 0 && i + 64 <= a->nunits &&
		    i - s + 64 <= limit) {
			i += 64;
			continue;
		}
		if (busy(a, i))
			break;
		i++;
	}
	return i - s;
}

int shmfs_alloc_find(struct shmfs_alloc *a, uint64_t want, uint64_t *first, uint64_t *got)
{
	uint64_t best = 0, best_len = 0;

	if (!a->nfree || !want)
		return -ENOSPC;
	for (uint64_t i = a->cursor % (a->nunits ? a->nunits : 1), scanned = 0;
	     scanned < a->nunits;) {
		if (i % 64 == 0 && busy_word(a, i / 64) == ~0ull) {
			uint64_t step = SHMFS_MIN(64, a->nunits - i);
			scanned += step;
			i = (i + step) % a->nunits;
			continue;
		}
		if (busy(a, i)) {
			scanned++;
			i = (i + 1) % a->nunits;
			continue;
		}
		uint64_t len = free_run(a, i, want);
		if (len > best_len) {
			best = i;
			best_len = len;
		}
		if (len >= want)
			break;
		scanned += len;
		i = (i + len) % a->nunits;
	}
	if (!best_len)
		return -ENOSPC;
	*first = best;
	*got = SHMFS_MIN(best_len, want);
	a->cursor = best + *got;
	return 0;
}
