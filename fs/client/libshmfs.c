/* SPDX-License-Identifier: MIT */
/*
 * libshmfs: direct (DAX-style) mapping of the files of a shmfs mount.
 *
 * A mapping is made in five steps:
 *
 *   1. the descriptor must be a regular file of a shmfs mount: a FUSE
 *      filesystem that answers user.shmfs.map (include/shmfs/shmfs.h);
 *   2. the region the mount names in user.shmfs.region is opened here, its
 *      mapping alignment on this host is probed, and its superblock
 *      (magic, checksum, geometry: the same gate every shmfs program uses)
 *      must carry the mount's UUID;
 *   3. the file's extent map is read; with PROT_WRITE, the holes of the
 *      range are allocated first (fallocate, keeping the size) and the map
 *      is read again;
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
 *
 * The registry.  Every mapping is an entry in one array sorted by address,
 * under reg.lock.  The lock is held for array work only, never across a
 * request to the filesystem: calls that talk to the daemon take a
 * reference on the file's descriptor under the lock and drop it after.
 * An entry records what it maps -- pieces of (file offset, region offset,
 * length) -- so that shmfs_sync() can tell that the file's layout moved
 * away from the mapping, and so that it can be split or trimmed when part
 * of it is unmapped.  An entry may begin and end with alignment slack
 * (devdax: the caller asked for 4 KiB at offset 4 KiB, the device maps 2
 * MiB at a time); slack goes when no part of the caller's range is left
 * next to it.
 *
 * The library's own mmap and munmap calls are raw system calls, so that the
 * LD_PRELOAD shim (preload.c), which interposes the libc functions, never
 * sees them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shmfs/shmfs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "shmfs/format.h"
#include "shmfs/region.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#define API __attribute__((visibility("default")))

#define MAP_TRIES 8             /* layout changes tolerated while mapping */
#define REGION_XATTR_MAX (sizeof(struct shmfs_region_info) + PATH_MAX + 256)

static_assert(sizeof(long) == 8, "raw mmap system calls take 64-bit offsets");
static_assert(sizeof(struct shmfs_map_info) == 64, "map info layout");
static_assert(sizeof(struct shmfs_map_extent) == 24, "map extent layout");
static_assert(sizeof(struct shmfs_region_info) == 56, "region info layout");

/* ---- errors ------------------------------------------------------------------ */

static __thread char errbuf[512];

/* Record why the call fails and return -e. */
__attribute__((format(printf, 2, 3)))
static int fail(int e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return -e;
}

API const char *shmfs_map_error(void)
{
	return errbuf[0] ? errbuf : "no error";
}

/* ---- system calls the shim must not see ------------------------------------- */

static void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, uint64_t off)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, (long)off);

	return r == -1 ? MAP_FAILED : (void *)r;
}

static int sys_munmap(uintptr_t addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

static uint64_t page_size(void)
{
	static uint64_t ps;

	if (!ps) {
		long v = sysconf(_SC_PAGESIZE);
		ps = v > 0 ? (uint64_t)v : 4096;
	}
	return ps;
}

/* ---- the registry ------------------------------------------------------------- */

struct piece {
	uint64_t foff;          /* file offset */
	uint64_t roff;          /* offset from the region's first byte */
	uint64_t len;
};

struct fref {                   /* the library's descriptor of a mapped file */
	int fd;
	unsigned refs;          /* entries, and calls in flight; under reg.lock */
};

struct entry {
	uintptr_t start, end;   /* mapped: [start, end), slack included */
	uintptr_t ustart, uend; /* the caller's part, whole pages */
	uint64_t foff;          /* file offset mapped at start */
	int prot;
	struct fref *f;
	struct piece *pc;       /* what [start, end) maps, by file offset */
	uint32_t npc;
};

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

static size_t reg_count(void)
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

static void fref_put(struct fref *f)
{
	struct fref *dead[1];
	size_t nd = 0;

	reg_lock();
	fref_put_locked(f, dead, &nd);
	reg_unlock();
	fref_close(dead, nd);
}

/* The pieces of e that map file offsets [fa, fb). */
static int pieces_sub(const struct piece *pc, uint32_t n, uint64_t fa, uint64_t fb,
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

static uint64_t entry_foff(const struct entry *e, uintptr_t va)
{
	return e->foff + (va - e->start);
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
	for (size_t k = i; k < j; k++) {
		const struct entry *e = &reg.v[k];
		if (a <= e->ustart && e->start < lo)
			lo = e->start;
		if (b >= e->uend && e->end > hi)
			hi = e->end;
	}
	if (!do_unmap) {
		lo = a;
		hi = b;
	}
	struct fref **dead = malloc((j - i) * sizeof(*dead));
	/* each entry becomes at most two: left of lo, right of hi */
	struct entry *out = calloc(2 * (j - i), sizeof(*out));
	size_t nout = 0;
	if (!dead || !out) {
		free(dead);
		free(out);
		return -ENOMEM;
	}
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
			part[np].foff = entry_foff(e, hi);
			np++;
		}
		for (int p = 0; p < np; p++) {
			if (pieces_sub(e->pc, e->npc, part[p].foff,
				       entry_foff(e, part[p].end), &part[p].pc, &part[p].npc)) {
				for (size_t q = 0; q < nout; q++) /* part[0] among them */
					free(out[q].pc);
				free(dead);
				free(out);
				return -ENOMEM;
			}
			out[nout++] = part[p];
		}
	}
	if ((nout > j - i && reg_reserve(nout - (j - i))) ||
	    (do_unmap && sys_munmap(lo, hi - lo) < 0)) {
		int e = errno; /* ENOMEM from realloc, or munmap's */
		for (size_t q = 0; q < nout; q++)
			free(out[q].pc);
		free(dead);
		free(out);
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

/*
 * Add an entry (its fref reference already taken).  Entries it overlaps
 * are stale -- their memory was unmapped behind the library's back, or the
 * kernel would not have handed out these addresses -- and are forgotten.
 * A neighbour that continues it (same file, contiguous addresses and file
 * offsets, no slack between) is merged with it.
 */
static int reg_add(struct entry *ne)
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
			for (int side = 0; side < 2; side++) {
				size_t l = side ? i - 1 : i, r = l + 1;
				if ((side && i == 0) || r >= reg.n)
					continue;
				struct entry *L = &reg.v[l], *R = &reg.v[r];
				if (L->end != R->start || L->uend != L->end || R->ustart != R->start ||
				    L->f != R->f || L->prot != R->prot ||
				    entry_foff(L, L->end) != R->foff)
					continue;
				struct piece *pc = realloc(L->pc, (L->npc + R->npc) * sizeof(*pc));
				if (!pc)
					continue;
				memcpy(pc + L->npc, R->pc, R->npc * sizeof(*pc));
				L->pc = pc;
				L->npc += R->npc;
				L->end = R->end;
				L->uend = R->uend;
				free(R->pc);
				fref_put_locked(R->f, dead, &nd); /* L's reference stays */
				reg_close_gap(r, 1);
				if (side)
					i = l;
			}
		}
	}
	reg_unlock();
	fref_close(dead, nd);
	free(dead);
	return rc < 0 ? rc : 0;
}

/* ---- what the daemon publishes ----------------------------------------------- */

struct fmap {
	struct shmfs_map_info mi;
	const struct shmfs_map_extent *e;       /* into buf */
	void *buf;
};

static void fmap_free(struct fmap *m)
{
	free(m->buf);
	m->buf = NULL;
}

/* Not a file of a shmfs mount: the attribute is not there. */
static bool not_shmfs_errno(int e)
{
	return e == ENODATA || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS;
}

static int read_map(int fd, struct fmap *m)
{
	memset(m, 0, sizeof(*m));
	for (int tries = 0; tries < 8; tries++) {
		ssize_t n = fgetxattr(fd, SHMFS_XATTR_MAP, NULL, 0);
		if (n < 0) {
			int e = errno;
			if (not_shmfs_errno(e))
				return fail(ENOTSUP, "not a file of a shmfs mount (it has no %s attribute)",
					    SHMFS_XATTR_MAP);
			if (e == E2BIG)
				return fail(E2BIG, "the file has too many extents to publish in %s (copy it to a new file, allocated with fallocate first)",
					    SHMFS_XATTR_MAP);
			return fail(e, "cannot read %s: %s", SHMFS_XATTR_MAP, strerror(e));
		}
		/* room for a few more extents than now: the map may grow */
		size_t cap = (size_t)n + 16 * sizeof(struct shmfs_map_extent);
		uint8_t *buf = malloc(cap);
		if (!buf)
			return fail(ENOMEM, "out of memory");
		n = fgetxattr(fd, SHMFS_XATTR_MAP, buf, cap);
		if (n < 0) {
			int e = errno;
			free(buf);
			if (e == ERANGE)
				continue;
			return fail(e, "cannot read %s: %s", SHMFS_XATTR_MAP, strerror(e));
		}
		struct shmfs_map_info mi;
		if ((size_t)n < sizeof(mi)) {
			free(buf);
			return fail(EIO, "%s is %zd bytes, too short", SHMFS_XATTR_MAP, n);
		}
		memcpy(&mi, buf, sizeof(mi));
		if (mi.mi_magic != SHMFS_MAP_MAGIC || mi.mi_version != SHMFS_MAP_VERSION ||
		    mi.mi_hdr_size < sizeof(mi) || mi.mi_hdr_size > (size_t)n ||
		    ((size_t)n - mi.mi_hdr_size) / sizeof(struct shmfs_map_extent) < mi.mi_nextents ||
		    !shmfs_is_pow2(mi.mi_unit) || mi.mi_unit < SHMFS_PAGE) {
			free(buf);
			return fail(EIO, "%s: unknown format (magic %#x, version %u)", SHMFS_XATTR_MAP,
				    mi.mi_magic, mi.mi_version);
		}
		/* Extents: unit multiples, sorted, disjoint.  (They come from our
		 * own daemon, but a mistake here would map the wrong memory.) */
		const struct shmfs_map_extent *e = (const void *)(buf + mi.mi_hdr_size);
		uint64_t prev_end = 0;
		for (uint32_t i = 0; i < mi.mi_nextents; i++) {
			struct shmfs_map_extent x;
			memcpy(&x, &e[i], sizeof(x));
			if (!x.me_len || (x.me_foff | x.me_roff | x.me_len) % mi.mi_unit ||
			    x.me_foff < prev_end || x.me_foff + x.me_len < x.me_foff ||
			    x.me_roff + x.me_len < x.me_roff) {
				free(buf);
				return fail(EIO, "%s: extent %u is malformed", SHMFS_XATTR_MAP, i);
			}
			prev_end = x.me_foff + x.me_len;
		}
		m->mi = mi;
		m->e = e;
		m->buf = buf;
		return 0;
	}
	return fail(ESTALE, "the file's extent map kept growing while it was being read");
}

static struct shmfs_map_extent extent_at(const struct fmap *m, uint32_t i)
{
	struct shmfs_map_extent x;

	memcpy(&x, &m->e[i], sizeof(x)); /* may be unaligned for a future header size */
	return x;
}

/*
 * The pieces that map file bytes [a, b), merged where the region bytes are
 * contiguous too.  Returns 0, 1 with *hole = the first unallocated offset,
 * or -ENOMEM.
 */
static int map_pieces(const struct fmap *m, uint64_t a, uint64_t b, struct piece **out,
		      uint32_t *nout, uint64_t *hole)
{
	struct piece *v = malloc(((size_t)m->mi.mi_nextents + 1) * sizeof(*v));
	uint32_t k = 0;
	uint64_t pos = a;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->mi.mi_nextents && pos < b; i++) {
		struct shmfs_map_extent x = extent_at(m, i);
		if (x.me_foff + x.me_len <= pos)
			continue;
		if (x.me_foff > pos)
			break;
		uint64_t l = SHMFS_MIN(b, x.me_foff + x.me_len) - pos;
		uint64_t r = x.me_roff + (pos - x.me_foff);
		if (k && v[k - 1].roff + v[k - 1].len == r)
			v[k - 1].len += l;
		else
			v[k++] = (struct piece){ pos, r, l };
		pos += l;
	}
	if (pos < b) {
		free(v);
		*hole = pos;
		return 1;
	}
	*out = v;
	*nout = k;
	return 0;
}

/* ---- the region ------------------------------------------------------------- */

struct region {
	int fd;
	uint32_t type;          /* enum shmfs_region_type */
	uint64_t offset;        /* of the region's first byte in path */
	uint64_t size;
	uint64_t align;         /* mapping alignment here */
	uint8_t uuid[16];
	char path[PATH_MAX];
};

static int read_sysfs_u64(const char *path, uint64_t *out)
{
	char buf[64], *end;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	errno = 0;
	*out = strtoull(buf, &end, 0);
	return errno || end == buf ? -1 : 0;
}

/* The alignment devdax mappings need: the device's align attribute (Linux
 * 5.10 and later), else its region's. */
static uint64_t devdax_align(dev_t rdev)
{
	static const char *const attrs[] = { "align", "../dax_region/align" };
	char p[96];
	uint64_t v;

	for (unsigned i = 0; i < SHMFS_ARRAY_SIZE(attrs); i++) {
		snprintf(p, sizeof(p), "/sys/dev/char/%u:%u/%s", major(rdev), minor(rdev), attrs[i]);
		if (!read_sysfs_u64(p, &v) && shmfs_is_pow2(v) && v >= SHMFS_PAGE)
			return v;
	}
	return 0;
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case SHMFS_RT_FILE: return "file";
	case SHMFS_RT_DEVDAX: return "devdax";
	case SHMFS_RT_PCI: return "PCI resource";
	case SHMFS_RT_UIO: return "UIO";
	}
	return "unknown";
}

/* Check the region's superblock: a valid shmfs one with the mount's UUID. */
static int region_check_super(struct region *r)
{
	size_t len = (size_t)shmfs_round_up(SHMFS_HOSTS_OFF, r->align);
	struct shmfs_region view;
	struct shmfs_super sb;
	char why[200], other[200], a[37], b[37];
	int rc;

	if (len > r->size)
		return fail(ENODEV, "region %s: %" PRIu64 " bytes, too small for shmfs", r->path,
			    r->size);
	void *p = sys_mmap(NULL, len, PROT_READ, MAP_SHARED, r->fd, r->offset);
	if (p == MAP_FAILED)
		return fail(errno, "region %s: cannot map its superblock: %s", r->path,
			    strerror(errno));
	memset(&view, 0, sizeof(view));
	view.base = p;
	view.size = r->size;
	rc = shmfs_super_read(&view, &sb, NULL, why, sizeof(why), other, sizeof(other));
	sys_munmap((uintptr_t)p, len);
	if (rc)
		return fail(ENODEV, "region %s: no valid shmfs superblock: %s", r->path, why);
	if (memcmp(sb.sb_uuid, r->uuid, 16)) {
		shmfs_uuid_format(sb.sb_uuid, a);
		shmfs_uuid_format(r->uuid, b);
		return fail(ENODEV,
			    "region %s holds filesystem %s, but the mount is filesystem %s: the region was reformatted or replaced since it was mounted",
			    r->path, a, b);
	}
	return 0;
}

/* Open the region the mount of fd names, and check it is the mount's. */
static int region_open(int fd, int prot, struct region *r)
{
	uint8_t buf[REGION_XATTR_MAX + 1];
	struct shmfs_region_info ri;
	struct stat st;
	ssize_t n;
	int rc;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	n = fgetxattr(fd, SHMFS_XATTR_REGION, buf, REGION_XATTR_MAX);
	if (n < 0) {
		if (errno == ENODATA)
			return fail(ENOTSUP, "the mount has no region to map (an anonymous memory region)");
		return fail(not_shmfs_errno(errno) ? ENOTSUP : errno, "cannot read %s: %s",
			    SHMFS_XATTR_REGION, strerror(errno));
	}
	buf[n] = 0;
	if ((size_t)n < sizeof(ri))
		return fail(EIO, "%s is %zd bytes, too short", SHMFS_XATTR_REGION, n);
	memcpy(&ri, buf, sizeof(ri));
	if (ri.ri_magic != SHMFS_REGION_MAGIC || ri.ri_version != SHMFS_MAP_VERSION ||
	    ri.ri_hdr_size < sizeof(ri) || ri.ri_hdr_size >= (size_t)n)
		return fail(EIO, "%s: unknown format (magic %#x, version %u)", SHMFS_XATTR_REGION,
			    ri.ri_magic, ri.ri_version);
	const char *path = (const char *)buf + ri.ri_hdr_size;
	if (strlen(path) >= sizeof(r->path) || path[0] != '/')
		return fail(EIO, "%s: bad region path", SHMFS_XATTR_REGION);
	strcpy(r->path, path);
	memcpy(r->uuid, ri.ri_uuid, 16);
	r->type = ri.ri_type;
	r->offset = ri.ri_offset;
	r->size = ri.ri_size;
	if (ri.ri_type == SHMFS_RT_UIO)
		return fail(ENOTSUP,
			    "region %s is a UIO device, which can only be mapped whole: direct mapping of files needs a devdax device, a PCI resource file or a regular file",
			    r->path);
	if (ri.ri_type != SHMFS_RT_FILE && ri.ri_type != SHMFS_RT_DEVDAX && ri.ri_type != SHMFS_RT_PCI)
		return fail(ENOTSUP, "region %s: unknown region type %u", r->path, ri.ri_type);

	/* Read/write when the mapping writes; also when the file is open for
	 * writing, so that mprotect(PROT_WRITE) works later, as on a mapping of
	 * the file itself -- unless the region is read-only to this user. */
	int want_write = prot & PROT_WRITE;
	int fl = fcntl(fd, F_GETFL);
	bool may_write = want_write || (fl >= 0 && (fl & O_ACCMODE) == O_RDWR);
	r->fd = open(r->path, (may_write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY);
	if (r->fd < 0 && may_write && !want_write && (errno == EACCES || errno == EPERM || errno == EROFS))
		r->fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (r->fd < 0) {
		int e = errno;
		if (e == EACCES || e == EPERM)
			return fail(EACCES,
				    "cannot open the region %s: %s; a direct mapping reads%s the filesystem's memory itself and needs %s access to the region, as the daemon has (run as root, or grant this user access to it)",
				    r->path, strerror(e), want_write ? " and writes" : "",
				    want_write ? "read/write" : "read");
		if (e == ENOENT)
			return fail(ENODEV, "the region %s that the mount names does not exist here",
				    r->path);
		return fail(e, "cannot open the region %s: %s", r->path, strerror(e));
	}
	if (fstat(r->fd, &st) < 0)
		return fail(errno, "region %s: %s", r->path, strerror(errno));
	bool is_chr = S_ISCHR(st.st_mode), is_reg = S_ISREG(st.st_mode);
	if ((ri.ri_type == SHMFS_RT_DEVDAX && !is_chr) || (ri.ri_type != SHMFS_RT_DEVDAX && !is_reg))
		return fail(ENODEV, "region %s is not the %s the mount opened", r->path,
			    type_name(ri.ri_type));

	/* The mapping alignment on this host: what the kernel will demand. */
	uint64_t align = page_size();
	if (ri.ri_type == SHMFS_RT_DEVDAX) {
		uint64_t d = devdax_align(st.st_rdev);
		align = SHMFS_MAX(align, d ? d : ri.ri_align);
	} else if (ri.ri_type == SHMFS_RT_FILE) {
		struct statfs sfs;
		if (fstatfs(r->fd, &sfs) == 0 && (uint64_t)sfs.f_type == HUGETLBFS_MAGIC)
			align = SHMFS_MAX(align, (uint64_t)sfs.f_bsize);
	}
	r->align = align;
	if (r->offset % align)
		return fail(ENOTSUP,
			    "region %s starts at offset %" PRIu64 ", not a multiple of its mapping alignment %" PRIu64,
			    r->path, r->offset, align);
	if (is_reg && ((uint64_t)st.st_size < r->offset || (uint64_t)st.st_size - r->offset < r->size))
		return fail(ENODEV, "region %s is smaller than the mount's (%" PRIu64 " bytes at %" PRIu64 ")",
			    r->path, r->size, r->offset);
	rc = region_check_super(r);
	return rc;
}

static void region_close(struct region *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
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
	uint64_t ps = page_size();

	if (exact) {
		void *p = sys_mmap((void *)hint, len, PROT_NONE, fl | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED)
			return fail(errno, "addresses %#" PRIxPTR "..%#" PRIxPTR ": %s", hint,
				    hint + len, strerror(errno));
		if ((uintptr_t)p != hint) { /* a kernel without MAP_FIXED_NOREPLACE */
			sys_munmap((uintptr_t)p, len);
			return fail(EEXIST, "addresses %#" PRIxPTR "..%#" PRIxPTR " are in use", hint,
				    hint + len);
		}
		*base = hint;
		return 0;
	}
	size_t extra = align > ps ? (size_t)(align - ps) : 0;
	if (len + extra < len)
		return fail(ENOMEM, "mapping too large");
	void *p = sys_mmap((void *)hint, len + extra, PROT_NONE, fl, -1, 0);
	if (p == MAP_FAILED)
		return fail(errno, "cannot reserve %zu bytes of address space: %s", len, strerror(errno));
	uintptr_t s = (uintptr_t)p, a = (uintptr_t)shmfs_round_up(s, align);
	if (a > s)
		sys_munmap(s, a - s);
	if (s + len + extra > a + len)
		sys_munmap(a + len, s + len + extra - (a + len));
	*base = a;
	return 0;
}

/*
 * Map [off, off + *lenp) of f's file (see shmfs_map_fd_at) and register
 * the mapping, which takes a reference on f.  Returns the address for the
 * caller, or NULL with errno set.
 */
static void *map_file(struct fref *f, uint64_t off, size_t *lenp, int prot, int flags, void *addr)
{
	uint64_t ps = page_size();
	bool fixed = flags & MAP_FIXED, noreplace = flags & MAP_FIXED_NOREPLACE;
	struct region r = { .fd = -1 };
	struct fmap m = { 0 };
	struct piece *pc = NULL;
	uint32_t npc = 0;
	uintptr_t base = 0;
	size_t mlen = 0;
	bool reserved = false, touched = false;
	uint64_t len = 0, a = 0, b = 0;
	int rc = 0, tries;

	if (off % ps) {
		rc = fail(EINVAL, "offset %" PRIu64 " is not a multiple of the page size", off);
		goto out;
	}
	if ((fixed || noreplace) && (!addr || (uintptr_t)addr % ps)) {
		rc = fail(EINVAL, "MAP_FIXED address %p is not page aligned", addr);
		goto out;
	}
	for (tries = 0; tries < MAP_TRIES; tries++) {
		fmap_free(&m);
		rc = read_map(f->fd, &m);
		if (rc)
			goto out;
		if (r.fd < 0) {
			rc = region_open(f->fd, prot, &r);
			if (rc)
				goto out;
		}
		if (memcmp(m.mi.mi_uuid, r.uuid, 16)) {
			rc = fail(ENODEV, "the file's map and the mount's region name different filesystems");
			goto out;
		}
		uint64_t size = m.mi.mi_size, A = r.align;
		if (!len) { /* once: the range must not move between tries */
			len = *lenp;
			if (!len && off >= size) {
				rc = fail(EINVAL, size ? "offset %" PRIu64 " is at or past the end of the file"
						       : "the file is empty (offset %" PRIu64 ")", off);
				goto out;
			}
			if (!len)
				len = size - off;
		}
		if (off + len < off || off + len > shmfs_round_up(size, ps) || len > SIZE_MAX / 2) {
			rc = fail(EINVAL,
				  "bytes %" PRIu64 "..%" PRIu64 " go past the end of the file (%" PRIu64 " bytes)",
				  off, off + len, size);
			goto out;
		}
		if (m.mi.mi_unit % A) {
			char u[32], al[32], opt[32];
			/* as mkfs.shmfs takes it: 2M, 1G */
			snprintf(opt, sizeof(opt), "%" PRIu64 "%s",
				 (uint64_t)(A % SHMFS_GIB == 0 ? A / SHMFS_GIB :
					    A % SHMFS_MIB == 0 ? A / SHMFS_MIB : A / SHMFS_KIB),
				 A % SHMFS_GIB == 0 ? "G" : A % SHMFS_MIB == 0 ? "M" : "K");
			rc = fail(ENOTSUP,
				  "the filesystem allocates in units of %s, but the region %s needs mappings aligned to %s: reformat it with --alloc-unit %s or larger",
				  shmfs_fmt_size(m.mi.mi_unit, u, sizeof(u)), r.path,
				  shmfs_fmt_size(A, al, sizeof(al)), opt);
			goto out;
		}
		if ((fixed || noreplace) && A > ps &&
		    (off % A || (uintptr_t)addr % A || (fixed && len % A))) {
			rc = fail(EINVAL,
				  "region %s maps in units of %" PRIu64 " bytes: MAP_FIXED needs the address, offset%s aligned to it",
				  r.path, A, fixed ? " and length" : "");
			goto out;
		}
		a = shmfs_round_down(off, A);
		b = shmfs_round_up(off + len, A);
		uint64_t hole;
		free(pc);
		pc = NULL;
		rc = map_pieces(&m, a, b, &pc, &npc, &hole);
		if (rc < 0) {
			rc = fail(ENOMEM, "out of memory");
			goto out;
		}
		if (rc == 1) {
			if (!(prot & PROT_WRITE)) {
				rc = fail(EINVAL,
					  "the file has a hole at offset %" PRIu64 ": a read-only direct mapping needs every byte of its range allocated (write it, or fallocate it, first)",
					  hole);
				goto out;
			}
			/* Allocate what is missing, then look again. */
			if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, (off_t)a, (off_t)(b - a)) < 0) {
				int e = errno;
				rc = fail(e, "cannot allocate the file's holes in bytes %" PRIu64 "..%" PRIu64 ": %s",
					  a, b, strerror(e));
				goto out;
			}
			continue;
		}
		for (uint32_t i = 0; i < npc; i++) {
			if ((r.offset + pc[i].roff) % A || pc[i].foff % A || pc[i].len % A) {
				rc = fail(ENOTSUP,
					  "an extent of the file is not aligned to the region's mapping alignment (%" PRIu64 "): reformat with a larger --alloc-unit",
					  A);
				goto out;
			}
			if (pc[i].roff > r.size || pc[i].len > r.size - pc[i].roff) {
				rc = fail(EIO, "an extent of the file lies outside the region");
				goto out;
			}
		}

		if (!reserved) {
			mlen = (size_t)(b - a);
			if (fixed) {
				base = (uintptr_t)addr;
			} else {
				uintptr_t hint = addr ? (uintptr_t)addr - (uintptr_t)(off - a) : 0;
				rc = reserve(hint, mlen, A, noreplace, &base);
				if (rc)
					goto out;
			}
			reserved = true;
		}
		if (fixed && !touched) {
			/* MAP_FIXED over direct mappings: unmap them properly first,
			 * so the library lets go of their files. */
			if (reg_count()) {
				struct fref **dead = NULL;
				size_t nd = 0;
				reg_lock();
				int c = cut_locked(base, base + mlen, true, &dead, &nd);
				reg_unlock();
				fref_close(dead, nd);
				free(dead);
				if (c < 0) {
					rc = fail(-c, "cannot unmap what was at %#" PRIxPTR ": %s", base,
						  strerror(-c));
					goto out;
				}
			}
		}
		touched = true;
		for (uint32_t i = 0; i < npc; i++) {
			void *p = sys_mmap((void *)(base + (pc[i].foff - a)), (size_t)pc[i].len, prot,
					   MAP_SHARED | MAP_FIXED | (flags & MAP_POPULATE), r.fd,
					   r.offset + pc[i].roff);
			if (p == MAP_FAILED) {
				int e = errno;
				rc = fail(e, "cannot map %" PRIu64 " bytes of the region %s at offset %" PRIu64 ": %s",
					  pc[i].len, r.path, r.offset + pc[i].roff, strerror(e));
				goto out;
			}
		}
		/* Did the layout hold still while we mapped it? */
		uint64_t gen = m.mi.mi_gen;
		fmap_free(&m);
		rc = read_map(f->fd, &m);
		if (rc)
			goto out;
		if (m.mi.mi_gen == gen)
			break;
	}
	if (tries == MAP_TRIES) {
		rc = fail(ESTALE, "the file's layout kept changing while it was being mapped (%d tries)",
			  MAP_TRIES);
		goto out;
	}

	struct entry ne = { .start = base, .end = base + mlen, .foff = a, .prot = prot, .f = f,
			    .pc = pc, .npc = npc };
	ne.ustart = base + (uintptr_t)(off - a);
	ne.uend = ne.ustart + (uintptr_t)shmfs_round_up(len, ps);
	reg_lock();
	f->refs++;
	reg_unlock();
	rc = reg_add(&ne);
	if (rc) {
		fref_put(f);
		rc = fail(-rc, "out of memory");
		goto out;
	}
	pc = NULL;
	*lenp = (size_t)len;
	fmap_free(&m);
	region_close(&r);
	errbuf[0] = 0;
	return (void *)ne.ustart;

out:
	if (reserved && (!fixed || touched))
		sys_munmap(base, mlen);
	free(pc);
	fmap_free(&m);
	region_close(&r);
	errno = -rc;
	return NULL;
}

/* A new mapping of a descriptor the library owns from now on. */
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
	fref_put(f);
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
		char why[sizeof(errbuf)];
		snprintf(why, sizeof(why), "%s", errbuf);
		close(fd);
		errno = -fail(-rc, "%s: %s", path, why);
		return NULL;
	}
	void *p = map_owned_fd(fd, 0, len, prot, flags, NULL);
	if (!p) {
		int e = errno;
		char why[sizeof(errbuf)];
		snprintf(why, sizeof(why), "%s", errbuf);
		fail(e, "%s: %s", path, why);
		errno = e;
	}
	return p;
}

/* ---- unmapping, remapping, syncing -------------------------------------------- */

static int check_range(const void *addr, size_t len, uintptr_t *a, uintptr_t *b)
{
	uint64_t ps = page_size();

	*a = (uintptr_t)addr;
	if (!len || *a % ps || len > UINTPTR_MAX - *a - ps)
		return -EINVAL;
	*b = *a + (uintptr_t)shmfs_round_up(len, ps);
	return 0;
}

API int shmfs_unmap(void *addr, size_t len)
{
	uintptr_t a, b;
	struct fref **dead = NULL;
	size_t nd = 0;
	int rc;

	if (!reg_count()) { /* the fast path the shim's every munmap takes */
		errno = EINVAL;
		return -1;
	}
	if (check_range(addr, len, &a, &b)) {
		errno = -fail(EINVAL, "bad range %p + %zu", addr, len);
		return -1;
	}
	reg_lock();
	rc = cut_locked(a, b, true, &dead, &nd);
	reg_unlock();
	fref_close(dead, nd);
	free(dead);
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
	int found = 0;

	if (!reg_count())
		return 0;
	reg_lock();
	size_t i = reg_find(p);
	if (i < reg.n && reg.v[i].ustart <= p && p < reg.v[i].uend) {
		found = 1;
		if (base)
			*base = (void *)reg.v[i].ustart;
		if (len)
			*len = reg.v[i].uend - reg.v[i].ustart;
	}
	reg_unlock();
	return found;
}

API void *shmfs_remap(void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	uint64_t ps = page_size();
	uintptr_t a, b;
	struct fref *f = NULL;
	uint64_t foff = 0;
	int prot = 0;

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
	reg_lock();
	size_t i = reg_find(a);
	if (i < reg.n && reg.v[i].ustart <= a && b <= reg.v[i].uend) {
		f = reg.v[i].f;
		f->refs++;
		foff = entry_foff(&reg.v[i], a);
		prot = reg.v[i].prot;
	}
	reg_unlock();
	if (!f) {
		errno = -fail(EFAULT, "%p + %zu is not within one direct mapping", old_addr, old_len);
		return NULL;
	}

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
			char why[sizeof(errbuf)];
			snprintf(why, sizeof(why), "%s", errbuf);
			errno = -fail(ENOMEM, "cannot grow the mapping in place (%s)", why);
		}
	}
out:;
	int e = errno;
	fref_put(f);
	errno = e;
	return res;
}

struct sync_item {
	struct fref *f;
	struct piece *pc;       /* the pieces of the range being synced */
	uint32_t npc;
};

/* Do the pieces still say what the file's current map says? */
static bool pieces_current(const struct fmap *m, const struct piece *pc, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct piece *now;
		uint32_t k;
		uint64_t hole;
		if (map_pieces(m, pc[i].foff, pc[i].foff + pc[i].len, &now, &k, &hole))
			return false;
		bool same = k == 1 && now[0].roff == pc[i].roff;
		free(now);
		if (!same)
			return false;
	}
	return true;
}

API int shmfs_sync(void *addr, size_t len)
{
	uintptr_t a, b;
	struct sync_item *it = NULL;
	size_t n = 0;
	int rc = 0;

	if (!reg_count()) {
		errno = -fail(ENOMEM, "no direct mapping in %p + %zu", addr, len);
		return -1;
	}
	if (check_range(addr, len, &a, &b)) {
		errno = -fail(EINVAL, "bad range %p + %zu", addr, len);
		return -1;
	}
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
		if (pieces_sub(e->pc, e->npc, entry_foff(e, s), entry_foff(e, t), &it[n].pc,
			       &it[n].npc))
			break;
		it[n].f = e->f;
		e->f->refs++;
		n++;
	}
	reg_unlock();
	if (!it) {
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
		if (seen)
			continue;
		if (fsetxattr(it[k].f->fd, SHMFS_XATTR_SYNC, "1", 1, 0) < 0 && !rc)
			rc = fail(errno, "cannot publish the stores (%s): %s", SHMFS_XATTR_SYNC,
				  strerror(errno));
		struct fmap m;
		if (read_map(it[k].f->fd, &m)) {
			if (!rc)
				rc = -ESTALE;
			continue;
		}
		for (size_t q = k; q < n; q++)
			if (it[q].f == it[k].f && !rc && !pieces_current(&m, it[q].pc, it[q].npc))
				rc = fail(ESTALE,
					  "the file's layout changed since it was mapped (truncated, hole punched or deleted elsewhere): stores through this mapping are not in the file");
		fmap_free(&m);
	}
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
	if (rc) {
		errno = -rc;
		return -1;
	}
	errbuf[0] = 0;
	return 0;
}
