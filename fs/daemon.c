/* SPDX-License-Identifier: MIT */
/*
 * shmfs: the FUSE daemon (libfuse3 low-level API, multithreaded).
 *
 *   shmfs REGION MOUNTPOINT [-o opts]     mount.fuse3 / fstab: fuse.shmfs
 *
 * Threads.  libfuse's workers answer requests: lookups, getattr, readdir
 * and reads run under rcu_read_lock() against the namespace and never take
 * a lock; metadata changes go through fs/ops.c (metadata lock, one record
 * each).  A follower thread polls the log tail every millisecond (one
 * atomic load), replays what other hosts appended, and tells the kernel
 * what changed (notify_inval_entry / _inode / notify_delete) -- always from
 * its own thread, never from a request handler, where an invalidation can
 * deadlock against the kernel's own locks.  A heartbeat thread keeps this
 * host's lease alive.
 *
 * RCU flavour: mb (urcu-mb).  libfuse creates and destroys worker threads
 * on its own, so each registers lazily on its first request and a pthread
 * key destructor unregisters it at exit.  QSBR would need quiescent-state
 * reports that idle workers (blocked in read(2) on /dev/fuse) never make;
 * memb's grace periods issue expedited membarrier IPIs, which on these VMs
 * made every grace period (one per burst of metadata changes) cost more
 * than the change itself (unlinks ran at half speed).  mb puts a full
 * barrier in each read-side section instead: a few dozen cycles against a
 * FUSE round trip of ~30 us.
 *
 * Caching.  Entries and attributes are cached by the kernel for 10 s and
 * invalidated explicitly when another host changes them; file data uses the
 * page cache (so mmap works) and is invalidated the same way.  open()
 * first catches up with the log and waits for the follower to have sent
 * the invalidations, so a file closed on another host reads back new
 * bytes here (close-to-open).
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/util.h"

#define TIMEOUT 10.0
#define MAX_PIECES 256
#define ZERO_LEN (1u << 20)

struct inval {
	enum { INV_INODE, INV_ENTRY, INV_DELETE } kind;
	uint64_t parent, ino;
	uint16_t len;
	char name[SHMFS_NAME_MAX + 1];
};

struct daemon {
	struct shmfs_region region;
	struct shmfs_fs *fs;
	struct fuse_session *se;
	char *region_spec, *host, *mountpoint;
	bool readonly, debug, foreground;
	bool bounce;                    /* region pages cannot go to the kernel */
	volatile bool stop;
	pthread_t follower, beater;

	pthread_mutex_t qlock;          /* invalidation queue */
	pthread_cond_t qcond;
	struct inval *q;
	size_t qlen, qcap;
	uint64_t queued, sent;          /* under qlock */
	bool stuck_reported;
};

static struct daemon D;
static const uint8_t zeros[ZERO_LEN];
static pthread_key_t rcu_key;

static void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (D.foreground) {
		fprintf(stderr, "shmfs: ");
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}

/* ---- RCU registration of libfuse's threads ---------------------------- */

static void rcu_thread_exit(void *arg)
{
	(void)arg;
	rcu_unregister_thread();
}

static __thread bool rcu_registered;

static void rcu_enter(void)
{
	if (!rcu_registered) {
		rcu_register_thread();
		pthread_setspecific(rcu_key, (void *)1);
		rcu_registered = true;
	}
}

/* ---- invalidations: queued by replay, sent by the follower ------------- */

static void enqueue(int kind, uint64_t parent, uint64_t ino, const char *name, size_t len)
{
	pthread_mutex_lock(&D.qlock);
	if (D.qlen == D.qcap) {
		size_t cap = D.qcap ? D.qcap * 2 : 256;
		struct inval *q = realloc(D.q, cap * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&D.qlock);
			return;
		}
		D.q = q;
		D.qcap = cap;
	}
	struct inval *v = &D.q[D.qlen++];
	v->kind = kind;
	v->parent = parent;
	v->ino = ino;
	v->len = (uint16_t)SHMFS_MIN(len, SHMFS_NAME_MAX);
	if (name)
		memcpy(v->name, name, v->len);
	v->name[v->len] = 0;
	D.queued++;
	pthread_mutex_unlock(&D.qlock);
}

static void bump_remote(uint64_t ino)
{
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(D.fs->ns, ino);
	if (ip)
		__atomic_fetch_add(&ip->remote_gen, 1, __ATOMIC_RELAXED);
	rcu_read_unlock();
}

/* Called by replay (under the fs replay lock) for every record another host
 * wrote: remember what the kernel must forget. */
static void on_apply(void *ctx, const struct shmfs_log_rec *h, const void *payload)
{
	const uint8_t *p = payload;
	(void)ctx;

	switch (h->lr_type) {
	case SHMFS_LR_CREATE: {
		struct shmfs_lr_create c;
		memcpy(&c, p, sizeof(c));
		if (c.cr_parent) {
			enqueue(INV_ENTRY, c.cr_parent, 0, (const char *)p + sizeof(c), c.cr_name_len);
			enqueue(INV_INODE, 0, c.cr_parent, NULL, 0);
		}
		break;
	}
	case SHMFS_LR_LINK:
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR: {
		struct shmfs_lr_unlink u;
		memcpy(&u, p, sizeof(u));
		enqueue(h->lr_type == SHMFS_LR_LINK ? INV_ENTRY : INV_DELETE, u.ul_dir, u.ul_ino,
			(const char *)p + sizeof(u), u.ul_name_len);
		enqueue(INV_INODE, 0, u.ul_ino, NULL, 0);
		enqueue(INV_INODE, 0, u.ul_dir, NULL, 0);
		break;
	}
	case SHMFS_LR_RENAME: {
		struct shmfs_lr_rename r;
		memcpy(&r, p, sizeof(r));
		const char *on = (const char *)p + sizeof(r), *nn = on + r.rn_oldname_len;
		enqueue(INV_ENTRY, r.rn_olddir, 0, on, r.rn_oldname_len);
		enqueue(INV_ENTRY, r.rn_newdir, 0, nn, r.rn_newname_len);
		enqueue(INV_INODE, 0, r.rn_olddir, NULL, 0);
		if (r.rn_newdir != r.rn_olddir)
			enqueue(INV_INODE, 0, r.rn_newdir, NULL, 0);
		enqueue(INV_INODE, 0, r.rn_ino, NULL, 0);
		if (r.rn_target)
			enqueue(INV_INODE, 0, r.rn_target, NULL, 0);
		break;
	}
	case SHMFS_LR_SETATTR:
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP:
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE: {
		uint64_t ino;
		memcpy(&ino, p, sizeof(ino)); /* every one of these starts with the inode */
		bump_remote(ino);
		enqueue(INV_INODE, 0, ino, NULL, 0);
		break;
	}
	default:
		break;
	}
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
		fuse_lowlevel_notify_inval_inode(D.se, due[i], 0, 0);
}

/* Before an open replies: if an invalidation of ino may have lost the race
 * above, drop the kernel's attributes now (only those: no page of an inode
 * the kernel has just met can be stale, and touching pages from inside a
 * request could deadlock). */
static void retry_now(uint64_t ino)
{
	bool found = false;

	pthread_mutex_lock(&rlock);
	for (size_t i = 0; i < nretries && !found; i++)
		found = retries[i].ino == ino;
	pthread_mutex_unlock(&rlock);
	if (found)
		fuse_lowlevel_notify_inval_inode(D.se, ino, -1, 0);
}

/* Send what is queued.  Follower thread only. */
static void send_invalidations(void)
{
	struct inval *q;
	size_t n;
	uint64_t upto;

	pthread_mutex_lock(&D.qlock);
	q = D.q;
	n = D.qlen;
	upto = D.queued;
	D.q = NULL;
	D.qlen = D.qcap = 0;
	pthread_mutex_unlock(&D.qlock);

	for (size_t i = 0; i < n; i++) {
		struct inval *v = &q[i];
		switch (v->kind) {
		case INV_INODE:
			if (fuse_lowlevel_notify_inval_inode(D.se, v->ino, 0, 0) == -ENOENT)
				retry_later(v->ino, shmfs_mono_ns());
			break;
		case INV_ENTRY:
			fuse_lowlevel_notify_inval_entry(D.se, v->parent, v->name, v->len);
			break;
		case INV_DELETE:
			if (fuse_lowlevel_notify_delete(D.se, v->parent, v->ino, v->name, v->len))
				fuse_lowlevel_notify_inval_entry(D.se, v->parent, v->name, v->len);
			break;
		}
	}
	free(q);
	pthread_mutex_lock(&D.qlock);
	D.sent = upto;
	pthread_cond_broadcast(&D.qcond);
	pthread_mutex_unlock(&D.qlock);
}

/* Catch up with the log and wait (briefly) until the kernel has been told.
 * False if the follower did not get there in time. */
static bool catch_up(void)
{
	bool told;
	struct timespec ts;

	shmfs_fs_replay(D.fs);
	pthread_mutex_lock(&D.qlock);
	uint64_t want = D.queued;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 200 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (D.sent < want && !D.stop)
		if (pthread_cond_timedwait(&D.qcond, &D.qlock, &ts))
			break;
	told = D.sent >= want;
	pthread_mutex_unlock(&D.qlock);
	return told;
}

/* Release orphans this host kept whose last handle is gone, and orphans of
 * hosts that left or died. */
static void reap_orphans(bool at_mount)
{
	uint64_t inos[64];
	size_t n = 0;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct shmfs_inode *ip;
	uint32_t self = (uint32_t)D.fs->slot + 1;

	/* Walking the table visits every bucket (sized from the log: 128k for
	 * a 128 MiB log), so look only when there is something to find. */
	if (!__atomic_load_n(&D.fs->ns->norphans, __ATOMIC_RELAXED))
		return;
	rcu_read_lock();
	/* Nodes, not cds_lfht_for_each_entry(): that one ends on container_of
	 * of NULL, arithmetic on a null pointer (UBSan). */
	cds_lfht_for_each(D.fs->ns->inodes, &it, node) {
		ip = caa_container_of(node, struct shmfs_inode, hnode);
		if (!ip->orphan_host || ip->gone || ip->attr->nlink || n == SHMFS_ARRAY_SIZE(inos))
			continue;
		uint32_t owner = ip->orphan_host;
		bool mine = owner == self;
		bool dead = owner > D.fs->sb.sb_max_hosts;
		if (!mine && !dead) {
			pthread_mutex_lock(&D.fs->replay_lock);
			dead = !shmfs_host_live_locked(D.fs, owner - 1);
			pthread_mutex_unlock(&D.fs->replay_lock);
		}
		if ((mine && (at_mount || __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) == 0)) || dead)
			inos[n++] = ip->ino;
	}
	rcu_read_unlock();
	for (size_t i = 0; i < n; i++)
		shmfs_op_release_orphan(D.fs, inos[i]);
}

/* Give back room reserved ahead of the end of files by hosts that died
 * (their last close never came) or, at mount, by an earlier life of this
 * host's slot.  A daemon that has nothing open can be sure no write of its
 * own still wants it. */
static void reap_ahead(bool at_mount)
{
	uint32_t self = (uint32_t)D.fs->slot + 1, nhosts = D.fs->sb.sb_max_hosts;
	uint8_t dead[SHMFS_MAX_HOSTS];
	struct { uint64_t ino; uint32_t host; } todo[64];
	bool any = false;
	size_t n = 0;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct shmfs_inode *ip;

	if (nhosts > SHMFS_MAX_HOSTS)
		return;
	pthread_mutex_lock(&D.fs->replay_lock);
	for (uint32_t i = 0; i < nhosts; i++) {
		dead[i] = 0;
		if (!__atomic_load_n(&D.fs->ns->ahead_by[i], __ATOMIC_RELAXED))
			continue;
		dead[i] = i + 1 == self ? at_mount : !shmfs_host_live_locked(D.fs, i);
		any |= dead[i];
	}
	pthread_mutex_unlock(&D.fs->replay_lock);
	if (!any)
		return;
	rcu_read_lock();
	cds_lfht_for_each(D.fs->ns->inodes, &it, node) {
		ip = caa_container_of(node, struct shmfs_inode, hnode);
		uint32_t h = __atomic_load_n(&ip->ahead_host, __ATOMIC_RELAXED);
		if (h && h <= nhosts && dead[h - 1] && !ip->gone && n < SHMFS_ARRAY_SIZE(todo))
			todo[n++] = (typeof(todo[0])){ ip->ino, h };
	}
	rcu_read_unlock();
	for (size_t i = 0; i < n; i++)
		shmfs_op_trim_ahead(D.fs, todo[i].ino, todo[i].host);
}

/* Raise the mount's read-ahead to 1 MiB (the kernel's default for FUSE is
 * 128 KiB): sequential reads and mmap faults then come in 1 MiB requests.
 * The device number comes from mountinfo, not stat(): a stat of our own
 * mount point would be a request to ourselves and could make an unmount
 * that races with it fail with EBUSY. */
static void set_readahead(const char *mountpoint)
{
	char line[4096], real[PATH_MAX], path[128];
	unsigned maj, min;
	bool found = false;
	FILE *f;

	if (!realpath(mountpoint, real) || !(f = fopen("/proc/self/mountinfo", "r")))
		return;
	while (!found && fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX];
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) == 3 &&
		    !strcmp(mnt, real) && strstr(line, " - fuse.shmfs "))
			found = true;
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	f = fopen(path, "w");
	if (f) {
		fputs("1024", f);
		fclose(f);
	}
}

static void *follower_main(void *arg)
{
	struct timespec tick = { 0, 1000000 };
	unsigned n = 0;
	(void)arg;

	rcu_register_thread();
	while (!D.stop) {
		int rc = shmfs_fs_replay(D.fs);
		if (rc == -EUCLEAN && !D.stuck_reported) {
			log_msg(LOG_ERR, "log replay stopped at %s; serving what is intact (run fsck.shmfs)",
				D.fs->stats.stuck_why);
			D.stuck_reported = true;
		} else if (rc != -EUCLEAN && D.stuck_reported) {
			log_msg(LOG_NOTICE, "log replay resumed: the bad record was repaired");
			D.stuck_reported = false;
		}
		send_invalidations();
		send_retries();
		if (n % 10 == 0)
			shmfs_fs_reap(D.fs);
		if (n % 10 == 5 && !D.readonly)
			shmfs_fs_free_stray_lock(D.fs);
		if (++n % 200 == 0 && !D.readonly) {
			reap_orphans(false);
			reap_ahead(false);
		}
		nanosleep(&tick, NULL);
	}
	rcu_unregister_thread();
	return NULL;
}

static void *beater_main(void *arg)
{
	struct timespec t = { D.fs->sb.sb_heartbeat_ms / 1000,
			      (long)(D.fs->sb.sb_heartbeat_ms % 1000) * 1000000L };
	bool lost_reported = false;
	(void)arg;

	while (!D.stop) {
		shmfs_fs_heartbeat(D.fs);
		if (!lost_reported && shmfs_host_lost(D.fs)) {
			log_msg(LOG_ERR, "host slot %d was overwritten or taken over by another host: "
				"this host changes no more metadata (reads go on); remount, and run "
				"fsck.shmfs if the host table is damaged", D.fs->slot);
			lost_reported = true;
		}
		nanosleep(&t, NULL);
	}
	return NULL;
}

/* Replay met a record whose checksum is right but whose contents no correct
 * writer produces: every host skips it.  Say which (a flood is cut short). */
static void on_reject(void *ctx, const struct shmfs_log_entry *e, const char *why)
{
	static unsigned long n;
	(void)ctx;

	if (++n <= 100)
		log_msg(LOG_ERR, "rejected record %" PRIu64 " (%s) at log offset %" PRIu64
			", skipped: %s (run fsck.shmfs)", e->hdr.lr_seq,
			shmfs_lr_type_name(e->hdr.lr_type), e->pos, why);
	if (n == 100 || (n > 100 && n % 10000 == 0))
		log_msg(LOG_ERR, "%lu records rejected so far; not reporting each one", n);
}

/* ---- request handlers ------------------------------------------------------ */

/* The errno to give the kernel for a core error (negative).  Corruption is
 * EIO to applications, with the reason in the log. */
static int out_err(int rc)
{
	if (rc == -EUCLEAN || rc == -ENOLCK) {
		static volatile int said;
		if (!said++)
			log_msg(LOG_ERR, "metadata is damaged or unreachable (%s): returning EIO%s%s",
				strerror(-rc), D.fs->stats.stuck ? "; log stopped at: " : "",
				D.fs->stats.stuck ? D.fs->stats.stuck_why : "");
		return EIO;
	}
	return -rc;
}

static void reply_entry(fuse_req_t req, const struct stat *st)
{
	struct fuse_entry_param e = { .ino = st->st_ino, .generation = 1, .attr = *st,
				      .attr_timeout = TIMEOUT, .entry_timeout = TIMEOUT };
	fuse_reply_entry(req, &e);
}

static bool refuse_ro(fuse_req_t req)
{
	if (D.readonly) {
		fuse_reply_err(req, EROFS);
		return true;
	}
	return false;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want &= ~FUSE_CAP_SPLICE_READ;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	conn->max_readahead = 1 << 20;
	conn->time_gran = 1;
	/* open(O_TRUNC) as OPEN then SETATTR: with an atomic O_TRUNC the kernel
	 * leaves clearing setuid/setgid to the filesystem, which cannot tell
	 * whether the caller has CAP_FSETID; as a setattr, the kernel does it. */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stat st;
	int rc;

	rcu_enter();
	uint64_t seq = __atomic_load_n(&D.fs->seq, __ATOMIC_ACQUIRE);
	uint64_t pos = __atomic_load_n(&D.fs->pos, __ATOMIC_ACQUIRE);
	rc = shmfs_op_lookup(D.fs, parent, name, &st);
	/* just created on another host?  (checked without a lock first, so a
	 * negative lookup never queues behind a writer)  Look again whenever
	 * anything was applied since the first look: also by the follower,
	 * which may have replayed the record in the meantime. */
	if (rc == -ENOENT) {
		if (shmfs_fs_behind(D.fs))
			shmfs_fs_replay(D.fs);
		if (__atomic_load_n(&D.fs->pos, __ATOMIC_ACQUIRE) != pos)
			rc = shmfs_op_lookup(D.fs, parent, name, &st);
	}
	if (!rc && __atomic_load_n(&D.fs->seq, __ATOMIC_ACQUIRE) != seq) {
		/* a record was applied meanwhile: do not let the kernel keep
		 * attributes that may predate it */
		struct fuse_entry_param e = { .ino = st.st_ino, .generation = 1, .attr = st,
					      .attr_timeout = 0, .entry_timeout = TIMEOUT };
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc == -ENOENT) {
		/* negative entry, cached like positive ones */
		struct fuse_entry_param e = { .ino = 0, .entry_timeout = TIMEOUT };
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc)
		fuse_reply_err(req, out_err(rc));
	else
		reply_entry(req, &st);
}

static void forget_one(fuse_ino_t ino, uint64_t n)
{
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(D.fs->ns, ino);
	if (ip) {
		uint64_t cur = __atomic_load_n(&ip->nlookup, __ATOMIC_RELAXED);
		while (!__atomic_compare_exchange_n(&ip->nlookup, &cur, cur > n ? cur - n : 0, false,
						    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			;
	}
	rcu_read_unlock();
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	rcu_enter();
	forget_one(ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	rcu_enter();
	for (size_t i = 0; i < count; i++)
		forget_one(f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int rc;
	(void)fi;

	rcu_enter();
	rc = shmfs_op_getattr(D.fs, ino, &st);
	if (rc)
		fuse_reply_err(req, out_err(rc));
	else
		fuse_reply_attr(req, &st, TIMEOUT);
}

static struct shmfs_time ts_to(const struct timespec *t)
{
	return (struct shmfs_time){ .t_sec = (uint64_t)t->tv_sec, .t_nsec = (uint32_t)t->tv_nsec };
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct shmfs_lr_setattr sa = { 0 };
	struct stat st;
	struct timespec now;
	int rc;
	(void)fi;

	rcu_enter();
	if (refuse_ro(req))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.sa_valid |= SHMFS_SA_MODE;
		sa.sa_mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.sa_valid |= SHMFS_SA_UID;
		sa.sa_uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.sa_valid |= SHMFS_SA_GID;
		sa.sa_gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		sa.sa_valid |= SHMFS_SA_SIZE;
		sa.sa_size = (uint64_t)attr->st_size;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		sa.sa_valid |= SHMFS_SA_ATIME;
		sa.sa_atime = ts_to(to_set & FUSE_SET_ATTR_ATIME_NOW ? &now : &attr->st_atim);
	}
	if (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) {
		sa.sa_valid |= SHMFS_SA_MTIME;
		sa.sa_mtime = ts_to(to_set & FUSE_SET_ATTR_MTIME_NOW ? &now : &attr->st_mtim);
	}
	rc = shmfs_op_setattr(D.fs, ino, &sa, &st);
	if (rc)
		fuse_reply_err(req, out_err(rc));
	else
		fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[SHMFS_SYMLINK_MAX + 1];
	int rc;

	rcu_enter();
	rc = shmfs_op_readlink(D.fs, ino, buf, sizeof(buf));
	if (rc < 0)
		fuse_reply_err(req, out_err(rc));
	else
		fuse_reply_readlink(req, buf);
}

static void make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
		 const char *target)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct shmfs_cred cred = { ctx->uid, ctx->gid };
	struct stat st;
	int rc;

	rcu_enter();
	if (refuse_ro(req))
		return;
	rc = shmfs_op_mknod(D.fs, parent, name, mode, rdev, target, &cred, &st);
	if (rc)
		fuse_reply_err(req, out_err(rc));
	else
		reply_entry(req, &st);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	make(req, parent, name, mode, rdev, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make(req, parent, name, S_IFDIR | (mode & 07777), 0, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	make(req, parent, name, S_IFLNK | 0777, 0, link);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	rcu_enter();
	if (refuse_ro(req))
		return;
	fuse_reply_err(req, out_err(shmfs_op_unlink(D.fs, parent, name, false)));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	rcu_enter();
	if (refuse_ro(req))
		return;
	fuse_reply_err(req, out_err(shmfs_op_unlink(D.fs, parent, name, true)));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	uint32_t f = 0;

	rcu_enter();
	if (refuse_ro(req))
		return;
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (flags & RENAME_NOREPLACE)
		f |= SHMFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		f |= SHMFS_RENAME_EXCHANGE;
	fuse_reply_err(req, out_err(shmfs_op_rename(D.fs, parent, name, newparent, newname, f)));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct stat st;
	int rc;

	rcu_enter();
	if (refuse_ro(req))
		return;
	rc = shmfs_op_link(D.fs, ino, newparent, newname, &st);
	if (rc)
		fuse_reply_err(req, out_err(rc));
	else
		reply_entry(req, &st);
}

static void opened(struct fuse_file_info *fi, bool keep)
{
	/* The follower drops stale pages before open returns; if it is late,
	 * the kernel drops the whole cache of the file instead. */
	fi->keep_cache = keep;
	fi->noflush = 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	rcu_enter();
	if (D.readonly && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	bool told = catch_up();
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(D.fs->ns, ino);
	int err = !ip ? ENOENT : ip->type == S_IFDIR ? EISDIR : 0;
	rcu_read_unlock();
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	if (fi->flags & O_TRUNC) {
		struct shmfs_lr_setattr sa = { .sa_valid = SHMFS_SA_SIZE };
		struct stat st;
		int rc = shmfs_op_setattr(D.fs, ino, &sa, &st);
		if (rc) {
			fuse_reply_err(req, out_err(rc));
			return;
		}
	}
	shmfs_fs_open_inode(D.fs, ino);
	retry_now(ino);
	opened(fi, told);
	if (fuse_reply_open(req, fi) == -ENOENT)
		shmfs_fs_close_inode(D.fs, ino);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct shmfs_cred cred = { ctx->uid, ctx->gid };
	struct stat st;
	int rc;

	rcu_enter();
	if (refuse_ro(req))
		return;
	rc = shmfs_op_mknod(D.fs, parent, name, S_IFREG | (mode & 07777), 0, NULL, &cred, &st);
	if (rc) {
		fuse_reply_err(req, out_err(rc));
		return;
	}
	shmfs_fs_open_inode(D.fs, st.st_ino);
	opened(fi, true);
	struct fuse_entry_param e = { .ino = st.st_ino, .generation = 1, .attr = st,
				      .attr_timeout = TIMEOUT, .entry_timeout = TIMEOUT };
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		shmfs_fs_close_inode(D.fs, st.st_ino);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct shmfs_piece p[MAX_PIECES];
	struct iovec iov[MAX_PIECES];
	size_t total;
	int n, k = 0;
	(void)fi;

	rcu_enter();
	rcu_read_lock();
	n = shmfs_op_read_map(D.fs, ino, (uint64_t)off, size, p, MAX_PIECES, &total);
	if (n >= 0 && D.bounce) {
		/* A PCI BAR or UIO mapping (VM_PFNMAP) cannot be handed to the
		 * kernel by address: copy it out first. */
		static __thread uint8_t *bb;
		static __thread size_t bblen;
		if (bblen < total) {
			free(bb);
			bb = malloc(total);
			bblen = bb ? total : 0;
		}
		if (!bb) {
			rcu_read_unlock();
			fuse_reply_err(req, ENOMEM);
			return;
		}
		size_t at = 0;
		for (int i = 0; i < n; i++) {
			if (p[i].mem)
				memcpy(bb + at, p[i].mem, p[i].len);
			else
				memset(bb + at, 0, p[i].len);
			at += p[i].len;
		}
		rcu_read_unlock();
		fuse_reply_buf(req, (const char *)bb, at);
		return;
	}
	for (int i = 0; i < n && k < MAX_PIECES; i++) {
		if (p[i].mem) {
			iov[k++] = (struct iovec){ (void *)p[i].mem, p[i].len };
			continue;
		}
		for (size_t done = 0; done < p[i].len && k < MAX_PIECES; k++) {
			size_t l = SHMFS_MIN(p[i].len - done, ZERO_LEN);
			iov[k] = (struct iovec){ (void *)zeros, l };
			done += l;
		}
	}
	if (n < 0)
		fuse_reply_err(req, out_err(n));
	else
		fuse_reply_iov(req, iov, k);
	rcu_read_unlock();
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
			 struct fuse_file_info *fi)
{
	size_t len = fuse_buf_size(bufv);
	ssize_t rc;
	(void)fi;

	rcu_enter();
	if (refuse_ro(req))
		return;
	if (bufv->count == 1 && !(bufv->buf[0].flags & FUSE_BUF_IS_FD)) {
		rc = shmfs_op_write(D.fs, ino, (uint64_t)off,
				    (const uint8_t *)bufv->buf[0].mem + bufv->off, len);
	} else {
		/* Data arrived in a pipe or in pieces: gather it once. */
		void *tmp = malloc(len);
		struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
		if (!tmp) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		dst.buf[0].mem = tmp;
		ssize_t got = fuse_buf_copy(&dst, bufv, 0);
		rc = got < 0 ? got : shmfs_op_write(D.fs, ino, (uint64_t)off, tmp, (size_t)got);
		free(tmp);
	}
	if (rc < 0)
		fuse_reply_err(req, out_err((int)rc));
	else
		fuse_reply_write(req, (size_t)rc);
}

/* Is the handle being closed the only one open here?  With *orphan, also:
 * is the inode a nameless one this host keeps? */
static bool last_handle(fuse_ino_t ino, bool *orphan)
{
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(D.fs->ns, ino);
	bool last = ip && __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) <= 1;
	if (orphan)
		*orphan = last && ip->orphan_host == (uint32_t)D.fs->slot + 1 &&
			  !ip->attr->nlink && !ip->gone;
	rcu_read_unlock();
	return last;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	rcu_enter();
	/* close(2) waits for FLUSH but not for RELEASE: give the room reserved
	 * ahead back here when this is the only open handle, so that df right
	 * after close is exact. */
	bool last = last_handle(ino, NULL);
	fuse_reply_err(req, D.readonly ? 0 : out_err(shmfs_op_flush(D.fs, ino, last)));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bool orphan;

	(void)fi;
	rcu_enter();
	bool last = last_handle(ino, &orphan);
	if (!D.readonly)
		shmfs_op_flush(D.fs, ino, last);
	shmfs_fs_close_inode(D.fs, ino);
	if (orphan && !D.readonly)
		shmfs_op_release_orphan(D.fs, ino);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	rcu_enter();
	fuse_reply_err(req, D.readonly ? 0 : out_err(shmfs_op_flush(D.fs, ino, false)));
}

/*
 * Directory handles.  readdir works from a snapshot of the directory taken
 * at offset 0 (opendir, rewinddir): entries in cookie order, so resuming at
 * any offset is a binary search, and a directory of a million entries is
 * listed in linear time.  POSIX allows a listing not to reflect changes made
 * after opendir/rewinddir.
 */
struct snap_ent {
	uint64_t cookie, ino;
	uint32_t type;
	uint32_t name_off;
};

struct dirsnap {
	pthread_mutex_t lock;
	uint64_t self, parent;
	size_t n;
	struct snap_ent *e;
	char *names;
};

static void snap_free(struct dirsnap *s)
{
	free(s->e);
	free(s->names);
	s->e = NULL;
	s->names = NULL;
	s->n = 0;
}

/* Take a snapshot of directory ino (RCU held by the caller). */
static int snap_take(struct dirsnap *s, struct shmfs_inode *dp)
{
	size_t cap = dp->nchildren + 16, bytes = 0, n = 0, nb = 0;
	struct shmfs_dentry *d;

	snap_free(s);
	s->self = dp->ino;
	s->parent = dp->parent;
	cds_list_for_each_entry_rcu(d, &dp->children, sibling)
		bytes += d->name_len + 1u;
	s->e = malloc(cap * sizeof(*s->e));
	s->names = malloc(bytes + 1);
	if (!s->e || !s->names)
		return -ENOMEM;
	cds_list_for_each_entry_rcu(d, &dp->children, sibling) {
		if (n == cap || nb + d->name_len + 1u > bytes)
			break; /* the directory grew while we looked: list what we have */
		s->e[n] = (struct snap_ent){ d->cookie, d->ino, d->type, (uint32_t)nb };
		memcpy(s->names + nb, d->name, d->name_len + 1u);
		nb += d->name_len + 1u;
		n++;
	}
	s->n = n;
	return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	rcu_enter();
	catch_up();
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(D.fs->ns, ino);
	int err = !ip ? ENOENT : ip->type != S_IFDIR ? ENOTDIR : 0;
	rcu_read_unlock();
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	struct dirsnap *s = calloc(1, sizeof(*s));
	if (!s) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_init(&s->lock, NULL);
	fi->fh = (uintptr_t)s;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		pthread_mutex_destroy(&s->lock);
		free(s);
	}
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirsnap *s = (struct dirsnap *)(uintptr_t)fi->fh;
	(void)ino;

	if (s) {
		snap_free(s);
		pthread_mutex_destroy(&s->lock);
		free(s);
	}
	fuse_reply_err(req, 0);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus,
		       struct fuse_file_info *fi)
{
	struct dirsnap *s = (struct dirsnap *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *p = buf;
	size_t rem = size, i;
	int err = 0;

	rcu_enter();
	if (!buf || !s) {
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (off == 0 || !s->e) {
		uint64_t seq;
		rcu_read_lock();
		do { /* a listing shows whole records: a rename is never half-listed */
			seq = shmfs_ns_read_begin(D.fs->ns);
			struct shmfs_inode *dp = shmfs_ns_iget(D.fs->ns, ino);
			err = !dp ? ENOENT : dp->type != S_IFDIR ? ENOTDIR : -snap_take(s, dp);
		} while (!err && shmfs_ns_read_retry(D.fs->ns, seq));
		rcu_read_unlock();
		if (err)
			goto out;
	}
	/* "." is offset 1, ".." offset 2, then entries by cookie. */
	for (int dot = (int)off; dot < 2; dot++) {
		struct stat st = { .st_ino = dot ? s->parent : s->self, .st_mode = S_IFDIR };
		const char *nm = dot ? ".." : ".";
		size_t l;
		if (plus) {
			struct fuse_entry_param e = { .attr = st };
			l = fuse_add_direntry_plus(req, p, rem, nm, &e, dot + 1);
		} else {
			l = fuse_add_direntry(req, p, rem, nm, &st, dot + 1);
		}
		if (l > rem)
			goto out;
		p += l;
		rem -= l;
	}
	/* first entry with cookie > off */
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if ((off_t)s->e[mid].cookie <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (i = lo; i < s->n; i++) {
		const struct snap_ent *en = &s->e[i];
		const char *nm = s->names + en->name_off;
		size_t l;
		if (plus) {
			struct fuse_entry_param e = { .ino = en->ino, .generation = 1,
						      .attr_timeout = TIMEOUT,
						      .entry_timeout = TIMEOUT };
			if (shmfs_op_getattr(D.fs, en->ino, &e.attr))
				continue; /* removed since the snapshot */
			l = fuse_add_direntry_plus(req, p, rem, nm, &e, (off_t)en->cookie);
			if (l <= rem) {
				rcu_read_lock();
				struct shmfs_inode *ip = shmfs_ns_iget(D.fs->ns, en->ino);
				if (ip)
					__atomic_fetch_add(&ip->nlookup, 1, __ATOMIC_RELAXED);
				rcu_read_unlock();
			}
		} else {
			struct stat st = { .st_ino = en->ino, .st_mode = en->type };
			l = fuse_add_direntry(req, p, rem, nm, &st, (off_t)en->cookie);
		}
		if (l > rem)
			break;
		p += l;
		rem -= l;
	}
out:
	pthread_mutex_unlock(&s->lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false, fi);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true, fi);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv = { 0 };
	struct shmfs_alloc *a = &D.fs->ns->alloc;
	(void)ino;

	rcu_enter();
	shmfs_fs_reap(D.fs); /* what can be reused now counts as free */
	uint64_t log_free = D.fs->sb.sb_log_size - SHMFS_MIN(D.fs->pos, D.fs->sb.sb_log_size);
	sv.f_bsize = (unsigned long)a->unit;
	sv.f_frsize = (unsigned long)a->unit;
	sv.f_blocks = a->nunits;
	/* Freed space that some host's open file may still read is not free
	 * yet (as on tmpfs or ext4 for open unlinked files). */
	sv.f_bfree = a->nfree > a->npend ? a->nfree - a->npend : 0;
	sv.f_bavail = sv.f_bfree;
	/* No inode table: as many more files as the log has room to create. */
	sv.f_ffree = log_free / 96;
	sv.f_favail = sv.f_ffree;
	sv.f_files = D.fs->ns->ninodes + sv.f_ffree;
	sv.f_namemax = SHMFS_NAME_MAX;
	fuse_reply_statfs(req, &sv);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	rcu_enter();
	if (refuse_ro(req))
		return;
	if (shmfs_op_xattr_is_virtual(name)) {
		int rc = shmfs_op_set_virtual(D.fs, ino, name);
		/* our own kernel drops the file's pages too (others do so when
		 * they replay the record) */
		if (!rc)
			enqueue(INV_INODE, 0, ino, NULL, 0);
		fuse_reply_err(req, out_err(rc));
		return;
	}
	fuse_reply_err(req, out_err(shmfs_op_setxattr(D.fs, ino, name, value, size, flags)));
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	int rc;

	rcu_enter();
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = shmfs_op_xattr_is_virtual(name) ? shmfs_op_get_virtual(D.fs, ino, name, buf, size)
					     : shmfs_op_getxattr(D.fs, ino, name, buf, size);
	if (rc < 0)
		fuse_reply_err(req, out_err(rc));
	else if (!size)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	int rc;

	rcu_enter();
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = shmfs_op_listxattr(D.fs, ino, buf, size);
	if (rc < 0)
		fuse_reply_err(req, out_err(rc));
	else if (!size)
		fuse_reply_xattr(req, (size_t)rc);
	else
		fuse_reply_buf(req, buf, (size_t)rc);
	free(buf);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	rcu_enter();
	if (refuse_ro(req))
		return;
	if (shmfs_op_xattr_is_virtual(name)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	fuse_reply_err(req, out_err(shmfs_op_removexattr(D.fs, ino, name)));
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)fi;
	rcu_enter();
	if (refuse_ro(req))
		return;
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_err(req,
		       out_err(shmfs_op_fallocate(D.fs, ino, mode, (uint64_t)off, (uint64_t)len)));
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)fi_in;
	(void)fi_out;
	rcu_enter();
	if (refuse_ro(req))
		return;
	if (flags) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	ssize_t rc = shmfs_op_copy_range(D.fs, ino_in, (uint64_t)off_in, ino_out,
					 (uint64_t)off_out, len);
	if (rc < 0)
		fuse_reply_err(req, out_err((int)rc));
	else
		fuse_reply_write(req, (size_t)rc);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write_buf = op_write_buf,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.releasedir = op_releasedir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.statfs = op_statfs,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.create = op_create,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	/* not implemented, on purpose: access (default_permissions does it),
	 * getlk/setlk/flock (the kernel keeps locks per host), bmap, ioctl,
	 * poll, lseek, fsyncdir (nothing to do) */
};

/* ---- command line ---------------------------------------------------------- */

struct conf {
	char *region;
	char *host;
	int ro;
	int nodefperm;
};

#define CONF_OPT(t, p) { t, offsetof(struct conf, p), 1 }
static const struct fuse_opt conf_opts[] = {
	CONF_OPT("host=%s", host),
	CONF_OPT("ro", ro),
	{ "rw", offsetof(struct conf, ro), 0 }, /* the last of ro and rw wins, as in the kernel */
	CONF_OPT("nodefault_permissions", nodefperm),
	FUSE_OPT_KEY("ro", FUSE_OPT_KEY_KEEP),
	FUSE_OPT_KEY("rw", FUSE_OPT_KEY_KEEP),
	FUSE_OPT_END
};

static int conf_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct conf *c = data;
	(void)out;

	if (key == FUSE_OPT_KEY_NONOPT && !c->region) {
		c->region = strdup(arg);
		return 0;
	}
	return 1;
}

/* host=NAME goes into the host table, dumps and logs: no spaces or
 * control characters. */
static bool good_host_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= SHMFS_HOST_NAME_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static void usage(const char *prog)
{
	printf("usage: %s [options] REGION MOUNTPOINT\n\n"
	       "Mount the shmfs filesystem in REGION (a devdax device, PCI resource, UIO\n"
	       "device or file; PATH[,offset=SIZE][,length=SIZE]) at MOUNTPOINT.\n\n"
	       "shmfs options:\n"
	       "    -o host=NAME           name of this host in the host table\n"
	       "    -o ro                  read-only mount\n"
	       "    -o allow_other         let other users access the mount\n"
	       "    -o nodefault_permissions  do not let the kernel check mode bits\n\n",
	       prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts;
	struct fuse_loop_config *lc = NULL;
	struct conf conf = { 0 };
	struct shmfs_region_opts ropts = { 0 };
	struct shmfs_fs_opts fopts = { .join = true };
	char err[512];
	int ret = 1, rc;

	openlog("shmfs", LOG_PID, LOG_DAEMON);
	if (fuse_opt_parse(&args, &conf, conf_opts, conf_proc) == -1)
		return 2;
	if (fuse_parse_cmdline(&args, &opts) != 0) {
		fprintf(stderr, "shmfs: bad command line (try --help)\n");
		return 2;
	}
	if (opts.show_help) {
		usage(argv[0]);
		ret = 0;
		goto out_args;
	}
	if (opts.show_version) {
		printf("shmfs %s\n", SHMFS_VERSION_STRING);
		fuse_lowlevel_version();
		ret = 0;
		goto out_args;
	}
	if (!conf.region || !opts.mountpoint) {
		fprintf(stderr, "shmfs: usage: shmfs [options] REGION MOUNTPOINT (try --help)\n");
		ret = 2;
		goto out_args;
	}
	if (conf.host && !good_host_name(conf.host)) {
		fprintf(stderr, "shmfs: host name must be 1 to %u bytes, without spaces or control "
			"characters\n", SHMFS_HOST_NAME_MAX - 1);
		ret = 2;
		goto out_args;
	}
	if (!conf.nodefperm)
		fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-osubtype=shmfs");
	{
		char fsname[PATH_MAX + 16];
		snprintf(fsname, sizeof(fsname), "-ofsname=%s", conf.region);
		/* commas would split the option: keep the path only */
		char *c = strchr(fsname + 9, ',');
		if (c)
			*c = 0;
		fuse_opt_add_arg(&args, fsname);
	}

	D.readonly = conf.ro;
	D.mountpoint = opts.mountpoint;
	D.debug = opts.debug;
	D.foreground = opts.foreground;
	pthread_mutex_init(&D.qlock, NULL);
	pthread_cond_init(&D.qcond, NULL);
	pthread_key_create(&rcu_key, rcu_thread_exit);

	/* Everything a user can get wrong is checked here, on the terminal,
	 * before the mount and the fork; no thread exists yet (liburcu's and
	 * the hash tables' helper threads would not survive fuse_daemonize). */
	ropts.readonly = D.readonly;
	rc = shmfs_region_open(conf.region, &ropts, &D.region, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "shmfs: %s\n", err);
		goto out_args;
	}
	{
		struct shmfs_super sb;
		char other[256];
		rc = shmfs_super_read(&D.region, &sb, NULL, err, sizeof(err), other, sizeof(other));
		if (rc) {
			fprintf(stderr, "shmfs: %s: %s\n", conf.region, err);
			goto out_region;
		}
		if (other[0])
			fprintf(stderr, "shmfs: %s: warning: %s (run fsck.shmfs)\n", conf.region, other);
	}
	D.bounce = D.region.kind == SHMFS_REGION_PCI || D.region.kind == SHMFS_REGION_UIO;
	/* Join the host table now, so that a host that cannot join never
	 * mounts; the namespace (and its threads) come after the fork. */
	fopts.readonly = D.readonly;
	fopts.join = true;
	fopts.host_name = conf.host;
	fopts.on_reject = on_reject;
	rc = shmfs_fs_prepare(&D.region, &fopts, &D.fs, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "shmfs: %s: %s\n", conf.region, err);
		goto out_region;
	}

	D.se = fuse_session_new(&args, &ops, sizeof(ops), &D);
	if (!D.se)
		goto out_fs;
	if (fuse_set_signal_handlers(D.se) != 0)
		goto out_session;
	if (fuse_session_mount(D.se, opts.mountpoint) != 0)
		goto out_signals;
	set_readahead(opts.mountpoint);
	if (fuse_daemonize(opts.foreground) != 0)
		goto out_unmount;

	rcu_register_thread();
	rcu_registered = true; /* with -s, requests are served on this thread */
	shmfs_host_restamp(D.fs);
	shmfs_fs_heartbeat(D.fs);
	rc = shmfs_fs_finish(D.fs, err, sizeof(err));
	if (rc) {
		log_msg(LOG_ERR, "%s: %s", conf.region, err);
		goto out_rcu;
	}
	D.fs->on_apply = on_apply;
	if (D.fs->stats.stuck)
		log_msg(LOG_ERR, "log replay stopped at %s; serving what is intact (run fsck.shmfs)",
			D.fs->stats.stuck_why);
	if (!D.readonly) {
		reap_orphans(true);
		reap_ahead(true);
	}
	pthread_create(&D.follower, NULL, follower_main, NULL);
	pthread_create(&D.beater, NULL, beater_main, NULL);

	if (opts.singlethread) {
		ret = fuse_session_loop(D.se) < 0;
	} else {
		lc = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(lc, (unsigned)opts.clone_fd);
		/* libfuse's "unset" is UINT_MAX */
		if (opts.max_threads && opts.max_threads != UINT_MAX)
			fuse_loop_cfg_set_max_threads(lc, opts.max_threads);
		if (opts.max_idle_threads != UINT_MAX)
			fuse_loop_cfg_set_idle_threads(lc, opts.max_idle_threads);
		/* libfuse returns the signal that ended the loop: a clean stop */
		ret = fuse_session_loop_mt(D.se, lc) < 0;
		fuse_loop_cfg_destroy(lc);
	}
	D.stop = true;
	pthread_join(D.follower, NULL);
	pthread_join(D.beater, NULL);
out_rcu:
	shmfs_fs_close(D.fs);
	D.fs = NULL;
	rcu_unregister_thread();
out_unmount:
	fuse_session_unmount(D.se);
out_signals:
	fuse_remove_signal_handlers(D.se);
out_session:
	fuse_session_destroy(D.se);
out_fs:
	shmfs_fs_close(D.fs); /* before the fork or on failure: leave the table */
out_region:
	shmfs_region_close(&D.region);
out_args:
	free(opts.mountpoint);
	free(conf.region);
	free(conf.host);
	fuse_opt_free_args(&args);
	return ret;
}
