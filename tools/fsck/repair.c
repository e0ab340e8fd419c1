/* SPDX-License-Identifier: MIT */
/*
 * The repairs, in the order they must be made, and the replay that checks
 * them.
 *
 * Only when no other host is live (or --force): first what lies before
 * the log -- the superblock copies, the control page, stale host slots and
 * the lock word of a dead holder -- written directly (fs/repair.c).  Then,
 * holding the metadata lock through a SHMFS_HOST_TOOL slot, the raw log
 * edits in log order: lr_seq and seal words restored, damage bridged by
 * NOOPs, rejected records rewritten as NOOPs, the log cut where it cannot
 * be bridged, and the tail of a dead lock holder sealed.  A log edit that
 * is declined or fails blocks every one after it, since each assumes the
 * log before it is sound.  Last, ordinary records through shmfs_fs_commit:
 * release of orphans, extent-unmap of leaked preallocation.  main() then
 * checks everything again, and fsck_verify_by_open() replays the log once
 * more through shmfs_fs_open, the path every mount takes.
 *
 * Each problem's repair says what it did, or why not, in p->action.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/repair.h"
#include "shmfs/util.h"

#include "fsck.h"

/* One repair run over the problems of the first check. */
struct repair_run {
	struct fsck *ck;
	struct check *c;
	struct shmfs_fs_opts o;         /* joined as a tool */
	struct shmfs_fs *fs;            /* while the log is edited, or records written */
	struct problem *lockp;          /* the lock released: reported with the tail */
	bool lock_fixed;                /* the lock word of a dead holder released */
	bool seal;                      /* the tail must be sealed (a holder died) */
	bool blocked;                   /* a log repair was not made: stop */
	bool tail_moved;                /* the log grew since the check */
};

static bool ask(const char *question)
{
	char line[64];

	fprintf(stderr, "%s? [y/N] ", question);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

static bool want(struct fsck *ck, struct problem *p)
{
	char q[1200];

	if (p->fix == FIX_NONE)
		return false;
	switch (ck->mode) {
	case M_YES:
		return true;
	case M_PREEN:
		if (!p->safe && !p->action)
			p->action = fsck_xasprintf("not repaired: -p repairs only what is safe; run "
						   PROG " -y");
		return p->safe;
	case M_ASK:
		snprintf(q, sizeof(q), "%s: %s. Repair", p->loc, p->msg);
		return ask(q);
	default:
		return false;
	}
}

static void __attribute__((format(printf, 4, 5)))
done(struct fsck *ck, struct problem *p, int rc, const char *fmt, ...)
{
	va_list ap;

	free(p->action);
	if (rc == 0) {
		va_start(ap, fmt);
		p->action = fsck_xvasprintf(fmt, ap);
		va_end(ap);
		p->repaired = true;
		ck->repaired_any = true;
		ck->modified = true;
	} else {
		p->action = fsck_xasprintf("repair failed: %s", strerror(-rc));
		if (rc != -EAGAIN && rc != -EBUSY)
			ck->op_error = true;
	}
	if (!ck->json)
		printf("  %s [%s]: %s\n", p->loc, p->code, p->action);
}

static void skip(struct fsck *ck, struct problem *p, const char *why)
{
	if (!p->action)
		p->action = fsck_xasprintf("not repaired: %s", why);
	if (!ck->json)
		printf("  %s [%s]: %s\n", p->loc, p->code, p->action);
}

/* ------------------------------------------------------------------ */
/* Before the log: superblocks, control page, host slots, the lock     */
/* ------------------------------------------------------------------ */

static void repair_superblock(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;

	if (want(ck, p))
		done(ck, p, shmfs_repair_super(&ck->r, (unsigned)p->a, &rr->c->sb),
		     "rewritten from the %s", p->a ? "primary" : "backup");
}

static void repair_control(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;

	if (want(ck, p))
		done(ck, p, shmfs_repair_ctl(&ck->r, &rr->c->sb), "ctl_magic and padding rewritten");
}

static void repair_stale_slot(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;

	if (want(ck, p))
		done(ck, p, shmfs_repair_host_free(&ck->r, &rr->c->sb, (uint32_t)p->a, p->b, p->c),
		     "slot freed");
}

/* Released now; reported once the tail the holder left is sealed. */
static void repair_lock(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;
	int rc;

	if (!want(ck, p))
		return;
	rc = shmfs_repair_lock_release(&ck->r, &rr->c->sb, p->a);
	if (rc == 0) {
		rr->lock_fixed = rr->seal = true;
		rr->lockp = p;
	} else {
		done(ck, p, rc, "%s", "");
	}
}

static void repair_fixed_area(struct repair_run *rr)
{
	for (size_t i = 0; i < rr->c->pb.n; i++) {
		struct problem *p = &rr->c->pb.v[i];
		switch (p->fix) {
		case FIX_SUPER:
			repair_superblock(rr, p);
			break;
		case FIX_CTL:
			repair_control(rr, p);
			break;
		case FIX_HOST:
			repair_stale_slot(rr, p);
			break;
		case FIX_LOCK:
			repair_lock(rr, p);
			break;
		default:
			break;
		}
	}
}

/* ------------------------------------------------------------------ */
/* The log, in log order, holding the metadata lock                    */
/* ------------------------------------------------------------------ */

/* Write the NOOPs of a bridged gap [P, X): k records from seq S, 40 bytes
 * each plus the slack spread over the first ones.  The first one last, so
 * that readers see the end of the log until everything after it is there. */
static uint64_t fill_stride(uint64_t gap, uint64_t k, uint64_t i)
{
	const uint64_t most = STRIDE_MAX - SHMFS_LR_HDR_SIZE;
	uint64_t rem = gap - k * SHMFS_LR_HDR_SIZE, full = rem / most;

	if (i < full)
		return STRIDE_MAX;
	return SHMFS_LR_HDR_SIZE + (i == full ? rem % most : 0);
}

static int fill(struct fsck *ck, uint64_t P, uint64_t X, uint64_t S, uint64_t k)
{
	uint64_t gap = X - P, pos = X;
	int rc = shmfs_repair_set_seq(&ck->log, P, 0);
	bool root = fsck_root_fits(P, S, gap, k);

	if (root) { /* NOOPs after the root's 88 bytes */
		gap -= shmfs_lr_stride(sizeof(struct shmfs_lr_create));
		for (uint64_t i = k - 1; !rc && i-- > 0;) {
			uint64_t st = fill_stride(gap, k - 1, i);
			pos -= st;
			rc = shmfs_repair_noop(&ck->log, pos, S + 1 + i, st, NULL, true);
		}
		if (!rc && pos == P + shmfs_lr_stride(sizeof(struct shmfs_lr_create))) {
			struct shmfs_log_rec h;
			struct shmfs_lr_create cr;
			uint64_t next;
			fsck_root_record(&ck->c->sb, &h, &cr);
			rc = shmfs_log_append(&ck->log, P, 1, &h, &cr, &next);
			pos = rc ? pos : P;
		}
		return rc ? rc : pos == P ? 0 : -EIO;
	}
	for (uint64_t i = k; !rc && i-- > 0;) {
		uint64_t st = fill_stride(gap, k, i);
		pos -= st;
		rc = shmfs_repair_noop(&ck->log, pos, S + i, st, NULL, true);
	}
	return rc ? rc : pos == P ? 0 : -EIO;
}

static bool is_log_fix(enum fix f)
{
	return f == FIX_SEQ || f == FIX_SEAL || f == FIX_FILL || f == FIX_NOOP || f == FIX_CUT;
}

static int pos_cmp(const void *a, const void *b)
{
	const struct problem *x = *(struct problem *const *)a, *y = *(struct problem *const *)b;

	return x->a < y->a ? -1 : x->a > y->a;
}

/* Join the host table as a tool and take the metadata lock (breaking a
 * dead holder's lease means its tail must be sealed too). */
static void take_lock(struct repair_run *rr)
{
	struct fsck *ck = rr->ck;
	char err[512];
	int rc;

	rc = shmfs_fs_open(&ck->r, &rr->o, &rr->fs, err, sizeof(err));
	if (rc) {
		fprintf(stderr, PROG ": %s: cannot join the host table to repair the log: %s\n",
			ck->spec, err);
		ck->op_error = true;
		rr->blocked = true;
		return;
	}
	bool broke = false;
	rc = shmfs_lock_acquire(&rr->fs->coord, &broke);
	if (rc) {
		fprintf(stderr, PROG ": %s: cannot take the metadata lock: %s\n", ck->spec,
			strerror(-rc));
		ck->op_error = true;
		rr->blocked = true;
	}
	rr->seal |= broke;
}

/* A record replay rejects, rewritten as a NOOP if it is still the same. */
static void repair_rejected(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;
	struct shmfs_log_entry e;

	if (shmfs_log_read(&ck->log, p->a, p->c, &e, ck->buf) != SHMFS_LOG_REC ||
	    e.next_pos - p->a != p->b) {
		skip(ck, p, "the record changed during the check");
		return;
	}
	done(ck, p, shmfs_repair_noop(&ck->log, p->a, p->c, p->b, &e.hdr, false),
	     "rewritten as a NOOP");
}

static void repair_cut(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;
	struct check *c = rr->c;
	int rc;

	if (rr->seal && p->a == c->end_pos && !c->tail_bad) {
		/* Junk after the end of a dead holder: seal first. */
		uint64_t next;
		rc = shmfs_log_seal(&ck->log, p->a, c->end_seq, &next);
		if (!rc)
			rc = shmfs_repair_log_cut(&ck->r, &c->sb, p->a + 8, p->b);
		rr->seal = false;
		done(ck, p, rc, "sealed, and the bytes after the end zeroed");
	} else {
		done(ck, p, shmfs_repair_log_cut(&ck->r, &c->sb, p->a, p->b),
		     "the log now ends at pos %" PRIu64, p->a);
	}
}

static void repair_log_problem(struct repair_run *rr, struct problem *p)
{
	struct fsck *ck = rr->ck;

	if (rr->blocked) {
		skip(ck, p, "an earlier problem in the log was not repaired");
		return;
	}
	if (p->fix == FIX_CUT && p->a >= rr->c->end_pos && rr->tail_moved) {
		skip(ck, p, "the log grew during the check; run " PROG " again");
		ck->op_error = true;
		return;
	}
	if (!want(ck, p)) {
		if (p->fix != FIX_NOOP)
			rr->blocked = true;
		skip(ck, p, ck->mode == M_CHECK ? "check only" : "declined");
		return;
	}
	switch (p->fix) {
	case FIX_SEQ:
		done(ck, p, shmfs_repair_set_seq(&ck->log, p->a, p->c), "lr_seq restored");
		break;
	case FIX_SEAL:
		done(ck, p, shmfs_repair_set_seq(&ck->log, p->a, SHMFS_LR_SEAL | p->c),
		     "seal restored");
		break;
	case FIX_FILL:
		done(ck, p, fill(ck, p->a, p->b, p->c, p->d), "bridged by %" PRIu64 " NOOP record%s",
		     p->d, p->d == 1 ? "" : "s");
		break;
	case FIX_NOOP:
		repair_rejected(rr, p);
		break;
	case FIX_CUT:
		repair_cut(rr, p);
		break;
	default:
		break;
	}
}

/*
 * The dead holder may have half-written its next record at the end: seal
 * that slot, as shmfs_fs_lock() does after breaking a lease, and clear
 * what lies beyond.  Then the lock's repair is reported.
 */
static void repair_log_tail(struct repair_run *rr)
{
	struct fsck *ck = rr->ck;
	struct check *c = rr->c;
	uint64_t next, pos = c->end_pos;
	int rc;

	if (!rr->seal || rr->blocked) {
		if (rr->lockp)
			done(ck, rr->lockp, rr->blocked ? -EAGAIN : 0, "released");
		return;
	}
	if (rr->tail_moved && !c->tail_bad) {
		rc = -EAGAIN;
	} else {
		rc = shmfs_log_seal(&ck->log, pos, c->end_seq, &next);
		if (rc == 0 && c->junk_from != NONE && pos + 8 < ck->log.size)
			rc = shmfs_repair_log_cut(&ck->r, &c->sb, pos + 8, ck->log.size);
	}
	if (rr->lockp)
		done(ck, rr->lockp, rc, "released; the log tail sealed at pos %" PRIu64, pos);
}

static void repair_log(struct repair_run *rr)
{
	struct fsck *ck = rr->ck;
	struct check *c = rr->c;
	size_t nlog = 0;
	struct problem **lp = calloc(c->pb.n + 1, sizeof(*lp));

	for (size_t i = 0; lp && i < c->pb.n; i++)
		if (is_log_fix(c->pb.v[i].fix))
			lp[nlog++] = &c->pb.v[i];
	if (lp && (nlog || rr->lock_fixed)) {
		take_lock(rr);
		qsort(lp, nlog, sizeof(*lp), pos_cmp);
		/* The tail must not have moved since the check (a forced repair
		 * while hosts append). */
		rr->tail_moved = ck->log.size - c->end_pos >= 8 &&
				 load64((const uint64_t *)(ck->log.base + c->end_pos)) != c->end_word;
		for (size_t i = 0; i < nlog; i++)
			repair_log_problem(rr, lp[i]);
		repair_log_tail(rr);
		if (rr->fs) {
			if (rr->fs->coord.locked)
				shmfs_lock_release(&rr->fs->coord);
			shmfs_fs_close(rr->fs);
			rr->fs = NULL;
		}
	}
	free(lp);
}

/* ------------------------------------------------------------------ */
/* Ordinary records through the write path                             */
/* ------------------------------------------------------------------ */

/* The release of an orphan, or the extent-unmap of leaked preallocation. */
static void append_record(struct repair_run *rr, struct problem *p)
{
	struct shmfs_fs *fs = rr->fs;
	uint8_t payload[sizeof(struct shmfs_lr_extent)];
	int rc;

	rc = shmfs_fs_lock(fs);
	if (rc == 0) {
		if (p->fix == FIX_RELEASE) {
			struct shmfs_lr_release rl = { p->a };
			memcpy(payload, &rl, sizeof(rl));
			rc = shmfs_fs_commit(fs, SHMFS_LR_RELEASE, 0, payload, sizeof(rl));
		} else {
			struct shmfs_lr_extent x = { p->a, p->b, 0, p->c - p->b, 0 };
			memcpy(payload, &x, sizeof(x));
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, 0, payload, sizeof(x));
		}
		shmfs_fs_unlock(fs);
	}
	if (p->fix == FIX_RELEASE)
		done(rr->ck, p, rc, "release record %" PRIu64 " appended", fs->seq - 1);
	else
		done(rr->ck, p, rc, "extent-unmap record %" PRIu64 " appended: file [%" PRIu64
		     ", %" PRIu64 ") released", fs->seq - 1, p->b, p->c);
}

static void repair_records(struct repair_run *rr)
{
	struct fsck *ck = rr->ck;
	struct check *c = rr->c;
	bool any_ns = false;
	char err[512];
	int rc;

	for (size_t i = 0; i < c->pb.n; i++)
		any_ns |= c->pb.v[i].fix == FIX_RELEASE || c->pb.v[i].fix == FIX_UNMAP;
	if (!any_ns)
		return;
	if (!rr->blocked) {
		rc = shmfs_fs_open(&ck->r, &rr->o, &rr->fs, err, sizeof(err));
		if (rc) {
			fprintf(stderr, PROG ": %s: cannot open the filesystem to write records: %s\n",
				ck->spec, err);
			ck->op_error = true;
			rr->blocked = true;
		} else if (rr->fs->stats.stuck) {
			rr->blocked = true;
		}
	}
	for (size_t i = 0; i < c->pb.n; i++) {
		struct problem *p = &c->pb.v[i];
		if (p->fix != FIX_RELEASE && p->fix != FIX_UNMAP)
			continue;
		if (rr->blocked)
			skip(ck, p, "the log is damaged before this point");
		else if (!want(ck, p))
			skip(ck, p, "declined");
		else
			append_record(rr, p);
	}
	if (rr->fs)
		shmfs_fs_close(rr->fs);
	rr->fs = NULL;
}

/* The repairs the first check asked for, in the order they must be made. */
void fsck_repair(struct fsck *ck)
{
	struct repair_run rr = {
		.ck = ck,
		.c = &ck->c1,
		.o = { .join = true, .tool = true },
	};

	if (!ck->json)
		printf("Repairing %s:\n", ck->spec);
	ck->c = rr.c;
	repair_fixed_area(&rr);
	repair_log(&rr);
	repair_records(&rr);
}

static const char *const live_hint =
	"unmount it on every host first, or use --force (dangerous: hosts that are mounted must "
	"remount afterwards)";

/* Can we repair at all?  Live hosts block it unless --force is confirmed. */
bool fsck_may_repair(struct fsck *ck)
{
	char who[400];
	size_t o = 0;

	if (!ck->nlive)
		return true;
	for (uint32_t i = 0; i < ck->nslots && o < sizeof(ck->refuse_why) - 1; i++) {
		if (!ck->slots[i].live)
			continue;
		fsck_host_ident(ck, i, who, sizeof(who));
		o += (size_t)snprintf(ck->refuse_why + o, sizeof(ck->refuse_why) - o, "%s%s",
				      o ? "; " : "", who);
	}
	if (!ck->force) {
		fprintf(stderr, PROG ": %s: not repairing: %u live host%s hold%s a lease: %s\n"
			PROG ": %s\n", ck->spec, ck->nlive, ck->nlive == 1 ? "" : "s",
			ck->nlive == 1 ? "s" : "", ck->refuse_why, live_hint);
		ck->refused = true;
		return false;
	}
	if (ck->mode == M_YES)
		return true;
	if (isatty(STDIN_FILENO)) {
		fprintf(stderr, PROG ": %s is mounted: %s\n", ck->spec, ck->refuse_why);
		if (ask("Repair anyway, while it is mounted"))
			return true;
	}
	fprintf(stderr, PROG ": %s: not repairing while %u host%s %s live (--force needs -y or a "
		"confirmation on a terminal)\n", ck->spec, ck->nlive, ck->nlive == 1 ? "" : "s",
		ck->nlive == 1 ? "is" : "are");
	ck->refused = true;
	return false;
}

/* Replay once more the way every mount does. */
void fsck_verify_by_open(struct fsck *ck)
{
	struct shmfs_fs_opts o = { .readonly = true };
	struct shmfs_fs *fs = NULL;
	char err[512];
	int rc = shmfs_fs_open(&ck->r, &o, &fs, err, sizeof(err));

	if (rc) {
		fprintf(stderr, PROG ": %s: the repaired filesystem does not open: %s\n", ck->spec,
			err);
		ck->op_error = true;
		return;
	}
	ck->c = &ck->c2;
	size_t before = ck->c2.pb.n;
	if (fs->stats.stuck)
		fsck_problem(ck, "lr_csum", FIX_NONE, false, "log", "shmfs_fs_open's replay stops "
			     "at pos %" PRIu64 ": %s", fs->stats.stuck_pos, fs->stats.stuck_why);
	if (fs->stats.rejected)
		fsck_problem(ck, "lr_type", FIX_NONE, false, "log", "shmfs_fs_open's replay rejects %"
			     PRIu64 " records (last: %s)", fs->stats.rejected, fs->stats.last_reject);
	for (size_t i = before; i < ck->c2.pb.n; i++)
		fsck_out_problem(ck, &ck->c2.pb.v[i], true);
	fsck_verbose(ck, "Replayed through shmfs_fs_open: %" PRIu64 " records, %" PRIu64 " inodes",
		     fs->stats.records, fs->ns->ninodes);
	shmfs_fs_close(fs);
}
