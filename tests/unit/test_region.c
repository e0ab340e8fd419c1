/* SPDX-License-Identifier: MIT */
/*
 * Region layer tests.  Everything runs in a fresh directory on /dev/shm:
 * regular files, a fake sysfs (SHMFS_SYSFS_ROOT) with an ivshmem-like PCI
 * device and a UIO device whose /dev node is a plain file, and, when we
 * are root, a private hugetlbfs mount.  Real devdax hardware is used only
 * if /dev/dax* exists (the QEMU guest); here only the refusals run.
 *
 * Without arguments it runs what every machine can.  The parts that need
 * what a machine may lack (an ordinary user, huge pages, device nodes) run
 * when named: "test_region hugetlbfs" (ctest: region-hugetlbfs), and exit
 * 77 when they could not, so ctest reports them skipped, not passed.
 *
 * Prints "FAIL: ..." per failed check and exits 1 if any failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmfs/region.h"
#include "shmfs/util.h"

#include "check.h"

/* Every path here is the short mkdtemp name plus a few components. */
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define KIB 1024ull
#define MIB (1024ull * 1024)

static int failures;
static char tmp[256];

static void __attribute__((format(printf, 2, 3))) fail(int line, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: test_region.c:%d: ", line);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	failures++;
}

/* Ours, not check.h's: it reports through fail(), as expect_fail does. */
#undef CHECK
#define CHECK(cond, ...) do { if (!(cond)) fail(__LINE__, __VA_ARGS__); } while (0)

/* ---- helpers --------------------------------------------------------- */

static void xpath(char *buf, size_t len, const char *rel)
{
	snprintf(buf, len, "%s/%s", tmp, rel);
}

static void mkdirs(const char *path)
{
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(buf, 0755);
		*p = '/';
	}
	mkdir(buf, 0755);
}

static void write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		fail(__LINE__, "cannot write %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void read_str(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);

	buf[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

/* The byte a pattern file holds at offset off. */
static uint8_t pat(uint64_t off)
{
	return (uint8_t)((off >> 12) * 31 + off * 7 + 1);
}

/* A file of size bytes holding pat(). */
static void make_pattern_file(const char *path, uint64_t size)
{
	uint8_t buf[4096];
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0) {
		fail(__LINE__, "create %s: %s", path, strerror(errno));
		return;
	}
	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		size_t n = (size_t)(size - off < sizeof(buf) ? size - off : sizeof(buf));

		for (size_t i = 0; i < n; i++)
			buf[i] = pat(off + i);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			fail(__LINE__, "pwrite %s: %s", path, strerror(errno));
	}
	close(fd);
}

/* Does base[0..len) hold the pattern of file offset foff on? */
static bool matches_pattern(const uint8_t *base, uint64_t len, uint64_t foff)
{
	for (uint64_t i = 0; i < len; i++)
		if (base[i] != pat(foff + i))
			return false;
	return true;
}

static uint8_t file_byte(const char *path, uint64_t off)
{
	uint8_t b = 0xee;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1)
		fail(__LINE__, "pread %s @%" PRIu64 ": %s", path, off, strerror(errno));
	if (fd >= 0)
		close(fd);
	return b;
}

static int64_t file_blocks(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : (int64_t)st.st_blocks;
}

static bool all_bytes(const uint8_t *p, uint64_t len, uint8_t v)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static int open_spec(const char *spec, const struct shmfs_region_opts *o, struct shmfs_region *r,
		     char *err, size_t errlen)
{
	err[0] = '\0';
	return shmfs_region_open(spec, o, r, err, errlen);
}

/* Open must fail with want_rc; err is one line starting with prefix and containing needle. */
static void expect_fail_at(int line, const char *spec, const struct shmfs_region_opts *o,
			   int want_rc, const char *prefix, const char *needle)
{
	struct shmfs_region r;
	char err[1024];
	int rc = open_spec(spec, o, &r, err, sizeof(err));

	if (rc != want_rc) {
		fail(line, "open(%s) = %d (%s), want %d (%s); err: %s", spec, rc, strerror(-rc),
		     want_rc, strerror(-want_rc), err);
		if (rc == 0)
			shmfs_region_close(&r);
		return;
	}
	if (!err[0] || strchr(err, '\n'))
		fail(line, "open(%s): error is not one line: '%s'", spec, err);
	if (prefix && strncmp(err, prefix, strlen(prefix)))
		fail(line, "open(%s): error does not start with '%s': %s", spec, prefix, err);
	if (needle && !strstr(err, needle))
		fail(line, "open(%s): error lacks '%s': %s", spec, needle, err);
	if (r.map_addr || r.base || r.fd != -1)
		fail(line, "open(%s) failed but left the region half-open", spec);
	printf("  ok: %-60s -> %s\n", spec, err);
}

#define expect_fail(spec, o, rc, prefix, needle) \
	expect_fail_at(__LINE__, spec, o, rc, prefix, needle)

/* Does writing one byte to p from a child process kill it with SIGSEGV? */
static bool write_faults(volatile uint8_t *p)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigaction(SIGSEGV, &sa, NULL); /* not the sanitizer's handler */
		sigaction(SIGBUS, &sa, NULL);
		setrlimit(RLIMIT_CORE, &no_core);
		*p = 0x5a;
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return false;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

/* ---- spec parsing ------------------------------------------------------ */

static void test_parse(void)
{
	struct shmfs_region_spec s;
	char err[512], longspec[5000];
	int rc;

	printf("parse\n");
	rc = shmfs_region_parse_spec("/dev/dax0.0", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "/dev/dax0.0") && !s.has_offset && !s.has_length &&
	      s.map == -1, "plain path: rc %d path %s", rc, s.path);

	rc = shmfs_region_parse_spec("/dev/shm/r,offset=2M,length=4K", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "/dev/shm/r") && s.has_offset && s.offset == 2 * MIB &&
	      s.has_length && s.length == 4096 && s.map == -1,
	      "offset+length: rc %d path %s off %" PRIu64 " len %" PRIu64, rc, s.path, s.offset,
	      s.length);

	rc = shmfs_region_parse_spec("/dev/uio0,length=1G,map=3,offset=4096", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "/dev/uio0") && s.offset == 4096 &&
	      s.length == 1024 * MIB && s.map == 3, "any order: rc %d %s", rc, err);

	rc = shmfs_region_parse_spec("/dev/shm/a,b", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "/dev/shm/a,b"), "comma in path: %s", s.path);
	rc = shmfs_region_parse_spec("/dev/shm/a,x=1", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "/dev/shm/a,x=1"), "key=val in path: %s", s.path);
	rc = shmfs_region_parse_spec("/dev/shm/a,x=1,offset=4K", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "/dev/shm/a,x=1") && s.offset == 4096,
	      "key=val in path + option: %s", s.path);
	rc = shmfs_region_parse_spec("pci:0000:00:04.0,length=1M", &s, err, sizeof(err));
	CHECK(rc == 0 && !strcmp(s.path, "pci:0000:00:04.0") && s.length == MIB,
	      "pci short form: %s", s.path);

	struct { const char *spec; int rc; const char *needle; } bad[] = {
		{ "/x,offset=abc", -EINVAL, "bad offset 'abc'" },
		{ "/x,offset=", -EINVAL, "bad offset" },
		{ "/x,length=12Q", -EINVAL, "bad length" },
		{ "/x,length=0", -EINVAL, "length must not be 0" },
		{ "/x,map=one", -EINVAL, "bad map index" },
		{ "/x,map=99", -EINVAL, "bad map index" },
		{ "/x,offset=4K,foo=1", -EINVAL, "unknown region option 'foo=1'" },
		{ "/x,offset=4K,offset=8K", -EINVAL, "'offset' given twice" },
		{ ",offset=4K", -EINVAL, "no path" },
		{ "", -EINVAL, "empty region spec" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		rc = shmfs_region_parse_spec(bad[i].spec, &s, err, sizeof(err));
		CHECK(rc == bad[i].rc && strstr(err, bad[i].needle) && !strchr(err, '\n'),
		      "parse '%s' = %d '%s', want %d '%s'", bad[i].spec, rc, err, bad[i].rc,
		      bad[i].needle);
	}
	rc = shmfs_region_parse_spec(NULL, &s, err, sizeof(err));
	CHECK(rc == -EINVAL, "NULL spec: %d", rc);
	memset(longspec, 'a', sizeof(longspec) - 1);
	longspec[0] = '/';
	longspec[sizeof(longspec) - 1] = '\0';
	rc = shmfs_region_parse_spec(longspec, &s, err, sizeof(err));
	CHECK(rc == -ENAMETOOLONG, "long spec: %d", rc);
	/* A NULL or short error buffer must not matter. */
	CHECK(shmfs_region_parse_spec("/x,map=z", &s, NULL, 0) == -EINVAL, "NULL err buffer");
	CHECK(shmfs_region_parse_spec("/x,map=z", &s, err, 4) == -EINVAL && strlen(err) == 3,
	      "short err buffer: '%s'", err);
}

static void test_kind_names(void)
{
	CHECK(!strcmp(shmfs_region_kind_name(SHMFS_REGION_MEM), "memory"), "mem name");
	CHECK(!strcmp(shmfs_region_kind_name(SHMFS_REGION_FILE), "file"), "file name");
	CHECK(!strcmp(shmfs_region_kind_name(SHMFS_REGION_HUGETLBFS), "hugetlbfs"), "huge name");
	CHECK(!strcmp(shmfs_region_kind_name(SHMFS_REGION_DEVDAX), "devdax"), "dax name");
	CHECK(!strcmp(shmfs_region_kind_name(SHMFS_REGION_PCI), "pci"), "pci name");
	CHECK(!strcmp(shmfs_region_kind_name(SHMFS_REGION_UIO), "uio"), "uio name");
}

/* ---- anonymous memory ------------------------------------------------------ */

static void test_mem(void)
{
	struct shmfs_region r, z;
	pid_t pid;
	int status, rc;

	printf("memory\n");
	rc = shmfs_region_open_mem(MIB, 2 * MIB, &r);
	CHECK(rc == 0, "open_mem: %d", rc);
	if (rc)
		return;
	CHECK(r.kind == SHMFS_REGION_MEM && r.fd == -1 && r.size == MIB && r.align == 2 * MIB,
	      "mem fields: kind %d fd %d size %" PRIu64 " align %" PRIu64, r.kind, r.fd, r.size,
	      r.align);
	CHECK(((uintptr_t)r.base & (2 * MIB - 1)) == 0, "mem base %p not 2 MiB aligned", r.base);
	CHECK(all_bytes(r.base, r.size, 0), "fresh memory not zero");
	/* MAP_SHARED: a child's store is seen by the parent. */
	pid = fork();
	if (pid == 0) {
		r.base[12345] = 0x77;
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK(r.base[12345] == 0x77, "child store not visible: mapping is not shared");
	memset(r.base, 0xab, r.size);
	CHECK(shmfs_region_zero(&r, 100, 5000) == 0, "mem zero");
	CHECK(r.base[99] == 0xab && all_bytes(r.base + 100, 5000, 0) && r.base[5100] == 0xab,
	      "mem zero range wrong");
	CHECK(shmfs_region_zero(&r, MIB - 10, 11) == -EINVAL, "zero past end accepted");
	CHECK(shmfs_region_zero(&r, 10, UINT64_MAX) == -EINVAL, "zero with huge len accepted");
	CHECK(shmfs_region_zero(&r, MIB, 0) == 0, "empty zero at end rejected");
	shmfs_region_close(&r);
	CHECK(r.base == NULL && r.map_addr == NULL && r.fd == -1, "close did not reset");
	shmfs_region_close(&r); /* idempotent */

	/* Closing a zeroed struct must not close fd 0. */
	int before = fcntl(0, F_GETFD);
	memset(&z, 0, sizeof(z));
	shmfs_region_close(&z);
	CHECK(fcntl(0, F_GETFD) == before, "closing a zeroed region closed fd 0");

	CHECK(shmfs_region_open_mem(0, 4096, &r) == -EINVAL, "size 0 accepted");
	CHECK(shmfs_region_open_mem(1000, 4096, &r) == -EINVAL, "size 1000 accepted");
	CHECK(shmfs_region_open_mem(MIB, 2048, &r) == -EINVAL, "align 2048 accepted");
	CHECK(shmfs_region_open_mem(MIB, 3 * 4096, &r) == -EINVAL, "align 12K accepted");
	CHECK(r.fd == -1 && !r.base, "failed open_mem left state");
	rc = shmfs_region_open_mem(64 * KIB, 4096, &r);
	CHECK(rc == 0 && r.size == 64 * KIB && r.align == 4096, "open_mem 64K/4K: %d", rc);
	shmfs_region_close(&r);
}

/* ---- regular files on tmpfs -------------------------------------------------- */

static void test_file(void)
{
	struct shmfs_region_opts create = { .create = true, .grow_to = MIB };
	struct shmfs_region_opts ro = { .readonly = true };
	struct shmfs_region r1, r2, w;
	char path[512], spec[600], err[1024], want[700];
	int64_t blocks, blocks2;
	struct stat st;
	int rc;

	printf("file\n");
	xpath(path, sizeof(path), "region");
	rc = open_spec(path, &create, &r1, err, sizeof(err));
	CHECK(rc == 0, "create: %d %s", rc, err);
	if (rc)
		return;
	CHECK(r1.kind == SHMFS_REGION_FILE && r1.size == MIB && r1.align == 4096 && r1.fd >= 0 &&
	      !r1.readonly && r1.offset == 0 && !strcmp(r1.path, path),
	      "file fields: kind %s size %" PRIu64 " align %" PRIu64 " path %s",
	      shmfs_region_kind_name(r1.kind), r1.size, r1.align, r1.path);
	CHECK(stat(path, &st) == 0 && st.st_size == (off_t)MIB && st.st_blocks == 0 &&
	      (st.st_mode & 0777) == 0600, "created file: size %lld blocks %lld mode %o",
	      (long long)st.st_size, (long long)st.st_blocks, st.st_mode & 0777);

	/* A second, independent open maps the same memory. */
	rc = open_spec(path, NULL, &r2, err, sizeof(err));
	CHECK(rc == 0 && r2.size == MIB, "second open: %d %s", rc, err);
	if (rc) {
		shmfs_region_close(&r1);
		return;
	}
	CHECK(r1.base != r2.base, "two opens returned one mapping");
	memcpy(r1.base + 5000, "hello", 5);
	CHECK(!memcmp(r2.base + 5000, "hello", 5), "write through one mapping not seen by the other");
	r2.base[MIB - 1] = 0x42;
	CHECK(r1.base[MIB - 1] == 0x42 && file_byte(path, MIB - 1) == 0x42,
	      "last byte not shared");
	shmfs_region_close(&r2);

	/* grow_to never shrinks, and a bigger file stays whole. */
	struct shmfs_region_opts small = { .grow_to = 64 * KIB };
	rc = open_spec(path, &small, &r2, err, sizeof(err));
	CHECK(rc == 0 && r2.size == MIB, "grow_to smaller than file: %d size %" PRIu64, rc, r2.size);
	shmfs_region_close(&r2);

	/* Windows see the right bytes of the file. */
	shmfs_region_close(&r1);
	make_pattern_file(path, MIB);
	snprintf(spec, sizeof(spec), "%s,offset=8K,length=16K", path);
	rc = open_spec(spec, NULL, &w, err, sizeof(err));
	CHECK(rc == 0 && w.size == 16 * KIB && w.offset == 8 * KIB, "window: %d %s", rc, err);
	if (!rc) {
		CHECK(matches_pattern(w.base, w.size, 8 * KIB), "window bytes are not file 8K..24K");
		w.base[0] = 0xfe;
		CHECK(file_byte(path, 8 * KIB) == 0xfe, "window store not at file offset 8K");
		shmfs_region_close(&w);
	}
	snprintf(spec, sizeof(spec), "%s,offset=8K", path);
	rc = open_spec(spec, NULL, &w, err, sizeof(err));
	CHECK(rc == 0 && w.size == MIB - 8 * KIB && w.base[0] == 0xfe &&
	      matches_pattern(w.base + 1, w.size - 1, 8 * KIB + 1), "offset only: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&w);

	/* Read-only: bytes readable, a store kills the writer. */
	rc = open_spec(path, &ro, &r2, err, sizeof(err));
	CHECK(rc == 0 && r2.readonly && r2.size == MIB, "readonly open: %d %s", rc, err);
	if (!rc) {
		CHECK(r2.base[0] == pat(0) && r2.base[8 * KIB] == 0xfe, "readonly bytes wrong");
		CHECK(write_faults(r2.base + 100), "store to read-only mapping did not SIGSEGV");
		CHECK(file_byte(path, 100) == pat(100), "read-only mapping was written");
		CHECK(shmfs_region_zero(&r2, 0, 4096) == -EROFS, "zero on read-only region");
		shmfs_region_close(&r2);
	}

	/* Zero punches holes in whole pages and stores zeros at the edges. */
	rc = open_spec(path, NULL, &r1, err, sizeof(err));
	CHECK(rc == 0, "reopen: %d %s", rc, err);
	if (rc)
		return;
	memset(r1.base, 0xaa, r1.size);
	blocks = file_blocks(path);
	CHECK(blocks == (int64_t)(MIB / 512), "fully written 1 MiB file has %" PRId64 " blocks",
	      blocks);
	rc = shmfs_region_zero(&r1, 4096 + 100, 64 * KIB);
	CHECK(rc == 0, "zero: %d", rc);
	/* Sample before reading back: a read fault through a shared tmpfs
	 * mapping allocates the page again. */
	/* [4196, 69732): whole pages 8192..69632, i.e. 15 pages = 120 blocks */
	blocks2 = file_blocks(path);
	CHECK(blocks2 == blocks - 120, "punch freed %" PRId64 " blocks, want 120",
	      blocks - blocks2);
	CHECK(r1.base[4195] == 0xaa && all_bytes(r1.base + 4196, 64 * KIB, 0) &&
	      r1.base[4196 + 64 * KIB] == 0xaa, "zeroed range wrong");
	CHECK(file_byte(path, 4196) == 0 && file_byte(path, 50000) == 0 &&
	      file_byte(path, 69731) == 0 && file_byte(path, 69732) == 0xaa,
	      "file does not read back zeros");
	/* Inside one page: stores only.  (Reading the holes back through the
	 * mapping above has faulted pages in again: sample the count now.) */
	blocks2 = file_blocks(path);
	CHECK(shmfs_region_zero(&r1, 200000, 10) == 0, "small zero");
	CHECK(file_blocks(path) == blocks2, "a sub-page zero changed the block count");
	CHECK(all_bytes(r1.base + 200000, 10, 0) && r1.base[199999] == 0xaa &&
	      r1.base[200010] == 0xaa, "small zero range wrong");
	CHECK(shmfs_region_zero(&r1, MIB, 1) == -EINVAL, "zero past end accepted");
	CHECK(shmfs_region_zero(&r1, 4096, UINT64_MAX - 100) == -EINVAL, "zero overflow accepted");

	/* Zero in a window: file offsets are base offsets + the window offset. */
	snprintf(spec, sizeof(spec), "%s,offset=512K,length=64K", path);
	rc = open_spec(spec, NULL, &w, err, sizeof(err));
	CHECK(rc == 0, "window for zero: %d %s", rc, err);
	if (!rc) {
		blocks = file_blocks(path);
		CHECK(shmfs_region_zero(&w, 4096, 8192) == 0, "window zero");
		blocks2 = file_blocks(path);
		CHECK(blocks2 == blocks - 16, "window punch freed %" PRId64 " blocks, want 16",
		      blocks - blocks2);
		CHECK(r1.base[512 * KIB + 4095] == 0xaa && all_bytes(r1.base + 516 * KIB, 8192, 0) &&
		      r1.base[524 * KIB] == 0xaa, "window zero hit the wrong bytes");
		shmfs_region_close(&w);
	}
	shmfs_region_close(&r1);

	/* Bad windows and options. */
	snprintf(spec, sizeof(spec), "%s,offset=1000", path);
	expect_fail(spec, NULL, -EINVAL, path, "not a multiple of the page size");
	snprintf(spec, sizeof(spec), "%s,offset=abc", path);
	expect_fail(spec, NULL, -EINVAL, spec, "bad offset 'abc'");
	snprintf(spec, sizeof(spec), "%s,offset=1M", path);
	expect_fail(spec, NULL, -EINVAL, path, "past the end");
	snprintf(spec, sizeof(spec), "%s,offset=2M", path);
	expect_fail(spec, NULL, -EINVAL, path, "past the end");
	snprintf(spec, sizeof(spec), "%s,offset=512K,length=768K", path);
	expect_fail(spec, NULL, -EINVAL, path, "goes past the end");
	snprintf(spec, sizeof(spec), "%s,map=1", path);
	expect_fail(spec, NULL, -EINVAL, path, "only to UIO");
	snprintf(spec, sizeof(spec), "%s,foo=1", path);
	expect_fail(spec, NULL, -EINVAL, spec, "unknown region option 'foo=1'");
	snprintf(spec, sizeof(spec), "%s,length=64K", path);
	expect_fail(spec, &create, -ENOSPC, path, "region is 65536 bytes, smaller than --size 1048576");

	/* Paths with commas that are not options. */
	xpath(path, sizeof(path), "a,b");
	make_pattern_file(path, 64 * KIB);
	rc = open_spec(path, NULL, &r1, err, sizeof(err));
	CHECK(rc == 0 && r1.size == 64 * KIB, "comma path: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&r1);
	snprintf(spec, sizeof(spec), "%s,offset=4K", path);
	rc = open_spec(spec, NULL, &r1, err, sizeof(err));
	CHECK(rc == 0 && r1.size == 60 * KIB && matches_pattern(r1.base, 4096, 4096),
	      "comma path + offset: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&r1);
	xpath(path, sizeof(path), "c,x=1");
	make_pattern_file(path, 16 * KIB);
	snprintf(spec, sizeof(spec), "%s,length=8K", path);
	rc = open_spec(spec, NULL, &r1, err, sizeof(err));
	CHECK(rc == 0 && r1.size == 8 * KIB && !strcmp(r1.path, path),
	      "key=value path + length: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&r1);

	/* Empty, missing, directory, unmappable. */
	xpath(path, sizeof(path), "empty");
	struct shmfs_region_opts create_only = { .create = true };
	expect_fail(path, &create_only, -EINVAL, path, "region is empty");
	CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600,
	      "create without grow_to did not create the file");
	expect_fail(path, NULL, -EINVAL, path, "region is empty");
	xpath(path, sizeof(path), "missing");
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	expect_fail(path, NULL, -ENOENT, want, NULL);
	xpath(path, sizeof(path), "nodir/region");
	expect_fail(path, &create, -ENOENT, path, "No such file or directory");
	xpath(path, sizeof(path), "dir");
	mkdir(path, 0755);
	expect_fail(path, NULL, -EISDIR, path, "is a directory");
	expect_fail(path, &create, -EISDIR, path, "is a directory");
	expect_fail("/proc/self/status", &ro, -EINVAL, "/proc/self/status", "region is empty");
	xpath(path, sizeof(path), "region");
	struct shmfs_region_opts ro_grow = { .readonly = true, .grow_to = 2 * MIB };
	expect_fail(path, &ro_grow, -EROFS, path, "read-only");
	CHECK(stat(path, &st) == 0 && st.st_size == (off_t)MIB, "read-only open grew the file");
}

/* Root reads any file: the refusal of an unreadable one needs an ordinary user. */
static int test_unreadable(void)
{
	char path[512];

	printf("unreadable\n");
	if (geteuid() == 0)
		return check_skip("unreadable", "running as root");
	xpath(path, sizeof(path), "region");
	make_pattern_file(path, MIB);
	chmod(path, 0);
	expect_fail(path, NULL, -EACCES, path, "Permission denied");
	chmod(path, 0600);
	return 0;
}

/* ---- a fake ivshmem PCI device -------------------------------------------- */

static void test_pci(void)
{
	struct shmfs_region r, r2;
	char sys[512], dev[512], res[600], en[600], spec[700], buf[64], err[1024];
	int rc;

	printf("pci\n");
	xpath(sys, sizeof(sys), "sys");
	snprintf(dev, sizeof(dev), "%s/bus/pci/devices/0000:00:04.0", sys);
	mkdirs(dev);
	snprintf(res, sizeof(res), "%s/resource2", dev);
	snprintf(en, sizeof(en), "%s/enable", dev);
	make_pattern_file(res, MIB);
	write_str(en, "0\n");
	setenv("SHMFS_SYSFS_ROOT", sys, 1);

	/* A spec that is refused leaves the device alone. */
	expect_fail("pci:0000:00:04.0,offset=1000", NULL, -EINVAL, res, "not a multiple");
	read_str(en, buf, sizeof(buf));
	CHECK(!strcmp(buf, "0\n"), "a refused spec enabled the device: '%s'", buf);

	rc = open_spec("pci:0000:00:04.0", NULL, &r, err, sizeof(err));
	CHECK(rc == 0, "pci short form: %d %s", rc, err);
	if (!rc) {
		CHECK(r.kind == SHMFS_REGION_PCI && r.size == MIB && r.align == 4096 &&
		      !strcmp(r.path, res), "pci fields: kind %s size %" PRIu64 " path %s",
		      shmfs_region_kind_name(r.kind), r.size, r.path);
		read_str(en, buf, sizeof(buf));
		CHECK(buf[0] == '1', "enable is '%s', want 1", buf);
		CHECK(matches_pattern(r.base, r.size, 0), "pci bytes are not the resource file's");
		memcpy(r.base + 777, "ivshmem", 7);
		CHECK(file_byte(res, 777) == 'i' && file_byte(res, 783) == 'm',
		      "pci store not in the resource file");

		rc = open_spec(res, NULL, &r2, err, sizeof(err));
		CHECK(rc == 0 && r2.kind == SHMFS_REGION_PCI && r2.size == MIB,
		      "pci full path: %d %s kind %d", rc, err, r2.kind);
		if (!rc) {
			CHECK(!memcmp(r2.base + 777, "ivshmem", 7), "pci mappings not shared");
			r2.base[MIB - 1] = 0x99;
			CHECK(r.base[MIB - 1] == 0x99, "pci store not seen by the first mapping");
			shmfs_region_close(&r2);
		}
		shmfs_region_close(&r);
	}
	/* Already enabled: left alone. */
	write_str(en, "1\n");
	rc = open_spec("pci:00:04.0,offset=4K,length=8K", NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.kind == SHMFS_REGION_PCI && r.size == 8 * KIB &&
	      r.base[0] == pat(4096) && r.base[8191] == pat(4096 + 8191),
	      "pci short form without domain + window: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&r);
	read_str(en, buf, sizeof(buf));
	CHECK(!strcmp(buf, "1\n"), "enable rewritten: '%s'", buf);

	struct shmfs_region_opts big = { .grow_to = 2 * MIB };
	expect_fail("pci:0000:00:04.0", &big, -ENOSPC, res, "smaller than --size 2097152");
	snprintf(spec, sizeof(spec), "%s/bus/pci/devices/0000:00:05.0/resource2", sys);
	expect_fail("pci:0000:00:05.0", NULL, -ENOENT, spec, "no such PCI device");
	expect_fail("pci:zz", NULL, -EINVAL, "pci:zz", "not a PCI address");
	expect_fail("pci:0000:00:04.9", NULL, -EINVAL, "pci:0000:00:04.9", "not a PCI address");

	/* The same file name outside .../devices/BDF/ is just a file. */
	snprintf(spec, sizeof(spec), "%s/0000:00:04.0", tmp);
	mkdirs(spec);
	strcat(spec, "/resource2");
	make_pattern_file(spec, 64 * KIB);
	rc = open_spec(spec, NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.kind == SHMFS_REGION_FILE, "resource2 outside devices/: kind %d", r.kind);
	if (!rc)
		shmfs_region_close(&r);
	/* A real-sysfs-shaped path behind a bridge is PCI. */
	snprintf(spec, sizeof(spec), "%s/devices/pci0000:00/0000:00:1c.0/0000:02:00.0", sys);
	mkdirs(spec);
	strcat(spec, "/resource0");
	make_pattern_file(spec, 64 * KIB);
	rc = open_spec(spec, NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.kind == SHMFS_REGION_PCI, "nested pci path: %d kind %d %s", rc, r.kind,
	      err);
	if (!rc)
		shmfs_region_close(&r);
	unsetenv("SHMFS_SYSFS_ROOT");
}

/* ---- a fake UIO device ---------------------------------------------------- */

static void uio_map(const char *sys, const char *uio, int k, const char *size, const char *off)
{
	char d[700], f[800];

	snprintf(d, sizeof(d), "%s/class/uio/%s/maps/map%d", sys, uio, k);
	mkdirs(d);
	snprintf(f, sizeof(f), "%s/size", d);
	write_str(f, size);
	snprintf(f, sizeof(f), "%s/offset", d);
	write_str(f, off);
}

static void test_uio(void)
{
	struct shmfs_region r;
	char sys[512], devd[512], dev[600], spec[700], err[1024];
	int rc;

	printf("uio\n");
	xpath(sys, sizeof(sys), "sys");
	xpath(devd, sizeof(devd), "dev");
	mkdirs(devd);
	uio_map(sys, "uio3", 0, "0x00001000\n", "0x0\n");
	uio_map(sys, "uio3", 1, "0x00100000\n", "0x0\n");
	snprintf(dev, sizeof(dev), "%s/uio3", devd);
	make_pattern_file(dev, 4096 + MIB);
	setenv("SHMFS_SYSFS_ROOT", sys, 1);

	rc = open_spec(dev, NULL, &r, err, sizeof(err));
	CHECK(rc == 0, "uio: %d %s", rc, err);
	if (!rc) {
		CHECK(r.kind == SHMFS_REGION_UIO && r.size == MIB && r.align == 4096,
		      "uio default map: kind %s size %" PRIu64, shmfs_region_kind_name(r.kind),
		      r.size);
		CHECK(matches_pattern(r.base, r.size, 4096), "uio map1 does not start at file offset 4096");
		r.base[10] = 0x3c;
		CHECK(file_byte(dev, 4096 + 10) == 0x3c, "uio store not at 4096+10");
		shmfs_region_close(&r);
	}
	snprintf(spec, sizeof(spec), "%s,map=0", dev);
	rc = open_spec(spec, NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.kind == SHMFS_REGION_UIO && r.size == 4096 &&
	      matches_pattern(r.base, 4096, 0), "uio map=0: %d %s size %" PRIu64, rc, err, r.size);
	if (!rc)
		shmfs_region_close(&r);
	snprintf(spec, sizeof(spec), "%s,map=1,offset=8K,length=4K", dev);
	rc = open_spec(spec, NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.size == 4096 && r.offset == 8 * KIB &&
	      matches_pattern(r.base + 11, 4096 - 11, 4096 + 8192 + 11),
	      "uio map=1 window: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&r);
	snprintf(spec, sizeof(spec), "%s,map=2", dev);
	expect_fail(spec, NULL, -EINVAL, dev, "has no map 2");
	snprintf(spec, sizeof(spec), "%s,map=0,offset=4K", dev);
	expect_fail(spec, NULL, -EINVAL, dev, "past the end");
	struct shmfs_region_opts big = { .grow_to = 2 * MIB };
	expect_fail(dev, &big, -ENOSPC, dev, "smaller than --size");

	/* A map that does not start on a page boundary is refused. */
	uio_map(sys, "uio4", 0, "0x1000\n", "0x100\n");
	snprintf(dev, sizeof(dev), "%s/uio4", devd);
	make_pattern_file(dev, 8192);
	expect_fail(dev, NULL, -EINVAL, dev, "page-aligned");
	/* No maps at all. */
	snprintf(spec, sizeof(spec), "%s/class/uio/uio5/maps", sys);
	mkdirs(spec);
	snprintf(dev, sizeof(dev), "%s/uio5", devd);
	make_pattern_file(dev, 8192);
	expect_fail(dev, NULL, -ENODEV, dev, "no memory maps");

	/* Without the testing hook a file named uio3 is just a file. */
	unsetenv("SHMFS_SYSFS_ROOT");
	snprintf(dev, sizeof(dev), "%s/uio3", devd);
	rc = open_spec(dev, NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.kind == SHMFS_REGION_FILE && r.size == 4096 + MIB,
	      "uio3 without SHMFS_SYSFS_ROOT: %d kind %d", rc, r.kind);
	if (!rc)
		shmfs_region_close(&r);
}

/* ---- hugetlbfs ------------------------------------------------------------ */

static long read_long(const char *path)
{
	char buf[64];

	buf[0] = '\0';
	read_str(path, buf, sizeof(buf));
	return buf[0] ? strtol(buf, NULL, 10) : -1;
}

static long meminfo_kb(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)) && line[strlen(key)] == ':')
			v = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

static int test_hugetlbfs(void)
{
	const char *nr_path = "/proc/sys/vm/nr_hugepages";
	struct shmfs_region_opts create = { .create = true, .grow_to = 8 * MIB };
	struct shmfs_region r, r2;
	char mnt[512], path[600], spec[700], err[1024], num[32];
	long nr, hpsize, free_pages;
	bool raised = false;
	int64_t blocks;
	int rc, skip = 0;

	printf("hugetlbfs\n");
	hpsize = meminfo_kb("Hugepagesize") * 1024;
	nr = read_long(nr_path);
	if (hpsize <= 0 || nr < 0)
		return check_skip("hugetlbfs", "no huge page support in /proc");
	if (nr < 8) {
		snprintf(num, sizeof(num), "%d\n", 8);
		int fd = open(nr_path, O_WRONLY);
		if (fd < 0 || write(fd, num, strlen(num)) < 0) {
			skip = check_skip("hugetlbfs", "cannot raise %s: %s", nr_path,
					  strerror(errno));
			if (fd >= 0)
				close(fd);
			return skip;
		}
		close(fd);
		raised = true;
	}
	free_pages = meminfo_kb("HugePages_Free");
	if (free_pages * hpsize < (long)(8 * MIB)) {
		skip = check_skip("hugetlbfs", "only %ld free huge pages", free_pages);
		goto restore;
	}
	xpath(mnt, sizeof(mnt), "huge");
	mkdir(mnt, 0755);
	if (mount("none", mnt, "hugetlbfs", 0, NULL)) {
		skip = check_skip("hugetlbfs", "mount: %s", strerror(errno));
		goto restore;
	}

	snprintf(path, sizeof(path), "%s/region", mnt);
	rc = open_spec(path, &create, &r, err, sizeof(err));
	CHECK(rc == 0, "hugetlbfs create: %d %s", rc, err);
	if (rc)
		goto out;
	CHECK(r.kind == SHMFS_REGION_HUGETLBFS && r.align == (uint64_t)hpsize &&
	      r.size == 8 * MIB && ((uintptr_t)r.base & (uintptr_t)(hpsize - 1)) == 0,
	      "hugetlbfs fields: kind %s align %" PRIu64 " size %" PRIu64 " base %p",
	      shmfs_region_kind_name(r.kind), r.align, r.size, r.base);
	CHECK(hpsize != (long)(2 * MIB) || r.align == 2 * MIB, "x86 huge page is not 2 MiB");

	rc = open_spec(path, NULL, &r2, err, sizeof(err));
	CHECK(rc == 0 && r2.kind == SHMFS_REGION_HUGETLBFS, "hugetlbfs reopen: %d %s", rc, err);
	if (!rc) {
		memcpy(r.base + 3 * MIB + 5, "huge", 4);
		CHECK(!memcmp(r2.base + 3 * MIB + 5, "huge", 4), "hugetlbfs mappings not shared");
		shmfs_region_close(&r2);
	}

	/* Zero: whole huge pages are punched, the edges are stored. */
	memset(r.base, 0xaa, r.size);
	blocks = file_blocks(path);
	rc = shmfs_region_zero(&r, 100, 6 * MIB);
	CHECK(rc == 0, "hugetlbfs zero: %d", rc);
	/* [100, 6M+100): whole huge pages 2M..6M are freed (before reading back). */
	if (hpsize == (long)(2 * MIB))
		CHECK(file_blocks(path) == blocks - (int64_t)(4 * MIB / 512),
		      "hugetlbfs punch freed %" PRId64 " blocks, want %llu",
		      blocks - file_blocks(path), 4 * MIB / 512);
	CHECK(r.base[99] == 0xaa && all_bytes(r.base + 100, 6 * MIB, 0) &&
	      r.base[100 + 6 * MIB] == 0xaa, "hugetlbfs zero range wrong");
	shmfs_region_close(&r);

	snprintf(spec, sizeof(spec), "%s,offset=%ld", path, hpsize);
	rc = open_spec(spec, NULL, &r, err, sizeof(err));
	CHECK(rc == 0 && r.size == 8 * MIB - (uint64_t)hpsize && r.base[0] == 0,
	      "hugetlbfs offset: %d %s", rc, err);
	if (!rc)
		shmfs_region_close(&r);
	snprintf(spec, sizeof(spec), "%s,offset=4K", path);
	expect_fail(spec, NULL, -EINVAL, path, "not a multiple of the huge page size");
	snprintf(spec, sizeof(spec), "%s,length=4K", path);
	expect_fail(spec, NULL, -EINVAL, path, "not a multiple of the huge page size");
	/* grow_to is rounded up to whole huge pages. */
	snprintf(path, sizeof(path), "%s/odd", mnt);
	struct shmfs_region_opts odd = { .create = true, .grow_to = 3 * MIB };
	rc = open_spec(path, &odd, &r, err, sizeof(err));
	CHECK(rc == 0 && r.size == shmfs_round_up(3 * MIB, (uint64_t)hpsize),
	      "hugetlbfs odd grow_to: %d %s size %" PRIu64, rc, err, r.size);
	if (!rc)
		shmfs_region_close(&r);
out:
	if (umount(mnt))
		fail(__LINE__, "umount %s: %s", mnt, strerror(errno));
restore:
	if (raised) {
		snprintf(num, sizeof(num), "%ld\n", nr);
		write_str(nr_path, num);
	}
	return skip;
}

/* ---- devices ----------------------------------------------------------------- */

/* ROOT/dev/char/MAJ:MIN -> a device directory whose subsystem is `sub`. */
static void fake_char_dev(const char *sys, dev_t rdev, const char *sub, const char *name)
{
	char d[700], l[800], t[800];

	snprintf(d, sizeof(d), "%s/bus/%s", sys, sub);
	mkdirs(d);
	snprintf(d, sizeof(d), "%s/devices/virtual/fake/%s", sys, name);
	mkdirs(d);
	snprintf(l, sizeof(l), "%s/subsystem", d);
	snprintf(t, sizeof(t), "../../../../bus/%s", sub);
	unlink(l);
	if (symlink(t, l))
		fail(__LINE__, "symlink %s: %s", l, strerror(errno));
	snprintf(d, sizeof(d), "%s/dev/char", sys);
	mkdirs(d);
	snprintf(l, sizeof(l), "%s/%u:%u", d, major(rdev), minor(rdev));
	snprintf(t, sizeof(t), "../../devices/virtual/fake/%s", name);
	unlink(l);
	if (symlink(t, l))
		fail(__LINE__, "symlink %s: %s", l, strerror(errno));
}

/*
 * Up to max nodes of /dev whose type (S_IFBLK, S_IFCHR) and name prefix
 * match, as paths; returns how many.
 */
static int dev_nodes(mode_t type, const char *prefix, char (*paths)[300], int max)
{
	struct dirent *de;
	struct stat st;
	int n = 0;
	DIR *d;

	d = opendir("/dev");
	while (d && n < max && (de = readdir(d))) {
		snprintf(paths[n], sizeof(paths[n]), "/dev/%s", de->d_name);
		if (!lstat(paths[n], &st) && (st.st_mode & S_IFMT) == type &&
		    !strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/* A block device is refused: its page cache is per host. */
static int test_blockdev(void)
{
	char path[1][300];

	printf("blockdev\n");
	if (!dev_nodes(S_IFBLK, "", path, 1))
		return check_skip("blockdev", "none in /dev");
	expect_fail(path[0], NULL, -ENODEV, path[0],
		    "not coherent across hosts; use a devdax namespace (ndctl create-namespace --mode=devdax)");
	return 0;
}

/* Real devdax (the QEMU guest): map each read-only, check its geometry. */
static int test_devdax(void)
{
	struct shmfs_region_opts ro = { .readonly = true };
	struct shmfs_region r;
	char paths[16][300], err[1024];
	int n, rc;

	printf("devdax\n");
	n = dev_nodes(S_IFCHR, "dax", paths, 16);
	if (!n)
		return check_skip("devdax", "no /dev/dax* on this machine");
	for (int i = 0; i < n; i++) {
		const char *path = paths[i];

		rc = open_spec(path, &ro, &r, err, sizeof(err));
		CHECK(rc == 0, "devdax %s: %d %s", path, rc, err);
		if (rc)
			continue;
		CHECK(r.kind == SHMFS_REGION_DEVDAX && r.align >= 4096 &&
		      shmfs_is_pow2(r.align) && r.size && r.size % r.align == 0 &&
		      ((uintptr_t)r.base & (r.align - 1)) == 0,
		      "devdax %s: kind %s size %" PRIu64 " align %" PRIu64, path,
		      shmfs_region_kind_name(r.kind), r.size, r.align);
		printf("  devdax %s: %" PRIu64 " bytes, align %" PRIu64 "\n", path, r.size,
		       r.align);
		shmfs_region_close(&r);
		if (r.align > 4096) {
			char spec[700];

			snprintf(spec, sizeof(spec), "%s,offset=4K", path);
			expect_fail(spec, &ro, -EINVAL, path, "daxctl reconfigure-device --align=4K");
		}
	}
	return 0;
}

/* Refusals of character devices that are not devdax or UIO, real and faked. */
static void test_devices(void)
{
	struct shmfs_region_opts ro = { .readonly = true };
	char sys[512];
	struct stat st;

	printf("devices\n");
	unsetenv("SHMFS_SYSFS_ROOT");
	expect_fail("/dev/null", NULL, -ENODEV, "/dev/null: not a devdax or UIO device", NULL);
	expect_fail("/dev/zero", &ro, -ENODEV, "/dev/zero: not a devdax or UIO device", NULL);

	/*
	 * Make /dev/null look like a dax device in a fake sysfs: it is then
	 * classified as devdax and goes to libdaxctl, which reads the real
	 * /sys and cannot find it.  That runs the libdaxctl walk here.
	 */
	if (stat("/dev/null", &st))
		return;
	xpath(sys, sizeof(sys), "sys-dax");
	fake_char_dev(sys, st.st_rdev, "dax", "dax9.0");
	setenv("SHMFS_SYSFS_ROOT", sys, 1);
	expect_fail("/dev/null", NULL, -ENODEV, "/dev/null", "libdaxctl does not list it");

	/* The same for UIO: found and probed, then mmap of /dev/null fails. */
	xpath(sys, sizeof(sys), "sys-uio");
	fake_char_dev(sys, st.st_rdev, "uio", "uio7");
	uio_map(sys, "uio7", 0, "0x1000\n", "0x0\n");
	setenv("SHMFS_SYSFS_ROOT", sys, 1);
	expect_fail("/dev/null", &ro, -ENODEV, "/dev/null", "cannot map 4 KiB");
	unsetenv("SHMFS_SYSFS_ROOT");
}

/* ---- the data-area access path: store, clear, load, ptr ---------------------- */

/* Round trips and bounds refusals on an open region r of at least 64 KiB. */
static void check_access(struct shmfs_region *r, const char *what)
{
	uint8_t in[5000], out[5000];
	uint64_t end = r->size;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 13 + 5);
	memset(r->base, 0xab, 64 * KIB);
	CHECK(shmfs_region_store(r, 4000, in, sizeof(in)) == 0, "%s: store", what);
	CHECK(!memcmp(r->base + 4000, in, sizeof(in)), "%s: store not seen through the map", what);
	CHECK(r->base[3999] == 0xab && r->base[9000] == 0xab, "%s: store spilled", what);
	memset(out, 0, sizeof(out));
	CHECK(shmfs_region_load(r, 4000, out, sizeof(out)) == 0 && !memcmp(in, out, sizeof(in)),
	      "%s: load does not return what was stored", what);
	CHECK(shmfs_region_clear(r, 4100, 300) == 0, "%s: clear", what);
	CHECK(r->base[4099] == in[99] && all_bytes(r->base + 4100, 300, 0) &&
	      r->base[4400] == in[400], "%s: clear range wrong", what);
	CHECK(shmfs_region_ptr(r, 4000, 10) == r->base + 4000, "%s: ptr", what);
	/* the last byte, and empty ranges at the end */
	CHECK(shmfs_region_store(r, end - 1, in, 1) == 0 && r->base[end - 1] == in[0],
	      "%s: store of the last byte", what);
	CHECK(shmfs_region_store(r, end, in, 0) == 0 && shmfs_region_clear(r, end, 0) == 0 &&
	      shmfs_region_load(r, end, out, 0) == 0 && shmfs_region_ptr(r, end, 0) == r->base + end,
	      "%s: empty range at the end refused", what);
	/* refusals: past the end, and lengths that wrap; none stores a byte */
	memset(r->base + end - 10, 0xcd, 10);
	CHECK(shmfs_region_store(r, end - 10, in, 11) == -EINVAL, "%s: store past end", what);
	CHECK(shmfs_region_store(r, end + 1, in, 0) == -EINVAL, "%s: store beyond end", what);
	CHECK(shmfs_region_clear(r, end - 10, 11) == -EINVAL, "%s: clear past end", what);
	CHECK(shmfs_region_clear(r, 10, UINT64_MAX) == -EINVAL, "%s: clear wraps", what);
	CHECK(shmfs_region_load(r, end - 10, out, 11) == -EINVAL, "%s: load past end", what);
	CHECK(shmfs_region_load(r, UINT64_MAX, out, 2) == -EINVAL, "%s: load wraps", what);
	CHECK(shmfs_region_ptr(r, end - 10, 11) == NULL, "%s: ptr past end", what);
	CHECK(shmfs_region_ptr(r, 1, UINT64_MAX) == NULL, "%s: ptr wraps", what);
	CHECK(all_bytes(r->base + end - 10, 10, 0xcd), "%s: a refused call stored", what);
}

static void test_access(void)
{
	struct shmfs_region r, ro;
	struct shmfs_region_opts create = { .create = true, .grow_to = 256 * KIB };
	struct shmfs_region_opts rdonly = { .readonly = true };
	char path[512], err[1024];
	uint8_t b = 1;
	int rc;

	printf("access\n");
	rc = shmfs_region_open_mem(256 * KIB, 4096, &r);
	CHECK(rc == 0, "open_mem: %d", rc);
	if (!rc) {
		check_access(&r, "memory");
		shmfs_region_close(&r);
	}

	/* A file region stores by pwrite: the file itself has the bytes, at
	 * the region's offset within it. */
	xpath(path, sizeof(path), "access.img");
	rc = open_spec(path, &create, &r, err, sizeof(err));
	CHECK(rc == 0, "open %s: %d %s", path, rc, err);
	if (!rc) {
		check_access(&r, "file");
		CHECK(file_byte(path, 4000) == (uint8_t)5 && file_byte(path, 4100) == 0,
		      "file: stored bytes not in the file");
		shmfs_region_close(&r);
	}
	char spec[600];
	snprintf(spec, sizeof(spec), "%s,offset=64K", path);
	rc = open_spec(spec, NULL, &r, err, sizeof(err));
	CHECK(rc == 0, "open %s: %d %s", spec, rc, err);
	if (!rc) {
		CHECK(shmfs_region_store(&r, 10, "xyz", 3) == 0 && file_byte(path, 64 * KIB + 11) == 'y',
		      "file with offset: store not at offset + off");
		shmfs_region_close(&r);
	}

	/* Read-only: loads work, stores and clears are refused. */
	rc = open_spec(path, &rdonly, &ro, err, sizeof(err));
	CHECK(rc == 0, "open %s read-only: %d %s", path, rc, err);
	if (!rc) {
		CHECK(shmfs_region_store(&ro, 0, &b, 1) == -EROFS, "read-only store accepted");
		CHECK(shmfs_region_clear(&ro, 0, 1) == -EROFS, "read-only clear accepted");
		CHECK(shmfs_region_load(&ro, 4000, &b, 1) == 0 && b == 5, "read-only load");
		shmfs_region_close(&ro);
	}
	/* A closed (reset) region refuses everything. */
	CHECK(shmfs_region_store(&ro, 0, &b, 0) == -EINVAL && !shmfs_region_ptr(&ro, 0, 0),
	      "closed region accepted an access");
}

/* ---- main ---------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Run only when named on the command line (see the top of the file). */
static const struct {
	const char *name;
	int (*run)(void);
} parts[] = {
	{ "unreadable", test_unreadable },
	{ "hugetlbfs",  test_hugetlbfs },
	{ "blockdev",   test_blockdev },
	{ "devdax",     test_devdax },
};

/* Returns CHECK_SKIPPED if any named part could not run, else 0. */
static int run_parts(int n, char **names)
{
	int status = 0;

	for (int i = 0; i < n; i++) {
		size_t k = 0;

		while (k < SHMFS_ARRAY_SIZE(parts) && strcmp(parts[k].name, names[i]))
			k++;
		if (k == SHMFS_ARRAY_SIZE(parts))
			fail(__LINE__, "no part '%s' to run", names[i]);
		else if (parts[k].run() == CHECK_SKIPPED)
			status = CHECK_SKIPPED;
	}
	return status;
}

/* Clean up and turn failures and skips into the exit status (check.h). */
static int finish(int status)
{
	nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (failures) {
		printf("test_region: %d check(s) FAILED\n", failures);
		return 1;
	}
	if (status == CHECK_SKIPPED) {
		printf("test_region: skipped (see SKIP above); every check that ran passed\n");
		return CHECK_SKIPPED;
	}
	printf("test_region: all checks passed\n");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	unsetenv("SHMFS_SYSFS_ROOT");
	snprintf(tmp, sizeof(tmp), "/dev/shm/shmfs-test-region.XXXXXX");
	if (!mkdtemp(tmp)) {
		snprintf(tmp, sizeof(tmp), "/tmp/shmfs-test-region.XXXXXX");
		if (!mkdtemp(tmp)) {
			printf("FAIL: mkdtemp: %s\n", strerror(errno));
			return 1;
		}
	}
	printf("test_region: working in %s\n", tmp);
	if (argc > 1)
		return finish(run_parts(argc - 1, argv + 1));

	test_parse();
	test_kind_names();
	test_mem();
	test_access();
	test_file();
	test_pci();
	test_uio();
	test_devices();
	return finish(0);
}
