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
 *
 * This file holds the objects and their lifetime, lookups, and the reuse
 * of freed space; fs/ns_apply.c what each record type does to them.
 */
#include "shmfs/ns.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/util.h"
#include "ns_int.h"

/* ---- tables ------------------------------------------------------------ */

unsigned long ns_ino_hash(uint64_t ino)
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

	cds_lfht_lookup(ns->inodes, ns_ino_hash(ino), ino_match, &ino, &it);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
	return n ? caa_container_of(n, struct shmfs_inode, hnode) : NULL;
}

/* What records may refer to: not inodes that are gone but open here. */
struct shmfs_inode *ns_live_iget(struct shmfs_ns *ns, uint64_t ino)
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
void ns_free_xattrs_cb(struct rcu_head *h) { free(caa_container_of(h, struct shmfs_xattrs, rcu)); }
static void free_dentry_cb(struct rcu_head *h) { free(caa_container_of(h, struct shmfs_dentry, rcu)); }

static void free_inode_cb(struct rcu_head *h);

/* Free after a grace period -- or at once while no reader can exist. */
void ns_retire(struct shmfs_ns *ns, struct rcu_head *h, void (*cb)(struct rcu_head *))
{
	/* Nodes of the hash tables wait for a grace period even now:
	 * rculfhash resizes from its own threads, which walk the chains
	 * while we are alone. */
	if (ns->exclusive && cb != free_inode_cb && cb != free_dentry_cb)
		cb(h);
	else
		call_rcu(h, cb);
}

void ns_free_inode_now(struct shmfs_inode *ip)
{
	free(ip->attr);
	free(ip->ext);
	free(ip->xattrs);
	free(ip->target);
	free(ip);
}

static void free_inode_cb(struct rcu_head *h)
{
	ns_free_inode_now(caa_container_of(h, struct shmfs_inode, rcu));
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

struct shmfs_time ns_time(uint64_t ns_since_epoch)
{
	return (struct shmfs_time){ .t_sec = ns_since_epoch / 1000000000ull,
				    .t_nsec = (uint32_t)(ns_since_epoch % 1000000000ull) };
}

/* ip's attributes to modify: a private copy, or (no readers) the live
 * ones; NULL when out of memory.  ns_attr_swap() publishes, ns_attr_drop()
 * abandons. */
struct shmfs_attr *ns_attr_copy(struct shmfs_ns *ns, const struct shmfs_inode *ip)
{
	if (ns->exclusive)
		return ip->attr;
	struct shmfs_attr *a = malloc(sizeof(*a));
	if (a)
		*a = *ip->attr;
	return a;
}

void ns_attr_swap(struct shmfs_ns *ns, struct shmfs_inode *ip, struct shmfs_attr *a)
{
	struct shmfs_attr *old = ip->attr;

	if (a == old)
		return;
	rcu_assign_pointer(ip->attr, a);
	ns_retire(ns, &old->rcu, free_attr_cb);
}

void ns_attr_drop(struct shmfs_inode *ip, struct shmfs_attr *a)
{
	if (a != ip->attr)
		free(a);
}

/* Set mtime and ctime of a directory (or ctime only) to t. */
int ns_touch(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t t, bool mtime, int nlink_delta)
{
	struct shmfs_attr *a = ns_attr_copy(ns, ip);

	if (!a)
		return -ENOMEM;
	a->ctime = ns_time(t);
	if (mtime)
		a->mtime = a->ctime;
	a->nlink = (uint32_t)((int64_t)a->nlink + nlink_delta);
	ns_attr_swap(ns, ip, a);
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
int ns_ext_release(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t start, uint64_t end,
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
	ns_retire(ns, &old->rcu, free_ext_cb);
	return 0;
}

bool ns_ext_overlaps(const struct shmfs_extmap *m, uint64_t foff, uint64_t len)
{
	if (!m)
		return false;
	for (uint32_t i = 0; i < m->n; i++)
		if (m->e[i].foff < foff + len && foff < m->e[i].foff + m->e[i].len)
			return true;
	return false;
}

int ns_ext_insert(struct shmfs_ns *ns, struct shmfs_inode *ip, struct shmfs_extent x)
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
		ns_retire(ns, &old->rcu, free_ext_cb);
	return 0;
}

/* ---- inodes and entries ------------------------------------------------------ */

struct shmfs_inode *ns_inode_new(uint64_t ino, uint32_t mode, uint32_t uid, uint32_t gid,
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

struct shmfs_dentry *ns_dentry_new(uint64_t dir, uint64_t ino, uint32_t type,
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

void ns_dentry_add(struct shmfs_ns *ns, struct shmfs_inode *dir, struct shmfs_dentry *d)
{
	d->cookie = dir->next_cookie++;
	cds_lfht_add(ns->dentries, name_hash(d->dir, d->name, d->name_len), &d->hnode);
	cds_list_add_tail_rcu(&d->sibling, &dir->children);
	dir->nchildren++;
}

void ns_dentry_del(struct shmfs_ns *ns, struct shmfs_inode *dir, struct shmfs_dentry *d)
{
	cds_lfht_del(ns->dentries, &d->hnode);
	cds_list_del_rcu(&d->sibling);
	dir->nchildren--;
	ns_retire(ns, &d->rcu, free_dentry_cb);
}

/* Take ip out of the namespace: its data becomes pending free space.  An
 * inode still open here stays readable (gone) until shmfs_ns_forget(). */
/* Say which host's reservation ahead ip holds (slot + 1, 0: none), keeping
 * the per-host counts that tell a daemon when a dead host left some. */
void ns_ahead_owner(struct shmfs_ns *ns, struct shmfs_inode *ip, uint32_t host)
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
void ns_ahead_trimmed(struct shmfs_ns *ns, struct shmfs_inode *ip)
{
	const struct shmfs_extmap *m = ip->ext;

	if (ip->ahead_from &&
	    (!m || !m->n || m->e[m->n - 1].foff + m->e[m->n - 1].len <= ip->ahead_from)) {
		ip->ahead_from = 0;
		ns_ahead_owner(ns, ip, 0);
	}
}

int ns_inode_drop(struct shmfs_ns *ns, struct shmfs_inode *ip)
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
		ns_ahead_owner(ns, ip, 0);
		ip->gone = true;
		ns->ninodes--;
		return 0;
	}
	if (ip->ext) {
		int rc = ns_ext_release(ns, ip, 0, UINT64_MAX, &freed);
		if (rc)
			return rc;
	}
	if (ip->orphan_host)
		__atomic_fetch_sub(&ns->norphans, 1, __ATOMIC_RELAXED);
	ns_ahead_owner(ns, ip, 0);
	cds_lfht_del(ns->inodes, &ip->hnode);
	ns->ninodes--;
	ns_retire(ns, &ip->rcu, free_inode_cb);
	return 0;
}

/* Drop one link of ip; the inode goes away with its last link unless the
 * writer keeps it as an orphan (SHMFS_LR_F_KEEP). */
int ns_inode_unlink(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t t, bool keep)
{
	if (ip->attr->nlink > (ip->type == S_IFDIR ? 2u : 1u))
		return ns_touch(ns, ip, t, false, -1);
	if (keep && ip->type != S_IFDIR) {
		if (!ip->orphan_host)
			__atomic_fetch_add(&ns->norphans, 1, __ATOMIC_RELAXED);
		ip->orphan_host = (uint32_t)ns->cur_host + 1;
		return ns_touch(ns, ip, t, false, -1);
	}
	return ns_inode_drop(ns, ip);
}

void shmfs_ns_forget(struct shmfs_ns *ns, uint64_t ino)
{
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(ns, ino);
	if (ip && ip->gone && __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) == 0) {
		cds_lfht_del(ns->inodes, &ip->hnode);
		ns_retire(ns, &ip->rcu, free_inode_cb);
	}
	rcu_read_unlock();
}

struct shmfs_inode *ns_get_dir(struct shmfs_ns *ns, uint64_t ino, int *err)
{
	struct shmfs_inode *ip = ns_live_iget(ns, ino);

	*err = !ip ? -ENOENT : ip->type != S_IFDIR ? -ENOTDIR : 0;
	return *err ? NULL : ip;
}

/* Is dir `anc` an ancestor of (or equal to) dir `ino`?  Bounded walk. */
bool ns_is_ancestor(struct shmfs_ns *ns, uint64_t anc, uint64_t ino)
{
	for (uint64_t steps = 0; steps <= ns->ninodes; steps++) {
		if (ino == anc)
			return true;
		if (ino == SHMFS_ROOT_INO)
			return false;
		struct shmfs_inode *ip = ns_live_iget(ns, ino);
		if (!ip)
			return false;
		ino = ip->parent;
	}
	return true; /* a cycle: treat as "would loop" */
}
