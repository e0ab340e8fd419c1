/* SPDX-License-Identifier: MIT */
/* Small helpers shared by the core library and the programs. */
#ifndef SHMFS_UTIL_H
#define SHMFS_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHMFS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SHMFS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SHMFS_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline bool shmfs_is_pow2(uint64_t x) { return x && !(x & (x - 1)); }
static inline uint64_t shmfs_round_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }
static inline uint64_t shmfs_round_down(uint64_t x, uint64_t a) { return x / a * a; }

/* Parse "123", "4K", "2M", "1G", "1T" (powers of 1024; optional "iB"/"B").
 * Returns 0 or -EINVAL / -ERANGE. */
int shmfs_parse_size(const char *s, uint64_t *out);

/* Are all n bytes at p zero? (padding fields, free slots) */
bool shmfs_all_zero(const void *p, size_t n);

/* Format a byte count as "2 MiB", "1.5 GiB" into buf. */
const char *shmfs_fmt_size(uint64_t bytes, char *buf, size_t len);

/* snprintf into an error buffer; tolerates err == NULL. */
void shmfs_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* CLOCK_REALTIME / CLOCK_MONOTONIC in nanoseconds. */
uint64_t shmfs_now_ns(void);
uint64_t shmfs_mono_ns(void);

/* Fill buf with random bytes (getrandom). */
int shmfs_random(void *buf, size_t len);

/* XXH3-64 of a buffer with a seed. */
uint64_t shmfs_hash(const void *p, size_t len, uint64_t seed);

/* UUID text <-> bytes (36-char canonical form). */
int shmfs_uuid_parse(const char *s, uint8_t out[16]);
void shmfs_uuid_format(const uint8_t uuid[16], char out[37]);

#endif /* SHMFS_UTIL_H */
