/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz targets share: the region with a guard page behind it, a
 * deterministic format, checksum fixing, the namespace invariants, the
 * reads a mount serves, and a write phase that must agree with replay.
 */
#include "fuzz.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "shmfs/coord.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/repair.h"
#include "shmfs/util.h"

/* Sanitizer runtimes, when linked, also carry the message to their report. */
void __sanitizer_report_error_summary(const char *error_summary) __attribute__((weak));

int fuzz_report_fd = STDERR_FILENO;

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int n = snprintf(msg, sizeof(msg), "FUZZ FAILURE at %s:%d: %s%s%s", file, line,
			 cond ? "invariant broken: " : "", cond ? cond : "", cond ? ": " : "");

	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	dprintf(fuzz_report_fd, "%s\n", msg);
	if (__sanitizer_report_error_summary)
		__sanitizer_report_error_summary(msg);
	abort();
}

uint64_t fuzz_hash(const void *p, size_t n)
{
	return shmfs_hash(p, n, 0x66757a7a);
}

/* ---- grace periods ----------------------------------------------------------- */

/*
 * liburcu's call_rcu thread batches callbacks for 10 ms, and every
 * shmfs_ns_free() waits for them (rcu_barrier): some 80 executions a second
 * at best.  Here, in the fuzz binaries only, call_rcu() queues and
 * rcu_barrier() runs the queue after a grace period of its own -- later
 * than the library would, never earlier, so a reader never sees memory
 * freed under it.  The targets run rcu_barrier() after every input.
 */
static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rcu_head **cb_queue;
static size_t cb_n, cb_cap;

void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head))
{
	head->func = func;
	pthread_mutex_lock(&cb_lock);
	if (cb_n == cb_cap) {
		cb_cap = cb_cap ? cb_cap * 2 : 1024;
		cb_queue = realloc(cb_queue, cb_cap * sizeof(*cb_queue));
		if (!cb_queue)
			FUZZ_FAIL("out of memory");
	}
	cb_queue[cb_n++] = head;
	pthread_mutex_unlock(&cb_lock);
}

void rcu_barrier(void)
{
	for (;;) {
		pthread_mutex_lock(&cb_lock);
		struct rcu_head **q = cb_queue;
		size_t n = cb_n;
		cb_queue = NULL;
		cb_n = cb_cap = 0;
		pthread_mutex_unlock(&cb_lock);
		if (!n) {
			free(q);
			return;
		}
		synchronize_rcu();
		for (size_t i = 0; i < n; i++)
			q[i]->func(q[i]);
		free(q);
	}
}

/* ---- the region ------------------------------------------------------------ */

static uint8_t *map;
static struct shmfs_region R;

void fuzz_setup(void)
{
	if (map)
		return;
	rcu_register_thread();
	/* The region, then one page nobody may touch. */
	void *m = mmap(NULL, FUZZ_REGION + SHMFS_PAGE, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		FUZZ_FAIL("cannot map %u bytes", FUZZ_REGION + SHMFS_PAGE);
	map = m;
	if (mprotect(map + FUZZ_REGION, SHMFS_PAGE, PROT_NONE))
		FUZZ_FAIL("cannot protect the guard page");
}

struct shmfs_region *fuzz_region(uint64_t size)
{
	if (!map)
		fuzz_setup();
	if (size % SHMFS_PAGE || size > FUZZ_REGION || !size)
		FUZZ_FAIL("bad region size %" PRIu64, size);
	memset(&R, 0, sizeof(R));
	R.base = map + (FUZZ_REGION - size);
	R.size = size;
	R.align = SHMFS_PAGE;
	R.kind = SHMFS_REGION_MEM;
	R.fd = -1;
	R.map_addr = map;
	R.map_len = FUZZ_REGION;
	snprintf(R.path, sizeof(R.path), "[fuzz region]");
	return &R;
}

void fuzz_format(struct shmfs_region *r, struct shmfs_super *sb)
{
	struct shmfs_mkfs_params p = {
		.alloc_unit = SHMFS_PAGE, .log_size = FUZZ_LOG_SIZE, .max_hosts = FUZZ_HOSTS,
		.lease_ms = 100, .heartbeat_ms = 20, .label = "fuzz", .have_uuid = true,
		.uuid = { 0x66, 0x75, 0x7a, 0x7a, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1 },
	};
	char err[256];
	int rc = shmfs_fs_format(r, &p, 0755, 0, 0, sb, err, sizeof(err));

	if (rc)
		FUZZ_FAIL("format: %s", err);
	/* A fixed seed and time, so that the corpus verifies in every build. */
	sb->sb_log_seed = FUZZ_LOG_SEED;
	sb->sb_mkfs_time = FUZZ_TIME;
	shmfs_super_seal(sb);
	shmfs_super_write(r, sb);
	struct shmfs_log log = { r->base + sb->sb_log_off, sb->sb_log_size, sb->sb_log_seed };
	struct shmfs_log_rec *root = (struct shmfs_log_rec *)log.base;
	root->lr_time = FUZZ_TIME;
	root->lr_csum = shmfs_repair_rec_csum(&log, root, 1, log.base + SHMFS_LR_HDR_SIZE);
}

/* ---- checksums --------------------------------------------------------------- */

void fuzz_seal_super(struct shmfs_region *r, unsigned which)
{
	uint64_t off = which ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF;

	if (r->size >= off + SHMFS_SB_SIZE)
		shmfs_super_seal((struct shmfs_super *)(r->base + off));
}

void fuzz_fix_hosts(struct shmfs_region *r, const struct shmfs_super *sb)
{
	for (uint32_t i = 0; i < sb->sb_max_hosts; i++) {
		struct shmfs_host *h = shmfs_host_slot(r->base, sb, i);
		h->hs_ident_csum = shmfs_host_ident_csum(h);
	}
}

/* Walk the records as replay would (without checking sequence numbers) and
 * give each the checksum it needs to verify. */
void fuzz_fix_log(const struct shmfs_log *log)
{
	uint64_t pos = 0;

	while (pos % SHMFS_LOG_ALIGN == 0 && log->size - pos >= SHMFS_LR_HDR_SIZE) {
		struct shmfs_log_rec *h = (struct shmfs_log_rec *)(log->base + pos);
		uint64_t v = h->lr_seq;
		if (!v)
			break;
		if (v & SHMFS_LR_SEAL) {
			pos += SHMFS_LOG_SEAL_SKIP;
			continue;
		}
		if (h->lr_len > SHMFS_LR_PAYLOAD_MAX ||
		    shmfs_lr_stride(h->lr_len) > log->size - pos)
			break;
		h->lr_csum = shmfs_repair_rec_csum(log, h, v, log->base + pos + SHMFS_LR_HDR_SIZE);
		pos += shmfs_lr_stride(h->lr_len);
	}
}

struct shmfs_fs *fuzz_open(struct shmfs_region *r, bool join, int *rc)
{
	struct shmfs_fs_opts o = { .readonly = !join, .join = join, .host_name = "fuzz",
				   .lease_ms = FUZZ_LEASE_MS };
	struct shmfs_fs *fs = NULL;
	char err[512];

	*rc = shmfs_fs_open(r, &o, &fs, err, sizeof(err));
	if (*rc == -ENOMEM)
		FUZZ_FAIL("out of memory opening a %" PRIu64 "-byte region: %s", r->size, err);
	return *rc ? NULL : fs;
}

/* ---- invariants ------------------------------------------------------------------ */

/* cds_lfht_for_each_entry() ends on container_of(NULL), arithmetic on a null
 * pointer that clang's UBSan reports: look at each node before converting. */
#define LFHT_FOR_EACH(ht, it, var, member)                                        \
	for (cds_lfht_first(ht, it);                                              \
	     cds_lfht_iter_get_node(it) &&                                        \
	     ((var) = caa_container_of(cds_lfht_iter_get_node(it), __typeof__(*(var)), \
				       member), true);                            \
	     cds_lfht_next(ht, it))

struct iinfo {
	uint64_t ino;
	struct shmfs_inode *ip;
	uint32_t ndent, nsub;           /* names of it; subdirectory entries in it */
	uint64_t nchild;                /* entries in it */
	uint64_t named_in;              /* directory of its (last seen) name */
};

static int iinfo_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct iinfo *)a)->ino, y = ((const struct iinfo *)b)->ino;

	return x < y ? -1 : x > y;
}

static struct iinfo *iinfo_find(struct iinfo *v, size_t n, uint64_t ino)
{
	struct iinfo key = { .ino = ino };

	return bsearch(&key, v, n, sizeof(*v), iinfo_cmp);
}

static bool valid_type(uint32_t t)
{
	return t == S_IFREG || t == S_IFDIR || t == S_IFLNK || t == S_IFIFO || t == S_IFSOCK ||
	       t == S_IFCHR || t == S_IFBLK;
}

static bool valid_name(const char *n, size_t len)
{
	if (len < 1 || len > SHMFS_NAME_MAX || n[len] != 0)
		return false;
	if ((len == 1 && n[0] == '.') || (len == 2 && n[0] == '.' && n[1] == '.'))
		return false;
	return !memchr(n, '/', len) && !memchr(n, 0, len);
}

static uint64_t popcount_range(const uint64_t *b, uint64_t words)
{
	uint64_t c = 0;

	for (uint64_t w = 0; w < words; w++)
		c += (uint64_t)__builtin_popcountll(b[w]);
	return c;
}

/*
 * What replay guarantees whatever the log holds (ns.c applies a record
 * only after checking it against the namespace):
 *  - every inode number is below next_ino; types and modes agree;
 *  - a directory entry's directory is a live directory, its inode exists
 *    with the entry's type, and the entry is what a lookup finds;
 *  - a directory has exactly one name (the root none), in its parent;
 *    its link count is 2 + its subdirectories; its entry count, entry
 *    list and cookies agree; every directory reaches the root;
 *  - a non-directory's link count is its number of names; one without
 *    names is an orphan; the orphan and reservation counters agree;
 *  - extents are sorted, aligned, inside the data area and owned by one
 *    file; the allocator's bitmap is exactly the union of the extents;
 *    pending (freed, not yet reusable) units are free and still pending.
 */
void fuzz_check_ns(struct shmfs_fs *fs)
{
	struct shmfs_ns *ns = fs->ns;
	const struct shmfs_alloc *al = &ns->alloc;
	uint64_t unit = ns->unit, nunits = al->nunits, words = (nunits + 63) / 64;
	struct cds_lfht_iter it;
	struct shmfs_inode *ip;
	struct shmfs_dentry *d;
	size_t n = 0, cap = 64;
	uint64_t live = 0, orphans = 0, maxino = 0;
	uint32_t ahead[SHMFS_MAX_HOSTS] = { 0 };

	FUZZ_ASSERT(unit == fs->sb.sb_alloc_unit && nunits == fs->sb.sb_data_size / unit,
		    "allocator geometry");
	struct iinfo *v = malloc(cap * sizeof(*v));
	uint64_t *owned = calloc(words + 1, sizeof(uint64_t));
	if (!v || !owned)
		FUZZ_FAIL("out of memory");

	rcu_read_lock();
	LFHT_FOR_EACH(ns->inodes, &it, ip, hnode) {
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
			if (!v)
				FUZZ_FAIL("out of memory");
		}
		v[n++] = (struct iinfo){ .ino = ip->ino, .ip = ip };
	}
	qsort(v, n, sizeof(*v), iinfo_cmp);

	for (size_t i = 0; i < n; i++) {
		ip = v[i].ip;
		const struct shmfs_attr *a = ip->attr;
		FUZZ_ASSERT(i == 0 || v[i - 1].ino != ip->ino, "inode %" PRIu64 " twice", ip->ino);
		FUZZ_ASSERT(ip->ino >= 1 && ip->ino < ns->next_ino, "inode %" PRIu64 ", next %" PRIu64,
			    ip->ino, ns->next_ino);
		maxino = SHMFS_MAX(maxino, ip->ino);
		FUZZ_ASSERT(a && valid_type(ip->type) && (a->mode & S_IFMT) == ip->type,
			    "inode %" PRIu64 " type 0%o mode 0%o", ip->ino, ip->type, a ? a->mode : 0);
		if (ip->gone)
			continue; /* open here, out of the namespace: its units may be reused */
		live++;
		orphans += ip->orphan_host != 0;
		FUZZ_ASSERT((ip->ahead_from != 0) == (ip->ahead_host != 0),
			    "inode %" PRIu64 ": reservation from %" PRIu64 " by host %u", ip->ino,
			    ip->ahead_from, ip->ahead_host);
		if (ip->ahead_host && ip->ahead_host <= SHMFS_MAX_HOSTS)
			ahead[ip->ahead_host - 1]++;
		if (ip->type == S_IFLNK)
			FUZZ_ASSERT(ip->target && ip->target_len >= 1 &&
				    ip->target_len <= SHMFS_SYMLINK_MAX &&
				    strlen(ip->target) == ip->target_len && a->size == ip->target_len,
				    "symlink %" PRIu64, ip->ino);
		else
			FUZZ_ASSERT(!ip->target, "inode %" PRIu64 " has a target", ip->ino);
		if (ip->type != S_IFDIR)
			FUZZ_ASSERT(ip->nchildren == 0 && cds_list_empty(&ip->children),
				    "non-directory %" PRIu64 " has entries", ip->ino);

		const struct shmfs_extmap *m = ip->ext;
		uint64_t sum = 0;
		FUZZ_ASSERT(ip->type == S_IFREG || !m, "non-file %" PRIu64 " has extents", ip->ino);
		FUZZ_ASSERT(!m || m->n > 0, "inode %" PRIu64 ": empty extent map", ip->ino);
		for (uint32_t k = 0; m && k < m->n; k++) {
			const struct shmfs_extent *e = &m->e[k];
			FUZZ_ASSERT(e->len && e->foff % unit == 0 && e->doff % unit == 0 &&
				    e->len % unit == 0 && e->doff < ns->data_size &&
				    e->len <= ns->data_size - e->doff &&
				    e->foff + e->len > e->foff && e->foff + e->len <= (uint64_t)INT64_MAX,
				    "inode %" PRIu64 " extent [%" PRIu64 ", +%" PRIu64 ") at %" PRIu64,
				    ip->ino, e->foff, e->len, e->doff);
			FUZZ_ASSERT(k == 0 || m->e[k - 1].foff + m->e[k - 1].len <= e->foff,
				    "inode %" PRIu64 ": extents unsorted or overlapping at %" PRIu64,
				    ip->ino, e->foff);
			sum += e->len;
			for (uint64_t u = e->doff / unit; u < (e->doff + e->len) / unit; u++) {
				FUZZ_ASSERT(!(owned[u / 64] >> (u % 64) & 1),
					    "data unit %" PRIu64 " owned twice (inode %" PRIu64 ")", u,
					    ip->ino);
				owned[u / 64] |= 1ull << (u % 64);
			}
		}
		FUZZ_ASSERT(sum == a->blocks_bytes, "inode %" PRIu64 ": extents hold %" PRIu64
			    ", blocks_bytes %" PRIu64, ip->ino, sum, a->blocks_bytes);
	}
	FUZZ_ASSERT(live == ns->ninodes, "%" PRIu64 " live inodes, ninodes %" PRIu64, live,
		    ns->ninodes);
	FUZZ_ASSERT(orphans == ns->norphans, "%" PRIu64 " orphans, norphans %" PRIu64, orphans,
		    ns->norphans);
	FUZZ_ASSERT(n == 0 || maxino < ns->next_ino, "next_ino %" PRIu64, ns->next_ino);
	for (uint32_t h = 0; h < SHMFS_MAX_HOSTS; h++)
		FUZZ_ASSERT(ahead[h] == ns->ahead_by[h], "host %u: %u reservations, ahead_by %u", h,
			    ahead[h], ns->ahead_by[h]);

	/* Entries. */
	LFHT_FOR_EACH(ns->dentries, &it, d, hnode) {
		struct iinfo *di = iinfo_find(v, n, d->dir), *ti = iinfo_find(v, n, d->ino);
		FUZZ_ASSERT(valid_name(d->name, d->name_len), "entry in %" PRIu64 ": bad name",
			    d->dir);
		FUZZ_ASSERT(di && !di->ip->gone && di->ip->type == S_IFDIR,
			    "entry %s: directory %" PRIu64 " missing or not one", d->name, d->dir);
		FUZZ_ASSERT(ti && !ti->ip->gone && ti->ip->type == d->type,
			    "entry %s in %" PRIu64 ": inode %" PRIu64 " missing or of another type",
			    d->name, d->dir, d->ino);
		FUZZ_ASSERT(shmfs_ns_lookup(ns, d->dir, d->name, d->name_len) == d,
			    "entry %s in %" PRIu64 " is not what lookup finds", d->name, d->dir);
		FUZZ_ASSERT(d->cookie >= 3 && d->cookie < di->ip->next_cookie,
			    "entry %s: cookie %" PRIu64 " (next %" PRIu64 ")", d->name, d->cookie,
			    di->ip->next_cookie);
		di->nchild++;
		ti->ndent++;
		ti->named_in = d->dir;
		if (d->type == S_IFDIR)
			di->nsub++;
	}

	for (size_t i = 0; i < n; i++) {
		struct iinfo *ii = &v[i];
		ip = ii->ip;
		if (ip->gone) {
			FUZZ_ASSERT(ii->ndent == 0, "gone inode %" PRIu64 " has names", ip->ino);
			continue;
		}
		uint32_t nlink = ip->attr->nlink;
		if (ip->type != S_IFDIR) {
			FUZZ_ASSERT(nlink == ii->ndent, "inode %" PRIu64 ": nlink %u, %u names",
				    ip->ino, nlink, ii->ndent);
			FUZZ_ASSERT(nlink || ip->orphan_host, "inode %" PRIu64 " nameless, not an orphan",
				    ip->ino);
			continue;
		}
		FUZZ_ASSERT(nlink == 2 + ii->nsub, "directory %" PRIu64 ": nlink %u, %u subdirectories",
			    ip->ino, nlink, ii->nsub);
		FUZZ_ASSERT(ip->nchildren == ii->nchild, "directory %" PRIu64 ": nchildren %" PRIu64
			    ", %" PRIu64 " entries", ip->ino, ip->nchildren, ii->nchild);
		uint64_t k = 0, last = 0;
		cds_list_for_each_entry(d, &ip->children, sibling) {
			FUZZ_ASSERT(d->dir == ip->ino && d->cookie > last && k < ii->nchild,
				    "directory %" PRIu64 ": entry list", ip->ino);
			last = d->cookie;
			k++;
		}
		FUZZ_ASSERT(k == ii->nchild, "directory %" PRIu64 ": list holds %" PRIu64 " of %" PRIu64,
			    ip->ino, k, ii->nchild);
		if (ip->ino == SHMFS_ROOT_INO) {
			FUZZ_ASSERT(ii->ndent == 0 && ip->parent == SHMFS_ROOT_INO, "root has a name");
			continue;
		}
		FUZZ_ASSERT(ii->ndent == 1 && ii->named_in == ip->parent,
			    "directory %" PRIu64 ": %u names, parent %" PRIu64, ip->ino, ii->ndent,
			    ip->parent);
		/* Up to the root within n steps, through live directories. */
		uint64_t up = ip->parent, steps = 0;
		while (up != SHMFS_ROOT_INO) {
			struct iinfo *pi = iinfo_find(v, n, up);
			FUZZ_ASSERT(pi && !pi->ip->gone && pi->ip->type == S_IFDIR && ++steps <= n,
				    "directory %" PRIu64 " does not reach the root (at %" PRIu64 ")",
				    ip->ino, up);
			up = pi->ip->parent;
		}
	}
	FUZZ_ASSERT(n == 0 || iinfo_find(v, n, SHMFS_ROOT_INO), "inodes without a root");

	/* The allocator is exactly what the extents own. */
	uint64_t tail = nunits % 64 ? (1ull << (nunits % 64)) - 1 : ~0ull;
	for (uint64_t w = 0; w < words; w++) {
		uint64_t mask = w + 1 == words ? tail : ~0ull;
		FUZZ_ASSERT((al->bits[w] & ~mask) == 0 && (al->pend[w] & ~mask) == 0,
			    "allocator bits beyond the data area");
		FUZZ_ASSERT(al->bits[w] == owned[w], "allocator word %" PRIu64 ": %#" PRIx64
			    ", extents own %#" PRIx64, w, al->bits[w], owned[w]);
		FUZZ_ASSERT(!(al->bits[w] & al->pend[w]), "units both owned and pending in word %"
			    PRIu64, w);
	}
	FUZZ_ASSERT(al->nfree == nunits - popcount_range(al->bits, words),
		    "nfree %" PRIu64, al->nfree);
	FUZZ_ASSERT(al->npend == popcount_range(al->pend, words), "npend %" PRIu64, al->npend);
	for (size_t i = 0; i < ns->npending; i++) {
		const struct shmfs_pending *p = &ns->pending[i];
		FUZZ_ASSERT(p->first <= nunits && p->n <= nunits - p->first,
			    "pending [%" PRIu64 ", +%" PRIu64 ")", p->first, p->n);
		for (uint64_t u = p->first; u < p->first + p->n; u++)
			FUZZ_ASSERT((al->pend[u / 64] | al->bits[u / 64]) >> (u % 64) & 1,
				    "unit %" PRIu64 " freed by record %" PRIu64 " is reusable "
				    "while that record is still pending", u, p->seq);
	}
	rcu_read_unlock();
	free(owned);
	free(v);
}

void fuzz_reap(struct shmfs_fs *fs, uint64_t safe_seq)
{
	pthread_mutex_lock(&fs->replay_lock);
	shmfs_ns_reap(fs->ns, safe_seq, NULL, 0);
	pthread_mutex_unlock(&fs->replay_lock);
	fuzz_check_ns(fs);
}

/* ---- reads ------------------------------------------------------------------------ */

#define READ_MAX 256    /* names and inodes looked at per pass */

struct name_ref {
	uint64_t dir, ino;
	uint32_t type;
	char name[SHMFS_NAME_MAX + 1];
};

static size_t collect_names(struct shmfs_fs *fs, struct name_ref *out, size_t max)
{
	struct cds_lfht_iter it;
	struct shmfs_dentry *d;
	size_t n = 0;

	rcu_read_lock();
	LFHT_FOR_EACH(fs->ns->dentries, &it, d, hnode) {
		if (n == max)
			break;
		out[n].dir = d->dir;
		out[n].ino = d->ino;
		out[n].type = d->type;
		memcpy(out[n].name, d->name, d->name_len + 1u);
		n++;
	}
	rcu_read_unlock();
	return n;
}

static size_t collect_inodes(struct shmfs_fs *fs, uint64_t *out, size_t max)
{
	struct cds_lfht_iter it;
	struct shmfs_inode *ip;
	size_t n = 0;

	rcu_read_lock();
	LFHT_FOR_EACH(fs->ns->inodes, &it, ip, hnode)
		if (n < max && !ip->gone)
			out[n++] = ip->ino;
	rcu_read_unlock();
	return n;
}

static void read_file(struct shmfs_fs *fs, uint64_t ino, uint64_t size)
{
	const uint8_t *lo = fs->region->base + fs->sb.sb_data_off, *hi = lo + fs->sb.sb_data_size;
	struct shmfs_piece p[16];
	uint64_t off = 0;
	volatile uint8_t sink = 0;

	rcu_read_lock();
	while (off < size) {
		size_t total;
		size_t want = (size_t)SHMFS_MIN(size - off, (uint64_t)SIZE_MAX / 2);
		int np = shmfs_op_read_map(fs, ino, off, want, p, 16, &total);
		FUZZ_ASSERT(np >= 0, "read_map of %" PRIu64 " at %" PRIu64 ": %d", ino, off, np);
		if (np == 0)
			break;
		uint64_t sum = 0;
		for (int i = 0; i < np; i++) {
			FUZZ_ASSERT(p[i].len > 0, "empty piece");
			if (p[i].mem) {
				FUZZ_ASSERT(p[i].mem >= lo && p[i].len <= (size_t)(hi - p[i].mem),
					    "inode %" PRIu64 ": piece outside the data area", ino);
				sink += p[i].mem[0];
				sink += p[i].mem[p[i].len - 1];
			}
			sum += p[i].len;
		}
		FUZZ_ASSERT(sum == total && total <= want, "read_map total");
		off += total;
	}
	rcu_read_unlock();
	(void)sink;
}

void fuzz_read_all(struct shmfs_fs *fs)
{
	static struct name_ref names[READ_MAX];
	static char buf[SHMFS_SYMLINK_MAX + 2];
	static char list[READ_MAX * (SHMFS_XATTR_NAME_MAX + 1)];
	static uint8_t value[SHMFS_XATTR_SIZE_MAX];
	uint64_t inos[READ_MAX];
	struct stat st;
	int rc;

	size_t nn = collect_names(fs, names, READ_MAX);
	for (size_t i = 0; i < nn; i++) {
		rc = shmfs_op_lookup(fs, names[i].dir, names[i].name, &st);
		FUZZ_ASSERT(rc == 0 && st.st_ino == names[i].ino &&
			    (st.st_mode & S_IFMT) == names[i].type,
			    "lookup of %s in %" PRIu64 ": %d", names[i].name, names[i].dir, rc);
	}
	size_t ni = collect_inodes(fs, inos, READ_MAX);
	for (size_t i = 0; i < ni; i++) {
		rc = shmfs_op_getattr(fs, inos[i], &st);
		FUZZ_ASSERT(rc == 0, "getattr of %" PRIu64 ": %d", inos[i], rc);
		if (S_ISLNK(st.st_mode)) {
			rc = shmfs_op_readlink(fs, inos[i], buf, sizeof(buf));
			FUZZ_ASSERT(rc == st.st_size && (size_t)rc == strlen(buf),
				    "readlink of %" PRIu64 ": %d", inos[i], rc);
		}
		if (S_ISREG(st.st_mode))
			read_file(fs, inos[i], (uint64_t)st.st_size);
		int need = shmfs_op_listxattr(fs, inos[i], NULL, 0);
		FUZZ_ASSERT(need >= 0, "listxattr of %" PRIu64 ": %d", inos[i], need);
		if (need == 0 || (size_t)need > sizeof(list))
			continue;
		rc = shmfs_op_listxattr(fs, inos[i], list, sizeof(list));
		FUZZ_ASSERT(rc == need, "listxattr of %" PRIu64 ": %d, then %d", inos[i], need, rc);
		for (char *x = list; x < list + need; x += strlen(x) + 1) {
			int vl = shmfs_op_getxattr(fs, inos[i], x, NULL, 0);
			FUZZ_ASSERT(vl >= 0 && vl <= (int)SHMFS_XATTR_SIZE_MAX,
				    "getxattr size of %" PRIu64 ": %d", inos[i], vl);
			rc = shmfs_op_getxattr(fs, inos[i], x, value, sizeof(value));
			FUZZ_ASSERT(rc == vl, "getxattr of %" PRIu64 ": %d, then %d", inos[i], vl, rc);
		}
	}
}

/* ---- writes ----------------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

#define OPEN_MAX 8

struct writer {
	struct shmfs_fs *fs;
	uint64_t rng;
	uint64_t open[OPEN_MAX];        /* inodes with a local handle */
	int nopen;
	struct name_ref names[64];
	size_t nnames;
};

static const char *pick_name(struct writer *w)
{
	static const char *const fixed[] = { "a", "b", "c", "dir", "file", "x.tmp" };
	uint64_t r = rnd(&w->rng);

	if (w->nnames && r % 3 == 0)
		return w->names[r / 3 % w->nnames].name;
	return fixed[r / 3 % SHMFS_ARRAY_SIZE(fixed)];
}

static uint64_t pick_dir(struct writer *w)
{
	uint64_t r = rnd(&w->rng);

	for (size_t k = 0; k < w->nnames; k++) {
		const struct name_ref *n = &w->names[(r + k) % w->nnames];
		if (n->type == S_IFDIR && r % 2)
			return n->ino;
	}
	return r % 7 ? SHMFS_ROOT_INO : 1 + r % SHMFS_MAX(w->fs->ns->next_ino, (uint64_t)1);
}

static uint64_t pick_ino(struct writer *w)
{
	uint64_t r = rnd(&w->rng);

	if (w->nopen && r % 4 == 0)
		return w->open[r / 4 % (uint64_t)w->nopen];
	if (w->nnames && r % 8)
		return w->names[r / 8 % w->nnames].ino;
	return 1 + r % SHMFS_MAX(w->fs->ns->next_ino, (uint64_t)1);
}

static void close_handle(struct writer *w, int k)
{
	uint64_t ino = w->open[k];
	bool orphan;

	shmfs_op_flush(w->fs, ino, true);
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(w->fs->ns, ino);
	orphan = ip && __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) == 1 &&
		 ip->orphan_host == (uint32_t)w->fs->coord.slot + 1 && !ip->attr->nlink;
	rcu_read_unlock();
	shmfs_fs_close_inode(w->fs, ino);
	if (orphan)
		shmfs_op_release_orphan(w->fs, ino);
	w->open[k] = w->open[--w->nopen];
}

/* Is host (slot + 1) gone, for a mount: this slot's earlier life, a
 * number beyond the table, or a slot whose heartbeat stands still? */
static bool host_gone(struct shmfs_fs *fs, uint32_t host)
{
	bool dead = host == (uint32_t)fs->coord.slot + 1 || host > fs->sb.sb_max_hosts;

	if (!dead) {
		pthread_mutex_lock(&fs->replay_lock);
		dead = !shmfs_host_live_locked(&fs->coord, host - 1);
		pthread_mutex_unlock(&fs->replay_lock);
	}
	return dead;
}

/* What a mount does before it serves: release the orphans, and give back
 * the room reserved ahead, of hosts that are gone. */
static void mount_cleanup(struct shmfs_fs *fs)
{
	struct { uint64_t ino; uint32_t ahead; bool orphan; } todo[64];
	size_t n = 0;
	struct cds_lfht_iter it;
	struct shmfs_inode *ip;

	rcu_read_lock();
	LFHT_FOR_EACH(fs->ns->inodes, &it, ip, hnode) {
		if (ip->gone || n == SHMFS_ARRAY_SIZE(todo))
			continue;
		bool orphan = ip->orphan_host && !ip->attr->nlink && host_gone(fs, ip->orphan_host);
		uint32_t ahead = ip->ahead_host && host_gone(fs, ip->ahead_host) ? ip->ahead_host : 0;
		if (orphan || ahead)
			todo[n++] = (typeof(todo[0])){ ip->ino, ahead, orphan };
	}
	rcu_read_unlock();
	for (size_t i = 0; i < n; i++) {
		if (todo[i].ahead)
			shmfs_op_trim_ahead(fs, todo[i].ino, todo[i].ahead);
		if (todo[i].orphan)
			shmfs_op_release_orphan(fs, todo[i].ino);
	}
}

static void one_op(struct writer *w)
{
	static uint8_t data[64 << 10];
	static const struct shmfs_cred cred = { 1000, 1000 };
	struct shmfs_fs *fs = w->fs;
	struct stat st;
	uint64_t r = rnd(&w->rng), ino;
	uint64_t unit = fs->sb.sb_alloc_unit;

	w->nnames = collect_names(fs, w->names, SHMFS_ARRAY_SIZE(w->names));
	switch (r % 16) {
	case 0: case 1: {
		static const uint32_t modes[] = { S_IFREG | 0644, S_IFDIR | 0755, S_IFIFO | 0600,
						  S_IFCHR | 0600, S_IFSOCK | 0600, S_IFDIR | 02775 };
		shmfs_op_mknod(fs, pick_dir(w), pick_name(w), modes[r / 16 % 6], r >> 40, NULL,
			       &cred, &st);
		break;
	}
	case 2: {
		char target[300];
		size_t len = 1 + r / 16 % (sizeof(target) - 1);
		memset(target, 't', len);
		target[len] = 0;
		shmfs_op_mknod(fs, pick_dir(w), pick_name(w), S_IFLNK | 0777, 0, target, &cred, &st);
		break;
	}
	case 3: case 4: { /* write through a handle, as a mount does */
		ino = pick_ino(w);
		if (w->nopen < OPEN_MAX && shmfs_op_getattr(fs, ino, &st) == 0 && S_ISREG(st.st_mode)) {
			shmfs_fs_open_inode(fs, ino);
			w->open[w->nopen++] = ino;
		}
		uint64_t off = r / 16 % 4 == 0 ? rnd(&w->rng) % (1u << 20) :
			       rnd(&w->rng) % (3 * unit);
		size_t len = 1 + rnd(&w->rng) % sizeof(data);
		memset(data, (int)r, len);
		shmfs_op_write(fs, ino, off, data, len);
		break;
	}
	case 5:
		if (w->nopen)
			shmfs_op_flush(fs, w->open[r / 16 % (uint64_t)w->nopen], false);
		break;
	case 6: {
		struct shmfs_lr_setattr sa = { .sa_valid = (uint32_t)(r >> 8) & SHMFS_SA_ALL,
					       .sa_mode = (uint32_t)(r >> 16) & 07777,
					       .sa_uid = 7, .sa_gid = 8,
					       .sa_size = r >> 50 & 1 ? rnd(&w->rng) % (1u << 20) :
							  rnd(&w->rng) % (4 * unit) };
		sa.sa_atime.t_sec = (int64_t)(r >> 24);
		sa.sa_mtime.t_nsec = (uint32_t)(r % 1000000000u);
		shmfs_op_setattr(fs, pick_ino(w), &sa, &st);
		break;
	}
	case 7:
		shmfs_op_link(fs, pick_ino(w), pick_dir(w), pick_name(w), &st);
		break;
	case 8:
		shmfs_op_unlink(fs, pick_dir(w), pick_name(w), false);
		break;
	case 9:
		shmfs_op_unlink(fs, pick_dir(w), pick_name(w), true);
		break;
	case 10: {
		static const uint32_t flags[] = { 0, SHMFS_RENAME_NOREPLACE, SHMFS_RENAME_EXCHANGE };
		uint64_t od = pick_dir(w);
		const char *on = pick_name(w);
		char oname[SHMFS_NAME_MAX + 1];
		snprintf(oname, sizeof(oname), "%s", on); /* pick_name may return a slot reused below */
		shmfs_op_rename(fs, od, oname, pick_dir(w), pick_name(w), flags[r / 16 % 3]);
		break;
	}
	case 11: {
		static const char *const xn[] = { "user.a", "user.b", "trusted.c" };
		size_t vl = r / 16 % 4 == 0 ? rnd(&w->rng) % SHMFS_XATTR_SIZE_MAX : r / 64 % 40;
		memset(data, 'v', SHMFS_MIN(vl, sizeof(data)));
		if (r / 256 % 3 == 0)
			shmfs_op_removexattr(fs, pick_ino(w), xn[r / 1024 % 3]);
		else
			shmfs_op_setxattr(fs, pick_ino(w), xn[r / 1024 % 3], data,
					  SHMFS_MIN(vl, sizeof(data)), (int)(r / 4096 % 3));
		break;
	}
	case 12: {
		static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE,
					     FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					     FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE };
		shmfs_op_fallocate(fs, pick_ino(w), modes[r / 16 % 5], rnd(&w->rng) % (4 * unit),
				   1 + rnd(&w->rng) % (8 * unit));
		break;
	}
	case 13:
		shmfs_op_copy_range(fs, pick_ino(w), rnd(&w->rng) % (2 * unit), pick_ino(w),
				    rnd(&w->rng) % (2 * unit), 1 + rnd(&w->rng) % (4 * unit));
		break;
	case 14:
		if (r / 16 % 2)
			shmfs_op_release_orphan(fs, pick_ino(w));
		else
			shmfs_op_trim_ahead(fs, pick_ino(w), (uint32_t)(r >> 32) % (FUZZ_HOSTS + 2));
		break;
	case 15:
		if (w->nopen)
			close_handle(w, (int)(r / 16 % (uint64_t)w->nopen));
		else
			shmfs_fs_reap(fs);
		break;
	}
	fuzz_check_ns(fs);
}

/* A second host mounts read-write, changes things, and leaves; the reader
 * that watched, and a fresh replay, must then agree with it. */
static void write_phase(struct shmfs_region *r, struct shmfs_fs *reader, uint64_t seed)
{
	struct writer w = { .rng = seed | 1 };
	int rc;

	w.fs = fuzz_open(r, true, &rc);
	if (!w.fs)
		return;
	shmfs_host_restamp(&w.fs->coord);
	shmfs_fs_heartbeat(w.fs);
	fuzz_check_ns(w.fs);
	mount_cleanup(w.fs);
	fuzz_check_ns(w.fs);
	for (int k = 0; k < 12; k++)
		one_op(&w);
	while (w.nopen)
		close_handle(&w, w.nopen - 1);
	shmfs_fs_replay(w.fs);
	fuzz_check_ns(w.fs);
	fuzz_read_all(w.fs);

	shmfs_fs_replay(reader);
	fuzz_check_ns(reader);
	fuzz_compare(w.fs, reader);

	struct shmfs_fs *fresh = fuzz_open(r, false, &rc);
	FUZZ_ASSERT(fresh, "the region no longer opens after a write phase: %d", rc);
	fuzz_check_ns(fresh);
	fuzz_compare(w.fs, fresh);
	shmfs_fs_close(fresh);
	shmfs_fs_close(w.fs);
}

void fuzz_after_open(struct shmfs_region *r, struct shmfs_fs *fs, unsigned flags, uint8_t arg,
		     uint64_t seed)
{
	fuzz_check_ns(fs);
	fuzz_read_all(fs);
	if (flags & FUZZ_F_REAP)
		fuzz_reap(fs, arg < 2 ? arg : fs->seq * arg / 255);
	if (flags & FUZZ_F_WRITE)
		write_phase(r, fs, seed);
}

/* ---- comparing two namespaces -------------------------------------------------------- */

static bool same_time(const struct shmfs_time *a, const struct shmfs_time *b)
{
	return a->t_sec == b->t_sec && a->t_nsec == b->t_nsec;
}

void fuzz_compare(struct shmfs_fs *a, struct shmfs_fs *b)
{
	struct shmfs_ns *x = a->ns, *y = b->ns;
	struct cds_lfht_iter it;
	struct shmfs_inode *ip;
	struct shmfs_dentry *d;
	uint64_t na = 0, nb = 0, da = 0, db = 0;

	FUZZ_ASSERT(a->seq == b->seq && a->pos == b->pos, "replayed to %" PRIu64 "@%" PRIu64
		    " and %" PRIu64 "@%" PRIu64, a->seq, a->pos, b->seq, b->pos);
	FUZZ_ASSERT(x->next_ino == y->next_ino && x->ninodes == y->ninodes &&
		    x->norphans == y->norphans, "next_ino %" PRIu64 "/%" PRIu64 ", ninodes %" PRIu64
		    "/%" PRIu64, x->next_ino, y->next_ino, x->ninodes, y->ninodes);
	rcu_read_lock();
	LFHT_FOR_EACH(x->inodes, &it, ip, hnode) {
		if (ip->gone)
			continue;
		na++;
		struct shmfs_inode *jp = shmfs_ns_iget(y, ip->ino);
		FUZZ_ASSERT(jp && !jp->gone, "inode %" PRIu64 " only on one side", ip->ino);
		const struct shmfs_attr *p = ip->attr, *q = jp->attr;
		FUZZ_ASSERT(ip->type == jp->type && p->mode == q->mode && p->uid == q->uid &&
			    p->gid == q->gid && p->nlink == q->nlink && p->rdev == q->rdev &&
			    p->size == q->size && p->blocks_bytes == q->blocks_bytes &&
			    same_time(&p->atime, &q->atime) && same_time(&p->mtime, &q->mtime) &&
			    same_time(&p->ctime, &q->ctime) && same_time(&p->btime, &q->btime),
			    "inode %" PRIu64 ": attributes differ", ip->ino);
		FUZZ_ASSERT(ip->parent == jp->parent && ip->nchildren == jp->nchildren &&
			    ip->next_cookie == jp->next_cookie && ip->orphan_host == jp->orphan_host &&
			    ip->ahead_from == jp->ahead_from && ip->ahead_host == jp->ahead_host,
			    "inode %" PRIu64 ": namespace fields differ", ip->ino);
		FUZZ_ASSERT(ip->target_len == jp->target_len &&
			    (!ip->target || !memcmp(ip->target, jp->target, ip->target_len)),
			    "inode %" PRIu64 ": targets differ", ip->ino);
		uint32_t ne = ip->ext ? ip->ext->n : 0, me = jp->ext ? jp->ext->n : 0;
		FUZZ_ASSERT(ne == me && (!ne || !memcmp(ip->ext->e, jp->ext->e, ne * sizeof(ip->ext->e[0]))),
			    "inode %" PRIu64 ": extents differ", ip->ino);
		uint32_t nx = ip->xattrs ? ip->xattrs->n : 0, mx = jp->xattrs ? jp->xattrs->n : 0;
		FUZZ_ASSERT(nx == mx, "inode %" PRIu64 ": %u and %u xattrs", ip->ino, nx, mx);
		for (uint32_t k = 0; k < nx; k++) {
			const struct shmfs_xattr *s = &ip->xattrs->x[k], *t = &jp->xattrs->x[k];
			FUZZ_ASSERT(s->name_len == t->name_len && s->value_len == t->value_len &&
				    !memcmp(s->name, t->name, s->name_len) &&
				    !memcmp(s->value, t->value, s->value_len),
				    "inode %" PRIu64 ": xattr %u differs", ip->ino, k);
		}
	}
	LFHT_FOR_EACH(y->inodes, &it, ip, hnode)
		nb += !ip->gone;
	FUZZ_ASSERT(na == nb, "%" PRIu64 " and %" PRIu64 " inodes", na, nb);
	LFHT_FOR_EACH(x->dentries, &it, d, hnode) {
		da++;
		struct shmfs_dentry *e = shmfs_ns_lookup(y, d->dir, d->name, d->name_len);
		FUZZ_ASSERT(e && e->ino == d->ino && e->type == d->type && e->cookie == d->cookie,
			    "entry %s in %" PRIu64 " differs", d->name, d->dir);
	}
	LFHT_FOR_EACH(y->dentries, &it, d, hnode)
		db++;
	FUZZ_ASSERT(da == db, "%" PRIu64 " and %" PRIu64 " entries", da, db);
	rcu_read_unlock();
	FUZZ_ASSERT(x->alloc.nunits == y->alloc.nunits && x->alloc.nfree == y->alloc.nfree &&
		    !memcmp(x->alloc.bits, y->alloc.bits, (x->alloc.nunits + 63) / 64 * 8),
		    "allocators differ");
	FUZZ_ASSERT(!memcmp(x->ahead_by, y->ahead_by, sizeof(x->ahead_by)), "ahead_by differs");
}
