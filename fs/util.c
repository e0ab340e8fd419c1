/* SPDX-License-Identifier: MIT */
/* Small helpers: sizes, clocks, randomness, hashing, UUIDs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shmfs/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

int shmfs_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	switch (toupper((unsigned char)*p)) {
	case 'K': mul = 1ull << 10; p++; break;
	case 'M': mul = 1ull << 20; p++; break;
	case 'G': mul = 1ull << 30; p++; break;
	case 'T': mul = 1ull << 40; p++; break;
	case 'P': mul = 1ull << 50; p++; break;
	default: break;
	}
	if (mul > 1 && (p[0] == 'i' || p[0] == 'I') && (p[1] == 'B' || p[1] == 'b'))
		p += 2;
	else if (*p == 'B' || *p == 'b')
		p++;
	if (*p)
		return -EINVAL;
	if (v && mul > UINT64_MAX / v)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

const char *shmfs_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	unsigned u = 0;
	uint64_t whole = bytes;

	while (whole >= 1024 && u + 1 < SHMFS_ARRAY_SIZE(units)) {
		whole /= 1024;
		u++;
	}
	if (u == 0 || bytes % (1ull << (10 * u)) == 0)
		snprintf(buf, len, "%llu %s", (unsigned long long)whole, units[u]);
	else
		snprintf(buf, len, "%.1f %s", (double)bytes / (double)(1ull << (10 * u)), units[u]);
	return buf;
}

void shmfs_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t shmfs_now_ns(void) { return clock_ns(CLOCK_REALTIME); }
uint64_t shmfs_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

int shmfs_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

uint64_t shmfs_hash(const void *p, size_t len, uint64_t seed)
{
	return XXH3_64bits_withSeed(p, len, seed);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int shmfs_uuid_parse(const char *s, uint8_t out[16])
{
	unsigned i = 0;

	if (strlen(s) != 36)
		return -EINVAL;
	for (const char *p = s; *p; ) {
		if ((p - s) == 8 || (p - s) == 13 || (p - s) == 18 || (p - s) == 23) {
			if (*p != '-')
				return -EINVAL;
			p++;
			continue;
		}
		int hi = hexval((unsigned char)p[0]), lo = hexval((unsigned char)p[1]);
		if (hi < 0 || lo < 0 || i >= 16)
			return -EINVAL;
		out[i++] = (uint8_t)(hi << 4 | lo);
		p += 2;
	}
	return i == 16 ? 0 : -EINVAL;
}

void shmfs_uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
		 u[12], u[13], u[14], u[15]);
}

bool shmfs_all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}
