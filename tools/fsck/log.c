/* SPDX-License-Identifier: MIT */
/*
 * Pass 3: the log, walked and replayed exactly as shmfs_fs_open does
 * (shmfs_log_read from pos 0, seq 1, following seals;
 * shmfs_rec_check + shmfs_ns_apply_rec) into a private namespace.
 *
 * Past a published record that fails verification, the walk scans
 * forward at 8-byte steps for the next record (or seal) that verifies.
 * What it finds decides what the damage was:
 *
 *   - the record verifies with its lr_seq put back: a flipped sequence
 *     word (FIX_SEQ);
 *   - nothing valid after it: a torn tail, cut off (FIX_CUT);
 *   - the next record exactly one seal skip on: a damaged seal (FIX_SEAL);
 *   - records after a gap that can hold the missing numbers: damage in the
 *     middle, bridged by NOOP records of the right lengths so that what
 *     follows survives (FIX_FILL; at pos 0 the first becomes the root);
 *   - records after a gap too small for them: only a cut can end the log
 *     cleanly, and everything after it is listed as lost.
 *
 * An unpublished word is looked past too, in case a published one was
 * zeroed; nonzero bytes after a clean end are junk a next append would
 * trip on.  Records replay rejects become NOOPs (FIX_NOOP).  The walk goes
 * on past damage as if it were already repaired, so -n reports what -y
 * would do.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/coord.h"
#include "shmfs/ns.h"
#include "shmfs/repair.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#include "fsck.h"

/*
 * Scan the log from `from` for the first record that verifies with a
 * sequence number >= min_seq, or a seal whose record verifies 128 KiB on.
 * *first_nz gets the first nonzero word at or after from (NONE if none).
 * Returns true with *a filled, or false (*gave_up if the work budget ran
 * out: a hostile log full of near-records).
 */
static bool scan_log(struct fsck *ck, uint64_t from, uint64_t min_seq,
		     struct shmfs_log_anchor *a, uint64_t *first_nz, bool *gave_up)
{
	struct shmfs_log_entry e;
	bool found = shmfs_log_scan_next(&ck->scan, from, min_seq, true, a, &e, first_nz);

	*gave_up = ck->scan.gave_up;
	return found;
}

/* Apply one verified record to the private namespace, as replay does. */
static void apply(struct fsck *ck, const struct shmfs_log_entry *e)
{
	struct check *c = ck->c;
	char why[200], loc[96], d[700];
	uint64_t ino, dir;
	struct shmfs_rec r;
	int rc;

	rc = shmfs_rec_check(&e->hdr, e->payload, c->sb.sb_alloc_unit, &r, why, sizeof(why));
	if (!rc)
		rc = shmfs_ns_apply_rec(c->ns, &r, false, NULL, why, sizeof(why));
	if (rc == -ENOMEM) {
		fprintf(stderr, PROG ": out of memory replaying the log\n");
		exit(FSCK_ERROR);
	}
	if (!rc) {
		c->records++;
		c->noops += e->hdr.lr_type == SHMFS_LR_NOOP;
		return;
	}
	c->rejected++;
	fsck_describe(&e->hdr, e->payload, e->hdr.lr_len, d, sizeof(d), &ino, &dir);
	snprintf(loc, sizeof(loc), "log pos %" PRIu64 ", record %" PRIu64, e->pos, e->hdr.lr_seq);
	struct problem *p = fsck_problem(ck, fsck_rec_code(e->hdr.lr_type), FIX_NOOP, true, loc,
					 "replay rejects this %s: %s; it changes nothing (repair: "
					 "rewrite it as a NOOP)", d, why);
	p->a = e->pos;
	p->b = e->next_pos - e->pos;
	p->c = e->hdr.lr_seq;
	p->ref_ino = ino;
	p->ref_dir = dir;
}

/* Records from pos on that a cut at an unbridgeable point drops: every
 * record that verifies, whatever its number, described (never applied). */
static void list_lost(struct fsck *ck, uint64_t pos, uint64_t cut)
{
	struct shmfs_log_entry e;
	struct shmfs_log_anchor an;
	char d[700], loc[96];
	uint64_t ino, dir, n = 0, nz;
	bool gave_up;

	while (pos < ck->log.size) {
		enum shmfs_log_status st = shmfs_log_read(&ck->log, pos, 0, &e, ck->buf);
		if (st == SHMFS_LOG_SEALED) {
			pos = e.next_pos;
			continue;
		}
		if (st != SHMFS_LOG_REC) {
			if (!scan_log(ck, pos + SHMFS_LOG_ALIGN, 1, &an, &nz, &gave_up))
				break;
			pos = an.pos;
			continue;
		}
		ck->c->lost++;
		if (++n <= 1000) {
			fsck_describe(&e.hdr, e.payload, e.hdr.lr_len, d, sizeof(d), &ino, &dir);
			snprintf(loc, sizeof(loc), "log pos %" PRIu64 ", record %" PRIu64, pos,
				 e.hdr.lr_seq);
			struct problem *p = fsck_problem(ck, "lr_seq", FIX_NONE, false, loc,
							 "valid, but lost with the cut at pos %"
							 PRIu64 ": %s", cut, d);
			p->ref_ino = ino;
			p->ref_dir = dir;
		}
		pos = e.next_pos;
	}
}

/*
 * Record 1 is the root directory, and every other record depends on it.
 * When damage starting at pos 0 is bridged, record 1 is rebuilt as mkfs
 * wrote it (a directory 0755 owned by root; later setattr records still
 * apply) instead of becoming a NOOP -- if the k records of the gap can be
 * the root's 88 bytes and k - 1 NOOPs.
 */
bool fsck_root_fits(uint64_t P, uint64_t S, uint64_t gap, uint64_t k)
{
	uint64_t rs = shmfs_lr_stride(sizeof(struct shmfs_lr_create));

	return P == 0 && S == 1 && k >= 1 && gap >= rs + (k - 1) * SHMFS_LR_HDR_SIZE &&
	       gap - rs <= (k - 1) * STRIDE_MAX;
}

void fsck_root_record(const struct shmfs_super *sb, struct shmfs_log_rec *h,
		      struct shmfs_lr_create *cr)
{
	uint8_t buf[sizeof(*cr)];

	memset(h, 0, sizeof(*h));
	h->lr_seq = 1;
	h->lr_type = SHMFS_LR_CREATE;
	h->lr_len = shmfs_rec_root(buf, SHMFS_ROOT_MODE, 0, 0);
	h->lr_time = sb->sb_mkfs_time;
	memcpy(cr, buf, sizeof(*cr));
}

/* A damaged record at pos, read as well as it can be: what it seems to be. */
static void describe_damaged(struct fsck *ck, uint64_t pos, uint64_t room, char *buf, size_t len,
			     uint64_t *ino, uint64_t *dir)
{
	struct shmfs_log_rec h;

	*ino = *dir = 0;
	if (ck->log.size - pos < SHMFS_LR_HDR_SIZE) {
		snprintf(buf, len, "unreadable");
		return;
	}
	memcpy(&h, ck->log.base + pos, sizeof(h));
	if (h.lr_type >= SHMFS_LR_TYPE_COUNT || h.lr_len > SHMFS_LR_PAYLOAD_MAX ||
	    shmfs_lr_stride(h.lr_len) > room || shmfs_lr_stride(h.lr_len) > ck->log.size - pos) {
		snprintf(buf, len, "unreadable (its header is damaged too)");
		return;
	}
	memcpy(ck->buf2, ck->log.base + pos + SHMFS_LR_HDR_SIZE, h.lr_len);
	char d[600];
	fsck_describe(&h, ck->buf2, h.lr_len, d, sizeof(d), ino, dir);
	snprintf(buf, len, "apparently a %s", d);
}

/* Record S at P verifies with its lr_seq put back (problem p, FIX_SEQ):
 * walk on after it as if it were repaired. */
static bool seq_restored(struct fsck *ck, struct problem *p, uint64_t P, uint64_t S,
			 const struct shmfs_log_entry *e, uint64_t *pos, uint64_t *seq)
{
	p->a = P;
	p->c = S;
	apply(ck, e);
	*pos = e->next_pos;
	*seq = S + 1;
	return true;
}

enum end_verdict { END_HERE, END_WALK_ON, END_ZEROED };

/*
 * The walk met an unpublished word at P.  Either the log ends there (with
 * junk after it, or not), a live host has appended meanwhile, or the word
 * was zeroed under valid records that follow: END_ZEROED, damage.
 */
static enum end_verdict unpublished(struct fsck *ck, uint64_t P, uint64_t S, bool found,
			  const struct shmfs_log_anchor *an, uint64_t first_nz, const char *loc,
			  uint64_t *pos, uint64_t *seq)
{
	struct check *c = ck->c;
	struct shmfs_log_entry e;
	uint64_t allow = ck->nlive || shmfs_lock_owner(c->lock_seen) ? STRIDE_MAX : 0;
	static uint64_t retry_pos = NONE, retries;

	if (ck->log.size - P >= SHMFS_LR_HDR_SIZE &&
	    load64((const uint64_t *)(ck->log.base + P)) != 0) {
		/* A live host appended meanwhile: walk on. */
		retries = retry_pos == P ? retries + 1 : 0;
		retry_pos = P;
		if (retries < 1000)
			return END_WALK_ON;
	}
	if (!found) {
		c->junk_from = first_nz;
		if (first_nz != NONE && first_nz >= P + allow && !c->lock_dead) {
			fsck_problem(ck, "lr_seq", FIX_CUT, true, loc,
				     "the log ends here, but bytes after the end are not zero (first "
				     "at pos %" PRIu64 "): the next append there would fail (repair: "
				     "zero them)", first_nz)->a = P;
			c->pb.v[c->pb.n - 1].b = ck->log.size;
		}
		return END_HERE;
	}
	/* Valid records after an unpublished word: it was zeroed. */
	if (shmfs_repair_probe_seq(&ck->log, P, S, &e, ck->buf) == 0 && e.next_pos <= an->pos) {
		struct problem *p =
			fsck_problem(ck, "lr_seq", FIX_SEQ, true, loc,
				     "lr_seq is 0 (the log seems to end here), but records follow "
				     "from pos %" PRIu64 " and this one verifies as record %" PRIu64
				     " (repair: restore lr_seq)", an->pos, S);
		seq_restored(ck, p, P, S, &e, pos, seq);
		return END_WALK_ON;
	}
	return END_ZEROED;
}

/* Problem p cuts the log at P: everything from there to the end is lost. */
static void cut_here(struct fsck *ck, struct problem *p, uint64_t P, uint64_t ino, uint64_t dir)
{
	p->a = P;
	p->b = ck->log.size;
	p->ref_ino = ino;
	p->ref_dir = dir;
	ck->c->tail_bad = true;
	ck->c->lost++;
}

/* A torn tail: nothing valid after P. */
static bool torn_tail(struct fsck *ck, uint64_t P, const char *why, bool gave_up,
		      const char *loc)
{
	uint64_t ino, dir;
	char d[800];

	describe_damaged(ck, P, ck->log.size - P, d, sizeof(d), &ino, &dir);
	struct problem *p = fsck_problem(ck, "lr_csum", FIX_CUT, !gave_up, loc,
					 "%s; nothing valid follows%s: a torn tail (repair: cut the "
					 "log so that it ends cleanly at pos %" PRIu64 "); lost: %s",
					 why, gave_up ? " (gave up scanning: too many near-records)"
					 : "", P, d);	cut_here(ck, p, P, ino, dir);
	return false;
}

/* Damage [P, an->pos) where the k missing records fit: NOOPs (and the
 * root, at pos 0) bridge it. */
static void bridge(struct fsck *ck, uint64_t P, uint64_t S, bool at_end, const char *why,
		   const struct shmfs_log_anchor *an, const char *loc, const char *d,
		   uint64_t ino, uint64_t dir)
{
	struct check *c = ck->c;
	uint64_t gap = an->pos - P, k = an->seq - S;
	bool root = fsck_root_fits(P, S, gap, k);
	struct problem *p =
		fsck_problem(ck, at_end ? "lr_seq" : "lr_csum", FIX_FILL, false, loc,
			     "%s; the log is intact again from pos %" PRIu64 " (%s %" PRIu64 ") "
			     "(repair: the %" PRIu64 " damaged byte%s become%s %" PRIu64
			     " NOOP record%s, so that what follows survives%s); lost: %s%s",
			     why, an->pos, an->seal ? "seal of record" : "record", an->seq, gap,
			     gap == 1 ? "" : "s", gap == 1 ? "s" : "", k, k == 1 ? "" : "s",
			     root ? "; the first rebuilt as the root directory, 0755, owned by "
			     "root" : "", d,
			     k > 1 ? " and the records after it up to the next one" : "");

	p->a = P;
	p->b = an->pos;
	p->c = S;
	p->d = k;
	p->ref_ino = ino;
	p->ref_dir = dir;
	if (root) {
		/* Walk on as if repaired: the root exists. */
		struct shmfs_lr_create rcr;
		struct shmfs_log_entry re = { .pos = P, .payload = (uint8_t *)&rcr };
		fsck_root_record(&c->sb, &re.hdr, &rcr);
		apply(ck, &re);
	}
	c->lost += k - root;
}

/* Valid records follow from an->pos, but the gap cannot hold the missing
 * sequence numbers: the log can only be cut at P. */
static void unbridgeable(struct fsck *ck, uint64_t P, uint64_t S, const char *why,
			 const struct shmfs_log_anchor *an, const char *loc, const char *d,
			 uint64_t ino, uint64_t dir)
{
	struct problem *p =
		fsck_problem(ck, "lr_seq", FIX_CUT, false, loc,
			     "%s; valid records follow from pos %" PRIu64 " (record %" PRIu64
			     "), but %" PRIu64 " bytes cannot hold records %" PRIu64 "..%" PRIu64
			     " (repair, -y only: cut the log here, losing everything after it); "
			     "damaged: %s", why, an->pos, an->seq, an->pos - P, S, an->seq - 1, d);
	cut_here(ck, p, P, ino, dir);
	list_lost(ck, an->pos, P);
}

/*
 * The walk met a published record at P that fails (at_end: an
 * unpublished word, looked past in case it was zeroed).  Decide what it
 * is, report it, and say where the walk goes on.  Returns true to go on
 * at *pos, *seq.
 */
static bool damaged(struct fsck *ck, uint64_t P, uint64_t S, bool at_end, const char *why,
		    uint64_t *pos, uint64_t *seq)
{
	struct check *c = ck->c;
	struct shmfs_log_entry e;
	struct shmfs_log_anchor an;
	uint64_t first_nz, ino, dir;
	bool gave_up, found;
	char loc[96], d[800];

	snprintf(loc, sizeof(loc), "log pos %" PRIu64 ", record %" PRIu64, P, S);
	/* Only the lr_seq word is wrong (a flipped bit): put it back. */
	if (!at_end && shmfs_repair_probe_seq(&ck->log, P, S, &e, ck->buf) == 0) {
		uint64_t w = load64((const uint64_t *)(ck->log.base + P));
		struct problem *p =
			fsck_problem(ck, "lr_seq", FIX_SEQ, true, loc,
				     "lr_seq is 0x%" PRIx64 ", but the record verifies as record %"
				     PRIu64 " (repair: restore lr_seq)", w, S);
		return seq_restored(ck, p, P, S, &e, pos, seq);
	}
	found = scan_log(ck, at_end ? P + SHMFS_LOG_ALIGN : P, S, &an, &first_nz, &gave_up);
	if (at_end) {
		switch (unpublished(ck, P, S, found, &an, first_nz, loc, pos, seq)) {
		case END_HERE:
			return false;
		case END_WALK_ON:
			return true;
		case END_ZEROED:
			break;
		}
		why = "lr_seq is 0 but valid records follow (the log was cut)";
	}
	if (!found)
		return torn_tail(ck, P, why, gave_up, loc);

	uint64_t gap = an.pos - P, k = an.seq - S;
	describe_damaged(ck, P, gap ? gap : ck->log.size - P, d, sizeof(d), &ino, &dir);
	if (k == 0 && gap == SHMFS_LOG_SEAL_SKIP) {
		fsck_problem(ck, "lr_seq", FIX_SEAL, true, loc,
			     "%s; record %" PRIu64 " follows exactly one seal skip later: this was "
			     "a seal (repair: restore it)", why, S)->a = P;
		c->pb.v[c->pb.n - 1].c = S;
		c->seals++;
	} else if (k >= 1 && gap >= k * SHMFS_LR_HDR_SIZE && gap <= k * STRIDE_MAX) {
		bridge(ck, P, S, at_end, why, &an, loc, d, ino, dir);
	} else {
		unbridgeable(ck, P, S, why, &an, loc, d, ino, dir);
		return false;
	}
	*pos = an.pos;
	*seq = an.seq;
	return true;
}

int fsck_pass_log(struct fsck *ck)
{
	struct check *c = ck->c;
	struct shmfs_log_entry e;
	uint64_t pos = 0, seq = 1;

	fsck_verbose(ck, "Pass 3: log (%s)", ck->after ? "again" : "checksums, sequence, replay");
	c->ns = shmfs_ns_new(c->sb.sb_data_size, c->sb.sb_alloc_unit, c->sb.sb_log_size / 1024);
	if (!c->ns)
		return -ENOMEM;
	c->ns->exclusive = true;
	c->junk_from = NONE;
	for (;;) {
		fsck_progress(ck, "Checking the log", pos, ck->log.size);
		switch (shmfs_log_read(&ck->log, pos, seq, &e, ck->buf)) {
		case SHMFS_LOG_REC:
			apply(ck, &e);
			pos = e.next_pos;
			seq++;
			continue;
		case SHMFS_LOG_SEALED:
			c->seals++;
			pos = e.next_pos;
			continue;
		case SHMFS_LOG_END:
			if (damaged(ck, pos, seq, true, "", &pos, &seq))
				continue;
			break;
		case SHMFS_LOG_BAD: {
			char why[sizeof(e.why)];
			memcpy(why, e.why, sizeof(why));
			if (damaged(ck, pos, seq, false, why, &pos, &seq))
				continue;
			break;
		}
		}
		break;
	}
	fsck_progress_done(ck);
	c->end_pos = pos;
	c->end_seq = seq;
	c->end_word = ck->log.size - pos >= 8 ? load64((const uint64_t *)(ck->log.base + pos)) : 0;
	return 0;
}
