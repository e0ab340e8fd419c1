/* SPDX-License-Identifier: MIT */
/*
 * fuzz_log: log replay from raw log bytes.
 *
 * Input: flags, an argument (the safe sequence for FUZZ_F_REAP), then the
 * bytes of the log of a region formatted by fuzz_format() (the rest of the
 * log is zero).  With FUZZ_F_CSUM_LOG the harness gives every record along
 * the chain the checksum it needs, so that the fuzzer reaches the framing
 * and namespace checks behind it.
 *
 * What it runs: the read-only open (replay) -- which must succeed, since
 * the superblock is good -- the namespace invariants, every read, and with
 * FUZZ_F_WRITE a read-write mount that must agree with replay.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "shmfs/util.h"

static struct shmfs_super sb;
static uint8_t *meta;           /* the formatted region before its log */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_setup();
	struct shmfs_region *r = fuzz_region(FUZZ_REGION);
	fuzz_format(r, &sb);
	meta = malloc(sb.sb_log_off);
	if (!meta)
		FUZZ_FAIL("out of memory");
	memcpy(meta, r->base, sb.sb_log_off);
	return 0;
}

static void one_input(const uint8_t *data, size_t size)
{
	int rc;

	if (size < FUZZ_HDR)
		return;
	unsigned flags = data[0];
	uint8_t arg = data[1];
	uint64_t seed = fuzz_hash(data, size);
	data += FUZZ_HDR;
	size -= FUZZ_HDR;

	struct shmfs_region *r = fuzz_region(FUZZ_REGION);
	struct shmfs_log log = { r->base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
	memcpy(r->base, meta, sb.sb_log_off);
	memset(log.base, 0, log.size);
	memcpy(log.base, data, SHMFS_MIN(size, log.size));
	if (flags & FUZZ_F_CSUM_LOG)
		fuzz_fix_log(&log);

	struct shmfs_fs *fs = fuzz_open(r, false, &rc);
	FUZZ_ASSERT(fs, "a good superblock does not open: %d", rc);
	FUZZ_ASSERT(fs->pos <= log.size, "replay position %" PRIu64, fs->pos);
	fuzz_after_open(r, fs, flags, arg, seed);
	shmfs_fs_close(fs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one_input(data, size);
	rcu_barrier(); /* what the input left to free, freed now */
	return 0;
}
