/* SPDX-License-Identifier: MIT */
/*
 * The filesystem object: format, open (replay), and the write path.
 *
 * Layers: region (mapping) -> super (validated geometry) -> log (records)
 * -> ns (what records mean) -> coord (who may append).  This file strings
 * them together and owns the one place where metadata changes commit:
 * shmfs_fs_commit(), which checks a record against the namespace, appends
 * it, and applies it, all under the cross-host lock and fs->replay_lock.
 *
 * Lock order: fs->replay_lock, then the cross-host metadata lock.
 * A commit that fails after publication (out of memory while applying)
 * sets fs->fatal: this host's view no longer matches the log, so it stops
 * writing (LMDB's sticky error), while readers keep working.
 */
#include "shmfs/core.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "shmfs/coord.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

int shmfs_fs_format(struct shmfs_region *r, const struct shmfs_mkfs_params *p,
		    uint32_t root_mode, uint32_t root_uid, uint32_t root_gid,
		    struct shmfs_super *sb, char *err, size_t errlen)
{
	struct shmfs_log log;
	struct shmfs_ctl *ctl;
	uint8_t root[sizeof(struct shmfs_lr_create)];
	struct shmfs_log_rec hdr;
	uint64_t next;
	int rc;

	if (r->readonly) {
		shmfs_errf(err, errlen, "region is mapped read-only");
		return -EROFS;
	}
	rc = shmfs_super_layout(r->size, r->align, p, sb, err, errlen);
	if (rc)
		return rc;
	/* Metadata only, never the data area: holes where the backend can. */
	rc = shmfs_region_zero(r, 0, sb->sb_log_off + sb->sb_log_size);
	if (rc) {
		shmfs_errf(err, errlen, "cannot clear the metadata area: %s", strerror(-rc));
		return rc;
	}
	ctl = (struct shmfs_ctl *)(r->base + SHMFS_CTL_OFF);
	ctl->ctl_magic = SHMFS_CTL_MAGIC;

	log = (struct shmfs_log){ r->base + sb->sb_log_off, sb->sb_log_size, sb->sb_log_seed };
	uint32_t len = shmfs_rec_root(root, root_mode, root_uid, root_gid);
	memset(&hdr, 0, sizeof(hdr));
	hdr.lr_type = SHMFS_LR_CREATE;
	hdr.lr_len = len;
	hdr.lr_time = sb->sb_mkfs_time;
	rc = shmfs_log_append(&log, 0, 1, &hdr, root, &next);
	if (rc) {
		shmfs_errf(err, errlen, "cannot write the root directory: %s", strerror(-rc));
		return rc;
	}
	/* The superblocks last: until they exist this is not a filesystem. */
	shmfs_super_write(r, sb);
	return 0;
}

int shmfs_fs_prepare(struct shmfs_region *r, const struct shmfs_fs_opts *o,
		     struct shmfs_fs **out, char *err, size_t errlen)
{
	struct shmfs_fs *fs;
	char other[200];
	int rc;

	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->region = r;
	fs->coord.slot = -1;
	pthread_mutex_init(&fs->replay_lock, NULL);
	fs->seq = 1;
	rc = shmfs_super_read(r, &fs->sb, NULL, err, errlen, other, sizeof(other));
	if (rc)
		goto fail;
	fs->readonly = o->readonly || r->readonly;
	if (!fs->readonly && (fs->sb.sb_feature_ro_compat & ~SHMFS_FEATURE_RO_COMPAT_SUPP)) {
		shmfs_errf(err, errlen, "unknown read-only-compatible features 0x%" PRIx64
			   ": mount read-only", fs->sb.sb_feature_ro_compat);
		rc = -EROFS;
		goto fail;
	}
	rc = shmfs_coord_init(&fs->coord, r->base, &fs->sb, fs->readonly, o->lease_ms);
	if (rc)
		goto fail;
	if (!fs->readonly && fs->coord.ctl->ctl_magic != SHMFS_CTL_MAGIC) {
		shmfs_errf(err, errlen, "control page is damaged (bad magic): run fsck.shmfs");
		rc = -EUCLEAN;
		goto fail;
	}
	fs->log = (struct shmfs_log){ r->base + fs->sb.sb_log_off, fs->sb.sb_log_size,
				      fs->sb.sb_log_seed };
	fs->on_reject = o->on_reject;
	fs->on_reject_ctx = o->on_reject_ctx;
	fs->rbuf = malloc(SHMFS_LR_PAYLOAD_MAX);
	if (!fs->rbuf) {
		rc = -ENOMEM;
		goto fail;
	}
	if (o->join && !fs->readonly) {
		rc = shmfs_host_join(&fs->coord, o->host_name,
				     o->tool ? SHMFS_HOST_TOOL : SHMFS_HOST_ACTIVE, err, errlen);
		if (rc)
			goto fail;
	}
	*out = fs;
	return 0;
fail:
	shmfs_fs_close(fs);
	return rc;
}

int shmfs_fs_finish(struct shmfs_fs *fs, char *err, size_t errlen)
{
	int rc;

	/* A create record takes about 100 bytes of log. */
	fs->ns = shmfs_ns_new(fs->sb.sb_data_size, fs->sb.sb_alloc_unit,
			      fs->sb.sb_log_size / 1024);
	if (!fs->ns) {
		shmfs_errf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fs->ns->self_host = fs->coord.slot;
	/* Nobody can read this namespace yet: replay may change it in place. */
	fs->ns->exclusive = true;
	rc = shmfs_fs_replay(fs);
	fs->ns->exclusive = false;
	if (rc == -ENOMEM) {
		shmfs_errf(err, errlen, "out of memory replaying the log");
		return rc;
	}
	return 0;
}

int shmfs_fs_open(struct shmfs_region *r, const struct shmfs_fs_opts *o,
		  struct shmfs_fs **out, char *err, size_t errlen)
{
	struct shmfs_fs *fs = NULL;
	int rc = shmfs_fs_prepare(r, o, &fs, err, errlen);

	if (rc)
		return rc;
	rc = shmfs_fs_finish(fs, err, errlen);
	if (rc) {
		shmfs_fs_close(fs);
		return rc;
	}
	*out = fs;
	return 0;
}

void shmfs_fs_close(struct shmfs_fs *fs)
{
	if (!fs)
		return;
	if (fs->coord.locked)
		shmfs_fs_unlock(fs);
	shmfs_coord_fini(&fs->coord);
	shmfs_ns_free(fs->ns);
	free(fs->rbuf);
	pthread_mutex_destroy(&fs->replay_lock);
	free(fs);
}

/* Tell other hosts what we have applied and what freed space we still
 * reach (fs/coord.c).  Under replay_lock. */
static void publish_progress(struct shmfs_fs *fs)
{
	shmfs_coord_publish_locked(&fs->coord, fs->ns, fs->seq);
}

/* Another host changed these inodes' contents: readers that cache what
 * they read (the kernel's page cache) compare generations. */
static void note_remote(struct shmfs_fs *fs, const struct shmfs_ns_changes *ch)
{
	for (unsigned i = 0; i < ch->n; i++) {
		if (ch->c[i].kind != SHMFS_NS_CONTENT)
			continue;
		rcu_read_lock();
		struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ch->c[i].ino);
		if (ip)
			__atomic_fetch_add(&ip->remote_gen, 1, __ATOMIC_RELAXED);
		rcu_read_unlock();
	}
}

/* Apply one verified record; deterministic on every host. */
static int replay_one(struct shmfs_fs *fs, const struct shmfs_log_entry *e)
{
	struct shmfs_replay_stats *st = &fs->stats;
	struct shmfs_ns_changes changes;
	struct shmfs_rec r;
	char why[160];
	int rc;

	rc = shmfs_rec_check(&e->hdr, e->payload, fs->sb.sb_alloc_unit, &r, why, sizeof(why));
	if (!rc)
		rc = shmfs_ns_apply_rec(fs->ns, &r, false, &changes, why, sizeof(why));
	if (rc == -ENOMEM)
		return rc;
	if (rc) {
		st->rejected++;
		if (fs->on_reject)
			fs->on_reject(fs->on_reject_ctx, e, why);
		shmfs_errf(st->last_reject, sizeof(st->last_reject), "record %" PRIu64 " (%s) at %"
			   PRIu64 ": %s", e->hdr.lr_seq, shmfs_lr_type_name(e->hdr.lr_type),
			   e->pos, why);
	} else {
		st->records++;
		note_remote(fs, &changes);
		if (fs->on_change)
			fs->on_change(fs->on_change_ctx, &r, &changes);
	}
	return 0;
}

static int replay_locked(struct shmfs_fs *fs)
{
	struct shmfs_log_entry e;
	int n = 0, rc;

	/* Stuck on a bad record: look at it again (cheap, one record), since
	 * a repair may have replaced it since; go on if it now reads well. */
	if (fs->stats.stuck) {
		if (shmfs_log_read(&fs->log, fs->pos, fs->seq, &e, fs->rbuf) == SHMFS_LOG_BAD)
			return -EUCLEAN;
		fs->stats.stuck = false;
		fs->stats.resumed++;
	}
	for (;;) {
		switch (shmfs_log_read(&fs->log, fs->pos, fs->seq, &e, fs->rbuf)) {
		case SHMFS_LOG_REC:
			rc = replay_one(fs, &e);
			if (rc)
				return rc;
			fs->pos = e.next_pos;
			fs->seq++;
			n++;
			continue;
		case SHMFS_LOG_SEALED:
			fs->stats.seals++;
			fs->pos = e.next_pos;
			continue;
		case SHMFS_LOG_END:
			break;
		case SHMFS_LOG_BAD:
			fs->stats.stuck = true;
			fs->stats.stuck_pos = fs->pos;
			memcpy(fs->stats.stuck_why, e.why, sizeof(fs->stats.stuck_why));
			return -EUCLEAN;
		}
		break;
	}
	if (n)
		publish_progress(fs);
	return n;
}

bool shmfs_fs_behind(struct shmfs_fs *fs)
{
	uint64_t pos = __atomic_load_n(&fs->pos, __ATOMIC_ACQUIRE);

	if (pos % SHMFS_LOG_ALIGN || pos + SHMFS_LR_HDR_SIZE > fs->log.size)
		return false;
	return __atomic_load_n((uint64_t *)(fs->log.base + pos), __ATOMIC_ACQUIRE) != 0;
}

int shmfs_fs_replay(struct shmfs_fs *fs)
{
	pthread_mutex_lock(&fs->replay_lock);
	int rc = replay_locked(fs);
	pthread_mutex_unlock(&fs->replay_lock);
	return rc;
}

int shmfs_fs_lock(struct shmfs_fs *fs)
{
	bool broke;
	int rc;

	if (fs->readonly)
		return -EROFS;
	if (fs->fatal)
		return fs->fatal;
	pthread_mutex_lock(&fs->replay_lock);
	rc = shmfs_lock_acquire(&fs->coord, &broke);
	if (rc)
		goto fail;
	/* Catch up with the tail, then seal it if the last holder died. */
	for (int tries = 0; ; tries++) {
		rc = replay_locked(fs);
		if (rc < 0)
			goto fail_release;
		if (!broke)
			break;
		uint64_t next;
		rc = shmfs_log_seal(&fs->log, fs->pos, fs->seq, &next);
		if (rc == 0) {
			fs->stats.seals++;
			fs->pos = next;
			break;
		}
		if (tries > 1000) /* the old holder keeps publishing: not dead */
			goto fail_release;
	}
	return 0;
fail_release:
	shmfs_lock_release(&fs->coord);
fail:
	pthread_mutex_unlock(&fs->replay_lock);
	return rc < 0 ? rc : -EIO;
}

void shmfs_fs_unlock(struct shmfs_fs *fs)
{
	if (!fs->coord.locked)
		return;
	shmfs_lock_release(&fs->coord);
	pthread_mutex_unlock(&fs->replay_lock);
}

int shmfs_fs_commit(struct shmfs_fs *fs, uint16_t type, uint16_t flags,
		    const void *payload, uint32_t len)
{
	struct shmfs_log_rec h;
	struct shmfs_rec r;
	char why[160];
	uint64_t next;
	int rc;

	if (!fs->coord.locked)
		return -ENOLCK;
	if (fs->fatal)
		return fs->fatal;
	if (len > SHMFS_LR_PAYLOAD_MAX)
		return -E2BIG;
	memset(&h, 0, sizeof(h));
	h.lr_type = type;
	h.lr_flags = flags;
	h.lr_len = len;
	h.lr_host = (uint16_t)fs->coord.slot;
	h.lr_lock_gen = (uint32_t)shmfs_lock_gen(fs->coord.lock_word);
	h.lr_time = shmfs_now_ns();
	h.lr_seq = fs->seq;
	rc = shmfs_rec_check(&h, payload, fs->sb.sb_alloc_unit, &r, why, sizeof(why));
	if (rc)
		return -EINVAL;
	rc = shmfs_ns_apply_rec(fs->ns, &r, true, NULL, why, sizeof(why));
	if (rc)
		return rc;
	/* The end of the log is kept for records that free things, so that a
	 * filesystem whose log is full can still be cleaned up. */
	uint64_t reserve = SHMFS_MIN(SHMFS_MAX(64u << 10, fs->log.size / 64), fs->log.size / 4);
	bool frees = type == SHMFS_LR_UNLINK || type == SHMFS_LR_RMDIR ||
		     type == SHMFS_LR_RELEASE || type == SHMFS_LR_EXTENT_UNMAP ||
		     type == SHMFS_LR_XATTR_REMOVE;
	if (!frees && fs->pos + shmfs_lr_stride(len) > fs->log.size - reserve)
		return -ENOSPC;
	if (!shmfs_lock_held(&fs->coord)) {
		fs->fatal = -ESTALE;
		return -ESTALE;
	}
	rc = shmfs_log_append(&fs->log, fs->pos, fs->seq, &h, payload, &next);
	if (rc) {
		if (rc == -ESTALE)
			fs->fatal = rc;
		return rc;
	}
	fs->pos = next;
	fs->seq++;
	rc = shmfs_ns_apply_rec(fs->ns, &r, false, NULL, why, sizeof(why));
	if (rc) {
		fs->fatal = -EIO;
		return -EIO;
	}
	fs->stats.records++;
	publish_progress(fs);
	return 0;
}

int shmfs_fs_alloc(struct shmfs_fs *fs, uint64_t want, uint64_t *first, uint64_t *got)
{
	if (!fs->coord.locked)
		return -ENOLCK;
	shmfs_coord_reap_locked(&fs->coord, fs->ns, fs->seq);
	return shmfs_alloc_find(&fs->ns->alloc, want, first, got);
}

uint64_t shmfs_fs_reap(struct shmfs_fs *fs)
{
	if (!__atomic_load_n(&fs->ns->npending, __ATOMIC_RELAXED))
		return 0;
	pthread_mutex_lock(&fs->replay_lock);
	uint64_t n = 0;
	if (fs->ns->npending)
		n = shmfs_coord_reap_locked(&fs->coord, fs->ns, fs->seq);
	pthread_mutex_unlock(&fs->replay_lock);
	return n;
}

void shmfs_fs_open_inode(struct shmfs_fs *fs, uint64_t ino)
{
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (ip)
		__atomic_fetch_add(&ip->nopen, 1, __ATOMIC_ACQ_REL);
	rcu_read_unlock();
}

void shmfs_fs_close_inode(struct shmfs_fs *fs, uint64_t ino)
{
	bool last = false;

	pthread_mutex_lock(&fs->replay_lock);
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (ip)
		last = __atomic_sub_fetch(&ip->nopen, 1, __ATOMIC_ACQ_REL) == 0;
	rcu_read_unlock();
	if (last) {
		shmfs_ns_forget(fs->ns, ino);
		publish_progress(fs);
	}
	pthread_mutex_unlock(&fs->replay_lock);
}

bool shmfs_fs_wait_pending(struct shmfs_fs *fs, uint64_t *deadline)
{
	struct timespec ts = { 0, 5000000 };
	uint64_t now = shmfs_mono_ns(), lease = fs->coord.lease_ns;

	if (!*deadline)
		*deadline = now + lease + lease / 2;
	if (now >= *deadline)
		return false;
	pthread_mutex_lock(&fs->replay_lock);
	/* reusable since the allocator looked (a host just found dead, or
	 * the follower reaped): try again at once */
	enum shmfs_coord_pending p = shmfs_coord_pending_locked(&fs->coord, fs->ns, fs->seq);
	pthread_mutex_unlock(&fs->replay_lock);
	if (p == SHMFS_PENDING_NONE)
		return false;
	if (p == SHMFS_PENDING_WAIT)
		nanosleep(&ts, NULL);
	return true;
}

void shmfs_fs_heartbeat(struct shmfs_fs *fs)
{
	shmfs_host_beat(&fs->coord);
}

void shmfs_fs_free_stray_lock(struct shmfs_fs *fs)
{
	uint64_t next;
	bool broke;

	if (fs->readonly || !shmfs_lock_names_us(&fs->coord))
		return;
	/* Busy: a thread of ours holds the lock, or is taking it (and will
	 * break a stray word itself). */
	if (pthread_mutex_trylock(&fs->replay_lock))
		return;
	if (!fs->coord.locked && shmfs_lock_acquire(&fs->coord, &broke) == 0) {
		/* As any lock breaker: whatever the "holder" half-wrote at the
		 * tail is sealed off, never replayed. */
		if (broke && replay_locked(fs) >= 0 &&
		    shmfs_log_seal(&fs->log, fs->pos, fs->seq, &next) == 0) {
			fs->stats.seals++;
			fs->pos = next;
		}
		shmfs_lock_release(&fs->coord);
	}
	pthread_mutex_unlock(&fs->replay_lock);
}
