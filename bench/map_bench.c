/* SPDX-License-Identifier: MIT */
/*
 * bench-map: bandwidth of a file of a shmfs mount through four paths, in
 * the same run, side by side:
 *
 *   direct      shmfs_map_fd (libshmfs): the file's extents mapped from
 *               the region
 *   raw         a plain mmap of the region file at the same offsets: the
 *               physical limit of this machine
 *   fuse-mmap   mmap of the file through the FUSE mount (its page cache)
 *   read/write  pread/pwrite through the FUSE mount
 *
 * Workloads: sequential read and write (1 MiB at a time) over the whole
 * file, and random 4 KiB reads and writes at the same random offsets for
 * every path.  Each repetition runs every path once -- direct and raw back
 * to back, in alternating order, and direct/raw is the median of their
 * ratios per repetition -- and each path starts cold: a fresh mapping (page faults included) and
 * the file's page cache dropped (posix_fadvise DONTNEED).  Writes end as
 * each path makes them visible to other hosts: shmfs_sync for direct,
 * msync for the mappings, nothing for pwrite (it went to the daemon).  A
 * second table measures the mappings warm: a second pass over a mapping
 * just made and touched.  A third gives direct/raw by the thread's CPU
 * time, which other programs on a busy machine disturb much less (they
 * still share caches): both paths do all their work -- stores and page
 * faults -- in this thread.
 *
 *   bench-map [--size MIB] [--ops N] [--reps N] MOUNT_DIR
 *
 * MOUNT_DIR is a directory on a shmfs mount whose region is a file this
 * process may open (bench/map_bench.sh sets one up).  Prints the medians
 * (MiB/s) and the ratios.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "shmfs/shmfs.h"

#define MiB (1024ull * 1024)
#define SEQ_CHUNK (1 << 20)
#define RAND_IO 4096

enum path { DIRECT, RAW, FUSE_MMAP, RW, NPATH };
enum work { SEQ_READ, SEQ_WRITE, RAND_READ, RAND_WRITE, NWORK };

static const char *const path_name[NPATH] = { "direct", "raw", "fuse-mmap", "read/write" };
static const char *const work_name[NWORK] = { "seq read 1 MiB", "seq write 1 MiB",
					       "rand read 4 KiB", "rand write 4 KiB" };

static struct {
	char *file;
	int fd;                 /* the file, on the mount */
	int rfd;                /* the region */
	uint64_t size;          /* file bytes */
	uint64_t roff;          /* region offset of the file's first byte (one extent) */
	uint64_t *offs;         /* random 4 KiB offsets */
	size_t nops;
	uint8_t *buf;           /* SEQ_CHUNK bytes */
	volatile uint64_t sink;
} B;

static void die(const char *what)
{
	fprintf(stderr, "bench-map: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double clock_s(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* This thread's CPU time: its stores and its page faults, not the time
 * other programs on a busy machine take from it. */
static double cpu_now(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The file's one extent, and the region: what "raw" maps. */
static void find_region(void)
{
	uint8_t buf[65536];
	struct shmfs_map_info mi;
	struct shmfs_region_info ri;
	struct shmfs_map_extent e;
	ssize_t n = fgetxattr(B.fd, SHMFS_XATTR_MAP, buf, sizeof(buf));

	if (n < (ssize_t)sizeof(mi))
		die("reading the extent map (is the directory on shmfs?)");
	memcpy(&mi, buf, sizeof(mi));
	if (mi.mi_nextents != 1) {
		fprintf(stderr, "bench-map: the file has %u extents, not one: use a fresh region\n",
			mi.mi_nextents);
		exit(1);
	}
	memcpy(&e, buf + mi.mi_hdr_size, sizeof(e));
	n = fgetxattr(B.fd, SHMFS_XATTR_REGION, buf, sizeof(buf) - 1);
	if (n < (ssize_t)sizeof(ri))
		die("reading the region attribute");
	buf[n] = 0;
	memcpy(&ri, buf, sizeof(ri));
	B.roff = ri.ri_offset + e.me_roff;
	B.rfd = open((char *)buf + ri.ri_hdr_size, O_RDWR);
	if (B.rfd < 0)
		die((char *)buf + ri.ri_hdr_size);
}

static void drop_cache(void)
{
	posix_fadvise(B.fd, 0, 0, POSIX_FADV_DONTNEED);
}

static uint8_t *map_path(enum path p)
{
	size_t len = B.size;
	void *m;

	switch (p) {
	case DIRECT:
		m = shmfs_map_fd(B.fd, PROT_READ | PROT_WRITE, 0, &len);
		if (!m) {
			fprintf(stderr, "bench-map: shmfs_map_fd: %s\n", shmfs_map_error());
			exit(1);
		}
		return m;
	case RAW:
		m = mmap(NULL, B.size, PROT_READ | PROT_WRITE, MAP_SHARED, B.rfd, (off_t)B.roff);
		break;
	default:
		drop_cache();
		m = mmap(NULL, B.size, PROT_READ | PROT_WRITE, MAP_SHARED, B.fd, 0);
		break;
	}
	if (m == MAP_FAILED)
		die("mmap");
	return m;
}

static void publish(enum path p, uint8_t *m)
{
	if (p == DIRECT && shmfs_sync(m, B.size))
		fprintf(stderr, "bench-map: shmfs_sync: %s\n", shmfs_map_error());
	else if (p != DIRECT && msync(m, B.size, MS_SYNC))
		die("msync");
}

static void unmap_path(enum path p, uint8_t *m)
{
	if (p == DIRECT ? shmfs_unmap(m, B.size) : munmap(m, B.size))
		die("unmap");
}

/* One pass of work w over mapping m. */
static void run_mem(enum work w, uint8_t *m)
{
	switch (w) {
	case SEQ_READ:
		for (uint64_t o = 0; o < B.size; o += SEQ_CHUNK)
			memcpy(B.buf, m + o, SEQ_CHUNK);
		break;
	case SEQ_WRITE:
		for (uint64_t o = 0; o < B.size; o += SEQ_CHUNK)
			memcpy(m + o, B.buf, SEQ_CHUNK);
		break;
	case RAND_READ:
		for (size_t i = 0; i < B.nops; i++)
			memcpy(B.buf + (i % 16) * RAND_IO, m + B.offs[i], RAND_IO);
		break;
	case RAND_WRITE:
		for (size_t i = 0; i < B.nops; i++)
			memcpy(m + B.offs[i], B.buf + (i % 16) * RAND_IO, RAND_IO);
		break;
	default:
		break;
	}
	B.sink += B.buf[0];
}

static void run_rw(enum work w)
{
	ssize_t n = 0;

	drop_cache();
	switch (w) {
	case SEQ_READ:
		for (uint64_t o = 0; o < B.size; o += SEQ_CHUNK)
			n |= pread(B.fd, B.buf, SEQ_CHUNK, (off_t)o) != SEQ_CHUNK;
		break;
	case SEQ_WRITE:
		for (uint64_t o = 0; o < B.size; o += SEQ_CHUNK)
			n |= pwrite(B.fd, B.buf, SEQ_CHUNK, (off_t)o) != SEQ_CHUNK;
		break;
	case RAND_READ:
		for (size_t i = 0; i < B.nops; i++)
			n |= pread(B.fd, B.buf, RAND_IO, (off_t)B.offs[i]) != RAND_IO;
		break;
	case RAND_WRITE:
		for (size_t i = 0; i < B.nops; i++)
			n |= pwrite(B.fd, B.buf, RAND_IO, (off_t)B.offs[i]) != RAND_IO;
		break;
	default:
		break;
	}
	if (n)
		die("short read or write");
}

static uint64_t work_bytes(enum work w)
{
	return w == SEQ_READ || w == SEQ_WRITE ? B.size : (uint64_t)B.nops * RAND_IO;
}

/* MiB/s of one cold run (warm: a second pass over a touched mapping), by
 * the clock and, in *cpu, by this thread's CPU time. */
static double measure(enum path p, enum work w, bool warm, double *cpu)
{
	double t0, t1, c0, c1;

	if (p == RW) {
		c0 = cpu_now();
		t0 = now();
		run_rw(w);
		t1 = now();
		c1 = cpu_now();
	} else {
		uint8_t *m = map_path(p);
		if (warm)
			run_mem(w, m);
		c0 = cpu_now();
		t0 = now();
		run_mem(w, m);
		if (w == SEQ_WRITE || w == RAND_WRITE)
			publish(p, m);
		t1 = now();
		c1 = cpu_now();
		unmap_path(p, m);
	}
	*cpu = (double)work_bytes(w) / MiB / (c1 - c0);
	return (double)work_bytes(w) / MiB / (t1 - t0);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return v[n / 2];
}

/* Medians per path; direct/raw is the median of the per-repetition
 * ratios (ratio[]), the other ratios are of the medians. */
static void table(const char *title, double med[NWORK][NPATH], const double ratio[NWORK],
		  int npaths)
{
	printf("\n%s\n\n| workload |", title);
	for (int p = 0; p < npaths; p++)
		printf(" %s |", path_name[p]);
	printf(" direct/raw |");
	for (int p = 2; p < npaths; p++)
		printf(" direct/%s |", path_name[p]);
	printf("\n|---|");
	for (int p = 0; p < npaths + 1 + (npaths - 2); p++)
		printf("---:|");
	putchar('\n');
	for (int w = 0; w < NWORK; w++) {
		printf("| %s |", work_name[w]);
		for (int p = 0; p < npaths; p++)
			printf(" %.0f |", med[w][p]);
		printf(" %.2f× |", ratio[w]);
		for (int p = 2; p < npaths; p++)
			printf(" %.1f× |", med[w][DIRECT] / med[w][p]);
		putchar('\n');
	}
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "ops", required_argument, NULL, 'o' },
		{ "reps", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t size_mib = 512;
	int reps = 5, c;
	size_t nops = 65536;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 's': size_mib = strtoull(optarg, NULL, 0); break;
		case 'o': nops = strtoull(optarg, NULL, 0); break;
		case 'r': reps = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: bench-map [--size MIB] [--ops N] [--reps N] MOUNT_DIR\n");
			return 2;
		}
	}
	if (optind != argc - 1 || !size_mib || reps < 1 || reps > 100 || !nops) {
		fprintf(stderr, "usage: bench-map [--size MIB] [--ops N] [--reps N] MOUNT_DIR\n");
		return 2;
	}
	B.size = size_mib * MiB;
	B.nops = nops;
	if (asprintf(&B.file, "%s/bench-map.dat", argv[optind]) < 0)
		die("asprintf");
	unlink(B.file);
	B.fd = open(B.file, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (B.fd < 0)
		die(B.file);
	if (posix_fallocate(B.fd, 0, (off_t)B.size))
		die("posix_fallocate");
	find_region();
	B.buf = aligned_alloc(4096, SEQ_CHUNK);
	B.offs = calloc(nops, sizeof(*B.offs));
	if (!B.buf || !B.offs)
		die("malloc");
	memset(B.buf, 0x5a, SEQ_CHUNK);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < nops; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		B.offs[i] = (x % (B.size / RAND_IO)) * RAND_IO;
	}
	/* untimed: every page of the file written once through the region */
	uint8_t *m = map_path(RAW);
	run_mem(SEQ_WRITE, m);
	unmap_path(RAW, m);

	fprintf(stderr, "bench-map: %s, %" PRIu64 " MiB in one extent, %zu random 4 KiB ops, %d reps\n",
		B.file, size_mib, nops, reps);
	double cold[NWORK][NPATH][100], warm[NWORK][NPATH][100];
	double ccpu[NWORK][NPATH][100], wcpu[NWORK][NPATH][100];
	/* direct and raw back to back, first one then the other, so that their
	 * ratio in a repetition sees the same machine; then the mount's paths */
	static const enum path order[2][NPATH] = { { DIRECT, RAW, FUSE_MMAP, RW },
						   { RAW, DIRECT, RW, FUSE_MMAP } };
	for (int r = 0; r < reps; r++) {
		for (int w = 0; w < NWORK; w++) {
			for (int k = 0; k < NPATH; k++) {
				enum path p = order[r % 2][k];
				cold[w][p][r] = measure(p, (enum work)w, false, &ccpu[w][p][r]);
				fprintf(stderr, "rep %d %-16s %-10s cold %6.0f MiB/s (cpu %6.0f)", r,
					work_name[w], path_name[p], cold[w][p][r], ccpu[w][p][r]);
				if (p != RW) {
					warm[w][p][r] = measure(p, (enum work)w, true, &wcpu[w][p][r]);
					fprintf(stderr, "  warm %6.0f MiB/s (cpu %6.0f)", warm[w][p][r],
						wcpu[w][p][r]);
				}
				fputc('\n', stderr);
			}
		}
	}
	double mc[NWORK][NPATH], mw[NWORK][NPATH], rc[NWORK], rw[NWORK], q[4][100], cpu[4][NWORK];
	for (int w = 0; w < NWORK; w++) {
		for (int r = 0; r < reps; r++) {
			q[0][r] = cold[w][DIRECT][r] / cold[w][RAW][r];
			q[1][r] = warm[w][DIRECT][r] / warm[w][RAW][r];
			q[2][r] = ccpu[w][DIRECT][r] / ccpu[w][RAW][r];
			q[3][r] = wcpu[w][DIRECT][r] / wcpu[w][RAW][r];
		}
		rc[w] = median(q[0], reps);
		rw[w] = median(q[1], reps);
		cpu[0][w] = median(q[2], reps);
		cpu[1][w] = median(q[3], reps);
		for (int p = 0; p < NPATH; p++) {
			mc[w][p] = median(cold[w][p], reps);
			if (p != RW)
				mw[w][p] = median(warm[w][p], reps);
		}
	}
	printf("bench-map: %" PRIu64 " MiB file, %zu random 4 KiB ops, median of %d, MiB/s\n",
	       size_mib, nops, reps);
	table("Cold: a fresh mapping (or a dropped page cache) per run", mc, rc, NPATH);
	table("Warm: a second pass over a mapping already touched", mw, rw, NPATH - 1);
	printf("\nDirect/raw by CPU time (the measuring thread's: stores and page faults; median of\n"
	       "per-repetition ratios), which other programs taking the CPU disturb much less:\n\n"
	       "| workload | cold | warm |\n|---|---:|---:|\n");
	for (int w = 0; w < NWORK; w++)
		printf("| %s | %.2f× | %.2f× |\n", work_name[w], cpu[0][w], cpu[1][w]);
	close(B.fd);
	unlink(B.file);
	return 0;
}
