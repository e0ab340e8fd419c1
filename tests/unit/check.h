/* SPDX-License-Identifier: MIT */
/*
 * Minimal test helpers: CHECK() records a failure and goes on.  A test's
 * exit status follows ctest: 0 passed, 1 failed (check_done, or at once
 * after 50 failures), 77 skipped (check_skip: what it was asked to run
 * needs something this machine lacks; tests/unit/CMakeLists.txt sets
 * SKIP_RETURN_CODE 77).  A count of failures would not do as the status:
 * 77 of them would read as a skip.
 */
#ifndef SHMFS_TEST_CHECK_H
#define SHMFS_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK_SKIPPED 77

/* Unused in a test that keeps its own failure count (test_region.c). */
static int check_failures __attribute__((unused));

#define CHECK(cond, ...)                                                              \
	do {                                                                          \
		if (!(cond)) {                                                        \
			check_failures++;                                             \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                 \
			fputc('\n', stderr);                                          \
			if (check_failures > 50) {                                    \
				fprintf(stderr, "too many failures\n");               \
				exit(1);                                              \
			}                                                             \
		}                                                                     \
	} while (0)

#define CHECK_RC(expr, want)                                                          \
	do {                                                                          \
		int rc_ = (expr);                                                     \
		CHECK(rc_ == (want), "%s returned %d, expected %d", #expr, rc_, (want)); \
	} while (0)

static inline int check_done(const char *name)
{
	if (check_failures) {
		fprintf(stderr, "%s: %d failures\n", name, check_failures);
		return 1;
	}
	printf("%s: ok\n", name);
	return 0;
}

/* Say why name did not run; returns the exit status that tells ctest so. */
static inline int __attribute__((format(printf, 2, 3))) check_skip(const char *name,
								   const char *why, ...)
{
	va_list ap;

	printf("SKIP %s: ", name);
	va_start(ap, why);
	vprintf(why, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	return CHECK_SKIPPED;
}

#endif
