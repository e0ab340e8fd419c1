/* SPDX-License-Identifier: MIT */
/* Minimal test helpers: CHECK() records a failure and goes on; the test's
 * exit status is the number of failures (capped), so ctest sees them. */
#ifndef SHMFS_TEST_CHECK_H
#define SHMFS_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_failures;

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

#endif
