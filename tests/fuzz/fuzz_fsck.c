/* SPDX-License-Identifier: MIT */
/*
 * fuzz_fsck: fsck.shmfs's checks and repairs over a hostile region.
 *
 * Input: as fuzz_super (flags, a region size code, the region's first
 * bytes).  The checker is tools/fsck/ itself, linked into this target
 * without its main.c, so that its passes run over the memory region
 * without a file: the same fsck_run_check(), fsck_repair() and
 * fsck_verify_by_open() that main() calls.  Nobody is mounted: the host
 * table is not watched, every slot counts as dead.  Leases in the
 * superblocks are capped at 20 ms (a repair that joins the host table may
 * wait one).
 *
 * Without FUZZ_F_WRITE it checks (-n); with it, it repairs everything (-y)
 * and asserts what fsck promises of a repair that did not fail: the
 * region then opens, replays to the end without getting stuck or
 * rejecting a record, and the second check finds nothing it could repair.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "shmfs/util.h"

#include "fuzz.h"

#include "../../tools/fsck/fsck.h"

#define LEASE_CAP_MS 20u

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_setup();
	return 0;
}

/* Valid superblocks keep valid, with a short lease. */
static void cap_lease(struct shmfs_region *r, unsigned which)
{
	uint64_t off = which ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF;
	struct shmfs_super sb;
	char err[256];

	if (r->size < off + sizeof(sb))
		return;
	memcpy(&sb, r->base + off, sizeof(sb));
	if (shmfs_super_check(&sb, r->size, err, sizeof(err)) || sb.sb_lease_ms <= LEASE_CAP_MS)
		return;
	sb.sb_lease_ms = LEASE_CAP_MS;
	sb.sb_heartbeat_ms = SHMFS_MIN(sb.sb_heartbeat_ms, LEASE_CAP_MS / 2);
	shmfs_super_seal(&sb);
	memcpy(r->base + off, &sb, sizeof(sb));
}

static void free_problems(struct plist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].loc);
		free(l->v[i].msg);
		free(l->v[i].action);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static struct fsck ck;

/* The run as main() leaves it before its first check, over our region. */
static void fsck_reset(struct shmfs_region *r, bool yes)
{
	static uint8_t *buf, *buf2;
	static struct shmfs_log_scan scan;

	if (!buf) {
		buf = malloc(SHMFS_LR_PAYLOAD_MAX);
		buf2 = malloc(SHMFS_LR_PAYLOAD_MAX);
		if (!buf || !buf2 || shmfs_log_scan_init(&scan, &ck.log, -1, 0))
			FUZZ_FAIL("out of memory");
	}
	free_problems(&ck.c1.pb);
	free_problems(&ck.c2.pb);
	free(ck.slots);
	memset(&ck, 0, sizeof(ck));
	ck.mode = yes ? M_YES : M_CHECK;
	ck.json = true;                 /* no report on stdout */
	ck.spec = "fuzz";
	ck.r = *r;
	ck.buf = buf;
	ck.buf2 = buf2;
	ck.scan = scan;
	ck.watched = true;              /* no slots watched: nobody is live */
}

static bool fixable(const struct plist *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].fix != FIX_NONE)
			return true;
	return false;
}

static void one_input(const uint8_t *data, size_t size)
{
	if (size < FUZZ_HDR)
		return;
	unsigned flags = data[0];
	uint64_t rsize = FUZZ_REGION - (uint64_t)data[1] * SHMFS_PAGE;
	bool yes = flags & FUZZ_F_WRITE;
	data += FUZZ_HDR;
	size -= FUZZ_HDR;

	struct shmfs_region *r = fuzz_region(rsize);
	memset(r->base, 0, rsize);
	memcpy(r->base, data, SHMFS_MIN(size, rsize));
	if (flags & FUZZ_F_SEAL_SB0)
		fuzz_seal_super(r, 0);
	if (flags & FUZZ_F_SEAL_SB1)
		fuzz_seal_super(r, 1);
	cap_lease(r, 0);
	cap_lease(r, 1);
	struct shmfs_super sb;
	char err[256], other[256];
	if (shmfs_super_read(r, &sb, NULL, err, sizeof(err), other, sizeof(other)) == 0) {
		if (flags & FUZZ_F_CSUM_HOSTS)
			fuzz_fix_hosts(r, &sb);
		if (flags & FUZZ_F_CSUM_LOG) {
			struct shmfs_log log = { r->base + sb.sb_log_off, sb.sb_log_size,
						 sb.sb_log_seed };
			fuzz_fix_log(&log);
		}
	}

	fsck_reset(r, yes);
	if (fsck_run_check(&ck, &ck.c1, false) != 0)
		return; /* no usable superblock: nothing to check */
	if (!yes || !fixable(&ck.c1.pb))
		return;
	fsck_repair(&ck);
	if (!ck.modified)
		return;
	int rc = fsck_run_check(&ck, &ck.c2, true);
	FUZZ_ASSERT(rc == 0, "the repaired region has no usable superblock");
	fsck_verify_by_open(&ck);
	if (ck.op_error || ck.refused)
		return;

	/* A repair that did not fail leaves a region every mount replays. */
	struct shmfs_fs *fs = fuzz_open(r, false, &rc);
	FUZZ_ASSERT(fs, "the repaired region does not open: %d", rc);
	FUZZ_ASSERT(!fs->stats.stuck && !fs->stats.rejected,
		    "the repaired log replays %s (%" PRIu64 " rejected; %s)",
		    fs->stats.stuck ? "stuck" : "with rejections", fs->stats.rejected,
		    fs->stats.stuck ? fs->stats.stuck_why : fs->stats.last_reject);
	fuzz_check_ns(fs);
	shmfs_fs_close(fs);
	for (size_t i = 0; i < ck.c2.pb.n; i++)
		FUZZ_ASSERT(ck.c2.pb.v[i].fix == FIX_NONE, "after repair, still repairable: %s: %s [%s]",
			    ck.c2.pb.v[i].loc, ck.c2.pb.v[i].msg, ck.c2.pb.v[i].code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one_input(data, size);
	rcu_barrier(); /* what the input left to free, freed now */
	return 0;
}
