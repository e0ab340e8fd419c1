/* SPDX-License-Identifier: MIT */
/*
 * Repair primitives: the few writes fsck.shmfs makes to a region outside
 * the normal write path (shmfs_fs_lock / shmfs_fs_commit).  Each one fixes
 * one on-media structure in place and nothing else, so that each can be
 * tested alone over a memory region.
 *
 * They never decide anything: the caller has checked the region, watched
 * the host table for live hosts, and (for log edits) holds the metadata
 * lock.  They refuse read-only regions (-EROFS) and bound every offset.
 *
 * Log edits follow the publication protocol of fs/log.c: a record that is
 * rewritten is first unpublished (lr_seq := 0), then its header and payload
 * are written, then lr_seq is stored with release ordering -- so a reader
 * that races with the repair sees the end of the log or the new record,
 * never a torn one.
 */
#ifndef SHMFS_REPAIR_H
#define SHMFS_REPAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"
#include "shmfs/log.h"
#include "shmfs/region.h"

/* The lr_csum a record with header h, payload and sequence seq carries
 * (what shmfs_log_append computes). */
uint64_t shmfs_repair_rec_csum(const struct shmfs_log *log, const struct shmfs_log_rec *h,
			       uint64_t seq, const void *payload);

/*
 * Would the record at pos verify if its lr_seq word held seq?  Copies the
 * record out like shmfs_log_read (into e and buf, SHMFS_LR_PAYLOAD_MAX
 * bytes) and returns 0 if its checksum matches with seq, else -EUCLEAN
 * (-EINVAL for a position outside the log).  Tells a flipped or zeroed
 * lr_seq word from a damaged record.
 */
int shmfs_repair_probe_seq(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
			   struct shmfs_log_entry *e, void *buf);

/* Store word into the lr_seq word at pos (release ordering). */
int shmfs_repair_set_seq(const struct shmfs_log *log, uint64_t pos, uint64_t word);

/*
 * Rewrite the bytes [pos, pos + stride) of the log as one NOOP record with
 * sequence seq: unpublish, write the header (lr_host, lr_lock_gen and
 * lr_time from tmpl if given), keep or zero the payload (stride - 40
 * bytes), checksum it, publish.  stride must be a multiple of 8 from
 * SHMFS_LR_HDR_SIZE to shmfs_lr_stride(SHMFS_LR_PAYLOAD_MAX); the payload
 * length is stride - 40, so the next record starts where it did.
 */
int shmfs_repair_noop(const struct shmfs_log *log, uint64_t pos, uint64_t seq, uint64_t stride,
		      const struct shmfs_log_rec *tmpl, bool zero_payload);

/*
 * Make the log end at pos: zero its lr_seq word first (readers stop
 * there), then every byte up to end (holes on regular files).  pos and end
 * are log offsets, pos 8-byte aligned, pos <= end <= sb_log_size.
 */
int shmfs_repair_log_cut(struct shmfs_region *r, const struct shmfs_super *sb, uint64_t pos,
			 uint64_t end);

/* Overwrite superblock copy which (0 primary, 1 backup) with good (which
 * must validate), and zero the rest of its 4 KiB page. */
int shmfs_repair_super(struct shmfs_region *r, unsigned which, const struct shmfs_super *good);

/* Rewrite the control page around the lock word: ctl_magic, and zeros in
 * every padding and reserved field.  ctl_lock is not touched. */
int shmfs_repair_ctl(struct shmfs_region *r, const struct shmfs_super *sb);

/*
 * Release the metadata lock held by a dead owner: compare-and-exchange
 * ctl_lock from seen to free (owner 0, same generation, as a normal
 * release leaves it).  -EAGAIN if the word is no longer seen (the lock
 * changed hands: its owner is not dead).
 */
int shmfs_repair_lock_release(struct shmfs_region *r, const struct shmfs_super *sb,
			      uint64_t seen);

/*
 * Free host slot i of a host seen dead: take the slot by compare-and-
 * exchange of hs_token from seen_token (so a host claiming it meanwhile
 * wins), give up with -EBUSY if hs_heartbeat is no longer seen_beat (it
 * came back), else zero the slot and leave it free (token 0).  -EAGAIN if
 * the token changed.
 */
int shmfs_repair_host_free(struct shmfs_region *r, const struct shmfs_super *sb, uint32_t i,
			   uint64_t seen_token, uint64_t seen_beat);

#endif /* SHMFS_REPAIR_H */
