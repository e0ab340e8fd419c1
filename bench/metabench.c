/* SPDX-License-Identifier: MIT */
/*
 * metabench: metadata rate of one directory, for bench/fuse_bench.sh.
 *
 *   metabench DIR N create|stat|unlink
 *
 * create: open(O_CREAT|O_EXCL|O_WRONLY) + close of DIR/f000000 .. N-1
 * stat:   stat() of each of them, in creation order
 * unlink: unlink() of each of them, in creation order
 *
 * Prints "<ops per second> <seconds>" on stdout; exits non-zero on the first
 * failed call.  The clock covers the loop only (CLOCK_MONOTONIC).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	char path[4096];
	struct stat st;
	long n;
	int mode;

	if (argc != 4 || (n = strtol(argv[2], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: metabench DIR N create|stat|unlink\n");
		return 2;
	}
	if (!strcmp(argv[3], "create"))
		mode = 0;
	else if (!strcmp(argv[3], "stat"))
		mode = 1;
	else if (!strcmp(argv[3], "unlink"))
		mode = 2;
	else {
		fprintf(stderr, "metabench: unknown mode %s\n", argv[3]);
		return 2;
	}

	double t0 = now();
	for (long i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%06ld", argv[1], i);
		int rc;
		if (mode == 0) {
			int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
			rc = fd < 0 ? -1 : close(fd);
		} else if (mode == 1) {
			rc = stat(path, &st);
		} else {
			rc = unlink(path);
		}
		if (rc) {
			fprintf(stderr, "metabench: %s %s: %s\n", argv[3], path, strerror(errno));
			return 1;
		}
	}
	double dt = now() - t0;
	printf("%.1f %.6f\n", (double)n / dt, dt);
	return 0;
}
