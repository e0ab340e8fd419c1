/* SPDX-License-Identifier: MIT */
/*
 * Namespace: what replaying the log builds.
 *
 * Two rculfhash tables hold everything: inodes keyed by number, and
 * directory entries keyed by (directory, name) -- one global table, as the
 * Linux dcache does, so looking a name up costs the same in a directory of
 * ten entries as in one of a million.  Each directory also keeps an RCU
 * list of its entries in creation (cookie) order for readdir.
 *
 * Every record is applied in two phases: check (may fail, changes nothing)
 * and do (cannot fail except for memory).  Writers run the check phase
 * before they append, replay runs both, so a record that a correct writer
 * produced always applies, and one that a buggy or hostile peer produced is
 * rejected identically on every host and changes nothing.
 *
 * Mutation is single-threaded (the caller's lock); readers use RCU.  What a
 * reader can reach is never modified in place: attributes, extent maps and
 * xattr sets are copied, changed and swapped in, and the old copy goes to
 * call_rcu().  Link counts are derived from directory entries, never taken
 * from a record.
 */
#include "shmfs/ns.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/util.h"

#define REJECT(code, ...) do { shmfs_errf(why, whylen, __VA_ARGS__); return (code); } while (0)

/* ---- tables ------------------------------------------------------------ */

static unsigned long ino_hash(uint64_t ino)
{
	return (unsigned long)shmfs_hash(&ino, sizeof(ino), 0x5eed);
}

static unsigned long name_hash(uint64_t dir, const char *name, size_t len)
{
	return (unsigned long)shmfs_hash(name, len, dir);
}

static int ino_match(struct cds_lfht_node *node, const void *key)
{
	return caa_container_of(node, struct shmfs_inode, hnode)->ino == *(const uint64_t *)key;
}

struct name_key {
	uint64_t dir;
	const char *name;
	size_t len;
};

static int name_match(struct cds_lfht_node *node, const void *key)
{
	const struct shmfs_dentry *d = caa_container_of(node, struct shmfs_dentry, hnode);
	const struct name_key *k = key;

	return d->dir == k->dir && d->name_len == k->len && !memcmp(d->name, k->name, k->len);
}

struct shmfs_inode *shmfs_ns_iget(struct shmfs_ns *ns, uint64_t ino)
{
	struct cds_lfht_iter it;

	cds_lfht_lookup(ns->inodes, ino_hash(ino), ino_match, &ino, &it);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
	return n ? caa_container_of(n, struct shmfs_inode, hnode) : NULL;
}

/* What records may refer to: not inodes that are gone but open here. */
static struct shmfs_inode *live_iget(struct shmfs_ns *ns, uint64_t ino)
{
	struct shmfs_inode *ip = shmfs_ns_iget(ns, ino);

	return ip && !ip->gone ? ip : NULL;
}

struct shmfs_dentry *shmfs_ns_lookup(struct shmfs_ns *ns, uint64_t dir, const char *name,
				     size_t len)
{
	struct name_key k = { dir, name, len };
	struct cds_lfht_iter it;

	cds_lfht_lookup(ns->dentries, name_hash(dir, name, len), name_match, &k, &it);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
	return n ? caa_container_of(n, struct shmfs_dentry, hnode) : NULL;
}

/* ---- freeing after a grace period ---------------------------------------- */

static void free_attr_cb(struct rcu_head *h) { free(caa_container_of(h, struct shmfs_attr, rcu)); }
static void free_ext_cb(struct rcu_head *h) { free(caa_container_of(h, struct shmfs_extmap, rcu)); }
static void free_xattrs_cb(struct rcu_head *h) { free(caa_container_of(h, struct shmfs_xattrs, rcu)); }
static void free_dentry_cb(struct rcu_head *h) { free(caa_container_of(h, struct shmfs_dentry, rcu)); }

static void free_inode_cb(struct rcu_head *h);

/* Free after a grace period -- or at once while no reader can exist. */
static void retire(struct shmfs_ns *ns, struct rcu_head *h, void (*cb)(struct rcu_head *))
{
	/* Nodes of the hash tables wait for a grace period even now:
	 * rculfhash resizes from its own threads, which walk the chains
	 * while we are alone. */
	if (ns->exclusive && cb != free_inode_cb && cb != free_dentry_cb)
		cb(h);
	else
		call_rcu(h, cb);
}

static void free_inode_now(struct shmfs_inode *ip)
{
	free(ip->attr);
	free(ip->ext);
	free(ip->xattrs);
	free(ip->target);
	free(ip);
}

static void free_inode_cb(struct rcu_head *h)
{
	free_inode_now(caa_container_of(h, struct shmfs_inode, rcu));
}

/* ---- construction ---------------------------------------------------------- */

struct shmfs_ns *shmfs_ns_new(uint64_t data_size, uint64_t unit, uint64_t expected_entries)
{
	struct shmfs_ns *ns = calloc(1, sizeof(*ns));
	unsigned long buckets = 1024;

	/* Start near the expected size: an auto-resizing table grows in the
	 * background, and replay would meanwhile walk long chains. */
	while (buckets < expected_entries && buckets < (1ul << 22))
		buckets <<= 1;

	if (!ns)
		return NULL;
	ns->data_size = data_size;
	ns->unit = unit;
	ns->next_ino = SHMFS_ROOT_INO;
	ns->self_host = -1;
	ns->inodes = cds_lfht_new(buckets, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				  NULL);
	ns->dentries = cds_lfht_new(buckets, 1024, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				    NULL);
	if (!ns->inodes || !ns->dentries || shmfs_alloc_init(&ns->alloc, data_size / unit, unit)) {
		shmfs_ns_free(ns);
		return NULL;
	}
	return ns;
}

/* Tear down with no readers left: free directly. */
void shmfs_ns_free(struct shmfs_ns *ns)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;

	if (!ns)
		return;
	rcu_read_lock();
	if (ns->dentries) {
		cds_lfht_for_each(ns->dentries, &it, n) {
			cds_lfht_del(ns->dentries, n);
			call_rcu(&caa_container_of(n, struct shmfs_dentry, hnode)->rcu, free_dentry_cb);
		}
	}
	if (ns->inodes) {
		cds_lfht_for_each(ns->inodes, &it, n) {
			cds_lfht_del(ns->inodes, n);
			call_rcu(&caa_container_of(n, struct shmfs_inode, hnode)->rcu, free_inode_cb);
		}
	}
	rcu_read_unlock();
	rcu_barrier();
	if (ns->dentries)
		cds_lfht_destroy(ns->dentries, NULL);
	if (ns->inodes)
		cds_lfht_destroy(ns->inodes, NULL);
	shmfs_alloc_destroy(&ns->alloc);
	free(ns->pending);
	free(ns);
}

/* ---- attribute helpers (copy, change, swap) -------------------------------- */

static struct shmfs_time ns_time(uint64_t ns_since_epoch)
{
	return (struct shmfs_time){ .t_sec = ns_since_epoch / 1000000000ull,
				    .t_nsec = (uint32_t)(ns_since_epoch % 1000000000ull) };
}

/* ip's attributes to modify: a private copy, or (no readers) the live
 * ones; NULL when out of memory.  attr_swap() publishes, attr_drop()
 * abandons. */
static struct shmfs_attr *attr_copy(struct shmfs_ns *ns, const struct shmfs_inode *ip)
{
	if (ns->exclusive)
		return ip->attr;
	struct shmfs_attr *a = malloc(sizeof(*a));
	if (a)
		*a = *ip->attr;
	return a;
}

static void attr_swap(struct shmfs_ns *ns, struct shmfs_inode *ip, struct shmfs_attr *a)
{
	struct shmfs_attr *old = ip->attr;

	if (a == old)
		return;
	rcu_assign_pointer(ip->attr, a);
	retire(ns, &old->rcu, free_attr_cb);
}

static void attr_drop(struct shmfs_inode *ip, struct shmfs_attr *a)
{
	if (a != ip->attr)
		free(a);
}

/* Set mtime and ctime of a directory (or ctime only) to t. */
static int touch(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t t, bool mtime, int nlink_delta)
{
	struct shmfs_attr *a = attr_copy(ns, ip);

	if (!a)
		return -ENOMEM;
	a->ctime = ns_time(t);
	if (mtime)
		a->mtime = a->ctime;
	a->nlink = (uint32_t)((int64_t)a->nlink + nlink_delta);
	attr_swap(ns, ip, a);
	return 0;
}

/* ---- extents ------------------------------------------------------------------ */

static bool open_here(struct shmfs_ns *ns, uint64_t ino)
{
	struct shmfs_inode *ip = shmfs_ns_iget(ns, ino);

	return ip && __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) > 0;
}

/* Units no file owns any more; reusable once shmfs_ns_reap() says so.  If
 * the file is open here, its handles may still read them: pinned. */
static int pend_free(struct shmfs_ns *ns, uint64_t ino, uint64_t first, uint64_t n)
{
	if (ns->npending == ns->cap_pending) {
		size_t cap = ns->cap_pending ? ns->cap_pending * 2 : 64;
		struct shmfs_pending *p = realloc(ns->pending, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		ns->pending = p;
		ns->cap_pending = cap;
	}
	/* What this host frees itself, its own kernel has already let go of
	 * (truncate drops the page cache; unlink of an open file keeps it). */
	bool pin = (int)ns->cur_host != ns->self_host && open_here(ns, ino);
	ns->pending[ns->npending++] = (struct shmfs_pending){ first, n, ns->cur_seq, ino, pin };
	shmfs_alloc_mark(&ns->alloc, first, n, false);
	shmfs_alloc_pend(&ns->alloc, first, n, true);
	return 0;
}

static bool listed(const uint64_t *v, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

uint64_t shmfs_ns_reap(struct shmfs_ns *ns, uint64_t safe_seq, const uint64_t *pins,
		       size_t npins)
{
	uint64_t released = 0;
	size_t k = 0;

	rcu_read_lock();
	for (size_t i = 0; i < ns->npending; i++) {
		struct shmfs_pending *p = &ns->pending[i];
		if (p->seq < safe_seq && !(p->pinned && open_here(ns, p->ino)) &&
		    !listed(pins, npins, p->seq)) {
			shmfs_alloc_pend(&ns->alloc, p->first, p->n, false);
			released += p->n;
			p->seq = 0; /* released (records are numbered from 1) */
		}
	}
	rcu_read_unlock();
	/* A unit freed, reused by another host and freed again is in two
	 * entries: releasing the older one must leave it pending for the
	 * newer one, which other hosts may still be reading through.  Such a
	 * unit is now free and unmarked inside an entry still pending (no
	 * other unit is: pend_free marks, reuse makes it used), so one pass
	 * over the entries left marks it again -- not a pass per pair of
	 * entries, which after replaying a long log held the replay lock for
	 * seconds. */
	bool any = released;
	for (size_t i = 0; any && i < ns->npending; i++) {
		const struct shmfs_pending *p = &ns->pending[i];
		for (uint64_t u = p->first; p->seq && u < p->first + p->n; u++) {
			if ((ns->alloc.pend[u / 64] >> (u % 64) & 1) ||
			    !shmfs_alloc_is_free(&ns->alloc, u, 1))
				continue;
			shmfs_alloc_pend(&ns->alloc, u, 1, true);
			released--;
		}
	}
	for (size_t i = 0; i < ns->npending; i++)
		if (ns->pending[i].seq)
			ns->pending[k++] = ns->pending[i];
	ns->npending = k;
	return released;
}

uint64_t shmfs_ns_pins(struct shmfs_ns *ns, uint64_t *pins, size_t n)
{
	rcu_read_lock();
	/* Unpinned for good once the file is closed here: a later open sees
	 * the new layout, never these units. */
	for (size_t i = 0; i < ns->npending; i++)
		if (ns->pending[i].pinned && !open_here(ns, ns->pending[i].ino))
			ns->pending[i].pinned = false;
	rcu_read_unlock();
	for (size_t k = 0; k < n; k++) {
		bool still = false;
		for (size_t i = 0; pins[k] && i < ns->npending && !still; i++)
			still = ns->pending[i].pinned && ns->pending[i].seq == pins[k];
		if (!still)
			pins[k] = 0;
	}
	/* Each record pinned and not listed: into a free entry, oldest first
	 * (so that the rest, all from one seq on, holds back as little as it
	 * can), else into the rest. */
	for (;;) {
		uint64_t low = 0;
		for (size_t i = 0; i < ns->npending; i++) {
			const struct shmfs_pending *p = &ns->pending[i];
			if (p->pinned && (!low || p->seq < low) && !listed(pins, n, p->seq))
				low = p->seq;
		}
		size_t k = 0;
		while (k < n && pins[k])
			k++;
		if (!low || k == n)
			return low;
		pins[k] = low;
	}
}

/* Give all data of ip's extents in [start, end) back to the allocator and
 * return the new map (or the old one if nothing changed). */
static int ext_release(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t start, uint64_t end,
		       uint64_t *freed)
{
	const struct shmfs_extmap *m = ip->ext;
	struct shmfs_extmap *nm;
	uint32_t n = 0;

	*freed = 0;
	if (!m || start >= end)
		return 0;
	nm = malloc(sizeof(*nm) + (m->n + 1) * sizeof(nm->e[0]));
	if (!nm)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->n; i++) {
		struct shmfs_extent e = m->e[i];
		uint64_t es = e.foff, ee = e.foff + e.len;
		if (ee <= start || es >= end) {
			nm->e[n++] = e;
			continue;
		}
		uint64_t cs = SHMFS_MAX(es, start), ce = SHMFS_MIN(ee, end);
		int rc = pend_free(ns, ip->ino, (e.doff + (cs - es)) / ns->unit,
				   (ce - cs) / ns->unit);
		if (rc) {
			free(nm);
			return rc;
		}
		*freed += ce - cs;
		if (es < cs)
			nm->e[n++] = (struct shmfs_extent){ es, e.doff, cs - es };
		if (ce < ee)
			nm->e[n++] = (struct shmfs_extent){ ce, e.doff + (ce - es), ee - ce };
	}
	nm->n = n;
	struct shmfs_extmap *old = ip->ext;
	if (n == 0) {
		free(nm);
		nm = NULL;
	}
	rcu_assign_pointer(ip->ext, nm);
	__atomic_store_n(&ip->layout_seq, ns->cur_seq, __ATOMIC_RELEASE);
	retire(ns, &old->rcu, free_ext_cb);
	return 0;
}

static bool ext_overlaps(const struct shmfs_extmap *m, uint64_t foff, uint64_t len)
{
	if (!m)
		return false;
	for (uint32_t i = 0; i < m->n; i++)
		if (m->e[i].foff < foff + len && foff < m->e[i].foff + m->e[i].len)
			return true;
	return false;
}

static int ext_insert(struct shmfs_ns *ns, struct shmfs_inode *ip, struct shmfs_extent x)
{
	const struct shmfs_extmap *m = ip->ext;
	uint32_t n = m ? m->n : 0, j = 0;
	struct shmfs_extmap *nm = malloc(sizeof(*nm) + (n + 1) * sizeof(nm->e[0]));

	if (!nm)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		if (j == i && m->e[i].foff > x.foff)
			nm->e[j++] = x;
		nm->e[j++] = m->e[i];
	}
	if (j == n)
		nm->e[j++] = x;
	/* Merge with the neighbours when file and data are both contiguous. */
	uint32_t k = 0;
	for (uint32_t i = 0; i < j; i++) {
		if (k && nm->e[k - 1].foff + nm->e[k - 1].len == nm->e[i].foff &&
		    nm->e[k - 1].doff + nm->e[k - 1].len == nm->e[i].doff)
			nm->e[k - 1].len += nm->e[i].len;
		else
			nm->e[k++] = nm->e[i];
	}
	nm->n = k;
	struct shmfs_extmap *old = ip->ext;
	rcu_assign_pointer(ip->ext, nm);
	__atomic_store_n(&ip->layout_seq, ns->cur_seq, __ATOMIC_RELEASE);
	if (old)
		retire(ns, &old->rcu, free_ext_cb);
	return 0;
}

/* ---- inodes and entries ------------------------------------------------------ */

static struct shmfs_inode *inode_new(uint64_t ino, uint32_t mode, uint32_t uid, uint32_t gid,
				     uint64_t rdev, uint64_t t)
{
	struct shmfs_inode *ip = calloc(1, sizeof(*ip));
	struct shmfs_attr *a = calloc(1, sizeof(*a));

	if (!ip || !a) {
		free(ip);
		free(a);
		return NULL;
	}
	ip->ino = ino;
	ip->type = mode & S_IFMT;
	a->mode = mode;
	a->uid = uid;
	a->gid = gid;
	a->rdev = rdev;
	a->atime = a->mtime = a->ctime = a->btime = ns_time(t);
	ip->attr = a;
	CDS_INIT_LIST_HEAD(&ip->children);
	ip->next_cookie = 3; /* 1 and 2 are "." and ".." */
	cds_lfht_node_init(&ip->hnode);
	return ip;
}

static struct shmfs_dentry *dentry_new(uint64_t dir, uint64_t ino, uint32_t type,
				       const char *name, size_t len)
{
	struct shmfs_dentry *d = malloc(sizeof(*d) + len + 1);

	if (!d)
		return NULL;
	d->dir = dir;
	d->ino = ino;
	d->type = type;
	d->name_len = (uint16_t)len;
	memcpy(d->name, name, len);
	d->name[len] = 0;
	cds_lfht_node_init(&d->hnode);
	return d;
}

static void dentry_add(struct shmfs_ns *ns, struct shmfs_inode *dir, struct shmfs_dentry *d)
{
	d->cookie = dir->next_cookie++;
	cds_lfht_add(ns->dentries, name_hash(d->dir, d->name, d->name_len), &d->hnode);
	cds_list_add_tail_rcu(&d->sibling, &dir->children);
	dir->nchildren++;
}

static void dentry_del(struct shmfs_ns *ns, struct shmfs_inode *dir, struct shmfs_dentry *d)
{
	cds_lfht_del(ns->dentries, &d->hnode);
	cds_list_del_rcu(&d->sibling);
	dir->nchildren--;
	retire(ns, &d->rcu, free_dentry_cb);
}

/* Take ip out of the namespace: its data becomes pending free space.  An
 * inode still open here stays readable (gone) until shmfs_ns_forget(). */
/* Say which host's reservation ahead ip holds (slot + 1, 0: none), keeping
 * the per-host counts that tell a daemon when a dead host left some. */
static void ahead_owner(struct shmfs_ns *ns, struct shmfs_inode *ip, uint32_t host)
{
	if (ip->ahead_host == host)
		return;
	if (ip->ahead_host && ip->ahead_host <= SHMFS_MAX_HOSTS)
		__atomic_fetch_sub(&ns->ahead_by[ip->ahead_host - 1], 1, __ATOMIC_RELAXED);
	if (host && host <= SHMFS_MAX_HOSTS)
		__atomic_fetch_add(&ns->ahead_by[host - 1], 1, __ATOMIC_RELAXED);
	ip->ahead_host = host;
}

/* After extents were released: nothing mapped from the reservation onward
 * any more means it was given back. */
static void ahead_trimmed(struct shmfs_ns *ns, struct shmfs_inode *ip)
{
	const struct shmfs_extmap *m = ip->ext;

	if (ip->ahead_from &&
	    (!m || !m->n || m->e[m->n - 1].foff + m->e[m->n - 1].len <= ip->ahead_from)) {
		ip->ahead_from = 0;
		ahead_owner(ns, ip, 0);
	}
}

static int inode_drop(struct shmfs_ns *ns, struct shmfs_inode *ip)
{
	uint64_t freed;

	if (__atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) > 0) {
		/* Keep the extent map for the open handles; free the units. */
		const struct shmfs_extmap *m = ip->ext;
		for (uint32_t i = 0; m && i < m->n; i++) {
			int rc = pend_free(ns, ip->ino, m->e[i].doff / ns->unit, m->e[i].len / ns->unit);
			if (rc)
				return rc;
		}
		if (ip->orphan_host)
			__atomic_fetch_sub(&ns->norphans, 1, __ATOMIC_RELAXED);
		ahead_owner(ns, ip, 0);
		ip->gone = true;
		ns->ninodes--;
		return 0;
	}
	if (ip->ext) {
		int rc = ext_release(ns, ip, 0, UINT64_MAX, &freed);
		if (rc)
			return rc;
	}
	if (ip->orphan_host)
		__atomic_fetch_sub(&ns->norphans, 1, __ATOMIC_RELAXED);
	ahead_owner(ns, ip, 0);
	cds_lfht_del(ns->inodes, &ip->hnode);
	ns->ninodes--;
	retire(ns, &ip->rcu, free_inode_cb);
	return 0;
}

/* Drop one link of ip; the inode goes away with its last link unless the
 * writer keeps it as an orphan (SHMFS_LR_F_KEEP). */
static int inode_unlink(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t t, bool keep)
{
	if (ip->attr->nlink > (ip->type == S_IFDIR ? 2u : 1u))
		return touch(ns, ip, t, false, -1);
	if (keep && ip->type != S_IFDIR) {
		if (!ip->orphan_host)
			__atomic_fetch_add(&ns->norphans, 1, __ATOMIC_RELAXED);
		ip->orphan_host = (uint32_t)ns->cur_host + 1;
		return touch(ns, ip, t, false, -1);
	}
	return inode_drop(ns, ip);
}

void shmfs_ns_forget(struct shmfs_ns *ns, uint64_t ino)
{
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(ns, ino);
	if (ip && ip->gone && __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) == 0) {
		cds_lfht_del(ns->inodes, &ip->hnode);
		retire(ns, &ip->rcu, free_inode_cb);
	}
	rcu_read_unlock();
}

static struct shmfs_inode *get_dir(struct shmfs_ns *ns, uint64_t ino, int *err)
{
	struct shmfs_inode *ip = live_iget(ns, ino);

	*err = !ip ? -ENOENT : ip->type != S_IFDIR ? -ENOTDIR : 0;
	return *err ? NULL : ip;
}

/* Is dir `anc` an ancestor of (or equal to) dir `ino`?  Bounded walk. */
static bool is_ancestor(struct shmfs_ns *ns, uint64_t anc, uint64_t ino)
{
	for (uint64_t steps = 0; steps <= ns->ninodes; steps++) {
		if (ino == anc)
			return true;
		if (ino == SHMFS_ROOT_INO)
			return false;
		struct shmfs_inode *ip = live_iget(ns, ino);
		if (!ip)
			return false;
		ino = ip->parent;
	}
	return true; /* a cycle: treat as "would loop" */
}

/* ---- record types --------------------------------------------------------- */

static int apply_create(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
			bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_create c;
	struct shmfs_inode *dir = NULL, *ip;
	const char *name;
	int err;

	memcpy(&c, p, sizeof(c));
	name = (const char *)p + sizeof(c);
	/* Inode numbers only grow, so a number below next_ino exists or did. */
	if (c.cr_ino < ns->next_ino)
		REJECT(live_iget(ns, c.cr_ino) ? -EEXIST : -EINVAL,
		       "inode %" PRIu64 " was used before (next is %" PRIu64 ")", c.cr_ino,
		       ns->next_ino);
	if (c.cr_ino != SHMFS_ROOT_INO) {
		dir = get_dir(ns, c.cr_parent, &err);
		if (!dir)
			REJECT(err, "create %.*s: parent %" PRIu64 " %s", c.cr_name_len, name,
			       c.cr_parent, err == -ENOENT ? "does not exist" : "is not a directory");
		if (shmfs_ns_lookup(ns, c.cr_parent, name, c.cr_name_len))
			REJECT(-EEXIST, "create: %.*s exists in %" PRIu64, c.cr_name_len, name,
			       c.cr_parent);
		if (S_ISDIR(c.cr_mode) && dir->attr->nlink >= UINT32_MAX - 1)
			REJECT(-EMLINK, "directory %" PRIu64 " has too many subdirectories",
			       c.cr_parent);
	}
	if (dry)
		return 0;

	ip = inode_new(c.cr_ino, c.cr_mode, c.cr_uid, c.cr_gid, c.cr_rdev, h->lr_time);
	if (!ip)
		return -ENOMEM;
	ip->attr->nlink = S_ISDIR(c.cr_mode) ? 2 : 1;
	ip->parent = c.cr_ino == SHMFS_ROOT_INO ? SHMFS_ROOT_INO : c.cr_parent;
	if (S_ISLNK(c.cr_mode)) {
		ip->target = malloc(c.cr_target_len + 1u);
		if (!ip->target) {
			free_inode_now(ip);
			return -ENOMEM;
		}
		memcpy(ip->target, name + c.cr_name_len, c.cr_target_len);
		ip->target[c.cr_target_len] = 0;
		ip->target_len = c.cr_target_len;
		ip->attr->size = c.cr_target_len;
	}
	struct shmfs_dentry *d = NULL;
	if (dir) {
		d = dentry_new(dir->ino, ip->ino, ip->type, name, c.cr_name_len);
		if (!d || touch(ns, dir, h->lr_time, true, S_ISDIR(c.cr_mode) ? 1 : 0)) {
			free(d);
			free_inode_now(ip);
			return -ENOMEM;
		}
	}
	cds_lfht_add(ns->inodes, ino_hash(ip->ino), &ip->hnode);
	ns->ninodes++;
	ns->next_ino = c.cr_ino + 1;
	if (d)
		dentry_add(ns, dir, d);
	return 0;
}

static int apply_link(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
		      bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_link l;
	struct shmfs_inode *dir, *ip;
	const char *name = (const char *)p + sizeof(l);
	int err;

	memcpy(&l, p, sizeof(l));
	dir = get_dir(ns, l.ln_dir, &err);
	if (!dir)
		REJECT(err, "link: directory %" PRIu64 " is missing or not a directory", l.ln_dir);
	ip = live_iget(ns, l.ln_ino);
	if (!ip)
		REJECT(-ENOENT, "link: inode %" PRIu64 " does not exist", l.ln_ino);
	if (ip->type == S_IFDIR)
		REJECT(-EPERM, "link: inode %" PRIu64 " is a directory", l.ln_ino);
	if (ip->attr->nlink >= UINT32_MAX - 1)
		REJECT(-EMLINK, "link: inode %" PRIu64 " has too many links", l.ln_ino);
	if (shmfs_ns_lookup(ns, l.ln_dir, name, l.ln_name_len))
		REJECT(-EEXIST, "link: %.*s exists", l.ln_name_len, name);
	if (dry)
		return 0;
	struct shmfs_dentry *d = dentry_new(dir->ino, ip->ino, ip->type, name, l.ln_name_len);
	if (!d || touch(ns, ip, h->lr_time, false, 1) || touch(ns, dir, h->lr_time, true, 0)) {
		free(d);
		return -ENOMEM;
	}
	dentry_add(ns, dir, d);
	return 0;
}

static int apply_unlink(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
			bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_unlink u;
	struct shmfs_inode *dir, *ip;
	struct shmfs_dentry *d;
	const char *name = (const char *)p + sizeof(u);
	bool rmdir = h->lr_type == SHMFS_LR_RMDIR;
	int err;

	memcpy(&u, p, sizeof(u));
	dir = get_dir(ns, u.ul_dir, &err);
	if (!dir)
		REJECT(err, "%s: directory %" PRIu64 " is missing or not a directory",
		       rmdir ? "rmdir" : "unlink", u.ul_dir);
	d = shmfs_ns_lookup(ns, u.ul_dir, name, u.ul_name_len);
	if (!d)
		REJECT(-ENOENT, "%s: no %.*s in %" PRIu64, rmdir ? "rmdir" : "unlink",
		       u.ul_name_len, name, u.ul_dir);
	if (d->ino != u.ul_ino)
		REJECT(-ESTALE, "%s: %.*s is inode %" PRIu64 ", not %" PRIu64,
		       rmdir ? "rmdir" : "unlink", u.ul_name_len, name, d->ino, u.ul_ino);
	ip = live_iget(ns, d->ino);
	if (!ip)
		REJECT(-EUCLEAN, "entry %.*s names missing inode %" PRIu64, u.ul_name_len, name,
		       d->ino);
	if (rmdir && ip->type != S_IFDIR)
		REJECT(-ENOTDIR, "rmdir: %.*s is not a directory", u.ul_name_len, name);
	if (!rmdir && ip->type == S_IFDIR)
		REJECT(-EISDIR, "unlink: %.*s is a directory", u.ul_name_len, name);
	if (rmdir && ip->nchildren)
		REJECT(-ENOTEMPTY, "rmdir: %.*s is not empty", u.ul_name_len, name);
	if (dry)
		return 0;
	if (touch(ns, dir, h->lr_time, true, rmdir ? -1 : 0))
		return -ENOMEM;
	dentry_del(ns, dir, d);
	return inode_unlink(ns, ip, h->lr_time, h->lr_flags & SHMFS_LR_F_KEEP);
}

static int apply_rename(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
			bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_rename r;
	struct shmfs_inode *od, *nd, *src, *dst = NULL;
	struct shmfs_dentry *sd, *td;
	int err;

	memcpy(&r, p, sizeof(r));
	const char *oname = (const char *)p + sizeof(r);
	const char *nname = oname + r.rn_oldname_len;
	bool exchange = r.rn_flags & SHMFS_RENAME_EXCHANGE;

	od = get_dir(ns, r.rn_olddir, &err);
	if (!od)
		REJECT(err, "rename: source directory %" PRIu64 " is invalid", r.rn_olddir);
	nd = get_dir(ns, r.rn_newdir, &err);
	if (!nd)
		REJECT(err, "rename: target directory %" PRIu64 " is invalid", r.rn_newdir);
	sd = shmfs_ns_lookup(ns, r.rn_olddir, oname, r.rn_oldname_len);
	if (!sd)
		REJECT(-ENOENT, "rename: no %.*s in %" PRIu64, r.rn_oldname_len, oname,
		       r.rn_olddir);
	if (sd->ino != r.rn_ino)
		REJECT(-ESTALE, "rename: %.*s is not inode %" PRIu64, r.rn_oldname_len, oname,
		       r.rn_ino);
	td = shmfs_ns_lookup(ns, r.rn_newdir, nname, r.rn_newname_len);
	if ((td ? td->ino : 0) != r.rn_target) {
		if (td && (r.rn_flags & SHMFS_RENAME_NOREPLACE))
			REJECT(-EEXIST, "rename: %.*s exists", r.rn_newname_len, nname);
		REJECT(td ? -ESTALE : -ENOENT, "rename: target %.*s is not inode %" PRIu64,
		       r.rn_newname_len, nname, r.rn_target);
	}
	src = live_iget(ns, r.rn_ino);
	if (!src)
		REJECT(-EUCLEAN, "rename: inode %" PRIu64 " is missing", r.rn_ino);
	if (td) {
		dst = live_iget(ns, td->ino);
		if (!dst)
			REJECT(-EUCLEAN, "rename: inode %" PRIu64 " is missing", td->ino);
	}
	/* Neither directory may move below itself. */
	if (src->type == S_IFDIR && r.rn_olddir != r.rn_newdir &&
	    is_ancestor(ns, src->ino, r.rn_newdir))
		REJECT(-EINVAL, "rename: directory %" PRIu64 " would move into itself", src->ino);
	if (exchange && dst->type == S_IFDIR && r.rn_olddir != r.rn_newdir &&
	    is_ancestor(ns, dst->ino, r.rn_olddir))
		REJECT(-EINVAL, "rename: directory %" PRIu64 " would move into itself", dst->ino);
	if (dst && !exchange) {
		if (src->type == S_IFDIR && dst->type != S_IFDIR)
			REJECT(-ENOTDIR, "rename: %.*s is not a directory", r.rn_newname_len, nname);
		if (src->type != S_IFDIR && dst->type == S_IFDIR)
			REJECT(-EISDIR, "rename: %.*s is a directory", r.rn_newname_len, nname);
		if (dst->type == S_IFDIR && dst->nchildren)
			REJECT(-ENOTEMPTY, "rename: %.*s is not empty", r.rn_newname_len, nname);
	}
	if (dry)
		return 0;

	uint64_t t = h->lr_time;
	int sdir = src->type == S_IFDIR, ddir = dst && dst->type == S_IFDIR;
	struct shmfs_dentry *ns_d = dentry_new(nd->ino, src->ino, src->type, nname,
					       r.rn_newname_len);
	struct shmfs_dentry *os_d = exchange ? dentry_new(od->ino, dst->ino, dst->type, oname,
							  r.rn_oldname_len) : NULL;
	if (!ns_d || (exchange && !os_d)) {
		free(ns_d);
		free(os_d);
		return -ENOMEM;
	}
	if (exchange) {
		dentry_del(ns, od, sd);
		dentry_del(ns, nd, td);
		dentry_add(ns, nd, ns_d);
		dentry_add(ns, od, os_d);
		if (od != nd) {
			if (touch(ns, od, t, true, ddir - sdir) || touch(ns, nd, t, true, sdir - ddir))
				return -ENOMEM;
		} else if (touch(ns, od, t, true, 0)) {
			return -ENOMEM;
		}
		src->parent = sdir ? nd->ino : src->parent;
		dst->parent = ddir ? od->ino : dst->parent;
		if (touch(ns, src, t, false, 0) || touch(ns, dst, t, false, 0))
			return -ENOMEM;
		return 0;
	}
	dentry_del(ns, od, sd);
	if (td)
		dentry_del(ns, nd, td);
	dentry_add(ns, nd, ns_d);
	if (sdir)
		src->parent = nd->ino;
	if (od != nd) {
		if (touch(ns, od, t, true, -sdir) || touch(ns, nd, t, true, sdir - ddir))
			return -ENOMEM;
	} else if (touch(ns, od, t, true, -ddir)) {
		return -ENOMEM;
	}
	if (touch(ns, src, t, false, 0))
		return -ENOMEM;
	/* The replaced inode loses a name (an empty directory: its last). */
	return dst ? inode_unlink(ns, dst, t, h->lr_flags & SHMFS_LR_F_KEEP) : 0;
}

static int apply_setattr(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
			 bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_setattr s;
	struct shmfs_inode *ip;
	struct shmfs_attr *a;
	uint64_t freed = 0;

	memcpy(&s, p, sizeof(s));
	ip = live_iget(ns, s.sa_ino);
	if (!ip)
		REJECT(-ENOENT, "setattr: inode %" PRIu64 " does not exist", s.sa_ino);
	if ((s.sa_valid & SHMFS_SA_SIZE) && ip->type != S_IFREG)
		REJECT(ip->type == S_IFDIR ? -EISDIR : -EINVAL,
		       "setattr: size of non-regular inode %" PRIu64, s.sa_ino);
	if (dry)
		return 0;
	if ((s.sa_valid & SHMFS_SA_SIZE) && s.sa_size < ip->attr->size) {
		int rc = ext_release(ns, ip, shmfs_round_up(s.sa_size, ns->unit), UINT64_MAX, &freed);
		if (rc)
			return rc;
		ahead_trimmed(ns, ip);
	}
	a = attr_copy(ns, ip);
	if (!a)
		return -ENOMEM;
	if (s.sa_valid & SHMFS_SA_MODE)
		a->mode = (a->mode & S_IFMT) | s.sa_mode;
	if (s.sa_valid & SHMFS_SA_UID)
		a->uid = s.sa_uid;
	if (s.sa_valid & SHMFS_SA_GID)
		a->gid = s.sa_gid;
	if (s.sa_valid & SHMFS_SA_SIZE)
		a->size = s.sa_size;
	if (s.sa_valid & SHMFS_SA_ATIME)
		a->atime = s.sa_atime;
	if (s.sa_valid & SHMFS_SA_MTIME)
		a->mtime = s.sa_mtime;
	if (s.sa_valid & SHMFS_SA_CTIME)
		a->ctime = s.sa_ctime;
	a->blocks_bytes -= freed;
	attr_swap(ns, ip, a);
	return 0;
}

static int apply_extent(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
			bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_extent x;
	struct shmfs_inode *ip;
	struct shmfs_attr *a;
	bool map = h->lr_type == SHMFS_LR_EXTENT_MAP;
	uint64_t freed = 0;

	memcpy(&x, p, sizeof(x));
	ip = live_iget(ns, x.ex_ino);
	if (!ip)
		REJECT(-ENOENT, "extent: inode %" PRIu64 " does not exist", x.ex_ino);
	if (ip->type != S_IFREG)
		REJECT(-EINVAL, "extent: inode %" PRIu64 " is not a regular file", x.ex_ino);
	if (map) {
		if (x.ex_doff >= ns->data_size || x.ex_len > ns->data_size - x.ex_doff)
			REJECT(-EUCLEAN, "extent: data [%" PRIu64 ", +%" PRIu64
			       ") is outside the data area", x.ex_doff, x.ex_len);
		if (!shmfs_alloc_is_free(&ns->alloc, x.ex_doff / ns->unit, x.ex_len / ns->unit))
			REJECT(-EUCLEAN, "extent: data [%" PRIu64 ", +%" PRIu64
			       ") overlaps space in use", x.ex_doff, x.ex_len);
		if (ext_overlaps(ip->ext, x.ex_foff, x.ex_len))
			REJECT(-EEXIST, "extent: file range [%" PRIu64 ", +%" PRIu64
			       ") of inode %" PRIu64 " is already mapped", x.ex_foff, x.ex_len,
			       x.ex_ino);
	}
	if (dry)
		return 0;
	a = attr_copy(ns, ip);
	if (!a)
		return -ENOMEM;
	if (map) {
		if (ext_insert(ns, ip, (struct shmfs_extent){ x.ex_foff, x.ex_doff, x.ex_len })) {
			attr_drop(ip, a);
			return -ENOMEM;
		}
		shmfs_alloc_mark(&ns->alloc, x.ex_doff / ns->unit, x.ex_len / ns->unit, true);
		shmfs_alloc_pend(&ns->alloc, x.ex_doff / ns->unit, x.ex_len / ns->unit, false);
		if (h->lr_flags & SHMFS_EXT_F_AHEAD) {
			if (!ip->ahead_from || x.ex_foff < ip->ahead_from)
				ip->ahead_from = x.ex_foff ? x.ex_foff : 1;
			ahead_owner(ns, ip, (uint32_t)ns->cur_host + 1);
		}
		a->blocks_bytes += x.ex_len;
		if (h->lr_flags & SHMFS_EXT_F_SIZE) {
			a->size = x.ex_size;
			a->mtime = ns_time(h->lr_time);
		}
	} else {
		if (ext_release(ns, ip, x.ex_foff, x.ex_foff + x.ex_len, &freed)) {
			attr_drop(ip, a);
			return -ENOMEM;
		}
		a->blocks_bytes -= freed;
		a->mtime = ns_time(h->lr_time);
		if (h->lr_flags & SHMFS_EXT_F_AHEAD) { /* the reservation ends */
			ip->ahead_from = 0;
			ahead_owner(ns, ip, 0);
		}
		ahead_trimmed(ns, ip);
	}
	a->ctime = ns_time(h->lr_time);
	attr_swap(ns, ip, a);
	return 0;
}

static int apply_xattr(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
		       bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_xattr x;
	struct shmfs_inode *ip;
	bool set = h->lr_type == SHMFS_LR_XATTR_SET;
	const uint8_t *name = p + sizeof(x), *value;
	int found = -1;

	memcpy(&x, p, sizeof(x));
	value = name + x.xa_name_len;
	ip = live_iget(ns, x.xa_ino);
	if (!ip)
		REJECT(-ENOENT, "xattr: inode %" PRIu64 " does not exist", x.xa_ino);
	const struct shmfs_xattrs *xs = ip->xattrs;
	for (uint32_t i = 0; xs && i < xs->n; i++)
		if (xs->x[i].name_len == x.xa_name_len &&
		    !memcmp(xs->x[i].name, name, x.xa_name_len))
			found = (int)i;
	if (found >= 0 && set && (x.xa_flags & SHMFS_XATTR_CREATE))
		REJECT(-EEXIST, "xattr: %.*s exists", x.xa_name_len, name);
	if (found < 0 && (!set || (x.xa_flags & SHMFS_XATTR_REPLACE)))
		REJECT(-ENODATA, "xattr: no %.*s", x.xa_name_len, name);
	if (dry)
		return 0;

	/* Build the new set: every other attribute, plus the new one. */
	uint32_t n = 0;
	size_t bytes = 0;
	for (uint32_t i = 0; xs && i < xs->n; i++)
		if ((int)i != found) {
			n++;
			bytes += xs->x[i].name_len + (size_t)xs->x[i].value_len;
		}
	if (set) {
		n++;
		bytes += x.xa_name_len + (size_t)x.xa_value_len;
	}
	struct shmfs_xattrs *nx = NULL;
	if (n) {
		nx = malloc(sizeof(*nx) + n * sizeof(nx->x[0]) + bytes);
		if (!nx)
			return -ENOMEM;
		uint8_t *store = (uint8_t *)&nx->x[n];
		uint32_t k = 0;
		/* Old attributes in order, the changed one in its place, a new one last. */
		for (uint32_t i = 0; i <= (xs ? xs->n : 0); i++) {
			bool here = (xs && i < xs->n) ? (int)i == found : found < 0;
			const uint8_t *nm, *val;
			uint16_t nl;
			uint32_t vl;
			if (here && !set)
				continue;
			if (here) {
				nm = name; nl = x.xa_name_len; val = value; vl = x.xa_value_len;
			} else if (xs && i < xs->n) {
				nm = xs->x[i].name; nl = xs->x[i].name_len;
				val = xs->x[i].value; vl = xs->x[i].value_len;
			} else {
				continue;
			}
			nx->x[k] = (struct shmfs_xattr){ nl, vl, store, store + nl };
			memcpy(store, nm, nl);
			memcpy(store + nl, val, vl);
			store += nl + (size_t)vl;
			k++;
		}
		nx->n = k;
	}
	if (touch(ns, ip, h->lr_time, false, 0)) {
		free(nx);
		return -ENOMEM;
	}
	struct shmfs_xattrs *old = ip->xattrs;
	rcu_assign_pointer(ip->xattrs, nx);
	if (old)
		retire(ns, &old->rcu, free_xattrs_cb);
	return 0;
}

static int apply_release(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const uint8_t *p,
			 bool dry, char *why, size_t whylen)
{
	struct shmfs_lr_release rl;

	memcpy(&rl, p, sizeof(rl));
	struct shmfs_inode *ip = live_iget(ns, rl.rl_ino);
	if (!ip)
		REJECT(-ENOENT, "release: inode %" PRIu64 " does not exist", rl.rl_ino);
	if (!ip->orphan_host || ip->attr->nlink)
		REJECT(-EINVAL, "release: inode %" PRIu64 " is not an orphan", rl.rl_ino);
	if (dry)
		return 0;
	return inode_drop(ns, ip);
}

int shmfs_ns_apply(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const void *payload,
		   bool dry_run, char *why, size_t whylen)
{
	int rc;

	if (why && whylen)
		why[0] = 0;
	ns->cur_seq = h->lr_seq;
	ns->cur_host = h->lr_host;
	rcu_read_lock();
	/* Only the root may come first, and nothing else before it. */
	if (h->lr_type != SHMFS_LR_NOOP && ns->next_ino == SHMFS_ROOT_INO &&
	    !(h->lr_type == SHMFS_LR_CREATE &&
	      ((const struct shmfs_lr_create *)payload)->cr_ino == SHMFS_ROOT_INO)) {
		rcu_read_unlock();
		REJECT(-ENOENT, "%s before the root directory exists", "record");
	}
	if (!dry_run) {
		__atomic_fetch_add(&ns->wseq, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
	}
	switch (h->lr_type) {
	case SHMFS_LR_NOOP: rc = 0; break;
	case SHMFS_LR_CREATE: rc = apply_create(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_LINK: rc = apply_link(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR: rc = apply_unlink(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_RENAME: rc = apply_rename(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_SETATTR: rc = apply_setattr(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP: rc = apply_extent(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE: rc = apply_xattr(ns, h, payload, dry_run, why, whylen); break;
	case SHMFS_LR_RELEASE: rc = apply_release(ns, h, payload, dry_run, why, whylen); break;
	default:
		shmfs_errf(why, whylen, "unknown record type %u", h->lr_type);
		rc = -EUCLEAN;
	}
	if (!dry_run)
		__atomic_fetch_add(&ns->wseq, 1, __ATOMIC_RELEASE);
	rcu_read_unlock();
	return rc;
}
