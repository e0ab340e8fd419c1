/* SPDX-License-Identifier: MIT */
/*
 * libshmfs: direct (DAX-style) mapping of the files of a shmfs mount.
 *
 * A mapping is made in five steps:
 *
 *   1. the descriptor must be a regular file of a shmfs mount: a FUSE
 *      filesystem that answers user.shmfs.map (include/shmfs/shmfs.h);
 *   2. the region the mount names in user.shmfs.region is opened, its
 *      mapping alignment on this host is probed, and its superblock
 *      (magic, checksum, geometry: the same gate every shmfs program uses)
 *      must carry the mount's UUID (region.c);
 *   3. the file's extent map is read (extmap.c); with PROT_WRITE, the holes
 *      of the range are allocated first (fallocate, keeping the size) and
 *      the map is read again;
 *   4. one range of addresses is reserved, aligned to the region's mapping
 *      alignment, and each extent is mapped into it from the region with
 *      MAP_FIXED;
 *   5. the map is read again: if its layout generation moved, the file's
 *      extents changed meanwhile, and the mapping starts over (a few
 *      times, then ESTALE).
 *
 * Pinning.  The library keeps a descriptor of the file open for as long as
 * any part of a mapping of it exists.  No host reuses the space of a file
 * that is open somewhere, even after another host truncates or deletes it
 * (docs/consistency.md, "Freed space and open files across hosts"), so the
 * extents a mapping shows stay the file's, or nobody's, until the unmap.
 * The mappings and their descriptors are kept in the registry
 * (registry.c).
 *
 * This file holds the public calls, and the message each leaves for
 * shmfs_map_error(): the failing call's, per thread, cleared by a call
 * that succeeds.
 *
 * The library's own mmap and munmap calls are raw system calls, so that the
 * LD_PRELOAD shim (preload.c), which interposes the libc functions, never
 * sees them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "client.h"
#include "shmfs/format.h"
#include "shmfs/util.h"

#define API __attribute__((visibility("default")))

#define MAP_TRIES 8             /* layout changes tolerated while mapping */

static_assert(sizeof(long) == 8, "raw mmap system calls take 64-bit offsets");
static_assert(sizeof(struct shmfs_map_info) == 64, "map info layout");
static_assert(sizeof(struct shmfs_map_extent) == 24, "map extent layout");
static_assert(sizeof(struct shmfs_region_info) == 56, "region info layout");

/* ---- errors ------------------------------------------------------------------ */

__thread char shmfs_client_errbuf[512];

int shmfs_client_fail(int e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(shmfs_client_errbuf, sizeof(shmfs_client_errbuf), fmt, ap);
	va_end(ap);
	return -e;
}

API const char *shmfs_map_error(void)
{
	return shmfs_client_errbuf[0] ? shmfs_client_errbuf : "no error";
}

/* Prefix the message of the call that just failed with what it was on. */
static int fail_on(int e, const char *what)
{
	char why[sizeof(shmfs_client_errbuf)];

	snprintf(why, sizeof(why), "%s", shmfs_client_errbuf);
	return fail(e, "%s: %s", what, why);
}

uint64_t shmfs_client_page_size(void)
{
	static uint64_t ps;

	if (!ps) {
		long v = sysconf(_SC_PAGESIZE);
		ps = v > 0 ? (uint64_t)v : 4096;
	}
	return ps;
}

/* ---- mapping ------------------------------------------------------------------ */

/* The checks mmap(2) makes on a descriptor, and: a regular file of a FUSE
 * mount (shmfs proper is recognised by its attributes). */
static int check_fd(int fd, int prot)
{
	struct statfs sfs;
	struct stat st;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return fail(EBADF, "bad file descriptor %d", fd);
	if ((fl & O_PATH) == O_PATH)
		return fail(EBADF, "descriptor %d is an O_PATH descriptor", fd);
	if ((fl & O_ACCMODE) == O_WRONLY)
		return fail(EACCES, "the file is open for writing only");
	if ((prot & PROT_WRITE) && (fl & O_ACCMODE) != O_RDWR)
		return fail(EACCES, "PROT_WRITE needs the file open for reading and writing");
	if ((prot & PROT_WRITE) && (fl & O_APPEND))
		return fail(EACCES, "PROT_WRITE on a file open with O_APPEND");
	if (fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0)
		return fail(errno, "%s", strerror(errno));
	if ((uint64_t)sfs.f_type != FUSE_SUPER_MAGIC)
		return fail(ENOTSUP, "not a file of a shmfs mount (filesystem type %#lx)",
			    (unsigned long)sfs.f_type);
	if (!S_ISREG(st.st_mode))
		return fail(ENOTSUP, "not a regular file");
	return 0;
}

static int check_args(int prot, int flags, bool fixed_ok)
{
	int type = flags & MAP_TYPE;
	int known = MAP_TYPE | MAP_POPULATE | MAP_NORESERVE | MAP_FIXED | MAP_FIXED_NOREPLACE;

	if (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC))
		return fail(EINVAL, "unknown prot bits %#x", prot);
	if (type == MAP_PRIVATE)
		return fail(EINVAL, "MAP_PRIVATE is not offered: direct mappings are shared");
	if (type != 0 && type != MAP_SHARED && type != MAP_SHARED_VALIDATE)
		return fail(EINVAL, "unknown mapping type %#x", type);
	if (flags & ~known)
		return fail(EINVAL, "flags %#x are not offered for direct mappings", flags & ~known);
	if (!fixed_ok && (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)))
		return fail(EINVAL, "MAP_FIXED needs an address: use shmfs_map_fd_at()");
	return 0;
}

/* Reserve [base, base + len) for the mapping: anywhere (near hint), or at
 * exactly base with MAP_FIXED_NOREPLACE.  base is aligned to align. */
static int reserve(uintptr_t hint, size_t len, uint64_t align, bool exact, uintptr_t *base)
{
	int fl = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	uint64_t ps = shmfs_client_page_size();

	if (exact) {
		void *p = shmfs_sys_mmap((void *)hint, len, PROT_NONE, fl | MAP_FIXED_NOREPLACE, -1,
					 0);
		if (p == MAP_FAILED)
			return fail(errno, "addresses %#" PRIxPTR "..%#" PRIxPTR ": %s", hint,
				    hint + len, strerror(errno));
		if ((uintptr_t)p != hint) { /* a kernel without MAP_FIXED_NOREPLACE */
			shmfs_sys_munmap((uintptr_t)p, len);
			return fail(EEXIST, "addresses %#" PRIxPTR "..%#" PRIxPTR " are in use", hint,
				    hint + len);
		}
		*base = hint;
		return 0;
	}
	size_t extra = align > ps ? (size_t)(align - ps) : 0;
	if (len + extra < len)
		return fail(ENOMEM, "mapping too large");
	void *p = shmfs_sys_mmap((void *)hint, len + extra, PROT_NONE, fl, -1, 0);
	if (p == MAP_FAILED)
		return fail(errno, "cannot reserve %zu bytes of address space: %s", len, strerror(errno));
	uintptr_t s = (uintptr_t)p, a = (uintptr_t)shmfs_round_up(s, align);
	if (a > s)
		shmfs_sys_munmap(s, a - s);
	if (s + len + extra > a + len)
		shmfs_sys_munmap(a + len, s + len + extra - (a + len));
	*base = a;
	return 0;
}

/*
 * One call's mapping, made over as many tries as the file's layout takes.
 * The caller's range is fixed by the first try; [a, b) is that range
 * widened to the region's mapping alignment, mapped at base.
 */
struct job {
	struct fref *f;
	uint64_t off, len;      /* the caller's range; len 0 until fixed */
	int prot, flags;
	bool fixed, noreplace;  /* MAP_FIXED, MAP_FIXED_NOREPLACE */
	void *addr;
	struct mount_region r;
	struct fmap m;
	struct piece *pc;       /* what [a, b) maps, this try */
	uint32_t npc;
	uint64_t a, b;
	uintptr_t base;
	size_t mlen;            /* b - a, once reserved */
	bool reserved;          /* [base, base + mlen) is ours to unmap on failure... */
	bool touched;           /* ...and, with MAP_FIXED, the caller's old mapping is gone */
};

/* Once: the range must not move between tries.  Then: within the file. */
static int fix_range(struct job *j, uint64_t want)
{
	uint64_t size = j->m.mi.mi_size, off = j->off;

	if (!j->len) {
		j->len = want;
		if (!j->len && off >= size)
			return fail(EINVAL, size ? "offset %" PRIu64 " is at or past the end of the file"
						 : "the file is empty (offset %" PRIu64 ")", off);
		if (!j->len)
			j->len = size - off;
	}
	if (off + j->len < off || off + j->len > shmfs_round_up(size, shmfs_client_page_size()) ||
	    j->len > SIZE_MAX / 2)
		return fail(EINVAL,
			    "bytes %" PRIu64 "..%" PRIu64 " go past the end of the file (%" PRIu64 " bytes)",
			    off, off + j->len, size);
	return 0;
}

/* The filesystem's unit and the caller's MAP_FIXED range against the
 * alignment the region needs here. */
static int check_align(const struct job *j)
{
	uint64_t A = j->r.align, unit = j->m.mi.mi_unit;

	if (unit % A) {
		char u[32], al[32], opt[32];
		/* as mkfs.shmfs takes it: 2M, 1G */
		snprintf(opt, sizeof(opt), "%" PRIu64 "%s",
			 (uint64_t)(A % SHMFS_GIB == 0 ? A / SHMFS_GIB :
				    A % SHMFS_MIB == 0 ? A / SHMFS_MIB : A / SHMFS_KIB),
			 A % SHMFS_GIB == 0 ? "G" : A % SHMFS_MIB == 0 ? "M" : "K");
		return fail(ENOTSUP,
			    "the filesystem allocates in units of %s, but the region %s needs mappings aligned to %s: reformat it with --alloc-unit %s or larger",
			    shmfs_fmt_size(unit, u, sizeof(u)), j->r.path,
			    shmfs_fmt_size(A, al, sizeof(al)), opt);
	}
	if ((j->fixed || j->noreplace) && A > shmfs_client_page_size() &&
	    (j->off % A || (uintptr_t)j->addr % A || (j->fixed && j->len % A)))
		return fail(EINVAL,
			    "region %s maps in units of %" PRIu64 " bytes: MAP_FIXED needs the address, offset%s aligned to it",
			    j->r.path, A, j->fixed ? " and length" : "");
	return 0;
}

/* The pieces [a, b) maps now.  Returns 0, 1 when the holes of a writable
 * mapping were just allocated (look again), or -errno. */
static int find_pieces(struct job *j)
{
	uint64_t A = j->r.align, hole;
	int rc;

	j->a = shmfs_round_down(j->off, A);
	j->b = shmfs_round_up(j->off + j->len, A);
	free(j->pc);
	j->pc = NULL;
	rc = shmfs_fmap_pieces(&j->m, j->a, j->b, &j->pc, &j->npc, &hole);
	if (rc < 0)
		return fail(ENOMEM, "out of memory");
	if (rc == 1) {
		if (!(j->prot & PROT_WRITE))
			return fail(EINVAL,
				    "the file has a hole at offset %" PRIu64 ": a read-only direct mapping needs every byte of its range allocated (write it, or fallocate it, first)",
				    hole);
		if (fallocate(j->f->fd, FALLOC_FL_KEEP_SIZE, (off_t)j->a,
			      (off_t)(j->b - j->a)) < 0) {
			int e = errno;
			return fail(e, "cannot allocate the file's holes in bytes %" PRIu64 "..%" PRIu64 ": %s",
				    j->a, j->b, strerror(e));
		}
		return 1;
	}
	for (uint32_t i = 0; i < j->npc; i++) {
		const struct piece *p = &j->pc[i];
		if ((j->r.offset + p->roff) % A || p->foff % A || p->len % A)
			return fail(ENOTSUP,
				    "an extent of the file is not aligned to the region's mapping alignment (%" PRIu64 "): reformat with a larger --alloc-unit",
				    A);
		if (p->roff > j->r.size || p->len > j->r.size - p->roff)
			return fail(EIO, "an extent of the file lies outside the region");
	}
	return 0;
}

/* The addresses, once: reserved, or the caller's MAP_FIXED ones, where
 * direct mappings are first unmapped properly, so that the library lets
 * go of their files. */
static int place(struct job *j)
{
	int rc;

	if (!j->reserved) {
		j->mlen = (size_t)(j->b - j->a);
		if (j->fixed) {
			j->base = (uintptr_t)j->addr;
		} else {
			uintptr_t hint = 0;
			if (j->addr)
				hint = (uintptr_t)j->addr - (uintptr_t)(j->off - j->a);
			rc = reserve(hint, j->mlen, j->r.align, j->noreplace, &j->base);
			if (rc)
				return rc;
		}
		j->reserved = true;
	}
	if (j->fixed && !j->touched && shmfs_reg_count()) {
		rc = shmfs_reg_cut(j->base, j->base + j->mlen, true);
		if (rc < 0)
			return fail(-rc, "cannot unmap what was at %#" PRIxPTR ": %s", j->base,
				    strerror(-rc));
	}
	j->touched = true;
	return 0;
}

static int map_extents(const struct job *j)
{
	for (uint32_t i = 0; i < j->npc; i++) {
		const struct piece *p = &j->pc[i];
		int fl = MAP_SHARED | MAP_FIXED | (j->flags & MAP_POPULATE);
		void *q = shmfs_sys_mmap((void *)(j->base + (p->foff - j->a)), (size_t)p->len,
					 j->prot, fl, j->r.core.fd, j->r.offset + p->roff);
		if (q == MAP_FAILED) {
			int e = errno;
			return fail(e, "cannot map %" PRIu64 " bytes of the region %s at offset %" PRIu64 ": %s",
				    p->len, j->r.path, j->r.offset + p->roff, strerror(e));
		}
	}
	return 0;
}

/* One try: 0 mapped, 1 the layout moved (try again), or -errno. */
static int map_try(struct job *j, uint64_t want)
{
	uint64_t gen;
	int rc;

	shmfs_fmap_free(&j->m);
	rc = shmfs_fmap_read(j->f->fd, &j->m);
	if (!rc && j->r.core.fd < 0)
		rc = shmfs_mount_region_open(j->f->fd, j->prot, &j->r);
	if (rc)
		return rc;
	if (memcmp(j->m.mi.mi_uuid, j->r.uuid, 16))
		return fail(ENODEV, "the file's map and the mount's region name different filesystems");
	if ((rc = fix_range(j, want)) || (rc = check_align(j)) || (rc = find_pieces(j)) ||
	    (rc = place(j)) || (rc = map_extents(j)))
		return rc;
	/* Did the layout hold still while we mapped it? */
	gen = j->m.mi.mi_gen;
	shmfs_fmap_free(&j->m);
	rc = shmfs_fmap_read(j->f->fd, &j->m);
	if (rc)
		return rc;
	return j->m.mi.mi_gen == gen ? 0 : 1;
}

/* Register the mapping made: the entry takes a reference on the file. */
static int map_register(struct job *j)
{
	struct entry ne = { .start = j->base, .end = j->base + j->mlen, .foff = j->a,
			    .prot = j->prot, .f = j->f, .pc = j->pc, .npc = j->npc };
	int rc;

	ne.ustart = j->base + (uintptr_t)(j->off - j->a);
	ne.uend = ne.ustart + (uintptr_t)shmfs_round_up(j->len, shmfs_client_page_size());
	shmfs_fref_get(j->f);
	rc = shmfs_reg_add(&ne);
	if (rc) {
		shmfs_fref_put(j->f);
		return fail(-rc, "out of memory");
	}
	j->pc = NULL;
	return 0;
}

/*
 * Map [off, off + *lenp) of f's file (see shmfs_map_fd_at) and register
 * the mapping, which takes a reference on f.  Returns the address for the
 * caller, or NULL with errno set.
 */
static void *map_file(struct fref *f, uint64_t off, size_t *lenp, int prot, int flags, void *addr)
{
	uint64_t ps = shmfs_client_page_size();
	struct job j = { .f = f, .off = off, .prot = prot, .flags = flags, .addr = addr,
			 .fixed = flags & MAP_FIXED, .noreplace = flags & MAP_FIXED_NOREPLACE,
			 .r.core.fd = -1 };
	int rc = 0, tries;

	if (off % ps)
		rc = fail(EINVAL, "offset %" PRIu64 " is not a multiple of the page size", off);
	else if ((j.fixed || j.noreplace) && (!addr || (uintptr_t)addr % ps))
		rc = fail(EINVAL, "MAP_FIXED address %p is not page aligned", addr);
	for (tries = 0; !rc && tries < MAP_TRIES; tries++) {
		rc = map_try(&j, *lenp);
		if (rc == 0)
			break;
		if (rc == 1)
			rc = 0;
	}
	if (!rc && tries == MAP_TRIES)
		rc = fail(ESTALE, "the file's layout kept changing while it was being mapped (%d tries)",
			  MAP_TRIES);
	if (!rc)
		rc = map_register(&j);
	if (rc && j.reserved && (!j.fixed || j.touched))
		shmfs_sys_munmap(j.base, j.mlen);
	free(j.pc);
	shmfs_fmap_free(&j.m);
	shmfs_mount_region_close(&j.r);
	if (rc) {
		errno = -rc;
		return NULL;
	}
	*lenp = (size_t)j.len;
	shmfs_client_errbuf[0] = 0;
	return (void *)(j.base + (uintptr_t)(off - j.a));
}

static void *map_owned_fd(int fd, uint64_t off, size_t *len, int prot, int flags, void *addr)
{
	struct fref *f = calloc(1, sizeof(*f));

	if (!f) {
		close(fd);
		errno = -fail(ENOMEM, "out of memory");
		return NULL;
	}
	f->fd = fd;
	f->refs = 1; /* ours, for the duration of the call */
	void *p = map_file(f, off, len, prot, flags, addr);
	int e = errno;
	shmfs_fref_put(f);
	errno = e;
	return p;
}

API void *shmfs_map_fd_at(int fd, uint64_t offset, size_t *len, int prot, int flags, void *addr)
{
	int rc;

	if (!len) {
		errno = -fail(EINVAL, "len is NULL");
		return NULL;
	}
	if ((rc = check_args(prot, flags, true)) || (rc = check_fd(fd, prot))) {
		errno = -rc;
		return NULL;
	}
	int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (own < 0) {
		errno = -fail(errno, "cannot duplicate descriptor %d: %s", fd, strerror(errno));
		return NULL;
	}
	return map_owned_fd(own, offset, len, prot, flags, addr);
}

API void *shmfs_map_fd(int fd, int prot, int flags, size_t *len)
{
	int rc = check_args(prot, flags, false);

	if (rc) {
		errno = -rc;
		return NULL;
	}
	return shmfs_map_fd_at(fd, 0, len, prot, flags, NULL);
}

API void *shmfs_map(const char *path, int prot, int flags, size_t *len)
{
	int rc, fd;

	if (!path || !len) {
		errno = -fail(EINVAL, "path or len is NULL");
		return NULL;
	}
	if ((rc = check_args(prot, flags, false))) {
		errno = -rc;
		return NULL;
	}
	fd = open(path, ((prot & PROT_WRITE) ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		errno = -fail(errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if ((rc = check_fd(fd, prot))) {
		close(fd);
		errno = -fail_on(-rc, path);
		return NULL;
	}
	void *p = map_owned_fd(fd, 0, len, prot, flags, NULL);
	if (!p)
		errno = -fail_on(errno, path);
	return p;
}

/* ---- unmapping, remapping, syncing -------------------------------------------- */

static int check_range(const void *addr, size_t len, uintptr_t *a, uintptr_t *b)
{
	uint64_t ps = shmfs_client_page_size();

	*a = (uintptr_t)addr;
	if (!len || *a % ps || len > UINTPTR_MAX - *a - ps)
		return -EINVAL;
	*b = *a + (uintptr_t)shmfs_round_up(len, ps);
	return 0;
}

API int shmfs_unmap(void *addr, size_t len)
{
	uintptr_t a, b;
	int rc;

	if (!shmfs_reg_count()) { /* the fast path the shim's every munmap takes */
		errno = EINVAL;
		return -1;
	}
	if (check_range(addr, len, &a, &b)) {
		errno = -fail(EINVAL, "bad range %p + %zu", addr, len);
		return -1;
	}
	rc = shmfs_reg_cut(a, b, true);
	if (rc <= 0) {
		errno = -(rc ? fail(-rc, "munmap: %s", strerror(-rc))
			     : fail(EINVAL, "no direct mapping in %p + %zu", addr, len));
		return -1;
	}
	return 0;
}

API int shmfs_is_mapped(const void *addr, void **base, size_t *len)
{
	uintptr_t p = (uintptr_t)addr;
	struct entry e;

	if (!shmfs_reg_lookup(p, p, false, &e))
		return 0;
	if (base)
		*base = (void *)e.ustart;
	if (len)
		*len = e.uend - e.ustart;
	return 1;
}

API void *shmfs_remap(void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	uint64_t ps = shmfs_client_page_size();
	uintptr_t a, b;
	struct entry ent;

	if (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED) ||
	    ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE)) || !new_len ||
	    check_range(old_addr, old_len, &a, &b)) {
		errno = -fail(EINVAL, "bad arguments to shmfs_remap");
		return NULL;
	}
	uintptr_t nb = a + (uintptr_t)shmfs_round_up(new_len, ps);
	if (nb < a) {
		errno = -fail(EINVAL, "bad arguments to shmfs_remap");
		return NULL;
	}
	if (!shmfs_reg_lookup(a, b, true, &ent)) {
		errno = -fail(EFAULT, "%p + %zu is not within one direct mapping", old_addr, old_len);
		return NULL;
	}
	struct fref *f = ent.f;
	uint64_t foff = shmfs_entry_foff(&ent, a);
	int prot = ent.prot;

	void *res = NULL;
	size_t l;
	if (flags & MREMAP_FIXED) {
		uintptr_t n = (uintptr_t)new_addr;
		if (n % ps || (n < b && a < n + (nb - a))) {
			errno = -fail(EINVAL, "bad MREMAP_FIXED address %p", new_addr);
			goto out;
		}
		l = new_len;
		res = map_file(f, foff, &l, prot, MAP_FIXED, new_addr);
		if (res && shmfs_unmap(old_addr, old_len))
			res = NULL;
	} else if (nb <= b) {
		res = old_addr;
		if (nb < b && shmfs_unmap((void *)nb, b - nb))
			res = NULL;
	} else {
		/* Grow in place if the addresses after the mapping are free. */
		l = nb - b;
		res = map_file(f, foff + (b - a), &l, prot, MAP_FIXED_NOREPLACE, (void *)b);
		if (res) {
			res = old_addr;
		} else if (flags & MREMAP_MAYMOVE) {
			l = new_len;
			res = map_file(f, foff, &l, prot, 0, NULL);
			if (res && shmfs_unmap(old_addr, old_len)) {
				int e = errno;
				shmfs_unmap(res, new_len);
				errno = e;
				res = NULL;
			}
		} else if (errno == EEXIST || errno == ENOMEM || errno == EINVAL) {
			/* EINVAL: the region's alignment rules out growing here */
			char why[sizeof(shmfs_client_errbuf)];
			snprintf(why, sizeof(why), "%s", shmfs_client_errbuf);
			errno = -fail(ENOMEM, "cannot grow the mapping in place (%s)", why);
		}
	}
out:;
	int e = errno;
	shmfs_fref_put(f);
	errno = e;
	return res;
}

/* Do the pieces still say what the file's current map says? */
static bool pieces_current(const struct fmap *m, const struct piece *pc, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct piece *now;
		uint32_t k;
		uint64_t hole;
		if (shmfs_fmap_pieces(m, pc[i].foff, pc[i].foff + pc[i].len, &now, &k, &hole))
			return false;
		bool same = k == 1 && now[0].roff == pc[i].roff;
		free(now);
		if (!same)
			return false;
	}
	return true;
}

/* Publish the stores to it[k]'s file, and check that the pieces of every
 * item of that file are still the file's.  rc: the first failure so far. */
static int sync_file(const struct sync_item *it, size_t k, size_t n, int rc)
{
	struct fmap m;

	if (fsetxattr(it[k].f->fd, SHMFS_XATTR_SYNC, "1", 1, 0) < 0 && !rc)
		rc = fail(errno, "cannot publish the stores (%s): %s", SHMFS_XATTR_SYNC,
			  strerror(errno));
	if (shmfs_fmap_read(it[k].f->fd, &m))
		return rc ? rc : -ESTALE;
	for (size_t q = k; q < n; q++)
		if (it[q].f == it[k].f && !rc && !pieces_current(&m, it[q].pc, it[q].npc))
			rc = fail(ESTALE,
				  "the file's layout changed since it was mapped (truncated, hole punched or deleted elsewhere): stores through this mapping are not in the file");
	shmfs_fmap_free(&m);
	return rc;
}

API int shmfs_sync(void *addr, size_t len)
{
	uintptr_t a, b;
	struct sync_item *it = NULL;
	size_t n = 0;
	int rc = 0;

	if (!shmfs_reg_count()) {
		errno = -fail(ENOMEM, "no direct mapping in %p + %zu", addr, len);
		return -1;
	}
	if (check_range(addr, len, &a, &b)) {
		errno = -fail(EINVAL, "bad range %p + %zu", addr, len);
		return -1;
	}
	if (shmfs_reg_collect(a, b, &it, &n)) {
		errno = -fail(ENOMEM, "out of memory");
		return -1;
	}
	if (!n) {
		free(it);
		errno = -fail(ENOMEM, "no direct mapping in %p + %zu", addr, len);
		return -1;
	}
	/* Our stores, before the record that tells the other hosts. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (size_t k = 0; k < n; k++) {
		bool seen = false;
		for (size_t q = 0; q < k; q++)
			seen |= it[q].f == it[k].f;
		if (!seen)
			rc = sync_file(it, k, n, rc);
	}
	shmfs_reg_release(it, n);
	if (rc) {
		errno = -rc;
		return -1;
	}
	shmfs_client_errbuf[0] = 0;
	return 0;
}
