/* SPDX-License-Identifier: MIT */
/*
 * Data-area allocator: which allocation units some file owns, and which
 * freed ones may not be reused yet.  Derived from replay only (fs/alloc.c);
 * the namespace owns one and changes it as extent records are applied.
 * Units, not bytes, everywhere.  Callers serialise (the writer's lock).
 */
#ifndef SHMFS_ALLOC_H
#define SHMFS_ALLOC_H

#include <stdbool.h>
#include <stdint.h>

struct shmfs_alloc {
	uint64_t nunits;
	uint64_t unit;
	uint64_t nfree;                 /* units no file owns */
	uint64_t npend;                 /* of those, units not yet reusable */
	uint64_t cursor;                /* next-fit hint */
	uint64_t *bits;                 /* 1 = owned by a file (from the log) */
	uint64_t *pend;                 /* 1 = freed, but a host may still reach it */
};

int shmfs_alloc_init(struct shmfs_alloc *a, uint64_t nunits, uint64_t unit);
void shmfs_alloc_destroy(struct shmfs_alloc *a);
bool shmfs_alloc_is_free(const struct shmfs_alloc *a, uint64_t first, uint64_t n);
void shmfs_alloc_mark(struct shmfs_alloc *a, uint64_t first, uint64_t n, bool used);
void shmfs_alloc_pend(struct shmfs_alloc *a, uint64_t first, uint64_t n, bool pend);
/* Find a free run: the first run of want units from the cursor, else the
 * longest run found (>= 1).  Returns -ENOSPC when nothing is free. */
int shmfs_alloc_find(struct shmfs_alloc *a, uint64_t want, uint64_t *first, uint64_t *got);

#endif /* SHMFS_ALLOC_H */
