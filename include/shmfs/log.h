/* SPDX-License-Identifier: MIT */
/*
 * Log layer: read, verify, append and seal records of the metadata log.
 * See fs/log.c for the publication protocol.
 */
#ifndef SHMFS_LOG_H
#define SHMFS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"
#include "shmfs/rec.h" /* shmfs_lr_check_shape, shmfs_lr_type_name */

struct shmfs_log {
	uint8_t *base;          /* region base + sb_log_off */
	uint64_t size;          /* sb_log_size */
	uint64_t seed;          /* sb_log_seed */
};

enum shmfs_log_status {
	SHMFS_LOG_REC = 0,      /* a valid record: e->hdr, e->payload */
	SHMFS_LOG_SEALED,       /* an abandoned slot: go on at e->next_pos */
	SHMFS_LOG_END,          /* unpublished: the log ends at pos */
	SHMFS_LOG_BAD,          /* published but invalid: e->why says how */
};

struct shmfs_log_entry {
	struct shmfs_log_rec hdr;   /* private copy of the header */
	uint8_t *payload;           /* private copy (the caller's buffer) */
	uint64_t pos;               /* where it was read */
	uint64_t next_pos;          /* where the next record starts */
	char why[160];              /* SHMFS_LOG_BAD: what was wrong */
};

/*
 * Read the record at byte pos of the log, expected to carry sequence seq
 * (seq 0: accept any sequence number, for tools that scan).  Everything is
 * copied out of the region before it is checked, so a peer changing bytes
 * afterwards cannot change what was verified.  buf must hold
 * SHMFS_LR_PAYLOAD_MAX bytes.  Never reads outside the log.
 */
enum shmfs_log_status shmfs_log_read(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
				     struct shmfs_log_entry *e, void *buf);

/*
 * Append: write hdr (lr_seq is ignored) and payload at pos, then publish by
 * one compare-and-exchange (release) of lr_seq from 0 to seq.  The caller
 * holds the metadata lock and has replayed up to pos.  Returns 0 and sets
 * *next_pos, -ENOSPC if the record does not fit, -ESTALE if the slot was
 * already published or sealed (this holder lost its lease).
 */
int shmfs_log_append(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
		     struct shmfs_log_rec *hdr, const void *payload, uint64_t *next_pos);

/*
 * Seal the slot at pos (where record seq would start) after breaking a dead
 * holder's lock: compare-and-exchange lr_seq from 0 to SHMFS_LR_SEAL|seq.
 * Returns 0 with *next_pos = pos + SHMFS_LOG_SEAL_SKIP (or the log size, if
 * that is past the end), or -EEXIST if the old holder published a record
 * there first (read it and go on normally).
 */
int shmfs_log_seal(const struct shmfs_log *log, uint64_t pos, uint64_t seq, uint64_t *next_pos);


/*
 * Resynchronising past damage (tools only: fsck, dump).  A scan looks, from
 * a position on, at every aligned word for the start of a record that
 * verifies, or of a seal whose next record verifies.  Checksumming
 * candidates has a work budget for all the scans of one walk, so a hostile
 * log full of near-records cannot make a tool run for ever.
 */
#define SHMFS_LOG_SCAN_CHUNK  (256u * 1024)
#define SHMFS_LOG_SCAN_BUDGET (8ull << 30)  /* bytes checksummed per walk */

struct shmfs_log_scan {
	const struct shmfs_log *log;
	int fd;                 /* the region's file, or -1: read with pread,
	                         * holes (SEEK_DATA) skipped without a look */
	uint64_t fd_base;       /* file offset of the log's first byte */
	uint64_t hashed;        /* bytes checksummed so far */
	bool gave_up;           /* the budget ran out */
	uint8_t *chunk;         /* SHMFS_LOG_SCAN_CHUNK + SHMFS_LR_HDR_SIZE */
	uint8_t *buf;           /* SHMFS_LR_PAYLOAD_MAX, for shmfs_log_read */
};

struct shmfs_log_anchor {
	uint64_t pos;           /* a record, or a seal, starts here */
	uint64_t seq;           /* its sequence number (a seal's: the record
	                         * it replaces) */
	bool seal;
};

/* Set up s (allocates its buffers; fd may be -1).  0 or -ENOMEM. */
int shmfs_log_scan_init(struct shmfs_log_scan *s, const struct shmfs_log *log, int fd,
			uint64_t fd_base);
void shmfs_log_scan_fini(struct shmfs_log_scan *s);

/* Copy n bytes of the log at pos (through the file when there is one). */
void shmfs_log_scan_copy(struct shmfs_log_scan *s, uint64_t pos, void *dst, size_t n);

/*
 * The first anchor at or after from: a record that verifies with a sequence
 * number >= min_seq (min_seq 0: any), or, with seals, a seal of a number >=
 * min_seq whose next record (or seal) verifies.  A record's copy is left in
 * *e (for a seal: its next record).  *first_nz, when not NULL, gets the
 * first nonzero word at or after from (UINT64_MAX if none).  Returns true,
 * or false when there is none (s->gave_up if the budget ran out).
 */
bool shmfs_log_scan_next(struct shmfs_log_scan *s, uint64_t from, uint64_t min_seq, bool seals,
			 struct shmfs_log_anchor *a, struct shmfs_log_entry *e,
			 uint64_t *first_nz);

#endif /* SHMFS_LOG_H */
