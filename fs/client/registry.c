/* SPDX-License-Identifier: MIT */
/*
 * The registry: every direct mapping the library has made, and the
 * descriptors that pin the mapped files.
 *
 * Every mapping is an entry in one array sorted by address, under
 * reg.lock.  The lock is held for array work only, never across a request
 * to the filesystem: calls that talk to the daemon take a reference on the
 * file's descriptor under the lock and drop it after, and a descriptor
 * whose last reference goes is closed after the lock is released (closing
 * talks to the daemon too).
 *
 * An entry records what it maps -- pieces of (file offset, region offset,
 * length) -- so that shmfs_sync() can tell that the file's layout moved
 * away from the mapping, and so that it can be split or trimmed when part
 * of it is unmapped.  An entry may begin and end with alignment slack
 * (devdax: the caller asked for 4 KiB at offset 4 KiB, the device maps 2
 * MiB at a time); slack goes when no part of the caller's range is left
 * next to it.
 *
 * reg.n is also read without the lock (shmfs_reg_count): a process with no
 * direct mappings pays nothing for the shim's munmap and msync.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "shmfs/util.h"

static struct {
	pthread_mutex_t lock;
	struct entry *v;        /* sorted by start, disjoint */
	size_t n, cap;          /* n also read without the lock (fast paths) */
} reg = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_prefork(void)
{
	pthread_mutex_lock(&reg.lock);
}

static void reg_postfork(void)
{
	pthread_mutex_unlock(&reg.lock);
}

/* A fork while another thread holds the lock must not leave the child's
 * copy locked forever. */
static void reg_init(void)
{
	pthread_atfork(reg_prefork, reg_postfork, reg_postfork);
}

static void reg_lock(void)
{
	pthread_once(&reg_once, reg_init);
	pthread_mutex_lock(&reg.lock);
}

static void reg_unlock(void)
{
	pthread_mutex_unlock(&reg.lock);
}

size_t shmfs_reg_count(void)
{
	return __atomic_load_n(&reg.n, __ATOMIC_ACQUIRE);
}

/* Index of the first entry that ends after addr.  Lock held. */
static size_t reg_find(uintptr_t addr)
{
	size_t lo = 0, hi = reg.n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (reg.v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Have room for k more entries.  Lock held. */
static int reg_reserve(size_t k)
{
	if (reg.n + k <= reg.cap)
		return 0;
	size_t cap = reg.cap ? reg.cap * 2 : 16;
	while (cap < reg.n + k)
		cap *= 2;
	struct entry *v = realloc(reg.v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	reg.v = v;
	reg.cap = cap;
	return 0;
}

/* Open a gap of k entries at index i (room reserved).  Lock held. */
static void reg_open_gap(size_t i, size_t k)
{
	memmove(&reg.v[i + k], &reg.v[i], (reg.n - i) * sizeof(*reg.v));
	__atomic_store_n(&reg.n, reg.n + k, __ATOMIC_RELEASE);
}

static void reg_close_gap(size_t i, size_t k)
{
	memmove(&reg.v[i], &reg.v[i + k], (reg.n - i - k) * sizeof(*reg.v));
	__atomic_store_n(&reg.n, reg.n - k, __ATOMIC_RELEASE);
}

/* ---- descriptors -------------------------------------------------------------- */

/* Drop a reference; a descriptor no longer referenced is queued in dead
 * (closed by the caller after unlocking: closing talks to the daemon). */
static void fref_put_locked(struct fref *f, struct fref **dead, size_t *ndead)
{
	if (--f->refs == 0)
		dead[(*ndead)++] = f;
}

static void fref_close(struct fref **dead, size_t ndead)
{
	for (size_t i = 0; i < ndead; i++) {
		close(dead[i]->fd);
		free(dead[i]);
	}
}

void shmfs_fref_get(struct fref *f)
{
	reg_lock();
	f->refs++;
	reg_unlock();
}

void shmfs_fref_put(struct fref *f)
{
	struct fref *dead[1];
	size_t nd = 0;

	reg_lock();
	fref_put_locked(f, dead, &nd);
	reg_unlock();
	fref_close(dead, nd);
}

int shmfs_pieces_sub(const struct piece *pc, uint32_t n, uint64_t fa, uint64_t fb,
		     struct piece **out, uint32_t *nout)
{
	struct piece *v = malloc((n ? n : 1) * sizeof(*v));
	uint32_t k = 0;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t a = SHMFS_MAX(fa, pc[i].foff), b = SHMFS_MIN(fb, pc[i].foff + pc[i].len);
		if (a < b)
			v[k++] = (struct piece){ a, pc[i].roff + (a - pc[i].foff), b - a };
	}
	*out = v;
	*nout = k;
	return 0;
}

/* ---- cutting and adding -------------------------------------------------------- */

static void parts_free(struct entry *out, size_t nout)
{
	for (size_t q = 0; q < nout; q++)
		free(out[q].pc);
	free(out);
}

/*
 * What is left of entries [i, j) once [lo, hi) goes: at most two parts per
 * entry, left of lo and right of hi, in entry order, with their pieces.
 * Returns how many (out has room for 2 * (j - i)), or -ENOMEM.  Lock held.
 */
static long cut_parts(size_t i, size_t j, uintptr_t lo, uintptr_t hi, struct entry *out)
{
	size_t nout = 0;

	for (size_t k = i; k < j; k++) {
		const struct entry *e = &reg.v[k];
		struct entry part[2];
		int np = 0;
		if (e->start < lo && e->ustart < lo) {
			part[np] = *e;
			part[np].end = lo;
			part[np].uend = SHMFS_MIN(e->uend, lo);
			np++;
		}
		if (e->end > hi && e->uend > hi) {
			part[np] = *e;
			part[np].start = hi;
			part[np].ustart = SHMFS_MAX(e->ustart, hi);
			part[np].foff = shmfs_entry_foff(e, hi);
			np++;
		}
		for (int p = 0; p < np; p++) {
			if (shmfs_pieces_sub(e->pc, e->npc, part[p].foff,
					     shmfs_entry_foff(e, part[p].end), &part[p].pc,
					     &part[p].npc)) {
				for (size_t q = 0; q < nout; q++) /* part[0] among them */
					free(out[q].pc);
				return -ENOMEM;
			}
			out[nout++] = part[p];
		}
	}
	return (long)nout;
}

/*
 * Take [a, b) out of the registry.  With do_unmap, munmap it first, and
 * with it the slack of entries that keep no part of the caller's range on
 * that side; without, only forget (the kernel already replaced the
 * range).  Returns how many entries it touched (0: none overlaps, nothing
 * done), or -errno with nothing changed.  Descriptors no longer needed go
 * to dead, which has room for one per entry touched.  Lock held.
 */
static int cut_locked(uintptr_t a, uintptr_t b, bool do_unmap, struct fref ***deadp,
		      size_t *ndead)
{
	size_t i = reg_find(a), j = i;
	uintptr_t lo = a, hi = b;

	while (j < reg.n && reg.v[j].start < b)
		j++;
	if (i == j)
		return 0;
	for (size_t k = i; do_unmap && k < j; k++) {
		const struct entry *e = &reg.v[k];
		if (a <= e->ustart && e->start < lo)
			lo = e->start;
		if (b >= e->uend && e->end > hi)
			hi = e->end;
	}
	struct fref **dead = malloc((j - i) * sizeof(*dead));
	/* each entry becomes at most two: left of lo, right of hi */
	struct entry *out = calloc(2 * (j - i), sizeof(*out));
	long got = dead && out ? cut_parts(i, j, lo, hi, out) : -ENOMEM;
	if (got < 0) {
		free(dead);
		free(out);
		return -ENOMEM;
	}
	size_t nout = (size_t)got;
	if ((nout > j - i && reg_reserve(nout - (j - i))) ||
	    (do_unmap && shmfs_sys_munmap(lo, hi - lo) < 0)) {
		int e = errno; /* ENOMEM from realloc, or munmap's */
		parts_free(out, nout);
		free(dead);
		return -e;
	}
	/* Commit (nothing fails from here): references follow the parts,
	 * which are in entry order, 0, 1 or 2 per old entry. */
	*ndead = 0;
	for (size_t k = i, q = 0; k < j; k++) {
		struct entry *e = &reg.v[k];
		while (q < nout && out[q].start < e->end && out[q].end > e->start) {
			e->f->refs++;
			q++;
		}
		fref_put_locked(e->f, dead, ndead);
		free(e->pc);
	}
	int touched = (int)(j - i);
	if (nout > j - i)
		reg_open_gap(j, nout - (j - i));
	else if (nout < j - i)
		reg_close_gap(i + nout, (j - i) - nout);
	memcpy(&reg.v[i], out, nout * sizeof(*out));
	free(out);
	*deadp = dead;
	return touched;
}

int shmfs_reg_cut(uintptr_t a, uintptr_t b, bool do_unmap)
{
	struct fref **dead = NULL;
	size_t nd = 0;
	int rc;

	reg_lock();
	rc = cut_locked(a, b, do_unmap, &dead, &nd);
	reg_unlock();
	fref_close(dead, nd);
	free(dead);
	return rc;
}

/* Merge entry r into l, its left neighbour, if it continues it (same file,
 * contiguous addresses and file offsets, no slack between).  Lock held. */
static bool merge_locked(size_t l, size_t r, struct fref **dead, size_t *nd)
{
	struct entry *L = &reg.v[l], *R = &reg.v[r];

	if (L->end != R->start || L->uend != L->end || R->ustart != R->start || L->f != R->f ||
	    L->prot != R->prot || shmfs_entry_foff(L, L->end) != R->foff)
		return false;
	struct piece *pc = realloc(L->pc, (L->npc + R->npc) * sizeof(*pc));
	if (!pc)
		return false;
	memcpy(pc + L->npc, R->pc, R->npc * sizeof(*pc));
	L->pc = pc;
	L->npc += R->npc;
	L->end = R->end;
	L->uend = R->uend;
	free(R->pc);
	fref_put_locked(R->f, dead, nd); /* L's reference stays */
	reg_close_gap(r, 1);
	return true;
}

/*
 * Add an entry (its fref reference already taken).  Entries it overlaps
 * are stale -- their memory was unmapped behind the library's back, or the
 * kernel would not have handed out these addresses -- and are forgotten.
 * A neighbour that continues it is merged with it.
 */
int shmfs_reg_add(struct entry *ne)
{
	struct fref **dead = NULL;
	size_t nd = 0;
	int rc;

	reg_lock();
	rc = cut_locked(ne->start, ne->end, false, &dead, &nd);
	if (rc >= 0) {
		size_t i = reg_find(ne->start);
		rc = reg_reserve(1);
		if (!rc) {
			reg_open_gap(i, 1);
			reg.v[i] = *ne;
			/* merge with the right neighbour, then the left one */
			if (i + 1 < reg.n)
				merge_locked(i, i + 1, dead, &nd);
			if (i > 0)
				merge_locked(i - 1, i, dead, &nd);
		}
	}
	reg_unlock();
	fref_close(dead, nd);
	free(dead);
	return rc < 0 ? rc : 0;
}

/* ---- looking up ------------------------------------------------------------------ */

bool shmfs_reg_lookup(uintptr_t a, uintptr_t b, bool ref, struct entry *e)
{
	bool found = false;

	if (!shmfs_reg_count())
		return false;
	reg_lock();
	size_t i = reg_find(a);
	const struct entry *c = i < reg.n ? &reg.v[i] : NULL;
	if (c && c->ustart <= a && (a == b ? a < c->uend : b <= c->uend)) {
		found = true;
		*e = *c;
		if (ref)
			e->f->refs++;
	}
	reg_unlock();
	return found;
}

int shmfs_reg_collect(uintptr_t a, uintptr_t b, struct sync_item **items, size_t *n)
{
	struct sync_item *it;

	*n = 0;
	reg_lock();
	size_t i = reg_find(a), j = i;
	while (j < reg.n && reg.v[j].start < b)
		j++;
	it = calloc(j - i + 1, sizeof(*it));
	for (size_t k = i; it && k < j; k++) {
		const struct entry *e = &reg.v[k];
		uintptr_t s = SHMFS_MAX(a, e->ustart), t = SHMFS_MIN(b, e->uend);
		if (s >= t)
			continue;
		if (shmfs_pieces_sub(e->pc, e->npc, shmfs_entry_foff(e, s), shmfs_entry_foff(e, t),
				     &it[*n].pc, &it[*n].npc))
			break;
		it[*n].f = e->f;
		e->f->refs++;
		(*n)++;
	}
	reg_unlock();
	*items = it;
	return it ? 0 : -ENOMEM;
}

void shmfs_reg_release(struct sync_item *it, size_t n)
{
	struct fref **dead = calloc(n, sizeof(*dead));
	size_t nd = 0;

	reg_lock();
	for (size_t k = 0; k < n; k++) {
		if (dead)
			fref_put_locked(it[k].f, dead, &nd);
		else
			it[k].f->refs--; /* out of memory: leak the descriptor, not crash */
		free(it[k].pc);
	}
	reg_unlock();
	fref_close(dead, nd);
	free(dead);
	free(it);
}
