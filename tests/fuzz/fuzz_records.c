/* SPDX-License-Identifier: MIT */
/*
 * fuzz_records: replay of well-formed logs of hostile records.
 *
 * Input: flags, an argument (the safe sequence for FUZZ_F_REAP), then
 * records, each
 *
 *   type u8, lr_flags u8, lr_host u8, payload length u16 (LE), payload
 *
 * which the harness appends with shmfs_log_append() -- consecutive
 * sequence numbers, valid checksums: what a peer that knows the seed (or a
 * buggy writer) can publish -- after the root directory's record unless
 * FUZZ_F_NO_ROOT.  Type 0xff seals the slot instead, as a host that broke
 * a dead holder's lease does.  A payload cut short by the end of the input
 * is shortened.
 *
 * What it runs: the read-only open, which must replay every record (apply
 * or reject it) without getting stuck; the namespace invariants; every
 * read; with FUZZ_F_WRITE a read-write mount that must agree with replay.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "shmfs/util.h"

#define REC_SEAL 0xffu

static struct shmfs_super sb;
static uint8_t *meta;           /* the formatted region up to its root record */
static uint64_t root_end;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_setup();
	struct shmfs_region *r = fuzz_region(FUZZ_REGION);
	fuzz_format(r, &sb);
	root_end = sb.sb_log_off + shmfs_lr_stride(sizeof(struct shmfs_lr_create));
	meta = malloc(root_end);
	if (!meta)
		FUZZ_FAIL("out of memory");
	memcpy(meta, r->base, root_end);
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
	const uint8_t *p = data + FUZZ_HDR, *end = data + size;

	struct shmfs_region *r = fuzz_region(FUZZ_REGION);
	struct shmfs_log log = { r->base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
	memcpy(r->base, meta, root_end);
	memset(r->base + root_end, 0, sb.sb_log_off + sb.sb_log_size - root_end);
	uint64_t pos = root_end - sb.sb_log_off, seq = 2, next, i = 0;
	if (flags & FUZZ_F_NO_ROOT) {
		memset(log.base, 0, pos);
		pos = 0;
		seq = 1;
	}
	while (end - p >= 5) {
		struct shmfs_log_rec h = { .lr_type = p[0], .lr_flags = p[1], .lr_host = p[2],
					   .lr_lock_gen = (uint32_t)i,
					   .lr_time = FUZZ_TIME + i * 1000003u };
		uint32_t len = p[3] | (uint32_t)p[4] << 8;
		p += 5;
		if (h.lr_type == REC_SEAL) {
			if (log.size - pos < SHMFS_LR_HDR_SIZE || shmfs_log_seal(&log, pos, seq, &next))
				break;
			pos = next;
			continue;
		}
		h.lr_len = (uint32_t)SHMFS_MIN((size_t)len, (size_t)(end - p));
		if (shmfs_log_append(&log, pos, seq, &h, p, &next))
			break;
		p += h.lr_len;
		pos = next;
		seq++;
		i++;
	}

	struct shmfs_fs *fs = fuzz_open(r, false, &rc);
	FUZZ_ASSERT(fs, "a good superblock does not open: %d", rc);
	FUZZ_ASSERT(!fs->stats.stuck, "replay of appended records is stuck at %" PRIu64 ": %s",
		    fs->stats.stuck_pos, fs->stats.stuck_why);
	FUZZ_ASSERT(fs->seq == seq && fs->pos == pos &&
		    fs->stats.records + fs->stats.rejected == seq - 1,
		    "replayed to record %" PRIu64 " at %" PRIu64 " of %" PRIu64 " at %" PRIu64
		    " (%" PRIu64 " applied, %" PRIu64 " rejected)", fs->seq, fs->pos, seq, pos,
		    fs->stats.records, fs->stats.rejected);
	fuzz_after_open(r, fs, flags, arg, seed);
	shmfs_fs_close(fs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one_input(data, size);
	rcu_barrier(); /* what the input left to free, freed now */
	return 0;
}
