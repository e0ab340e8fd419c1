/* SPDX-License-Identifier: MIT */
/*
 * The daemon's background threads: the follower and the heartbeat.
 *
 * The follower polls the log tail every millisecond (one atomic load),
 * replays what other hosts appended, and tells the kernel what changed
 * (notify_inval_entry / _inode / notify_delete) -- always from its own
 * thread, never from a request handler, where an invalidation can deadlock
 * against the kernel's own locks.  Replay calls on_change() for each record
 * of another host (under the fs replay lock), which queues what the kernel
 * must forget; the follower sends the queue after each replay and counts
 * what it has sent, so that an open can wait until the kernel has been
 * told everything up to the tail it caught up with (close-to-open).
 *
 * Between replays the follower also releases freed space nobody can reach
 * any more, frees a lock word left naming this host, and now and then
 * reaps orphans and room reserved ahead that dead hosts left behind.
 *
 * The heartbeat thread keeps this host's lease alive and says once if
 * another host has taken the slot over.
 *
 * Lock order: the fs replay lock, then the queue's lock (on_change runs
 * under the first and takes the second); the retry list's lock is taken
 * alone.
 */
#include "daemon.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/util.h"

/* ---- invalidations: queued by replay, sent by the follower ------------- */

struct inval {
	enum { INV_INODE, INV_ENTRY, INV_DELETE } kind;
	uint64_t parent, ino;
	uint16_t len;
	char name[SHMFS_NAME_MAX + 1];
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;            /* sent moved */
	struct inval *q;                /* under lock */
	size_t len, cap;                /* under lock */
	uint64_t queued, sent;          /* under lock */
} invq = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static volatile bool stop;             /* the session loop has ended */
static pthread_t follower, beater;

static void enqueue(int kind, uint64_t parent, uint64_t ino, const char *name, size_t len)
{
	pthread_mutex_lock(&invq.lock);
	if (invq.len == invq.cap) {
		size_t cap = invq.cap ? invq.cap * 2 : 256;
		struct inval *q = realloc(invq.q, cap * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&invq.lock);
			return;
		}
		invq.q = q;
		invq.cap = cap;
	}
	struct inval *v = &invq.q[invq.len++];
	v->kind = kind;
	v->parent = parent;
	v->ino = ino;
	v->len = (uint16_t)SHMFS_MIN(len, SHMFS_NAME_MAX);
	if (name)
		memcpy(v->name, name, v->len);
	v->name[v->len] = 0;
	invq.queued++;
	pthread_mutex_unlock(&invq.lock);
}

void shmfs_follower_inval_inode(uint64_t ino)
{
	enqueue(INV_INODE, 0, ino, NULL, 0);
}

/* Called by replay (under the fs replay lock) for every record another host
 * wrote, with what it changed: remember what the kernel must forget. */
static void on_change(void *ctx, const struct shmfs_rec *r, const struct shmfs_ns_changes *ch)
{
	static const int kinds[] = {
		[SHMFS_NS_ENTRY] = INV_ENTRY,
		[SHMFS_NS_ENTRY_GONE] = INV_DELETE,
		[SHMFS_NS_ATTR] = INV_INODE,
		[SHMFS_NS_CONTENT] = INV_INODE,
	};
	(void)ctx;
	(void)r;

	for (unsigned i = 0; i < ch->n; i++) {
		const struct shmfs_ns_change *c = &ch->c[i];
		enqueue(kinds[c->kind], c->dir, c->ino, c->name, c->name_len);
	}
}

/* Replay met a record whose checksum is right but whose contents no correct
 * writer produces: every host skips it.  Say which (a flood is cut short). */
void shmfs_follower_on_reject(void *ctx, const struct shmfs_log_entry *e, const char *why)
{
	static unsigned long n;
	(void)ctx;

	if (++n <= 100)
		shmfs_daemon_log(LOG_ERR, "rejected record %" PRIu64 " (%s) at log offset %" PRIu64
				 ", skipped: %s (run fsck.shmfs)", e->hdr.lr_seq,
				 shmfs_lr_type_name(e->hdr.lr_type), e->pos, why);
	if (n == 100 || (n > 100 && n % 10000 == 0))
		shmfs_daemon_log(LOG_ERR, "%lu records rejected so far; not reporting each one", n);
}

/*
 * An inode invalidation that finds no inode in the kernel can still lose a
 * race: a lookup that read the old attributes just before replay may
 * install them just after.  Such invalidations are sent again 5 ms and
 * 50 ms later by the follower, and at once by an open of the inode, which
 * must not see attributes older than what it caught up with (close-to-open).
 */
#define RETRY_MAX 4096
static struct retry {
	uint64_t ino, due;
	int left;
} retries[RETRY_MAX];
static size_t nretries;
static pthread_mutex_t rlock = PTHREAD_MUTEX_INITIALIZER;

static void retry_later(uint64_t ino, uint64_t now)
{
	pthread_mutex_lock(&rlock);
	if (nretries == RETRY_MAX)
		memmove(retries, retries + 1, --nretries * sizeof(retries[0]));
	retries[nretries++] = (struct retry){ ino, now + 5000000, 2 };
	pthread_mutex_unlock(&rlock);
}

static void send_retries(void)
{
	uint64_t now = shmfs_mono_ns(), due[64];
	size_t k = 0, n = 0;

	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nretries; i++) {
		struct retry r = retries[i];
		if (r.due <= now && n < SHMFS_ARRAY_SIZE(due)) {
			due[n++] = r.ino;
			if (--r.left == 0)
				continue;
			r.due = now + 45000000;
		}
		retries[k++] = r;
	}
	nretries = k;
	pthread_mutex_unlock(&rlock);
	for (size_t i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(dmn.se, due[i], 0, 0);
}

/* Only the attributes: no page of an inode the kernel has just met can be
 * stale, and touching pages from inside a request could deadlock. */
void shmfs_follower_retry_now(uint64_t ino)
{
	bool found = false;

	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nretries && !found; i++)
		found = retries[i].ino == ino;
	pthread_mutex_unlock(&rlock);
	if (found)
		fuse_lowlevel_notify_inval_inode(dmn.se, ino, -1, 0);
}

/* Send what is queued.  Follower thread only. */
static void send_invalidations(void)
{
	struct inval *q;
	size_t n;
	uint64_t upto;

	pthread_mutex_lock(&invq.lock);
	q = invq.q;
	n = invq.len;
	upto = invq.queued;
	invq.q = NULL;
	invq.len = invq.cap = 0;
	pthread_mutex_unlock(&invq.lock);

	for (size_t i = 0; i < n; i++) {
		struct inval *v = &q[i];
		switch (v->kind) {
		case INV_INODE:
			if (fuse_lowlevel_notify_inval_inode(dmn.se, v->ino, 0, 0) == -ENOENT)
				retry_later(v->ino, shmfs_mono_ns());
			break;
		case INV_ENTRY:
			fuse_lowlevel_notify_inval_entry(dmn.se, v->parent, v->name, v->len);
			break;
		case INV_DELETE:
			if (fuse_lowlevel_notify_delete(dmn.se, v->parent, v->ino, v->name, v->len))
				fuse_lowlevel_notify_inval_entry(dmn.se, v->parent, v->name, v->len);
			break;
		}
	}
	free(q);
	pthread_mutex_lock(&invq.lock);
	invq.sent = upto;
	pthread_cond_broadcast(&invq.cond);
	pthread_mutex_unlock(&invq.lock);
}

bool shmfs_follower_catch_up(void)
{
	bool told;
	struct timespec ts;

	shmfs_fs_replay(dmn.fs);
	pthread_mutex_lock(&invq.lock);
	uint64_t want = invq.queued;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 200 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (invq.sent < want && !stop)
		if (pthread_cond_timedwait(&invq.cond, &invq.lock, &ts))
			break;
	told = invq.sent >= want;
	pthread_mutex_unlock(&invq.lock);
	return told;
}

/* ---- the threads ------------------------------------------------------- */

static void say_stuck(void)
{
	shmfs_daemon_log(LOG_ERR, "log replay stopped at %s; serving what is intact "
			 "(run fsck.shmfs)", dmn.fs->stats.stuck_why);
}

static void *follower_main(void *arg)
{
	struct timespec tick = { 0, 1000000 };
	unsigned n = 0;
	bool stuck_reported = false;
	(void)arg;

	rcu_register_thread();
	while (!stop) {
		int rc = shmfs_fs_replay(dmn.fs);
		if (rc == -EUCLEAN && !stuck_reported) {
			say_stuck();
			stuck_reported = true;
		} else if (rc != -EUCLEAN && stuck_reported) {
			shmfs_daemon_log(LOG_NOTICE,
					 "log replay resumed: the bad record was repaired");
			stuck_reported = false;
		}
		send_invalidations();
		send_retries();
		if (n % 10 == 0)
			shmfs_fs_reap(dmn.fs);
		if (n % 10 == 5 && !dmn.readonly)
			shmfs_fs_free_stray_lock(dmn.fs);
		if (++n % 200 == 0 && !dmn.readonly) {
			shmfs_op_reap_orphans(dmn.fs, false);
			shmfs_op_reap_ahead(dmn.fs, false);
		}
		nanosleep(&tick, NULL);
	}
	rcu_unregister_thread();
	return NULL;
}

static void *beater_main(void *arg)
{
	struct timespec t = { dmn.fs->sb.sb_heartbeat_ms / 1000,
			      (long)(dmn.fs->sb.sb_heartbeat_ms % 1000) * 1000000L };
	bool lost_reported = false;
	(void)arg;

	while (!stop) {
		shmfs_fs_heartbeat(dmn.fs);
		if (!lost_reported && shmfs_host_lost(&dmn.fs->coord)) {
			shmfs_daemon_log(LOG_ERR, "host slot %d was overwritten or taken over "
					 "by another host: this host changes no more metadata "
					 "(reads go on); remount, and run fsck.shmfs if the host "
					 "table is damaged", shmfs_fs_slot(dmn.fs));
			lost_reported = true;
		}
		nanosleep(&t, NULL);
	}
	return NULL;
}

void shmfs_follower_start(void)
{
	dmn.fs->on_change = on_change;
	if (dmn.fs->stats.stuck)
		say_stuck();
	if (!dmn.readonly) {
		shmfs_op_reap_orphans(dmn.fs, true);
		shmfs_op_reap_ahead(dmn.fs, true);
	}
	pthread_create(&follower, NULL, follower_main, NULL);
	pthread_create(&beater, NULL, beater_main, NULL);
}

void shmfs_follower_stop(void)
{
	stop = true;
	pthread_join(follower, NULL);
	pthread_join(beater, NULL);
}
