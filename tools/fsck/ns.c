/* SPDX-License-Identifier: MIT */
/*
 * Pass 4: the invariants of the namespace pass 3 replayed, names and
 * links.
 *
 * The inodes are copied out of the replayed tables into one array sorted
 * by number (struct ns_pass), which the checks look inodes up in: every
 * directory entry names an existing inode of the type it says, in an
 * existing directory, once; every directory has one name (the root none),
 * a ".." that agrees with it, and reaches the root by its parents without
 * a cycle; link and entry counts match the entries; a file without a name
 * is an orphan, and an orphan whose host is not live is released
 * (FIX_RELEASE).  Data space -- extents and the allocator -- is alloc.c's.
 *
 * While the namespace is at hand, the problems found by every pass that
 * name an inode or a directory get its path added to their message.  The
 * whole pass runs in one RCU read-side section over the private tables.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/ns.h"
#include "shmfs/util.h"

#include "fsck.h"

static void out_of_memory(void)
{
	fprintf(stderr, PROG ": out of memory\n");
	exit(FSCK_ERROR);
}

static int ii_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct inode_info *)a)->ino, y = ((const struct inode_info *)b)->ino;

	return x < y ? -1 : x > y;
}

static struct inode_info *ii_find(const struct ns_pass *np, uint64_t ino)
{
	size_t lo = 0, hi = np->nii;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (np->ii[mid].ino == ino)
			return &np->ii[mid];
		if (np->ii[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* "/a/b/c" for an inode with a name, from its first dentry upwards. */
static const char *path_of(const struct ns_pass *np, uint64_t ino, char *buf, size_t len)
{
	size_t o = len - 1;
	unsigned depth = 0;

	buf[o] = 0;
	if (ino == SHMFS_ROOT_INO)
		return "/";
	while (ino != SHMFS_ROOT_INO) {
		struct inode_info *ii = ii_find(np, ino);
		char n[300];
		if (!ii || !ii->first || ++depth > 4096 || o < 16) {
			const char *pre = !ii ? "?" : !ii->first ? "(no name)" : "...";
			size_t l = strlen(pre);
			if (o >= l + 1) {
				o -= l;
				memcpy(buf + o, pre, l);
			}
			return buf + o;
		}
		fsck_esc(ii->first->name, ii->first->name_len, n, sizeof(n));
		size_t l = strlen(n) - 2; /* without the quotes */
		if (l + 1 > o) {
			o -= 3;
			memcpy(buf + o, "...", 3);
			return buf + o;
		}
		o -= l;
		memcpy(buf + o, n + 1, l);
		buf[--o] = '/';
		ino = ii->first->dir;
	}
	return buf + o;
}

/* The inode table, into np->ii sorted by number. */
static void collect_inodes(struct shmfs_ns *ns, struct ns_pass *np)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	size_t cap = 1024, k = 0;

	np->ii = malloc(cap * sizeof(*np->ii));
	if (!np->ii)
		out_of_memory();
	/* Nodes, not cds_lfht_for_each_entry(): that one ends on container_of
	 * of NULL, arithmetic on a null pointer (UBSan). */
	cds_lfht_for_each(ns->inodes, &it, node) {
		struct shmfs_inode *ip = caa_container_of(node, struct shmfs_inode, hnode);
		if (k == cap) {
			cap *= 2;
			np->ii = realloc(np->ii, cap * sizeof(*np->ii));
			if (!np->ii)
				out_of_memory();
		}
		np->ii[k++] = (struct inode_info){ .ino = ip->ino, .ip = ip };
	}
	np->nii = k;
	qsort(np->ii, np->nii, sizeof(*np->ii), ii_cmp);
}

/* Directory entries: parents, targets, unique names, counts. */
static void check_dentries(struct fsck *ck, struct ns_pass *np)
{
	struct shmfs_ns *ns = ck->c->ns;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	char loc[96], n1[300];
	uint64_t nd = 0;

	cds_lfht_for_each(ns->dentries, &it, node) {
		struct shmfs_dentry *d = caa_container_of(node, struct shmfs_dentry, hnode);
		struct inode_info *di = ii_find(np, d->dir), *ti = ii_find(np, d->ino);
		fsck_esc(d->name, d->name_len, n1, sizeof(n1));
		snprintf(loc, sizeof(loc), "directory %" PRIu64, d->dir);
		if (++nd % 4096 == 0)
			fsck_progress(ck, "Checking the namespace", nd, np->nii * 2);
		if (!di)
			fsck_problem(ck, "cr_parent", FIX_NONE, false, loc, "entry %s: the directory "
				     "does not exist", n1);
		else if (di->ip->type != S_IFDIR)
			fsck_problem(ck, "cr_parent", FIX_NONE, false, loc, "entry %s: inode %" PRIu64
				     " is not a directory", n1, d->dir);
		else
			di->nchild++;
		if (!ti) {
			fsck_problem(ck, "cr_ino", FIX_NONE, false, loc, "entry %s names inode %"
				     PRIu64 ", which does not exist", n1, d->ino);
			continue;
		}
		if (ti->ip->type != d->type)
			fsck_problem(ck, "cr_mode", FIX_NONE, false, loc, "entry %s says type 0%o, "
				     "inode %" PRIu64 " is 0%o", n1, d->type, d->ino, ti->ip->type);
		if (shmfs_ns_lookup(ns, d->dir, d->name, d->name_len) != d)
			fsck_problem(ck, "cr_name_len", FIX_NONE, false, loc, "entry %s is not unique "
				     "in its directory", n1);
		ti->ndent++;
		if (!ti->first)
			ti->first = d;
		if (ti->ip->type == S_IFDIR && di)
			di->nsub++;
	}
}

/* Names and link counts of one inode against the entries that name it. */
static void check_links(struct fsck *ck, const struct inode_info *ii, const char *loc)
{
	const struct shmfs_inode *ip = ii->ip;
	const struct shmfs_attr *a = ip->attr;

	if (ip->type != S_IFDIR) {
		if (a->nlink != ii->ndent)
			fsck_problem(ck, "ln_ino", FIX_NONE, false, loc, "link count %u, but %u names",
				     a->nlink, ii->ndent);
		if (!ii->ndent && !ip->orphan_host)
			fsck_problem(ck, "rl_ino", FIX_NONE, false, loc, "has no name and is not an "
				     "orphan: unreachable");
		return;
	}
	if (ip->ino == SHMFS_ROOT_INO) {
		if (ii->ndent)
			fsck_problem(ck, "cr_parent", FIX_NONE, false, loc, "the root directory has "
				     "%u names", ii->ndent);
		if (ip->parent != SHMFS_ROOT_INO)
			fsck_problem(ck, "cr_parent", FIX_NONE, false, loc, "the root's parent is %"
				     PRIu64, ip->parent);
	} else if (ii->ndent != 1) {
		fsck_problem(ck, "ul_name_len", FIX_NONE, false, loc, "directory has %u names "
			     "(must have one)", ii->ndent);
	} else if (ii->first->dir != ip->parent) {
		fsck_problem(ck, "cr_parent", FIX_NONE, false, loc, "directory's \"..\" is %" PRIu64
			     " but it is named in %" PRIu64, ip->parent, ii->first->dir);
	}
	if (a->nlink != 2 + ii->nsub)
		fsck_problem(ck, "ln_ino", FIX_NONE, false, loc, "directory link count %u, but it "
			     "has %u subdirectories (expected %u)", a->nlink, ii->nsub, 2 + ii->nsub);
	if (ip->nchildren != ii->nchild)
		fsck_problem(ck, "ln_dir", FIX_NONE, false, loc, "directory counts %" PRIu64
			     " entries, the table holds %" PRIu64, ip->nchildren, ii->nchild);
}

static void check_inode(struct fsck *ck, struct ns_pass *np, size_t i)
{
	struct check *c = ck->c;
	const struct inode_info *ii = &np->ii[i];
	const struct shmfs_inode *ip = ii->ip;
	const struct shmfs_attr *a = ip->attr;
	char loc[96];

	snprintf(loc, sizeof(loc), "inode %" PRIu64, ip->ino);
	if (i % 4096 == 0)
		fsck_progress(ck, "Checking the namespace", np->nii + i, np->nii * 2);
	switch (ip->type) {
	case S_IFDIR: c->dirs++; break;
	case S_IFREG: c->files++; break;
	case S_IFLNK: c->symlinks++; break;
	default: c->others++; break;
	}
	check_links(ck, ii, loc);
	if (ip->orphan_host && !a->nlink) {
		uint32_t owner = ip->orphan_host - 1;
		c->orphans++;
		if (owner >= c->sb.sb_max_hosts || !fsck_slot_live(ck, owner)) {
			fsck_problem(ck, "rl_ino", FIX_RELEASE, true, loc, "orphan (open on host slot "
				     "%u when its last name went) whose host is not live (repair: "
				     "release it, freeing %" PRIu64 " bytes)", owner,
				     a->blocks_bytes)->a = ip->ino;
		}
	}
	if (ip->type == S_IFLNK && (!ip->target || a->size != ip->target_len))
		fsck_problem(ck, "cr_target_len", FIX_NONE, false, loc, "symlink target is missing "
			     "or its size is wrong");
	fsck_check_extents(ck, np, ip, loc);
}

/* Cycles: every directory reaches the root by its parents. */
static void check_cycles(struct fsck *ck, struct ns_pass *np)
{
	uint64_t *stack = malloc((np->nii + 1) * sizeof(*stack));
	char loc[96];

	for (size_t i = 0; stack && i < np->nii; i++) {
		size_t sp = 0;
		struct inode_info *cur = &np->ii[i];
		if (cur->ip->type != S_IFDIR || cur->color)
			continue;
		while (cur && cur->color == 0) {
			cur->color = 1;
			stack[sp++] = (uint64_t)(cur - np->ii);
			if (cur->ino == SHMFS_ROOT_INO)
				break;
			struct inode_info *up = ii_find(np, cur->ip->parent);
			if (!up || up->ip->type != S_IFDIR) {
				snprintf(loc, sizeof(loc), "inode %" PRIu64, cur->ino);
				fsck_problem(ck, "cr_parent", FIX_NONE, false, loc, "directory's parent %"
					     PRIu64 " is missing or not a directory", cur->ip->parent);
				break;
			}
			if (up->color == 1) {
				snprintf(loc, sizeof(loc), "inode %" PRIu64, cur->ino);
				fsck_problem(ck, "rn_newdir", FIX_NONE, false, loc, "directory cycle "
					     "through inode %" PRIu64 ": unreachable from the root",
					     up->ino);
				break;
			}
			cur = up;
		}
		while (sp)
			np->ii[stack[--sp]].color = 2;
	}
	free(stack);
}

/* Name the files the problems are about, while the namespace is here. */
static void name_problems(struct fsck *ck, const struct ns_pass *np)
{
	struct check *c = ck->c;
	char path[4096];

	for (size_t i = 0; i < c->pb.n; i++) {
		struct problem *p = &c->pb.v[i];
		char *extra = NULL;
		if (p->ref_ino && ii_find(np, p->ref_ino) && p->ref_ino != SHMFS_ROOT_INO)
			extra = fsck_xasprintf("%s; inode %" PRIu64 " is %s", p->msg, p->ref_ino,
					       path_of(np, p->ref_ino, path, sizeof(path)));
		else if (p->ref_ino && p->fix != FIX_UNMAP)
			extra = fsck_xasprintf("%s; inode %" PRIu64 " does not exist now", p->msg,
					       p->ref_ino);
		if (extra) {
			free(p->msg);
			p->msg = extra;
		}
		if (p->ref_dir && ii_find(np, p->ref_dir)) {
			extra = fsck_xasprintf("%s; directory %" PRIu64 " is %s", p->msg, p->ref_dir,
					       path_of(np, p->ref_dir, path, sizeof(path)));
			free(p->msg);
			p->msg = extra;
		}
	}
}

void fsck_pass_ns(struct fsck *ck)
{
	struct check *c = ck->c;
	struct shmfs_ns *ns = c->ns;
	struct ns_pass np = { .unit = c->sb.sb_alloc_unit };

	np.nunits = c->sb.sb_data_size / np.unit;
	np.owned = calloc(np.nunits / 64 + 1, sizeof(uint64_t));
	fsck_verbose(ck, "Pass 4: namespace");
	if (!np.owned)
		out_of_memory();
	rcu_read_lock();
	collect_inodes(ns, &np);
	check_dentries(ck, &np);
	for (size_t i = 0; i < np.nii; i++)
		check_inode(ck, &np, i);
	check_cycles(ck, &np);
	fsck_check_alloc(ck, &np);
	if (ns->ninodes != np.nii)
		fsck_problem(ck, "cr_ino", FIX_NONE, false, "namespace", "counts %" PRIu64
			     " inodes, holds %zu", ns->ninodes, np.nii);
	if (!ii_find(&np, SHMFS_ROOT_INO))
		fsck_problem(ck, "sb_root_ino", FIX_NONE, false, "namespace", "the root directory "
			     "does not exist");
	c->inodes = np.nii;
	fsck_progress_done(ck);
	name_problems(ck, &np);
	rcu_read_unlock();
	free(np.owned);
	free(np.ii);
}
