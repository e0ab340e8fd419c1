/* SPDX-License-Identifier: MIT */
/*
 * The metadata log: an append-only array of records in the region.
 *
 * Publication.  A record is written in two steps by the holder of the
 * metadata lock:
 *
 *   1. payload and header bytes 8..39 (everything but lr_seq), with the
 *      checksum computed as if lr_seq already held the new sequence number;
 *   2. one compare-and-exchange with release ordering of lr_seq from 0 to
 *      the sequence number.  This is the commit point.
 *
 * Readers acquire-load lr_seq; a zero means the log ends there.  Because
 * step 2 is a CAS and not a plain store, a holder whose lease was broken
 * (it stalled, another host took the lock and sealed the slot) cannot
 * publish over the seal: its CAS fails and it stops writing for good.  On
 * coherent memory a published record is therefore always complete; a
 * record that fails verification is corruption (a buggy or hostile peer, or
 * a torn copy of the region), and replay stops in front of it.
 *
 * Sealing.  A host that breaks a dead holder's lease cannot know how much
 * of the next slot the holder had written, nor whether it is truly dead.
 * It CASes the slot's lr_seq from 0 to SHMFS_LR_SEAL|seq, and the record
 * with that seq goes SHMFS_LOG_SEAL_SKIP bytes further on, beyond anything
 * the old holder could still write (a record is at most
 * SHMFS_LR_HDR_SIZE + SHMFS_LR_PAYLOAD_MAX bytes).
 *
 * Every read copies the record out of the region before checking it, so
 * what was verified is what is used.
 */
#include "shmfs/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmfs/util.h"

static inline uint64_t *seq_word(const struct shmfs_log *log, uint64_t pos)
{
	return (uint64_t *)(log->base + pos);
}

static uint64_t rec_csum(const struct shmfs_log *log, const struct shmfs_log_rec *h,
			 uint64_t seq, const void *payload)
{
	struct shmfs_log_rec tmp = *h;

	tmp.lr_seq = seq;
	uint64_t pseed = shmfs_hash(payload, h->lr_len, log->seed);
	return shmfs_hash(&tmp, offsetof(struct shmfs_log_rec, lr_csum), pseed);
}

#define WHY(...) shmfs_errf(e->why, sizeof(e->why), __VA_ARGS__)

enum shmfs_log_status shmfs_log_read(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
				     struct shmfs_log_entry *e, void *buf)
{
	uint64_t v, stride;

	e->pos = pos;
	e->next_pos = pos;
	e->payload = buf;
	e->why[0] = 0;
	if (pos % SHMFS_LOG_ALIGN || pos > log->size) {
		WHY("log position %" PRIu64 " is invalid", pos);
		return SHMFS_LOG_BAD;
	}
	if (log->size - pos < SHMFS_LR_HDR_SIZE)
		return SHMFS_LOG_END;

	v = __atomic_load_n(seq_word(log, pos), __ATOMIC_ACQUIRE);
	if (v == 0)
		return SHMFS_LOG_END;
	if (v & SHMFS_LR_SEAL) {
		uint64_t s = v & ~SHMFS_LR_SEAL;
		if (s == 0 || s > SHMFS_LR_SEQ_MAX || (seq && s != seq)) {
			WHY("seal at %" PRIu64 " names record %" PRIu64 ", expected %" PRIu64, pos, s,
			    seq);
			return SHMFS_LOG_BAD;
		}
		memset(&e->hdr, 0, sizeof(e->hdr));
		e->hdr.lr_seq = v;
		e->next_pos = SHMFS_MIN(pos + SHMFS_LOG_SEAL_SKIP, log->size);
		return SHMFS_LOG_SEALED;
	}
	if (v > SHMFS_LR_SEQ_MAX || (seq && v != seq)) {
		WHY("record at %" PRIu64 " has sequence %" PRIu64 ", expected %" PRIu64, pos, v, seq);
		return SHMFS_LOG_BAD;
	}
	memcpy(&e->hdr, log->base + pos, sizeof(e->hdr));
	e->hdr.lr_seq = v;
	if (e->hdr.lr_len > SHMFS_LR_PAYLOAD_MAX) {
		WHY("record %" PRIu64 " at %" PRIu64 " claims %u payload bytes", v, pos,
		    e->hdr.lr_len);
		return SHMFS_LOG_BAD;
	}
	stride = shmfs_lr_stride(e->hdr.lr_len);
	if (stride > log->size - pos) {
		WHY("record %" PRIu64 " at %" PRIu64 " runs past the end of the log", v, pos);
		return SHMFS_LOG_BAD;
	}
	memcpy(buf, log->base + pos + SHMFS_LR_HDR_SIZE, e->hdr.lr_len);
	if (rec_csum(log, &e->hdr, v, buf) != e->hdr.lr_csum) {
		WHY("record %" PRIu64 " at %" PRIu64 " fails its checksum", v, pos);
		return SHMFS_LOG_BAD;
	}
	e->next_pos = pos + stride;
	return SHMFS_LOG_REC;
}

int shmfs_log_append(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
		     struct shmfs_log_rec *hdr, const void *payload, uint64_t *next_pos)
{
	uint64_t stride, expected = 0;

	if (hdr->lr_len > SHMFS_LR_PAYLOAD_MAX || seq == 0 || seq > SHMFS_LR_SEQ_MAX ||
	    pos % SHMFS_LOG_ALIGN || pos > log->size)
		return -EINVAL;
	stride = shmfs_lr_stride(hdr->lr_len);
	if (stride > log->size - pos)
		return -ENOSPC;
	if (__atomic_load_n(seq_word(log, pos), __ATOMIC_ACQUIRE) != 0)
		return -ESTALE;

	hdr->lr_csum = rec_csum(log, hdr, seq, payload);
	memcpy(log->base + pos + SHMFS_LR_HDR_SIZE, payload, hdr->lr_len);
	/* Header bytes after lr_seq; lr_seq itself is only ever CASed. */
	memcpy(log->base + pos + sizeof(hdr->lr_seq), (const uint8_t *)hdr + sizeof(hdr->lr_seq),
	       sizeof(*hdr) - sizeof(hdr->lr_seq));
	if (!__atomic_compare_exchange_n(seq_word(log, pos), &expected, seq, false,
					 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		return -ESTALE;
	hdr->lr_seq = seq;
	*next_pos = pos + stride;
	return 0;
}

int shmfs_log_seal(const struct shmfs_log *log, uint64_t pos, uint64_t seq, uint64_t *next_pos)
{
	uint64_t expected = 0;

	if (pos % SHMFS_LOG_ALIGN || pos > log->size || seq == 0 || seq > SHMFS_LR_SEQ_MAX)
		return -EINVAL;
	if (log->size - pos < SHMFS_LR_HDR_SIZE) {
		*next_pos = log->size;  /* the log is full: nothing to seal */
		return 0;
	}
	if (!__atomic_compare_exchange_n(seq_word(log, pos), &expected, SHMFS_LR_SEAL | seq, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EEXIST;
	*next_pos = SHMFS_MIN(pos + SHMFS_LOG_SEAL_SKIP, log->size);
	return 0;
}

/* ---- resynchronising scans (tools) ----------------------------------------- */

int shmfs_log_scan_init(struct shmfs_log_scan *s, const struct shmfs_log *log, int fd,
			uint64_t fd_base)
{
	*s = (struct shmfs_log_scan){ .log = log, .fd = fd, .fd_base = fd_base };
	s->chunk = malloc(SHMFS_LOG_SCAN_CHUNK + SHMFS_LR_HDR_SIZE);
	s->buf = malloc(SHMFS_LR_PAYLOAD_MAX);
	if (!s->chunk || !s->buf) {
		shmfs_log_scan_fini(s);
		return -ENOMEM;
	}
	return 0;
}

void shmfs_log_scan_fini(struct shmfs_log_scan *s)
{
	free(s->chunk);
	free(s->buf);
	s->chunk = s->buf = NULL;
}

void shmfs_log_scan_copy(struct shmfs_log_scan *s, uint64_t pos, void *dst, size_t n)
{
	if (s->fd >= 0) {
		if (pread(s->fd, dst, n, (off_t)(s->fd_base + pos)) == (ssize_t)n)
			return;
		s->fd = -1; /* not readable that way: use the mapping from now on */
	}
	memcpy(dst, s->log->base + pos, n);
}

/* Checksum a candidate, within the budget. */
static bool scan_afford(struct shmfs_log_scan *s, uint64_t bytes)
{
	if (s->hashed > SHMFS_LOG_SCAN_BUDGET) {
		s->gave_up = true;
		return false;
	}
	s->hashed += bytes;
	return true;
}

bool shmfs_log_scan_next(struct shmfs_log_scan *s, uint64_t from, uint64_t min_seq, bool seals,
			 struct shmfs_log_anchor *a, struct shmfs_log_entry *e,
			 uint64_t *first_nz)
{
	const struct shmfs_log *log = s->log;
	uint64_t p = shmfs_round_up(from, SHMFS_LOG_ALIGN);

	s->gave_up = false;
	if (first_nz)
		*first_nz = UINT64_MAX;
	while (p < log->size) {
		if (s->fd >= 0) {
			off_t at = (off_t)(s->fd_base + p);
			off_t data = lseek(s->fd, at, SEEK_DATA);
			if (data < 0 && errno == ENXIO)
				return false; /* holes to the end of the file */
			if (data > at) {
				p = shmfs_round_up((uint64_t)data - s->fd_base, SHMFS_LOG_ALIGN);
				continue;
			}
		}
		uint64_t n = SHMFS_MIN((uint64_t)SHMFS_LOG_SCAN_CHUNK, log->size - p);
		uint64_t rd = SHMFS_MIN(n + SHMFS_LR_HDR_SIZE, log->size - p);
		shmfs_log_scan_copy(s, p, s->chunk, rd);
		for (uint64_t i = 0; i + 8 <= n; i += SHMFS_LOG_ALIGN) {
			uint64_t w, at = p + i;
			uint32_t len;

			memcpy(&w, s->chunk + i, sizeof(w));
			if (!w)
				continue;
			if (first_nz && *first_nz == UINT64_MAX)
				*first_nz = at;
			if (log->size - at < SHMFS_LR_HDR_SIZE || i + SHMFS_LR_HDR_SIZE > rd)
				continue;
			if (w & SHMFS_LR_SEAL) {
				uint64_t sq = w & ~SHMFS_LR_SEAL;
				if (!seals || sq < min_seq || sq == 0 || sq > SHMFS_LR_SEQ_MAX ||
				    at + SHMFS_LOG_SEAL_SKIP > log->size - SHMFS_LR_HDR_SIZE)
					continue;
				if (!scan_afford(s, SHMFS_LR_HDR_SIZE))
					return false;
				enum shmfs_log_status st = shmfs_log_read(log, at + SHMFS_LOG_SEAL_SKIP,
									 sq, e, s->buf);
				if (st == SHMFS_LOG_REC || st == SHMFS_LOG_SEALED) {
					*a = (struct shmfs_log_anchor){ at, sq, true };
					return true;
				}
				continue;
			}
			if (w < min_seq || w > SHMFS_LR_SEQ_MAX)
				continue;
			memcpy(&len, s->chunk + i + offsetof(struct shmfs_log_rec, lr_len), sizeof(len));
			if (len > SHMFS_LR_PAYLOAD_MAX)
				continue;
			if (!scan_afford(s, SHMFS_LR_HDR_SIZE + len))
				return false;
			if (shmfs_log_read(log, at, 0, e, s->buf) == SHMFS_LOG_REC &&
			    e->hdr.lr_seq >= min_seq) {
				*a = (struct shmfs_log_anchor){ at, e->hdr.lr_seq, false };
				return true;
			}
		}
		p += n;
	}
	return false;
}
