/* SPDX-License-Identifier: MIT */
/*
 * Fuzz targets: what they share (fuzz_common.c).
 *
 * Every target is one function, LLVMFuzzerTestOneInput(), built two ways:
 * with clang and -DSHMFS_FUZZ=ON it is linked with libFuzzer
 * (-fsanitize=fuzzer); with any other compiler it is linked with driver.c,
 * a main() that runs each input of the seed corpus and then deterministic
 * mutations of them.  See docs/fuzzing.md.
 *
 * Every input starts with two bytes:
 *
 *   byte 0   flags (FUZZ_F_*): which checksums the harness recomputes after
 *            laying the input out -- a fuzzer cannot forge XXH3, so without
 *            them it would only ever test the checksum gates -- and what it
 *            does once the region is open;
 *   byte 1   an argument whose meaning depends on the target.
 *
 * The regions are small (FUZZ_REGION bytes at most, 4 host slots, a log of
 * SHMFS_MIN_LOG) so that one execution takes well under a millisecond, and
 * their last byte abuts an inaccessible page, so a read past the end of the
 * region faults at once.
 *
 * Whatever the input, the harness asserts: no crash and no sanitizer
 * report (the build's business), no hang (the fuzzer's timeout), and the
 * namespace invariants of fuzz_check_ns() after every replay; a writer's
 * namespace after its commits must equal what a fresh replay of the same
 * log builds.  A broken invariant aborts with a line that names it.
 */
#ifndef SHMFS_FUZZ_H
#define SHMFS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <urcu.h>

#include "shmfs/core.h"
#include "shmfs/format.h"
#include "shmfs/log.h"
#include "shmfs/region.h"
#include "shmfs/super.h"

/* The libFuzzer entry points (driver.c calls them the same way). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_REGION     (1u << 20)      /* region size (largest) */
#define FUZZ_HOSTS      4u              /* host slots of the formatted region */
#define FUZZ_LOG_SIZE   SHMFS_MIN_LOG   /* log size of the formatted region */
#define FUZZ_LOG_SEED   UINT64_C(0x7a7a75665f736673) /* sb_log_seed of every image */
#define FUZZ_TIME       UINT64_C(1700000000000000000) /* sb_mkfs_time, lr_time base */
#define FUZZ_LEASE_MS   1u              /* lease of the harness's own joins */
#define FUZZ_HDR        2u              /* flags byte, argument byte */

/* Byte 0 of every input. */
#define FUZZ_F_SEAL_SB0   0x01u /* recompute the primary superblock's sb_checksum */
#define FUZZ_F_SEAL_SB1   0x02u /* recompute the backup superblock's sb_checksum */
#define FUZZ_F_CSUM_LOG   0x04u /* recompute lr_csum along the chain of records */
#define FUZZ_F_CSUM_HOSTS 0x08u /* recompute hs_ident_csum of every host slot */
#define FUZZ_F_WRITE      0x10u /* also mount read-write and change things */
#define FUZZ_F_REAP       0x20u /* release pending space (argument: the safe seq) */
#define FUZZ_F_NO_ROOT    0x40u /* fuzz_records: no root record of the harness's own */

#define FUZZ_FAIL(...) fuzz_fail(__FILE__, __LINE__, NULL, __VA_ARGS__)
#define FUZZ_ASSERT(cond, ...)                                                 \
	do {                                                                   \
		if (!(cond))                                                   \
			fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);     \
	} while (0)

/* Report a failure (cond: the broken invariant's text) and abort. */
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((format(printf, 4, 5), noreturn));

/* Where failures are told (driver.c moves it when it silences stderr). */
extern int fuzz_report_fd;

/* Once per process: register with RCU, map the region. */
void fuzz_setup(void);

/* The region, resized to size bytes (a multiple of 4096, at most
 * FUZZ_REGION) that end at the guard page.  Contents are left as they are. */
struct shmfs_region *fuzz_region(uint64_t size);

/* Format r as every image of the corpus is formatted: FUZZ_HOSTS slots,
 * FUZZ_LOG_SIZE of log, 4 KiB units, and a fixed uuid, log seed and time,
 * so that records the generator wrote verify in every build. */
void fuzz_format(struct shmfs_region *r, struct shmfs_super *sb);

/* Checksum fixing, after the input is laid out. */
void fuzz_seal_super(struct shmfs_region *r, unsigned which);
void fuzz_fix_hosts(struct shmfs_region *r, const struct shmfs_super *sb);
void fuzz_fix_log(const struct shmfs_log *log);

/* Open as a mount does (join: read-write, a host slot, leases of
 * FUZZ_LEASE_MS) or as a reader; NULL with *rc on failure. */
struct shmfs_fs *fuzz_open(struct shmfs_region *r, bool join, int *rc);

/* The namespace invariants: aborts naming the first one broken. */
void fuzz_check_ns(struct shmfs_fs *fs);

/* Every read a mount serves: lookups, getattr, readlink, xattrs, the data
 * map of every file (whose memory must lie in the data area). */
void fuzz_read_all(struct shmfs_fs *fs);

/* shmfs_ns_reap() with safe_seq, then the allocator's invariants again. */
void fuzz_reap(struct shmfs_fs *fs, uint64_t safe_seq);

/* Everything after a successful read-only open: invariants, reads, and
 * with FUZZ_F_WRITE a read-write mount that changes things (driven by
 * seed) and must then agree with a fresh replay. */
void fuzz_after_open(struct shmfs_region *r, struct shmfs_fs *fs, unsigned flags, uint8_t arg,
		     uint64_t seed);

/* Two namespaces built from the same log must be equal. */
void fuzz_compare(struct shmfs_fs *a, struct shmfs_fs *b);

/* XXH3 of the input: seeds the choices of the write phase. */
uint64_t fuzz_hash(const void *p, size_t n);

#endif /* SHMFS_FUZZ_H */
