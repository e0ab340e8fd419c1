/* SPDX-License-Identifier: MIT */
/*
 * Repair primitives for fsck.shmfs (see include/shmfs/repair.h).
 *
 * What each one writes, and in which order:
 *
 *   superblock   the 512 bytes of a good copy, then zeros to the end of
 *                the page (format.md: "rest zero");
 *   control page ctl_magic and the zero fields, never ctl_lock;
 *   ctl_lock     one CAS, from the word seen dead to the free word;
 *   host slot    CAS hs_token to a private value (the slot is ours), state
 *                TOOL while the rest is zeroed, then FREE, then token 0;
 *   log record   lr_seq := 0, payload, header bytes 8..39, lr_seq := seq
 *                (release): fs/log.c's publication order;
 *   log cut      lr_seq := 0 at the new end, then the bytes after it.
 *
 * None of them reads more than it was told to, and none trusts the region:
 * the caller passes a validated superblock.
 */
#include "shmfs/repair.h"

#include <errno.h>
#include <string.h>

#include "shmfs/super.h"
#include "shmfs/util.h"

uint64_t shmfs_repair_rec_csum(const struct shmfs_log *log, const struct shmfs_log_rec *h,
			       uint64_t seq, const void *payload)
{
	struct shmfs_log_rec tmp = *h;

	tmp.lr_seq = seq;
	uint64_t pseed = shmfs_hash(payload, h->lr_len, log->seed);
	return shmfs_hash(&tmp, offsetof(struct shmfs_log_rec, lr_csum), pseed);
}

static bool log_pos_ok(const struct shmfs_log *log, uint64_t pos)
{
	return pos % SHMFS_LOG_ALIGN == 0 && pos <= log->size &&
	       log->size - pos >= SHMFS_LR_HDR_SIZE;
}

int shmfs_repair_probe_seq(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
			   struct shmfs_log_entry *e, void *buf)
{
	e->pos = pos;
	e->next_pos = pos;
	e->payload = buf;
	e->why[0] = 0;
	if (!log_pos_ok(log, pos) || seq == 0 || seq > SHMFS_LR_SEQ_MAX)
		return -EINVAL;
	memcpy(&e->hdr, log->base + pos, sizeof(e->hdr));
	if (e->hdr.lr_len > SHMFS_LR_PAYLOAD_MAX ||
	    shmfs_lr_stride(e->hdr.lr_len) > log->size - pos)
		return -EUCLEAN;
	memcpy(buf, log->base + pos + SHMFS_LR_HDR_SIZE, e->hdr.lr_len);
	if (shmfs_repair_rec_csum(log, &e->hdr, seq, buf) != e->hdr.lr_csum)
		return -EUCLEAN;
	e->hdr.lr_seq = seq;
	e->next_pos = pos + shmfs_lr_stride(e->hdr.lr_len);
	return 0;
}

int shmfs_repair_set_seq(const struct shmfs_log *log, uint64_t pos, uint64_t word)
{
	if (!log_pos_ok(log, pos))
		return -EINVAL;
	__atomic_store_n((uint64_t *)(log->base + pos), word, __ATOMIC_RELEASE);
	return 0;
}

int shmfs_repair_noop(const struct shmfs_log *log, uint64_t pos, uint64_t seq, uint64_t stride,
		      const struct shmfs_log_rec *tmpl, bool zero_payload)
{
	static uint8_t payload[SHMFS_LR_PAYLOAD_MAX];
	struct shmfs_log_rec h;
	uint64_t len;

	if (!log_pos_ok(log, pos) || seq == 0 || seq > SHMFS_LR_SEQ_MAX ||
	    stride % SHMFS_LOG_ALIGN || stride < SHMFS_LR_HDR_SIZE ||
	    stride > shmfs_lr_stride(SHMFS_LR_PAYLOAD_MAX) || stride > log->size - pos)
		return -EINVAL;
	len = stride - SHMFS_LR_HDR_SIZE;
	memset(&h, 0, sizeof(h));
	h.lr_type = SHMFS_LR_NOOP;
	h.lr_len = (uint32_t)len;
	if (tmpl) {
		h.lr_host = tmpl->lr_host;
		h.lr_lock_gen = tmpl->lr_lock_gen;
		h.lr_time = tmpl->lr_time;
	} else {
		h.lr_time = shmfs_now_ns();
	}
	/* Unpublish first: from here on readers see the end of the log. */
	__atomic_store_n((uint64_t *)(log->base + pos), 0, __ATOMIC_SEQ_CST);
	if (zero_payload)
		memset(log->base + pos + SHMFS_LR_HDR_SIZE, 0, len);
	/* Checksum what is in the region now, from a private copy. */
	memcpy(payload, log->base + pos + SHMFS_LR_HDR_SIZE, len);
	h.lr_csum = shmfs_repair_rec_csum(log, &h, seq, payload);
	memcpy(log->base + pos + sizeof(h.lr_seq), (const uint8_t *)&h + sizeof(h.lr_seq),
	       sizeof(h) - sizeof(h.lr_seq));
	__atomic_store_n((uint64_t *)(log->base + pos), seq, __ATOMIC_RELEASE);
	return 0;
}

int shmfs_repair_log_cut(struct shmfs_region *r, const struct shmfs_super *sb, uint64_t pos,
			 uint64_t end)
{
	if (r->readonly)
		return -EROFS;
	if (pos % SHMFS_LOG_ALIGN || pos > end || end > sb->sb_log_size ||
	    sb->sb_log_off + sb->sb_log_size > r->size)
		return -EINVAL;
	if (pos == end)
		return 0;
	if (end - pos >= sizeof(uint64_t))
		__atomic_store_n((uint64_t *)(r->base + sb->sb_log_off + pos), 0, __ATOMIC_SEQ_CST);
	return shmfs_region_zero(r, sb->sb_log_off + pos, end - pos);
}

int shmfs_repair_super(struct shmfs_region *r, unsigned which, const struct shmfs_super *good)
{
	char why[200];
	uint64_t off = which ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF;

	if (r->readonly)
		return -EROFS;
	if (which > 1 || r->size < SHMFS_HOSTS_OFF)
		return -EINVAL;
	if (shmfs_super_check(good, r->size, why, sizeof(why)))
		return -EINVAL;
	memset(r->base + off + sizeof(*good), 0, SHMFS_PAGE - sizeof(*good));
	memcpy(r->base + off, good, sizeof(*good));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return 0;
}

int shmfs_repair_ctl(struct shmfs_region *r, const struct shmfs_super *sb)
{
	if (r->readonly)
		return -EROFS;
	if (sb->sb_ctl_off + SHMFS_PAGE > r->size)
		return -EINVAL;
	struct shmfs_ctl *ctl = (struct shmfs_ctl *)(r->base + sb->sb_ctl_off);
	memset(ctl->ctl_pad0, 0, sizeof(ctl->ctl_pad0));
	memset(ctl->ctl_pad1, 0, sizeof(ctl->ctl_pad1));
	memset(ctl->ctl_reserved, 0, sizeof(ctl->ctl_reserved));
	__atomic_store_n(&ctl->ctl_magic, SHMFS_CTL_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int shmfs_repair_lock_release(struct shmfs_region *r, const struct shmfs_super *sb,
			      uint64_t seen)
{
	if (r->readonly)
		return -EROFS;
	if (sb->sb_ctl_off + SHMFS_PAGE > r->size)
		return -EINVAL;
	struct shmfs_ctl *ctl = (struct shmfs_ctl *)(r->base + sb->sb_ctl_off);
	uint64_t expected = seen;
	if (!__atomic_compare_exchange_n(&ctl->ctl_lock, &expected, seen & SHMFS_LOCK_GEN_MASK,
					 false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EAGAIN;
	return 0;
}

int shmfs_repair_host_free(struct shmfs_region *r, const struct shmfs_super *sb, uint32_t i,
			   uint64_t seen_token, uint64_t seen_beat)
{
	uint64_t mine, expected = seen_token;

	if (r->readonly)
		return -EROFS;
	if (i >= sb->sb_max_hosts ||
	    sb->sb_hosts_off + (uint64_t)sb->sb_max_hosts * SHMFS_HOST_SLOT_SIZE > r->size)
		return -EINVAL;
	struct shmfs_host *h = shmfs_host_slot(r->base, sb, i);
	do {
		if (shmfs_random(&mine, sizeof(mine)))
			return -EIO;
	} while (!mine || mine == seen_token);
	if (!__atomic_compare_exchange_n(&h->hs_token, &expected, mine, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return -EAGAIN;
	if (__atomic_load_n(&h->hs_heartbeat, __ATOMIC_ACQUIRE) != seen_beat) {
		/* It beat after all: give the slot back untouched. */
		expected = mine;
		__atomic_compare_exchange_n(&h->hs_token, &expected, seen_token, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
		return -EBUSY;
	}
	/* Not free while it is being cleared, so nobody claims it half done. */
	__atomic_store_n(&h->hs_state, (uint32_t)SHMFS_HOST_TOOL, __ATOMIC_RELEASE);
	memset((uint8_t *)h + offsetof(struct shmfs_host, hs_heartbeat), 0,
	       offsetof(struct shmfs_host, hs_state) - offsetof(struct shmfs_host, hs_heartbeat));
	memset((uint8_t *)h + offsetof(struct shmfs_host, hs_flags), 0,
	       SHMFS_HOST_SLOT_SIZE - offsetof(struct shmfs_host, hs_flags));
	__atomic_store_n(&h->hs_state, (uint32_t)SHMFS_HOST_FREE, __ATOMIC_RELEASE);
	expected = mine;
	__atomic_compare_exchange_n(&h->hs_token, &expected, 0, false, __ATOMIC_ACQ_REL,
				    __ATOMIC_RELAXED);
	return 0;
}
