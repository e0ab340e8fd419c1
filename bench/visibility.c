/* SPDX-License-Identifier: MIT */
/*
 * visibility: cross-mount visibility delay, for bench/fuse_bench.sh.
 *
 *   visibility DIR_A DIR_B TRIALS
 *
 * DIR_A and DIR_B are the same directory seen through two mounts (two hosts).
 *
 * Namespace: per trial, stat() the name on B first (so B holds a cached
 * negative entry that the change must invalidate), mknod() a regular file
 * on A, and from the moment mknod() returns poll stat() on B (every ~20 us)
 * until the name is there.  Delay = first successful stat on B - return of
 * mknod on A.
 *
 * Data (close-to-open): one 4 KiB file, read once on B so B caches it.  Per
 * trial, on A open + pwrite 4 KiB carrying the trial number + close; from
 * the moment close() returns, on B open + pread + close, repeated until the
 * bytes carry the new number.  Delay = end of the first read that sees the
 * new bytes - return of close on A.  "first-open" counts trials where the
 * very first open on B already saw them (what close-to-open promises).
 *
 * Gives up on a trial after 5 s.  Output, one line each (microseconds):
 *   ns   <p50> <p99> <max> <n>
 *   data <p50> <p99> <max> <n> <first-open count>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define GIVE_UP_US 5e6
#define POLL_NS 20000

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void pause_poll(void)
{
	struct timespec t = { 0, POLL_NS };

	nanosleep(&t, NULL);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* nearest-rank percentile */
static double pct(const double *v, int n, double p)
{
	int k = (int)(p / 100.0 * n + 0.999999) - 1;

	if (k < 0)
		k = 0;
	if (k >= n)
		k = n - 1;
	return v[k];
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "visibility: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

static void report(const char *name, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	printf("%s %.1f %.1f %.1f %d", name, pct(v, n, 50), pct(v, n, 99), v[n - 1], n);
}

int main(int argc, char **argv)
{
	char pa[4096], pb[4096];
	struct stat st;
	int trials;

	if (argc != 4 || (trials = atoi(argv[3])) <= 0) {
		fprintf(stderr, "usage: visibility DIR_A DIR_B TRIALS\n");
		return 2;
	}
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	double *ns = calloc((size_t)trials, sizeof(double));
	double *data = calloc((size_t)trials, sizeof(double));
	if (!ns || !data)
		return 1;

	/* ---- namespace ---- */
	for (int i = 0; i < trials; i++) {
		snprintf(pa, sizeof(pa), "%s/vis.%d", argv[1], i);
		snprintf(pb, sizeof(pb), "%s/vis.%d", argv[2], i);
		if (stat(pb, &st) == 0) {
			fprintf(stderr, "visibility: %s exists before the trial\n", pb);
			return 1;
		}
		if (mknod(pa, S_IFREG | 0644, 0))
			die("mknod", pa);
		double t0 = now_us(), t;
		while (stat(pb, &st)) {
			if (errno != ENOENT)
				die("stat", pb);
			if ((t = now_us()) - t0 > GIVE_UP_US) {
				fprintf(stderr, "visibility: %s not visible after 5 s\n", pb);
				return 1;
			}
			pause_poll();
		}
		ns[i] = now_us() - t0;
	}

	/* ---- data, close-to-open ---- */
	static uint8_t buf[4096], got[4096];
	int first = 0;
	snprintf(pa, sizeof(pa), "%s/vis.data", argv[1]);
	snprintf(pb, sizeof(pb), "%s/vis.data", argv[2]);
	memset(buf, 0xff, sizeof(buf));
	int fd = open(pa, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || close(fd))
		die("write", pa);
	double t0 = now_us();
	for (;;) { /* wait for B to see the file, then let it cache the bytes */
		fd = open(pb, O_RDONLY);
		if (fd >= 0 && pread(fd, got, sizeof(got), 0) == (ssize_t)sizeof(got) &&
		    !memcmp(got, buf, sizeof(buf))) {
			close(fd);
			break;
		}
		if (fd >= 0)
			close(fd);
		if (now_us() - t0 > GIVE_UP_US) {
			fprintf(stderr, "visibility: %s never showed its bytes\n", pb);
			return 1;
		}
		pause_poll();
	}
	for (int i = 0; i < trials; i++) {
		uint32_t tag = (uint32_t)i, seen;
		for (size_t k = 0; k < sizeof(buf); k += sizeof(tag))
			memcpy(buf + k, &tag, sizeof(tag));
		fd = open(pa, O_WRONLY);
		if (fd < 0 || pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || close(fd))
			die("write", pa);
		double t0 = now_us();
		for (int attempt = 1;; attempt++) {
			fd = open(pb, O_RDONLY);
			if (fd < 0)
				die("open", pb);
			ssize_t r = pread(fd, got, sizeof(got), 0);
			close(fd);
			if (r != (ssize_t)sizeof(got))
				die("read", pb);
			if (!memcmp(got, buf, sizeof(buf))) {
				data[i] = now_us() - t0;
				first += attempt == 1;
				break;
			}
			memcpy(&seen, got, sizeof(seen));
			if (now_us() - t0 > GIVE_UP_US) {
				fprintf(stderr, "visibility: trial %d: B still reads tag %u after 5 s\n",
					i, seen);
				return 1;
			}
			pause_poll();
		}
	}

	report("ns", ns, trials);
	printf("\n");
	report("data", data, trials);
	printf(" %d\n", first);
	return 0;
}
