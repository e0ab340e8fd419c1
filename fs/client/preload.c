/* SPDX-License-Identifier: MIT */
/*
 * libshmfs-preload.so: direct mapping for programs that cannot be changed.
 *
 *     LD_PRELOAD=/usr/local/lib/libshmfs-preload.so python3 prog.py
 *
 * It interposes mmap, mmap64, munmap, mremap and msync:
 *
 *   mmap     a MAP_SHARED mapping of a file on a shmfs mount (a FUSE
 *            filesystem that answers user.shmfs.map) becomes a direct
 *            mapping (shmfs_map_fd_at: offset, length, prot, MAP_FIXED and
 *            MAP_FIXED_NOREPLACE honoured).  Anything else -- anonymous and
 *            private mappings, other filesystems, flags libshmfs does not
 *            offer -- goes to the real mmap untouched.  If the direct
 *            mapping fails (say the region cannot be opened by this user),
 *            the mapping is made through the mount as before, and one
 *            warning per process goes to stderr: that mapping does not see
 *            other hosts' stores.
 *   munmap   of the whole or a part of a direct mapping: shmfs_unmap, which
 *            also lets go of the file once nothing of it is mapped.
 *   mremap   of a direct mapping: shmfs_remap (shrink; grow in place if the
 *            addresses are free; else move with MREMAP_MAYMOVE, or ENOMEM).
 *   msync    also publishes stores made through direct mappings in the
 *            range (shmfs_sync), so read() on every mount sees them.
 *
 * Environment: SHMFS_PRELOAD=off (or 0, no) passes everything through;
 * SHMFS_PRELOAD_DEBUG=1 logs every decision about a shared file mapping,
 * and every munmap/mremap/msync of a direct one, to stderr.
 *
 * The real functions are found with dlsym(RTLD_NEXT).  dlsym may allocate,
 * and an allocator may map memory: a call made while they are being looked
 * up goes to the system call directly.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* The build asks for 64-bit off_t everywhere, which makes glibc's headers
 * rename mmap to mmap64; this file defines both names itself (off_t is 64
 * bits on every supported machine anyway). */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "shmfs/shmfs.h"

#define API __attribute__((visibility("default")))

typedef void *mmap_fn(void *, size_t, int, int, int, off_t);
typedef int munmap_fn(void *, size_t);
typedef void *mremap_fn(void *, size_t, size_t, int, ...);
typedef int msync_fn(void *, size_t, int);

static struct {
	mmap_fn *mmap;
	munmap_fn *munmap;
	mremap_fn *mremap;
	msync_fn *msync;
	int state;              /* 0 unresolved, 1 resolving, 2 ready (atomic) */
	bool off, debug;
	int warned;             /* atomic */
} real;

static __thread bool resolving;

static void resolve(void)
{
	int zero = 0;

	if (__atomic_load_n(&real.state, __ATOMIC_ACQUIRE) == 2 || resolving)
		return;
	resolving = true;
	/* Several threads may race here; they all find the same answers. */
	__atomic_compare_exchange_n(&real.state, &zero, 1, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_ACQUIRE);
	const char *e = getenv("SHMFS_PRELOAD"), *d = getenv("SHMFS_PRELOAD_DEBUG");
	real.off = e && (!strcmp(e, "off") || !strcmp(e, "0") || !strcmp(e, "no"));
	real.debug = d && *d && strcmp(d, "0");
	real.mmap = (mmap_fn *)dlsym(RTLD_NEXT, "mmap");
	real.munmap = (munmap_fn *)dlsym(RTLD_NEXT, "munmap");
	real.mremap = (mremap_fn *)dlsym(RTLD_NEXT, "mremap");
	real.msync = (msync_fn *)dlsym(RTLD_NEXT, "msync");
	__atomic_store_n(&real.state, 2, __ATOMIC_RELEASE);
	resolving = false;
}

static bool ready(void)
{
	resolve();
	return __atomic_load_n(&real.state, __ATOMIC_ACQUIRE) == 2 && real.mmap && real.munmap &&
	       real.mremap && real.msync;
}

__attribute__((format(printf, 1, 2)))
static void say(const char *fmt, ...)
{
	char buf[768];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	int e = errno;
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere to report it */
	}
	errno = e;
}

#define DEBUG(...) do { if (real.debug) say("shmfs-preload: " __VA_ARGS__); } while (0)

static void *pass_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (!ready()) {
		long r = syscall(SYS_mmap, addr, len, prot, flags, fd, (long)off);
		return r == -1 ? MAP_FAILED : (void *)r;
	}
	return real.mmap(addr, len, prot, flags, fd, off);
}

static int pass_munmap(void *addr, size_t len)
{
	if (!ready())
		return (int)syscall(SYS_munmap, addr, len);
	return real.munmap(addr, len);
}

/* Is fd a file of a shmfs mount?  A FUSE filesystem that publishes the
 * extent map attribute. */
static bool on_shmfs(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs) < 0 || (uint64_t)sfs.f_type != FUSE_SUPER_MAGIC)
		return false;
	return fgetxattr(fd, SHMFS_XATTR_MAP, NULL, 0) >= 0;
}

/* A mapping over [addr, addr + len) replaces what was there: direct
 * mappings in that range are unmapped properly first. */
static void drop_direct(void *addr, size_t len)
{
	int e = errno;

	if (shmfs_unmap(addr, len) == 0)
		DEBUG("MAP_FIXED at %p + %zu replaces direct mappings", addr, len);
	errno = e;
}

static void *do_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	int e = errno;
	int type = flags & MAP_TYPE;
	int offered = MAP_TYPE | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_POPULATE | MAP_NORESERVE;

	if (!ready() || real.off)
		return pass_mmap(addr, len, prot, flags, fd, off);
	if ((flags & MAP_ANONYMOUS) || fd < 0 || (type != MAP_SHARED && type != MAP_SHARED_VALIDATE) ||
	    (flags & ~offered) || off < 0 || !len || !on_shmfs(fd)) {
		if (flags & MAP_FIXED)
			drop_direct(addr, len);
		errno = e;
		return pass_mmap(addr, len, prot, flags, fd, off);
	}
	size_t l = len;
	void *p = shmfs_map_fd_at(fd, (uint64_t)off, &l,  prot,
				  flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_POPULATE), addr);
	if (p) {
		DEBUG("mmap(fd %d, offset %lld, %zu bytes, prot %#x, flags %#x): direct at %p", fd,
		      (long long)off, len, prot, flags, p);
		errno = e;
		return p;
	}
	int why = errno;
	const char *msg = shmfs_map_error();
	void *q = pass_mmap(addr, len, prot, flags, fd, off);
	if (q == MAP_FAILED) {
		/* The caller's mistake (a bad offset, a read-only descriptor...):
		 * the kernel's own answer is the one to give. */
		DEBUG("mmap(fd %d, offset %lld, %zu bytes): direct mapping failed (%s), and so did the mount's: %s",
		      fd, (long long)off, len, msg, strerror(errno));
		return q;
	}
	if (real.debug)
		DEBUG("mmap(fd %d, offset %lld, %zu bytes): not direct (%s: %s): mapped through the mount at %p",
		      fd, (long long)off, len, strerror(why), msg, q);
	else if (!__atomic_exchange_n(&real.warned, 1, __ATOMIC_ACQ_REL))
		say("shmfs-preload: direct mapping failed (%s), mapped through the mount instead: this mapping does not see other hosts' stores (warned once)",
		    msg);
	errno = e;
	return q;
}

API void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return do_mmap(addr, len, prot, flags, fd, off);
}

API void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	return do_mmap(addr, len, prot, flags, fd, (off_t)off);
}

API int munmap(void *addr, size_t len)
{
	if (!ready())
		return pass_munmap(addr, len);
	if (!real.off) {
		int e = errno;
		if (shmfs_unmap(addr, len) == 0) {
			DEBUG("munmap(%p, %zu): direct", addr, len);
			errno = e;
			return 0;
		}
		if (errno != EINVAL)
			return -1;
		errno = e;
	}
	return real.munmap(addr, len);
}

API void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (!ready()) {
		long r = syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
		return r == -1 ? MAP_FAILED : (void *)r;
	}
	if (!real.off && shmfs_is_mapped(old, NULL, NULL)) {
		void *p = shmfs_remap(old, old_len, new_len, flags, new_addr);
		if (p)
			DEBUG("mremap(%p, %zu, %zu, %#x): direct, now at %p", old, old_len, new_len,
			      flags, p);
		else
			DEBUG("mremap(%p, %zu, %zu, %#x): direct: %s", old, old_len, new_len, flags,
			      shmfs_map_error());
		return p ? p : MAP_FAILED;
	}
	if (!real.off && (flags & MREMAP_FIXED))
		drop_direct(new_addr, new_len);
	return real.mremap(old, old_len, new_len, flags, new_addr);
}

API int msync(void *addr, size_t len, int flags)
{
	if (!ready())
		return (int)syscall(SYS_msync, addr, len, flags);
	int rc = real.msync(addr, len, flags);
	if (real.off || (rc && errno != ENOMEM))
		return rc;
	int e = errno;
	if (shmfs_sync(addr, len) == 0) {
		DEBUG("msync(%p, %zu): direct: published", addr, len);
		errno = e;
		return rc;
	}
	if (errno == ENOMEM) { /* no direct mapping in the range */
		errno = e;
		return rc;
	}
	DEBUG("msync(%p, %zu): %s", addr, len, shmfs_map_error());
	return -1;
}
