/* SPDX-License-Identifier: MIT */
/*
 * map-driver: libshmfs under the control of a test, one command per line
 * on stdin, one reply per line on stdout: "ok ..." or "err ERRNO message".
 * Mappings are named by small integers.  Offsets and lengths are decimal
 * bytes; data is hex.
 *
 *   map ID PATH r|rw [OFF LEN]      shmfs_map (OFF 0, LEN 0 = the file) or,
 *                                   with OFF, open + shmfs_map_fd_at + close
 *   mapat ID PATH r|rw OFF LEN fixed|noreplace ADDR
 *   read ID OFF LEN                 -> ok HEX
 *   write ID OFF HEX
 *   fill ID OFF LEN BYTE            memset with BYTE (decimal)
 *   save ID OFF LEN FILE            write the mapped bytes to FILE
 *   load ID OFF FILE                copy FILE into the mapping
 *   store ID OFF VALUE              64-bit release store
 *   load64 ID OFF                   64-bit acquire load -> ok VALUE
 *   sync ID [OFF LEN]               shmfs_sync
 *   unmap ID [OFF LEN]              shmfs_unmap of all or part (OFF from ID)
 *   remap ID NEWLEN [maymove]       shmfs_remap -> ok ADDR
 *   ismapped ID OFF                 -> ok 1 BASE_OFF LEN | ok 0
 *   addr ID                         -> ok ADDR
 *   backing ID OFF                  -> ok PATH (from /proc/self/maps)
 *   spin ID OFF VALUE MS            wait (no system call) until the 64-bit
 *                                   word at OFF holds VALUE -> ok NS
 *   pingpong ID lead|follow ROUNDS MS
 *                                   lead: for i = 1..ROUNDS store i at OFF 0,
 *                                   wait for i at OFF 64; follow: wait for
 *                                   i at 0, store it at 64 -> ok ROUNDS P50_NS
 *   fds                             -> ok N (open descriptors)
 *   flip PATH always|once|off       change PATH's layout after reads of
 *                                   its extent map (see below)
 *   threads N ITER PATH             N threads map, sync, split-unmap and
 *                                   unmap PATH ITER times each
 *   quit
 *
 * flip: this program defines fgetxattr, which libshmfs then calls: after a
 * read of the extent map, it allocates or frees a unit far beyond the end
 * of PATH (through its own descriptor), so the layout generation moves
 * between libshmfs's reads -- every time (always) or once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <linux/falloc.h>

#include "shmfs/shmfs.h"

#define MAXMAP 64

static struct {
	uint8_t *p;
	size_t len;
} maps[MAXMAP];

/* ---- fgetxattr, interposed over libc's for libshmfs ---------------------- */

typedef ssize_t fgetxattr_fn(int, const char *, void *, size_t);

static struct {
	int fd;                 /* -1: off */
	bool once;
	int done;
	bool unit_mapped;
	bool busy;
} flip = { .fd = -1 };

static void flip_layout(void)
{
	const off_t far = 96ll << 20;

	if (flip.busy)
		return;
	flip.busy = true;
	if (flip.unit_mapped)
		fallocate(flip.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, far, 1 << 20);
	else
		fallocate(flip.fd, FALLOC_FL_KEEP_SIZE, far, 1 << 20);
	flip.unit_mapped = !flip.unit_mapped;
	flip.busy = false;
}

ssize_t fgetxattr(int fd, const char *name, void *value, size_t size)
{
	static fgetxattr_fn *real;

	if (!real)
		real = (fgetxattr_fn *)dlsym(RTLD_NEXT, "fgetxattr");
	ssize_t n = real(fd, name, value, size);
	if (n > 0 && size && flip.fd >= 0 && !strcmp(name, SHMFS_XATTR_MAP) &&
	    (!flip.once || !flip.done++))
		flip_layout();
	return n;
}

/* ---- helpers --------------------------------------------------------------- */

static void reply_err(void)
{
	int e = errno;

	printf("err %s %s\n", strerrorname_np(e) ? strerrorname_np(e) : "?", shmfs_map_error());
}

static int id_of(const char *s)
{
	int id = s ? atoi(s) : -1;

	return id >= 0 && id < MAXMAP ? id : -1;
}

static uint64_t num(const char *s)
{
	return s ? strtoull(s, NULL, 0) : 0;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no system call */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wait until *w == v; false after ms milliseconds. */
static bool spin_for(const uint64_t *w, uint64_t v, uint64_t ms)
{
	uint64_t deadline = now_ns() + ms * 1000000ull;

	for (unsigned n = 0;; n++) {
		if (__atomic_load_n(w, __ATOMIC_ACQUIRE) == v)
			return true;
		if (!(n & 1023) && now_ns() > deadline)
			return false;
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#elif defined(__aarch64__)
		__asm__ __volatile__("yield");
#endif
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", "..", and the directory's own descriptor */
}

static int prot_of(const char *s)
{
	return s && !strcmp(s, "rw") ? PROT_READ | PROT_WRITE : PROT_READ;
}

static void do_map(char **a, int n, bool at)
{
	int id = id_of(a[1]);
	int prot = prot_of(a[3]);
	size_t len = n > 5 ? (size_t)num(a[5]) : 0;
	void *p;

	if (id < 0 || n < 4) {
		puts("err EINVAL usage");
		return;
	}
	if (n <= 4 && !at) {
		p = shmfs_map(a[2], prot, 0, &len);
	} else {
		int fd = open(a[2], prot & PROT_WRITE ? O_RDWR : O_RDONLY);
		int flags = 0;
		void *hint = NULL;
		if (fd < 0) {
			printf("err %s open\n", strerrorname_np(errno));
			return;
		}
		if (at && n > 7) {
			flags = !strcmp(a[6], "fixed") ? MAP_FIXED : MAP_FIXED_NOREPLACE;
			hint = (void *)(uintptr_t)num(a[7]);
		}
		p = shmfs_map_fd_at(fd, num(a[4]), &len, prot, flags, hint);
		int e = errno;
		close(fd);
		errno = e;
	}
	if (!p) {
		reply_err();
		return;
	}
	maps[id].p = p;
	maps[id].len = len;
	printf("ok %#" PRIxPTR " %zu\n", (uintptr_t)p, len);
}

/* The path backing the mapping at p, from /proc/self/maps. */
static void backing(const void *p)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4608];

	while (f && fgets(line, sizeof(line), f)) {
		uintptr_t lo, hi;
		int at = 0;
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %*s %*s %*s %*s %n", &lo, &hi, &at) < 2)
			continue;
		if ((uintptr_t)p >= lo && (uintptr_t)p < hi) {
			line[strcspn(line, "\n")] = 0;
			printf("ok %s\n", at ? line + at : "");
			fclose(f);
			return;
		}
	}
	if (f)
		fclose(f);
	puts("err ENOENT not mapped");
}

struct thr {
	const char *path;
	int iter;
	int failures;
	char why[256];
};

static void *thread_main(void *arg)
{
	struct thr *t = arg;
	long ps = sysconf(_SC_PAGESIZE);

	for (int i = 0; i < t->iter; i++) {
		size_t len = 0;
		uint8_t *p = shmfs_map(t->path, PROT_READ | PROT_WRITE, 0, &len);
		if (!p || len < 4 * (size_t)ps) {
			t->failures++;
			snprintf(t->why, sizeof(t->why), "map: %s", shmfs_map_error());
			continue;
		}
		void *base;
		size_t blen;
		p[i % len] ^= 0; /* touch */
		if (!shmfs_is_mapped(p + ps, &base, &blen) || base != p)
			t->failures++;
		if (shmfs_sync(p, len))
			t->failures++;
		/* punch out the second page: two mappings of one file */
		if (shmfs_unmap(p + ps, (size_t)ps)) {
			t->failures++;
			snprintf(t->why, sizeof(t->why), "split: %s", shmfs_map_error());
		}
		if (shmfs_is_mapped(p + ps, NULL, NULL))
			t->failures++;
		if (shmfs_unmap(p, (size_t)ps) || shmfs_unmap(p + 2 * ps, len - 2 * (size_t)ps)) {
			t->failures++;
			snprintf(t->why, sizeof(t->why), "unmap: %s", shmfs_map_error());
		}
	}
	return NULL;
}

static void do_threads(int n, int iter, const char *path)
{
	pthread_t tid[32];
	struct thr t[32];
	int fails = 0;

	if (n < 1 || n > 32) {
		puts("err EINVAL threads");
		return;
	}
	for (int i = 0; i < n; i++) {
		t[i] = (struct thr){ .path = path, .iter = iter };
		pthread_create(&tid[i], NULL, thread_main, &t[i]);
	}
	for (int i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		fails += t[i].failures;
	}
	if (fails) {
		for (int i = 0; i < n; i++)
			if (t[i].why[0]) {
				printf("err EIO %d failures, e.g. %s\n", fails, t[i].why);
				return;
			}
		printf("err EIO %d failures\n", fails);
		return;
	}
	puts("ok");
}

/* ---- the command loop ------------------------------------------------------- */

static void command(char **a, int n)
{
	int id = id_of(n > 1 ? a[1] : NULL);
	uint8_t *p = id >= 0 ? maps[id].p : NULL;

	if (!strcmp(a[0], "map")) {
		do_map(a, n, false);
	} else if (!strcmp(a[0], "mapat")) {
		do_map(a, n, true);
	} else if (!strcmp(a[0], "fds")) {
		printf("ok %d\n", count_fds());
	} else if (!strcmp(a[0], "flip") && n >= 3) {
		if (flip.fd >= 0)
			close(flip.fd);
		flip.fd = -1;
		if (strcmp(a[2], "off")) {
			flip.fd = open(a[1], O_RDWR);
			flip.once = !strcmp(a[2], "once");
			flip.done = 0;
		}
		puts(flip.fd >= 0 || !strcmp(a[2], "off") ? "ok" : "err EIO open");
	} else if (!strcmp(a[0], "threads") && n >= 4) {
		do_threads(atoi(a[1]), atoi(a[2]), a[3]);
	} else if (!p) {
		puts("err EINVAL no such mapping");
	} else if (!strcmp(a[0], "read") && n >= 4) {
		uint64_t off = num(a[2]), len = num(a[3]);
		printf("ok ");
		for (uint64_t i = 0; i < len; i++)
			printf("%02x", p[off + i]);
		putchar('\n');
	} else if (!strcmp(a[0], "write") && n >= 4) {
		uint64_t off = num(a[2]);
		for (size_t i = 0; a[3][2 * i] && a[3][2 * i + 1]; i++) {
			unsigned v;
			sscanf(a[3] + 2 * i, "%2x", &v);
			p[off + i] = (uint8_t)v;
		}
		puts("ok");
	} else if (!strcmp(a[0], "fill") && n >= 5) {
		memset(p + num(a[2]), (int)num(a[4]), num(a[3]));
		puts("ok");
	} else if (!strcmp(a[0], "save") && n >= 5) {
		FILE *f = fopen(a[4], "wb");
		size_t len = num(a[3]);
		bool ok = f && fwrite(p + num(a[2]), 1, len, f) == len;
		if (f)
			ok &= fclose(f) == 0;
		puts(ok ? "ok" : "err EIO save");
	} else if (!strcmp(a[0], "load") && n >= 4) {
		FILE *f = fopen(a[3], "rb");
		size_t got = f ? fread(p + num(a[2]), 1, maps[id].len - num(a[2]), f) : 0;
		if (f)
			fclose(f);
		printf(f ? "ok %zu\n" : "err EIO load\n", got);
	} else if (!strcmp(a[0], "store") && n >= 4) {
		__atomic_store_n((uint64_t *)(p + num(a[2])), num(a[3]), __ATOMIC_RELEASE);
		puts("ok");
	} else if (!strcmp(a[0], "load64") && n >= 3) {
		printf("ok %" PRIu64 "\n", __atomic_load_n((uint64_t *)(p + num(a[2])), __ATOMIC_ACQUIRE));
	} else if (!strcmp(a[0], "sync")) {
		int rc = n >= 4 ? shmfs_sync(p + num(a[2]), num(a[3])) : shmfs_sync(p, maps[id].len);
		if (rc)
			reply_err();
		else
			puts("ok");
	} else if (!strcmp(a[0], "unmap")) {
		int rc = n >= 4 ? shmfs_unmap(p + num(a[2]), num(a[3])) : shmfs_unmap(p, maps[id].len);
		if (rc) {
			reply_err();
			return;
		}
		if (n < 4)
			maps[id].p = NULL;
		puts("ok");
	} else if (!strcmp(a[0], "remap") && n >= 3) {
		size_t nl = num(a[2]);
		void *q = shmfs_remap(p, maps[id].len, nl, n >= 4 ? MREMAP_MAYMOVE : 0, NULL);
		if (!q) {
			reply_err();
			return;
		}
		maps[id].p = q;
		maps[id].len = nl;
		printf("ok %#" PRIxPTR "\n", (uintptr_t)q);
	} else if (!strcmp(a[0], "ismapped") && n >= 3) {
		void *base;
		size_t len;
		if (shmfs_is_mapped(p + num(a[2]), &base, &len))
			printf("ok 1 %td %zu\n", (uint8_t *)base - p, len);
		else
			puts("ok 0");
	} else if (!strcmp(a[0], "addr")) {
		printf("ok %#" PRIxPTR "\n", (uintptr_t)p);
	} else if (!strcmp(a[0], "backing") && n >= 3) {
		backing(p + num(a[2]));
	} else if (!strcmp(a[0], "spin") && n >= 5) {
		uint64_t t0 = now_ns();
		if (spin_for((const uint64_t *)(p + num(a[2])), num(a[3]), num(a[4])))
			printf("ok %" PRIu64 "\n", now_ns() - t0);
		else
			puts("err ETIMEDOUT spin");
	} else if (!strcmp(a[0], "pingpong") && n >= 5) {
		bool lead = !strcmp(a[2], "lead");
		uint64_t rounds = num(a[3]), ms = num(a[4]);
		uint64_t *s0 = (uint64_t *)p, *s1 = (uint64_t *)(p + 64);
		uint64_t *lat = calloc(rounds ? rounds : 1, sizeof(*lat));
		for (uint64_t i = 1; lat && i <= rounds; i++) {
			uint64_t t0 = now_ns();
			if (lead)
				__atomic_store_n(s0, i, __ATOMIC_RELEASE);
			if (!spin_for(lead ? s1 : s0, i, ms)) {
				printf("err ETIMEDOUT round %" PRIu64 " (saw %" PRIu64 ")\n", i,
				       __atomic_load_n(lead ? s1 : s0, __ATOMIC_ACQUIRE));
				free(lat);
				return;
			}
			if (!lead)
				__atomic_store_n(s1, i, __ATOMIC_RELEASE);
			lat[i - 1] = now_ns() - t0;
		}
		if (!lat) {
			puts("err ENOMEM");
			return;
		}
		qsort(lat, rounds, sizeof(*lat), cmp_u64);
		printf("ok %" PRIu64 " %" PRIu64 "\n", rounds, rounds ? lat[rounds / 2] : 0);
		free(lat);
	} else {
		puts("err EINVAL unknown command");
	}
}

int main(void)
{
	char line[8192];

	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		char *a[12];
		int n = 0;
		for (char *tok = strtok(line, " \t\n"); tok && n < 12; tok = strtok(NULL, " \t\n"))
			a[n++] = tok;
		if (!n)
			continue;
		if (!strcmp(a[0], "quit"))
			break;
		command(a, n);
	}
	return 0;
}
