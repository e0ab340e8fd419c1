/* SPDX-License-Identifier: MIT */
/*
 * shmfs: the FUSE daemon's request handlers (libfuse3 low-level API).
 *
 * Threads.  libfuse's workers answer requests: lookups, getattr, readdir
 * and reads run under rcu_read_lock() against the namespace and never take
 * a lock; metadata changes go through fs/ops.c (metadata lock, one record
 * each).  Each handler decodes the request, calls the core and replies
 * exactly once.  What other hosts change reaches the kernel from the
 * follower thread (fs/follower.c), never from here, where an invalidation
 * can deadlock against the kernel's own locks; setup and the session loop
 * are in fs/daemon_main.c.
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
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/util.h"

#define TIMEOUT 10.0
#define MAX_PIECES 256
#define ZERO_LEN (1u << 20)

static const uint8_t zeros[ZERO_LEN];
static pthread_key_t rcu_key;

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

void shmfs_daemon_rcu_init(void)
{
	pthread_key_create(&rcu_key, rcu_thread_exit);
}

void shmfs_daemon_rcu_register(void)
{
	rcu_register_thread();
	rcu_registered = true;
}

/* ---- request handlers ------------------------------------------------------ */

/* The errno to give the kernel for a core error (negative).  Corruption is
 * EIO to applications, with the reason in the log. */
static int out_err(int rc)
{
	if (rc == -EUCLEAN || rc == -ENOLCK) {
		static volatile int said;
		if (!said++)
			shmfs_daemon_log(LOG_ERR, "metadata is damaged or unreachable (%s): "
					 "returning EIO%s%s", strerror(-rc),
					 dmn.fs->stats.stuck ? "; log stopped at: " : "",
					 dmn.fs->stats.stuck ? dmn.fs->stats.stuck_why : "");
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
	if (dmn.readonly) {
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
	uint64_t seq = __atomic_load_n(&dmn.fs->seq, __ATOMIC_ACQUIRE);
	uint64_t pos = __atomic_load_n(&dmn.fs->pos, __ATOMIC_ACQUIRE);
	rc = shmfs_op_lookup(dmn.fs, parent, name, &st);
	/* just created on another host?  (checked without a lock first, so a
	 * negative lookup never queues behind a writer)  Look again whenever
	 * anything was applied since the first look: also by the follower,
	 * which may have replayed the record in the meantime. */
	if (rc == -ENOENT) {
		if (shmfs_fs_behind(dmn.fs))
			shmfs_fs_replay(dmn.fs);
		if (__atomic_load_n(&dmn.fs->pos, __ATOMIC_ACQUIRE) != pos)
			rc = shmfs_op_lookup(dmn.fs, parent, name, &st);
	}
	if (!rc && __atomic_load_n(&dmn.fs->seq, __ATOMIC_ACQUIRE) != seq) {
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
	struct shmfs_inode *ip = shmfs_ns_iget(dmn.fs->ns, ino);
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
	rc = shmfs_op_getattr(dmn.fs, ino, &st);
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
	rc = shmfs_op_setattr(dmn.fs, ino, &sa, &st);
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
	rc = shmfs_op_readlink(dmn.fs, ino, buf, sizeof(buf));
	if (rc < 0)
		fuse_reply_err(req, out_err(rc));
	else
		fuse_reply_readlink(req, buf);
}

/* Create an inode for a request, as its caller; false when the request
 * has been answered with an error (read-only mount, or the op failed). */
static bool create_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
			dev_t rdev, const char *target, struct stat *st)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct shmfs_cred cred = { ctx->uid, ctx->gid };

	rcu_enter();
	if (refuse_ro(req))
		return false;
	int rc = shmfs_op_mknod(dmn.fs, parent, name, mode, rdev, target, &cred, st);
	if (rc)
		fuse_reply_err(req, out_err(rc));
	return rc == 0;
}

static void make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
		 const char *target)
{
	struct stat st;

	if (create_node(req, parent, name, mode, rdev, target, &st))
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
	fuse_reply_err(req, out_err(shmfs_op_unlink(dmn.fs, parent, name, false)));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	rcu_enter();
	if (refuse_ro(req))
		return;
	fuse_reply_err(req, out_err(shmfs_op_unlink(dmn.fs, parent, name, true)));
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
	fuse_reply_err(req, out_err(shmfs_op_rename(dmn.fs, parent, name, newparent, newname, f)));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct stat st;
	int rc;

	rcu_enter();
	if (refuse_ro(req))
		return;
	rc = shmfs_op_link(dmn.fs, ino, newparent, newname, &st);
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
	if (dmn.readonly && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	bool told = shmfs_follower_catch_up();
	struct stat st;
	int err = shmfs_op_getattr(dmn.fs, ino, &st) ? ENOENT : S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	if (fi->flags & O_TRUNC) {
		struct shmfs_lr_setattr sa = { .sa_valid = SHMFS_SA_SIZE };
		int rc = shmfs_op_setattr(dmn.fs, ino, &sa, &st);
		if (rc) {
			fuse_reply_err(req, out_err(rc));
			return;
		}
	}
	shmfs_fs_open_inode(dmn.fs, ino);
	shmfs_follower_retry_now(ino);
	opened(fi, told);
	if (fuse_reply_open(req, fi) == -ENOENT)
		shmfs_fs_close_inode(dmn.fs, ino);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct stat st;

	if (!create_node(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, &st))
		return;
	shmfs_fs_open_inode(dmn.fs, st.st_ino);
	opened(fi, true);
	struct fuse_entry_param e = { .ino = st.st_ino, .generation = 1, .attr = st,
				      .attr_timeout = TIMEOUT, .entry_timeout = TIMEOUT };
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		shmfs_fs_close_inode(dmn.fs, st.st_ino);
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
	n = shmfs_op_read_map(dmn.fs, ino, (uint64_t)off, size, p, MAX_PIECES, &total);
	if (n >= 0 && dmn.bounce) {
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
		size_t at = shmfs_op_gather(p, n, bb);
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
		rc = shmfs_op_write(dmn.fs, ino, (uint64_t)off,
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
		rc = got < 0 ? got : shmfs_op_write(dmn.fs, ino, (uint64_t)off, tmp, (size_t)got);
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
	struct shmfs_inode *ip = shmfs_ns_iget(dmn.fs->ns, ino);
	bool last = ip && __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) <= 1;
	if (orphan)
		*orphan = last && ip->orphan_host == (uint32_t)shmfs_fs_slot(dmn.fs) + 1 &&
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
	fuse_reply_err(req, dmn.readonly ? 0 : out_err(shmfs_op_flush(dmn.fs, ino, last)));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bool orphan;

	(void)fi;
	rcu_enter();
	bool last = last_handle(ino, &orphan);
	if (!dmn.readonly)
		shmfs_op_flush(dmn.fs, ino, last);
	shmfs_fs_close_inode(dmn.fs, ino);
	if (orphan && !dmn.readonly)
		shmfs_op_release_orphan(dmn.fs, ino);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync;
	(void)fi;
	rcu_enter();
	fuse_reply_err(req, dmn.readonly ? 0 : out_err(shmfs_op_flush(dmn.fs, ino, false)));
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
	shmfs_follower_catch_up();
	struct stat st;
	int err = shmfs_op_getattr(dmn.fs, ino, &st) ? ENOENT : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
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
			seq = shmfs_ns_read_begin(dmn.fs->ns);
			struct shmfs_inode *dp = shmfs_ns_iget(dmn.fs->ns, ino);
			err = !dp ? ENOENT : dp->type != S_IFDIR ? ENOTDIR : -snap_take(s, dp);
		} while (!err && shmfs_ns_read_retry(dmn.fs->ns, seq));
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
			if (shmfs_op_getattr(dmn.fs, en->ino, &e.attr))
				continue; /* removed since the snapshot */
			l = fuse_add_direntry_plus(req, p, rem, nm, &e, (off_t)en->cookie);
			if (l <= rem) {
				rcu_read_lock();
				struct shmfs_inode *ip = shmfs_ns_iget(dmn.fs->ns, en->ino);
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
	struct shmfs_alloc *a = &dmn.fs->ns->alloc;
	(void)ino;

	rcu_enter();
	shmfs_fs_reap(dmn.fs); /* what can be reused now counts as free */
	uint64_t log_free = dmn.fs->sb.sb_log_size - SHMFS_MIN(dmn.fs->pos, dmn.fs->sb.sb_log_size);
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
	sv.f_files = dmn.fs->ns->ninodes + sv.f_ffree;
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
		int rc = shmfs_op_set_virtual(dmn.fs, ino, name);
		/* our own kernel drops the file's pages too (others do so when
		 * they replay the record) */
		if (!rc)
			shmfs_follower_inval_inode(ino);
		fuse_reply_err(req, out_err(rc));
		return;
	}
	fuse_reply_err(req, out_err(shmfs_op_setxattr(dmn.fs, ino, name, value, size, flags)));
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
	rc = shmfs_op_xattr_is_virtual(name) ? shmfs_op_get_virtual(dmn.fs, ino, name, buf, size)
					     : shmfs_op_getxattr(dmn.fs, ino, name, buf, size);
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
	rc = shmfs_op_listxattr(dmn.fs, ino, buf, size);
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
	fuse_reply_err(req, out_err(shmfs_op_removexattr(dmn.fs, ino, name)));
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
		       out_err(shmfs_op_fallocate(dmn.fs, ino, mode, (uint64_t)off, (uint64_t)len)));
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
	ssize_t rc = shmfs_op_copy_range(dmn.fs, ino_in, (uint64_t)off_in, ino_out,
					 (uint64_t)off_out, len);
	if (rc < 0)
		fuse_reply_err(req, out_err((int)rc));
	else
		fuse_reply_write(req, (size_t)rc);
}

const struct fuse_lowlevel_ops shmfs_daemon_ops = {
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
