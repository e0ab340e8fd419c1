/* SPDX-License-Identifier: MIT */
/*
 * fsck.shmfs: check a shmfs region, and repair what can be repaired.
 *
 *   fsck.shmfs [-n|-p|-y] [-f] [-v] [--json] [--force] REGION
 *
 * Passes (each names problems with the words of include/shmfs/format.h):
 *
 *   1. superblocks   both copies through shmfs_super_check(); a bad copy is
 *                    restored from the good one; both bad: give up (exit 8),
 *                    never guess a geometry.
 *   -  watch         the host table is watched for up to sb_lease_ms: a slot
 *                    whose hs_heartbeat moves belongs to a live host.
 *   2. control page  ctl_magic, the zero fields, and ctl_lock: held by a host
 *      and hosts     that is not live, it is released (and the log tail is
 *                    sealed, as a lock breaker would).  Host slots: state
 *                    values, hs_ident_csum, stale leases, garbage in free
 *                    slots.
 *   3. log           walked and replayed exactly as shmfs_fs_open does
 *                    (shmfs_log_read from pos 0, seq 1, following seals;
 *                    shmfs_lr_check_shape + shmfs_ns_apply), into a private
 *                    namespace.  Past a published record that fails
 *                    verification, the walk scans forward at 8-byte steps for
 *                    the next record (or seal) that verifies.  Nothing valid
 *                    after it: a torn tail, cut off.  Something valid after
 *                    it: damage in the middle, bridged by NOOP records of the
 *                    right lengths so that what follows survives.  Records
 *                    replay rejects become NOOPs too.  The walk goes on past
 *                    damage as if it were already repaired, so -n reports
 *                    what -y would do.
 *   4. namespace     the invariants of the replayed namespace: parents, unique
 *                    names, no cycles, link counts, extents inside the data
 *                    area and owned once, the allocator's view, leaked
 *                    preallocation beyond EOF, orphans of dead hosts.
 *
 * Repairs, in this order, only when no other host is live (or --force):
 * superblock, control page, host slots, the lock word; then, holding the
 * metadata lock through a SHMFS_HOST_TOOL slot, the raw log edits
 * (fs/repair.c); then ordinary records through shmfs_fs_commit (release of
 * orphans, extent-unmap of leaked preallocation).  Then everything is
 * checked again, and the namespace is replayed once more through
 * shmfs_fs_open, the path every mount takes.
 *
 * Exit status (fsck(8)), ORed: 0 clean, 1 errors corrected, 4 errors left
 * uncorrected, 8 operational error, 16 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/format.h"
#include "shmfs/log.h"
#include "shmfs/ns.h"
#include "shmfs/region.h"
#include "shmfs/repair.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#ifndef SHMFS_VERSION_STRING
#define SHMFS_VERSION_STRING "0.1.0"
#endif

#define PROG "fsck.shmfs"

#define FSCK_OK          0
#define FSCK_CORRECTED   1
#define FSCK_UNCORRECTED 4
#define FSCK_ERROR       8
#define FSCK_USAGE       16

/* Scanning for records after damage: bytes of hashing allowed, and the
 * read size. */
#define NONE          UINT64_MAX
#define STRIDE_MAX    shmfs_lr_stride(SHMFS_LR_PAYLOAD_MAX)

enum mode { M_ASK, M_CHECK, M_PREEN, M_YES };

enum fix {
	FIX_NONE = 0,
	FIX_SUPER,       /* a = copy to overwrite (0, 1) */
	FIX_CTL,         /* control page magic and padding */
	FIX_LOCK,        /* a = lock word seen: release, seal the tail */
	FIX_HOST,        /* a = slot, b = token seen, c = heartbeat seen */
	FIX_SEQ,         /* a = pos, c = seq: restore the lr_seq word */
	FIX_SEAL,        /* a = pos, c = seq: restore a seal word */
	FIX_FILL,        /* a = pos, b = end, c = first seq, d = count: NOOPs */
	FIX_NOOP,        /* a = pos, b = stride, c = seq: rejected record */
	FIX_CUT,         /* a = pos, b = end: the log ends at a */
	FIX_RELEASE,     /* a = ino: release record for an orphan */
	FIX_UNMAP,       /* a = ino, b = from, c = to: extent-unmap */
};

struct problem {
	const char *code;               /* format.h word */
	char *loc;
	char *msg;
	enum fix fix;
	bool safe;                      /* -p may do it */
	uint64_t a, b, c, d;
	uint64_t ref_ino, ref_dir;      /* resolved to paths at the end */
	bool repaired;
	char *action;                   /* what the repair did, or why not */
};

struct plist {
	struct problem *v;
	size_t n, cap;
};

struct slot {
	uint64_t token, beat0;
	uint32_t state;
	bool moved;                     /* hs_heartbeat changed while watched */
	bool live;
};

/* What one pass over the region found (the first one, and the re-check). */
struct check {
	struct plist pb;
	struct shmfs_super sb;
	bool have_sb;
	uint64_t lock_seen;
	bool lock_dead;                 /* held by a host that is not live */
	/* log */
	uint64_t end_pos, end_seq, end_word;
	uint64_t junk_from;             /* first nonzero byte after the end */
	bool tail_bad;                  /* the log ends at a cut (FIX_CUT) */
	uint64_t records, noops, seals, rejected, lost;
	/* namespace */
	struct shmfs_ns *ns;
	uint64_t inodes, dirs, files, symlinks, others, orphans;
	uint64_t bytes_used;
};

struct fsck {
	enum mode mode;
	bool force, verbose, json, progress;
	const char *spec;

	struct shmfs_region r;
	bool region_open;
	struct shmfs_log log;
	struct shmfs_log_scan scan;     /* resynchronising past damage */
	uint8_t *buf, *buf2;

	struct slot *slots;
	uint32_t nslots, nlive;
	bool watched;

	struct check c1, c2;            /* before and after repair */
	struct check *c;                /* the one being filled */
	bool after;                     /* c == &c2 */

	bool repaired_any, op_error, refused, modified;
	char refuse_why[1024];
	uint64_t t0, last_progress;
	bool progress_shown;
};

static struct fsck F;
static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, sig);
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

static char *__attribute__((format(printf, 1, 0))) xvasprintf(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(FSCK_ERROR);
	}
	return s;
}

static char *__attribute__((format(printf, 1, 2))) xasprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	char *s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

/* Bytes from the region, printable: quoted, anything but printable ASCII
 * as \xNN.  Returns buf. */
static const char *esc(const void *p, size_t len, char *buf, size_t buflen)
{
	const uint8_t *s = p;
	size_t o = 0;

	if (buflen < 8)
		return "";
	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 8 < buflen; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)s[i];
		} else if (s[i] < 0x20 || s[i] >= 0x7f) {
			o += (size_t)snprintf(buf + o, buflen - o, "\\x%02x", s[i]);
		} else {
			buf[o++] = (char)s[i];
		}
		if (i + 1 < len && o + 8 >= buflen) {
			memcpy(buf + o, "...", 3);
			o += 3;
		}
	}
	buf[o++] = '"';
	buf[o] = 0;
	return buf;
}

static void fmt_time_ns(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	if (!ns || !gmtime_r(&t, &tm) || tm.tm_year > 9999 - 1900) {
		snprintf(buf, len, ns ? "%" PRIu64 " ns" : "never", ns);
		return;
	}
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void out_problem(const struct problem *p, bool after)
{
	if (F.json)
		return;
	if (F.progress_shown) {
		printf("\r\033[K");
		F.progress_shown = false;
	}
	printf("%s%s: %s [%s]\n", after ? "after repair: " : "", p->loc, p->msg, p->code);
	fflush(stdout);
}

static struct problem *__attribute__((format(printf, 5, 6)))
problem(const char *code, enum fix fix, bool safe, const char *loc, const char *fmt, ...)
{
	struct plist *l = &F.c->pb;
	va_list ap;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct problem *v = realloc(l->v, cap * sizeof(*v));
		if (!v) {
			fprintf(stderr, PROG ": out of memory\n");
			exit(FSCK_ERROR);
		}
		l->v = v;
		l->cap = cap;
	}
	struct problem *p = &l->v[l->n++];
	memset(p, 0, sizeof(*p));
	p->code = code;
	p->fix = fix;
	p->safe = safe;
	p->loc = xasprintf("%s", loc);
	va_start(ap, fmt);
	p->msg = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

static void verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void verbose(const char *fmt, ...)
{
	va_list ap;

	if (!F.verbose || F.json)
		return;
	if (F.progress_shown) {
		printf("\r\033[K");
		F.progress_shown = false;
	}
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

static void progress(const char *what, uint64_t done, uint64_t total)
{
	uint64_t now;

	if (!F.progress)
		return;
	now = shmfs_mono_ns();
	if (now - F.t0 < 500000000ull || now - F.last_progress < 100000000ull)
		return;
	F.last_progress = now;
	F.progress_shown = true;
	printf("\r%s: %3u%%", what, total ? (unsigned)(done * 100 / total) : 0);
	fflush(stdout);
}

static void progress_done(void)
{
	if (F.progress_shown) {
		printf("\r\033[K");
		fflush(stdout);
		F.progress_shown = false;
	}
}

/* ------------------------------------------------------------------ */
/* Pass 1: superblocks                                                 */
/* ------------------------------------------------------------------ */

/* The format.h field a shmfs_super_check() complaint is about. */
static const char *sb_code(int rc, const char *why)
{
	static const struct { const char *text, *code; } map[] = {
		{ "checksum", "sb_checksum" },
		{ "format version", "sb_version" },
		{ "incompatible features", "sb_feature_incompat" },
		{ "superblock flags", "sb_flags" },
		{ "label", "sb_label" },
		{ "reserved", "sb_reserved" },
		{ "mapping alignment", "sb_map_align" },
		{ "allocation unit", "sb_alloc_unit" },
		{ "region size", "sb_region_size" },
		{ "fixed area offsets", "sb_ctl_off" },
		{ "host table geometry", "sb_max_hosts" },
		{ "log offset", "sb_log_off" },
		{ "log size", "sb_log_size" },
		{ "data area offset", "sb_data_off" },
		{ "data area size", "sb_data_size" },
		{ "log seed", "sb_log_seed" },
		{ "lease", "sb_lease_ms" },
		{ "root inode", "sb_root_ino" },
		{ "needs", "sb_region_size" },
	};

	if (rc == -ENODATA)
		return "sb_magic";
	for (size_t i = 0; i < SHMFS_ARRAY_SIZE(map); i++)
		if (strstr(why, map[i].text))
			return map[i].code;
	return "sb_checksum";
}

static const char *const copy_name[2] = { "primary superblock", "backup superblock" };

/* Returns 0 with F.c->sb set, or an exit status. */
static int pass_super(void)
{
	struct shmfs_super copy[2];
	char why[2][256];
	int rc[2];

	verbose("Pass 1: superblocks");
	if (F.r.size < SHMFS_HOSTS_OFF + SHMFS_PAGE) {
		fprintf(stderr, PROG ": %s: region of %" PRIu64 " bytes is too small for shmfs\n",
			F.spec, F.r.size);
		return FSCK_ERROR;
	}
	for (int i = 0; i < 2; i++) {
		memcpy(&copy[i], F.r.base + (i ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF), sizeof(copy[i]));
		why[i][0] = 0;
		rc[i] = shmfs_super_check(&copy[i], F.r.size, why[i], sizeof(why[i]));
	}
	if (rc[0] && rc[1]) {
		if (rc[0] == -ENODATA && rc[1] == -ENODATA)
			fprintf(stderr, PROG ": %s: no shmfs superblock (no magic in the primary "
				"copy at 0 nor in the backup at 8 KiB)\n", F.spec);
		else
			fprintf(stderr, PROG ": %s: both superblocks are unusable, so the geometry of "
				"the filesystem is unknown and nothing can be checked:\n"
				"  primary: %s\n  backup:  %s\n", F.spec, why[0], why[1]);
		return FSCK_ERROR;
	}
	for (int i = 0; i < 2; i++) {
		if (rc[i] == 0)
			continue;
		if (rc[i] == -EPROTONOSUPPORT || rc[i] == -EOPNOTSUPP) {
			fprintf(stderr, PROG ": %s: the %s is of a newer format (%s); use a newer "
				"fsck.shmfs\n", F.spec, copy_name[i], why[i]);
			return FSCK_ERROR;
		}
		problem(sb_code(rc[i], why[i]), FIX_SUPER, true, copy_name[i],
			"%s (repair: rewrite it from the %s)", why[i], copy_name[!i])->a = (uint64_t)i;
	}
	int good = rc[0] == 0 ? 0 : 1;
	F.c->sb = copy[good];
	F.c->have_sb = true;
	if (rc[0] == 0 && rc[1] == 0 && memcmp(&copy[0], &copy[1], sizeof(copy[0])))
		problem("sb_checksum", FIX_SUPER, true, copy_name[1],
			"differs from the primary; both are valid (repair: rewrite it from the primary)")->a = 1;
	/* format.md: the rest of each superblock page is zero (a copy that is
	 * rewritten anyway gets its page cleared then). */
	bool differ = rc[0] == 0 && rc[1] == 0 && memcmp(&copy[0], &copy[1], sizeof(copy[0]));
	for (int i = 0; i < 2; i++) {
		const uint8_t *pg = F.r.base + (i ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF);
		if (rc[i] || (i == 1 && differ))
			continue;
		for (size_t k = sizeof(struct shmfs_super); k < SHMFS_PAGE; k++) {
			if (pg[k]) {
				problem("sb_reserved", FIX_SUPER, true, copy_name[i], "bytes after the "
					"superblock in its page are not zero, at +%zu (repair: zero them)", k)->a = (uint64_t)i;
				break;
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Liveness: watch the host table                                       */
/* ------------------------------------------------------------------ */

static struct shmfs_host *hslot(uint32_t i)
{
	return shmfs_host_slot(F.r.base, &F.c->sb, i);
}

static uint64_t load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/*
 * A slot is live if its hs_heartbeat moves within a lease (the rule every
 * host applies before taking a slot or breaking the lock).  Stop as soon
 * as every slot in use has moved.
 */
static int watch_hosts(void)
{
	const struct shmfs_super *sb = &F.c->sb;
	uint32_t n = sb->sb_max_hosts, waiting = 0;
	uint64_t lease = (uint64_t)sb->sb_lease_ms * 1000000ull, start;

	F.slots = calloc(n, sizeof(*F.slots));
	if (!F.slots)
		return -ENOMEM;
	F.nslots = n;
	uint32_t owner = shmfs_lock_owner(load64(&((struct shmfs_ctl *)(F.r.base + sb->sb_ctl_off))->ctl_lock));
	for (uint32_t i = 0; i < n; i++) {
		struct shmfs_host *h = hslot(i);
		F.slots[i].token = load64(&h->hs_token);
		F.slots[i].beat0 = load64(&h->hs_heartbeat);
		F.slots[i].state = __atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE);
		if (F.slots[i].state != SHMFS_HOST_FREE || owner == i + 1)
			waiting++;
	}
	if (waiting)
		verbose("Watching %u host slot%s for up to %u ms (the lease)", waiting,
			waiting == 1 ? "" : "s", sb->sb_lease_ms);
	start = shmfs_mono_ns();
	while (waiting) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
		waiting = 0;
		for (uint32_t i = 0; i < n; i++) {
			struct slot *s = &F.slots[i];
			if (!s->moved && load64(&hslot(i)->hs_heartbeat) != s->beat0)
				s->moved = true;
			if (!s->moved && (s->state != SHMFS_HOST_FREE || owner == i + 1))
				waiting++;
		}
		if (shmfs_mono_ns() - start >= lease)
			break;
		if (F.progress)
			progress("Watching the host table", shmfs_mono_ns() - start, lease);
	}
	progress_done();
	F.nlive = 0;
	for (uint32_t i = 0; i < n; i++) {
		F.slots[i].live = F.slots[i].moved && F.slots[i].state != SHMFS_HOST_FREE;
		F.nlive += F.slots[i].live;
	}
	F.watched = true;
	return 0;
}

/* Live now: as watched; a slot claimed since (new token) counts as live. */
static bool slot_live(uint32_t i)
{
	if (i >= F.nslots)
		return false;
	struct shmfs_host *h = hslot(i);
	if (load64(&h->hs_token) != F.slots[i].token &&
	    __atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE) != SHMFS_HOST_FREE)
		return true;
	return F.slots[i].live;
}

static void host_ident(uint32_t i, char *buf, size_t len)
{
	struct shmfs_host h;
	char name[100], hn[100], t[64];

	memcpy(&h, hslot(i), sizeof(h));
	fmt_time_ns(h.hs_mount_ns, t, sizeof(t));
	snprintf(buf, len, "host slot %u (name %s, hostname %s, pid %" PRIu32 ", mounted since %s)",
		 i, esc(h.hs_name, strnlen(h.hs_name, sizeof(h.hs_name)), name, sizeof(name)),
		 esc(h.hs_hostname, strnlen(h.hs_hostname, sizeof(h.hs_hostname)), hn, sizeof(hn)),
		 h.hs_pid, t);
}

/* ------------------------------------------------------------------ */
/* Pass 2: control page and host table                                  */
/* ------------------------------------------------------------------ */

static bool zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static const char *state_name(uint32_t s)
{
	switch (s) {
	case SHMFS_HOST_FREE: return "FREE";
	case SHMFS_HOST_JOINING: return "JOINING";
	case SHMFS_HOST_ACTIVE: return "ACTIVE";
	case SHMFS_HOST_TOOL: return "TOOL";
	default: return "invalid";
	}
}

static void pass_hosts(void)
{
	const struct shmfs_super *sb = &F.c->sb;
	struct shmfs_ctl ctl;
	char who[400], loc[64];

	verbose("Pass 2: control page and host table");
	memcpy(&ctl, F.r.base + sb->sb_ctl_off, sizeof(ctl));
	if (ctl.ctl_magic != SHMFS_CTL_MAGIC)
		problem("ctl_magic", FIX_CTL, true, "control page",
			"ctl_magic is 0x%016" PRIx64 ", not 0x%016llx: mounts refuse the region (repair: "
			"rewrite it)",
			ctl.ctl_magic, (unsigned long long)SHMFS_CTL_MAGIC);
	else if (!zero(ctl.ctl_pad0, sizeof(ctl.ctl_pad0)) ||
		 !zero(ctl.ctl_pad1, sizeof(ctl.ctl_pad1)) ||
		 !zero(ctl.ctl_reserved, sizeof(ctl.ctl_reserved)))
		problem("ctl_reserved", FIX_CTL, true, "control page",
			"padding or reserved fields are not zero (repair: zero them)");

	uint64_t lock = load64(&((struct shmfs_ctl *)(F.r.base + sb->sb_ctl_off))->ctl_lock);
	uint32_t owner = shmfs_lock_owner(lock);
	F.c->lock_seen = lock;
	F.c->lock_dead = false;
	if (owner > sb->sb_max_hosts) {
		F.c->lock_dead = true;
		problem("ctl_lock", FIX_LOCK, true, "control page",
			"ctl_lock 0x%016" PRIx64 " names host slot %u, but there are only %u (repair: "
			"release it and seal the log tail)",
			lock, owner - 1, sb->sb_max_hosts)->a = lock;
	} else if (owner && !slot_live(owner - 1)) {
		F.c->lock_dead = true;
		host_ident(owner - 1, who, sizeof(who));
		problem("ctl_lock", FIX_LOCK, true, "control page",
			"ctl_lock is held by %s, which is not live (repair: release it, and seal the "
			"log tail where its next record would have gone)", who)->a = lock;
	}

	for (uint32_t i = 0; i < sb->sb_max_hosts; i++) {
		struct shmfs_host h;
		bool live = slot_live(i);
		struct problem *p = NULL;

		memcpy(&h, hslot(i), sizeof(h));
		snprintf(loc, sizeof(loc), "host slot %u", i);
		bool pad = h.hs_pad0 || h.hs_pad1;
		bool garbage = pad || !zero(h.hs_pins, sizeof(h.hs_pins));
		if (h.hs_state == SHMFS_HOST_FREE) {
			if (i < F.nslots && F.slots[i].moved && F.slots[i].state == SHMFS_HOST_FREE &&
			    load64(&h.hs_token) == F.slots[i].token)
				problem("hs_state", FIX_NONE, false, loc,
					"hs_state is FREE but hs_heartbeat moves: a live host whose slot "
					"was overwritten");
			else if (garbage)
				p = problem("hs_pins", FIX_HOST, true, loc,
					    "free slot holds garbage: pins or padding not zero (repair: zero "
					    "the slot)");
		} else if (h.hs_state > SHMFS_HOST_TOOL) {
			p = problem("hs_state", live ? FIX_NONE : FIX_HOST, true, loc,
				    "hs_state %" PRIu32 " is invalid%s", h.hs_state,
				    live ? " (but its hs_heartbeat moves: not touched)" :
				    " (repair: free the slot)");
		} else if (h.hs_state != SHMFS_HOST_JOINING &&
			   shmfs_host_ident_csum(&h) != h.hs_ident_csum) {
			host_ident(i, who, sizeof(who));
			p = problem("hs_ident_csum", live ? FIX_NONE : FIX_HOST, true, loc,
				    "hs_ident_csum does not match the identity of %s%s", who,
				    live ? " (but its hs_heartbeat moves: not touched)" :
				    " (repair: free the slot)");
		} else if (!live) {
			host_ident(i, who, sizeof(who));
			p = problem("hs_heartbeat", FIX_HOST, true, loc,
				    "stale lease: %s is %s but its hs_heartbeat stood still for the "
				    "whole lease, %u ms (repair: free the slot)", who, state_name(h.hs_state),
				    sb->sb_lease_ms);
		} else if (pad) {
			problem("hs_pad0", FIX_NONE, false, loc,
				"padding not zero in the slot of a live host");
		} else {
			host_ident(i, who, sizeof(who));
			verbose("  live: %s, %s, applied record %" PRIu64, who,
				state_name(h.hs_state), h.hs_applied_seq);
		}
		if (p) {
			p->a = i;
			p->b = load64(&h.hs_token);
			p->c = load64(&h.hs_heartbeat);
		}
	}
}

/* ------------------------------------------------------------------ */
/* Records: describing them to people                                   */
/* ------------------------------------------------------------------ */

/* What a record does, in words, as far as its payload can be read; sets
 * *ino and *dir to the inodes it names (0 if none). */
static void describe(const struct shmfs_log_rec *h, const uint8_t *p, uint32_t plen, char *buf,
		     size_t len, uint64_t *ino, uint64_t *dir)
{
	char n1[300], n2[300];

	*ino = *dir = 0;
#define NAME(out, off, l) esc(p + SHMFS_MIN((size_t)(off), (size_t)plen), \
			      (off) >= plen ? 0 : SHMFS_MIN((size_t)(l), (size_t)plen - (off)), \
			      out, sizeof(out))
	switch (h->lr_type) {
	case SHMFS_LR_CREATE: {
		struct shmfs_lr_create c;
		if (plen < sizeof(c))
			break;
		memcpy(&c, p, sizeof(c));
		*ino = c.cr_ino;
		*dir = c.cr_parent;
		snprintf(buf, len, "create %s (inode %" PRIu64 ", mode 0%o) in directory %" PRIu64,
			 NAME(n1, sizeof(c), c.cr_name_len), c.cr_ino, c.cr_mode, c.cr_parent);
		return;
	}
	case SHMFS_LR_LINK:
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR: {
		struct shmfs_lr_link l;
		if (plen < sizeof(l))
			break;
		memcpy(&l, p, sizeof(l));
		*ino = l.ln_ino;
		*dir = l.ln_dir;
		snprintf(buf, len, "%s %s (inode %" PRIu64 ") %s directory %" PRIu64,
			 shmfs_lr_type_name(h->lr_type), NAME(n1, sizeof(l), l.ln_name_len), l.ln_ino,
			 h->lr_type == SHMFS_LR_LINK ? "in" : "from", l.ln_dir);
		return;
	}
	case SHMFS_LR_RENAME: {
		struct shmfs_lr_rename r;
		if (plen < sizeof(r))
			break;
		memcpy(&r, p, sizeof(r));
		*ino = r.rn_ino;
		*dir = r.rn_olddir;
		snprintf(buf, len, "rename %s in directory %" PRIu64 " to %s in directory %" PRIu64
			 " (inode %" PRIu64 ")", NAME(n1, sizeof(r), r.rn_oldname_len), r.rn_olddir,
			 NAME(n2, sizeof(r) + r.rn_oldname_len, r.rn_newname_len), r.rn_newdir,
			 r.rn_ino);
		return;
	}
	case SHMFS_LR_SETATTR: {
		struct shmfs_lr_setattr s;
		if (plen < sizeof(s))
			break;
		memcpy(&s, p, sizeof(s));
		*ino = s.sa_ino;
		snprintf(buf, len, "setattr of inode %" PRIu64 " (valid 0x%x%s)", s.sa_ino, s.sa_valid,
			 s.sa_valid & SHMFS_SA_SIZE ? ", size" : "");
		return;
	}
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP: {
		struct shmfs_lr_extent x;
		if (plen < sizeof(x))
			break;
		memcpy(&x, p, sizeof(x));
		*ino = x.ex_ino;
		if (h->lr_type == SHMFS_LR_EXTENT_MAP)
			snprintf(buf, len, "extent-map of inode %" PRIu64 ": file [%" PRIu64 ", +%" PRIu64
				 ") at data %" PRIu64, x.ex_ino, x.ex_foff, x.ex_len, x.ex_doff);
		else
			snprintf(buf, len, "extent-unmap of inode %" PRIu64 ": file [%" PRIu64 ", +%"
				 PRIu64 ")", x.ex_ino, x.ex_foff, x.ex_len);
		return;
	}
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE: {
		struct shmfs_lr_xattr a;
		if (plen < sizeof(a))
			break;
		memcpy(&a, p, sizeof(a));
		*ino = a.xa_ino;
		snprintf(buf, len, "%s %s of inode %" PRIu64, shmfs_lr_type_name(h->lr_type),
			 NAME(n1, sizeof(a), a.xa_name_len), a.xa_ino);
		return;
	}
	case SHMFS_LR_RELEASE: {
		struct shmfs_lr_release rl;
		if (plen < sizeof(rl))
			break;
		memcpy(&rl, p, sizeof(rl));
		*ino = rl.rl_ino;
		snprintf(buf, len, "release of orphan inode %" PRIu64, rl.rl_ino);
		return;
	}
	case SHMFS_LR_NOOP:
		snprintf(buf, len, "noop");
		return;
	default:
		snprintf(buf, len, "record of unknown type %u", h->lr_type);
		return;
	}
#undef NAME
	snprintf(buf, len, "%s with a short payload", shmfs_lr_type_name(h->lr_type));
}

/* The payload struct of a record type, as format.h names it. */
static const char *rec_code(unsigned type)
{
	switch (type) {
	case SHMFS_LR_CREATE: return "lr_create";
	case SHMFS_LR_LINK: return "lr_link";
	case SHMFS_LR_UNLINK: case SHMFS_LR_RMDIR: return "lr_unlink";
	case SHMFS_LR_RENAME: return "lr_rename";
	case SHMFS_LR_SETATTR: return "lr_setattr";
	case SHMFS_LR_EXTENT_MAP: case SHMFS_LR_EXTENT_UNMAP: return "lr_extent";
	case SHMFS_LR_XATTR_SET: case SHMFS_LR_XATTR_REMOVE: return "lr_xattr";
	case SHMFS_LR_RELEASE: return "lr_release";
	default: return "lr_type";
	}
}

/* A damaged record at pos, read as well as it can be: what it seems to be. */
static void describe_damaged(uint64_t pos, uint64_t room, char *buf, size_t len, uint64_t *ino,
			     uint64_t *dir)
{
	struct shmfs_log_rec h;

	*ino = *dir = 0;
	if (F.log.size - pos < SHMFS_LR_HDR_SIZE) {
		snprintf(buf, len, "unreadable");
		return;
	}
	memcpy(&h, F.log.base + pos, sizeof(h));
	if (h.lr_type >= SHMFS_LR_TYPE_COUNT || h.lr_len > SHMFS_LR_PAYLOAD_MAX ||
	    shmfs_lr_stride(h.lr_len) > room || shmfs_lr_stride(h.lr_len) > F.log.size - pos) {
		snprintf(buf, len, "unreadable (its header is damaged too)");
		return;
	}
	memcpy(F.buf2, F.log.base + pos + SHMFS_LR_HDR_SIZE, h.lr_len);
	char d[600];
	describe(&h, F.buf2, h.lr_len, d, sizeof(d), ino, dir);
	snprintf(buf, len, "apparently a %s", d);
}

/* ------------------------------------------------------------------ */
/* Pass 3: the log                                                     */
/* ------------------------------------------------------------------ */

/*
 * Scan the log from `from` for the first record that verifies with a
 * sequence number >= min_seq, or a seal whose record verifies 128 KiB on.
 * *first_nz gets the first nonzero word at or after from (NONE if none).
 * Returns true with *a filled, or false (*gave_up if the work budget ran
 * out: a hostile log full of near-records).
 */
static bool scan_log(uint64_t from, uint64_t min_seq, struct shmfs_log_anchor *a,
		     uint64_t *first_nz, bool *gave_up)
{
	struct shmfs_log_entry e;
	bool found = shmfs_log_scan_next(&F.scan, from, min_seq, true, a, &e, first_nz);

	*gave_up = F.scan.gave_up;
	return found;
}

/* Apply one verified record to the private namespace, as replay does. */
static void apply(const struct shmfs_log_entry *e)
{
	struct check *c = F.c;
	char why[200], loc[96], d[700];
	uint64_t ino, dir;
	int rc;

	rc = shmfs_lr_check_shape(&e->hdr, e->payload, c->sb.sb_alloc_unit, why, sizeof(why));
	if (!rc)
		rc = shmfs_ns_apply(c->ns, &e->hdr, e->payload, false, why, sizeof(why));
	if (rc == -ENOMEM) {
		fprintf(stderr, PROG ": out of memory replaying the log\n");
		exit(FSCK_ERROR);
	}
	if (!rc) {
		c->records++;
		c->noops += e->hdr.lr_type == SHMFS_LR_NOOP;
		return;
	}
	c->rejected++;
	describe(&e->hdr, e->payload, e->hdr.lr_len, d, sizeof(d), &ino, &dir);
	snprintf(loc, sizeof(loc), "log pos %" PRIu64 ", record %" PRIu64, e->pos, e->hdr.lr_seq);
	struct problem *p = problem(rec_code(e->hdr.lr_type), FIX_NOOP,
				    true, loc, "replay rejects this %s: %s; it changes nothing (repair: "
				    "rewrite it as a NOOP)", d, why);
	p->a = e->pos;
	p->b = e->next_pos - e->pos;
	p->c = e->hdr.lr_seq;
	p->ref_ino = ino;
	p->ref_dir = dir;
}

/* Records from pos on that a cut at an unbridgeable point drops: every
 * record that verifies, whatever its number, described (never applied). */
static void list_lost(uint64_t pos, uint64_t cut)
{
	struct shmfs_log_entry e;
	struct shmfs_log_anchor an;
	char d[700], loc[96];
	uint64_t ino, dir, n = 0, nz;
	bool gave_up;

	while (pos < F.log.size) {
		enum shmfs_log_status st = shmfs_log_read(&F.log, pos, 0, &e, F.buf);
		if (st == SHMFS_LOG_SEALED) {
			pos = e.next_pos;
			continue;
		}
		if (st != SHMFS_LOG_REC) {
			if (!scan_log(pos + SHMFS_LOG_ALIGN, 1, &an, &nz, &gave_up))
				break;
			pos = an.pos;
			continue;
		}
		F.c->lost++;
		if (++n <= 1000) {
			describe(&e.hdr, e.payload, e.hdr.lr_len, d, sizeof(d), &ino, &dir);
			snprintf(loc, sizeof(loc), "log pos %" PRIu64 ", record %" PRIu64, pos,
				 e.hdr.lr_seq);
			struct problem *p = problem("lr_seq", FIX_NONE, false, loc,
						    "valid, but lost with the cut at pos %" PRIu64
						    ": %s", cut, d);
			p->ref_ino = ino;
			p->ref_dir = dir;
		}
		pos = e.next_pos;
	}
}

/*
 * The walk met a published record at P that fails (at_end: an unpublished
 * word, looked past in case it was zeroed).  Decide what it is, report it,
 * and say where the walk goes on.  Returns true to go on at *pos, *seq.
 */
/*
 * Record 1 is the root directory, and every other record depends on it.
 * When damage starting at pos 0 is bridged, record 1 is rebuilt as mkfs
 * wrote it (a directory 0755 owned by root; later setattr records still
 * apply) instead of becoming a NOOP -- if the k records of the gap can be
 * the root's 88 bytes and k - 1 NOOPs.
 */
static bool root_fits(uint64_t P, uint64_t S, uint64_t gap, uint64_t k)
{
	uint64_t rs = shmfs_lr_stride(sizeof(struct shmfs_lr_create));

	return P == 0 && S == 1 && k >= 1 && gap >= rs + (k - 1) * SHMFS_LR_HDR_SIZE &&
	       gap - rs <= (k - 1) * STRIDE_MAX;
}

static void root_record(const struct shmfs_super *sb, struct shmfs_log_rec *h,
			struct shmfs_lr_create *cr)
{
	memset(h, 0, sizeof(*h));
	memset(cr, 0, sizeof(*cr));
	h->lr_seq = 1;
	h->lr_type = SHMFS_LR_CREATE;
	h->lr_len = sizeof(*cr);
	h->lr_time = sb->sb_mkfs_time;
	cr->cr_ino = SHMFS_ROOT_INO;
	cr->cr_mode = S_IFDIR | 0755;
}

static bool damaged(uint64_t P, uint64_t S, bool at_end, const char *why, uint64_t *pos,
		    uint64_t *seq)
{
	struct check *c = F.c;
	struct shmfs_log_entry e;
	struct shmfs_log_anchor an;
	uint64_t first_nz, ino, dir;
	bool gave_up, found;
	char loc[96], d[800];

	snprintf(loc, sizeof(loc), "log pos %" PRIu64 ", record %" PRIu64, P, S);
	/* Only the lr_seq word is wrong (a flipped bit): put it back. */
	if (!at_end && shmfs_repair_probe_seq(&F.log, P, S, &e, F.buf) == 0) {
		uint64_t w = load64((const uint64_t *)(F.log.base + P));
		problem("lr_seq", FIX_SEQ, true, loc,
			"lr_seq is 0x%" PRIx64 ", but the record verifies as record %" PRIu64
			" (repair: restore lr_seq)", w, S)->a = P;
		c->pb.v[c->pb.n - 1].c = S;
		apply(&e);
		*pos = e.next_pos;
		*seq = S + 1;
		return true;
	}
	found = scan_log(at_end ? P + SHMFS_LOG_ALIGN : P, S, &an, &first_nz, &gave_up);
	if (at_end) {
		uint64_t allow = F.nlive || shmfs_lock_owner(c->lock_seen) ? STRIDE_MAX : 0;
		static uint64_t retry_pos = NONE, retries;
		if (F.log.size - P >= SHMFS_LR_HDR_SIZE &&
		    load64((const uint64_t *)(F.log.base + P)) != 0) {
			/* A live host appended meanwhile: walk on. */
			retries = retry_pos == P ? retries + 1 : 0;
			retry_pos = P;
			if (retries < 1000)
				return true;
		}
		if (!found) {
			c->junk_from = first_nz;
			if (first_nz != NONE && first_nz >= P + allow && !c->lock_dead) {
				problem("lr_seq", FIX_CUT, true, loc,
					"the log ends here, but bytes after the end are not zero (first "
					"at pos %" PRIu64 "): the next append there would fail (repair: "
					"zero them)", first_nz)->a = P;
				c->pb.v[c->pb.n - 1].b = F.log.size;
			}
			return false;
		}
		/* Valid records after an unpublished word: it was zeroed. */
		if (shmfs_repair_probe_seq(&F.log, P, S, &e, F.buf) == 0 && e.next_pos <= an.pos) {
			problem("lr_seq", FIX_SEQ, true, loc,
				"lr_seq is 0 (the log seems to end here), but records follow from "
				"pos %" PRIu64 " and this one verifies as record %" PRIu64
				" (repair: restore lr_seq)", an.pos, S)->a = P;
			c->pb.v[c->pb.n - 1].c = S;
			apply(&e);
			*pos = e.next_pos;
			*seq = S + 1;
			return true;
		}
		why = "lr_seq is 0 but valid records follow (the log was cut)";
	}

	if (!found) {
		/* A torn tail: nothing valid after it. */
		describe_damaged(P, F.log.size - P, d, sizeof(d), &ino, &dir);
		struct problem *p = problem("lr_csum", FIX_CUT, !gave_up,
					    loc, "%s; nothing valid follows%s: a torn tail (repair: cut "
					    "the log so that it ends cleanly at pos %" PRIu64 "); lost: %s",
					    why, gave_up ? " (gave up scanning: too many near-records)"
					    : "", P, d);
		p->a = P;
		p->b = F.log.size;
		p->ref_ino = ino;
		p->ref_dir = dir;
		c->tail_bad = true;
		c->lost++;
		return false;
	}

	uint64_t gap = an.pos - P, k = an.seq - S;
	describe_damaged(P, gap ? gap : F.log.size - P, d, sizeof(d), &ino, &dir);
	if (k == 0 && gap == SHMFS_LOG_SEAL_SKIP) {
		problem("lr_seq", FIX_SEAL, true, loc,
			"%s; record %" PRIu64 " follows exactly one seal skip later: this was a "
			"seal (repair: restore it)", why, S)->a = P;
		c->pb.v[c->pb.n - 1].c = S;
		c->seals++;
	} else if (k >= 1 && gap >= k * SHMFS_LR_HDR_SIZE && gap <= k * STRIDE_MAX) {
		bool root = root_fits(P, S, gap, k);
		struct problem *p = problem(at_end ? "lr_seq" : "lr_csum",
					    FIX_FILL, false, loc,
					    "%s; the log is intact again from pos %" PRIu64
					    " (%s %" PRIu64 ") (repair: the %" PRIu64 " damaged byte%s "
					    "become%s %" PRIu64 " NOOP record%s, so that what follows "
					    "survives%s); lost: %s%s", why, an.pos, an.seal ? "seal of record" :
					    "record", an.seq, gap, gap == 1 ? "" : "s",
					    gap == 1 ? "s" : "", k, k == 1 ? "" : "s",
					    root ? "; the first rebuilt as the root directory, 0755, owned by "
					    "root" : "", d,
					    k > 1 ? " and the records after it up to the next one" : "");
		if (root) {
			/* Walk on as if repaired: the root exists. */
			struct shmfs_lr_create rcr;
			struct shmfs_log_entry re = { .pos = P, .payload = (uint8_t *)&rcr };
			root_record(&c->sb, &re.hdr, &rcr);
			apply(&re);
		}
		p->a = P;
		p->b = an.pos;
		p->c = S;
		p->d = k;
		p->ref_ino = ino;
		p->ref_dir = dir;
		c->lost += k - root;
	} else {
		/* Valid records follow, but the gap cannot hold the missing
		 * sequence numbers: the log can only be cut here. */
		struct problem *p = problem("lr_seq", FIX_CUT, false, loc,
					    "%s; valid records follow from pos %" PRIu64 " (record %"
					    PRIu64 "), but %" PRIu64 " bytes cannot hold records %"
					    PRIu64 "..%" PRIu64 " (repair, -y only: cut the log here, "
					    "losing everything after it); damaged: %s", why, an.pos, an.seq, gap, S,
					    an.seq - 1, d);
		p->a = P;
		p->b = F.log.size;
		p->ref_ino = ino;
		p->ref_dir = dir;
		c->tail_bad = true;
		c->lost++;
		list_lost(an.pos, P);
		return false;
	}
	*pos = an.pos;
	*seq = an.seq;
	return true;
}

static int pass_log(void)
{
	struct check *c = F.c;
	struct shmfs_log_entry e;
	uint64_t pos = 0, seq = 1;

	verbose("Pass 3: log (%s)", F.after ? "again" : "checksums, sequence, replay");
	c->ns = shmfs_ns_new(c->sb.sb_data_size, c->sb.sb_alloc_unit, c->sb.sb_log_size / 1024);
	if (!c->ns)
		return -ENOMEM;
	c->ns->exclusive = true;
	c->junk_from = NONE;
	for (;;) {
		progress("Checking the log", pos, F.log.size);
		switch (shmfs_log_read(&F.log, pos, seq, &e, F.buf)) {
		case SHMFS_LOG_REC:
			apply(&e);
			pos = e.next_pos;
			seq++;
			continue;
		case SHMFS_LOG_SEALED:
			c->seals++;
			pos = e.next_pos;
			continue;
		case SHMFS_LOG_END:
			if (damaged(pos, seq, true, "", &pos, &seq))
				continue;
			break;
		case SHMFS_LOG_BAD: {
			char why[sizeof(e.why)];
			memcpy(why, e.why, sizeof(why));
			if (damaged(pos, seq, false, why, &pos, &seq))
				continue;
			break;
		}
		}
		break;
	}
	progress_done();
	c->end_pos = pos;
	c->end_seq = seq;
	c->end_word = F.log.size - pos >= 8 ? load64((const uint64_t *)(F.log.base + pos)) : 0;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Pass 4: the namespace                                               */
/* ------------------------------------------------------------------ */

struct inode_info {
	uint64_t ino;
	struct shmfs_inode *ip;
	struct shmfs_dentry *first;     /* one name of it */
	uint32_t ndent, nsub;
	uint64_t nchild;
	uint8_t color;                  /* cycle search: 0 new, 1 on path, 2 done */
};

static struct inode_info *II;
static size_t NII;

static int ii_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct inode_info *)a)->ino, y = ((const struct inode_info *)b)->ino;

	return x < y ? -1 : x > y;
}

static struct inode_info *ii_find(uint64_t ino)
{
	size_t lo = 0, hi = NII;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (II[mid].ino == ino)
			return &II[mid];
		if (II[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* "/a/b/c" for an inode with a name, from its first dentry upwards. */
static const char *path_of(uint64_t ino, char *buf, size_t len)
{
	size_t o = len - 1;
	unsigned depth = 0;

	buf[o] = 0;
	if (ino == SHMFS_ROOT_INO)
		return "/";
	while (ino != SHMFS_ROOT_INO) {
		struct inode_info *ii = ii_find(ino);
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
		esc(ii->first->name, ii->first->name_len, n, sizeof(n));
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

static void pass_ns(void)
{
	struct check *c = F.c;
	struct shmfs_ns *ns = c->ns;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct shmfs_inode *ip;
	struct shmfs_dentry *d;
	uint64_t unit = c->sb.sb_alloc_unit, nunits = c->sb.sb_data_size / unit;
	uint64_t *owned = calloc(nunits / 64 + 1, sizeof(uint64_t));
	char loc[96], n1[300], path[4096];
	size_t cap = 1024, k = 0;

	verbose("Pass 4: namespace");
	II = malloc(cap * sizeof(*II));
	if (!II || !owned) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(FSCK_ERROR);
	}
	rcu_read_lock();
	/* Nodes, not cds_lfht_for_each_entry(): that one ends on container_of
	 * of NULL, arithmetic on a null pointer (UBSan). */
	cds_lfht_for_each(ns->inodes, &it, node) {
		ip = caa_container_of(node, struct shmfs_inode, hnode);
		if (k == cap) {
			cap *= 2;
			II = realloc(II, cap * sizeof(*II));
			if (!II) {
				fprintf(stderr, PROG ": out of memory\n");
				exit(FSCK_ERROR);
			}
		}
		II[k++] = (struct inode_info){ .ino = ip->ino, .ip = ip };
	}
	NII = k;
	qsort(II, NII, sizeof(*II), ii_cmp);

	/* Directory entries: parents, targets, unique names, counts. */
	uint64_t nd = 0;
	cds_lfht_for_each(ns->dentries, &it, node) {
		d = caa_container_of(node, struct shmfs_dentry, hnode);
		struct inode_info *di = ii_find(d->dir), *ti = ii_find(d->ino);
		esc(d->name, d->name_len, n1, sizeof(n1));
		snprintf(loc, sizeof(loc), "directory %" PRIu64, d->dir);
		if (++nd % 4096 == 0)
			progress("Checking the namespace", nd, NII * 2);
		if (!di)
			problem("cr_parent", FIX_NONE, false, loc, "entry %s: the directory does not "
				"exist", n1);
		else if (di->ip->type != S_IFDIR)
			problem("cr_parent", FIX_NONE, false, loc, "entry %s: inode %" PRIu64
				" is not a directory", n1, d->dir);
		else
			di->nchild++;
		if (!ti) {
			problem("cr_ino", FIX_NONE, false, loc, "entry %s names inode %" PRIu64
				", which does not exist", n1, d->ino);
			continue;
		}
		if (ti->ip->type != d->type)
			problem("cr_mode", FIX_NONE, false, loc, "entry %s says type 0%o, inode %"
				PRIu64 " is 0%o", n1, d->type, d->ino, ti->ip->type);
		if (shmfs_ns_lookup(ns, d->dir, d->name, d->name_len) != d)
			problem("cr_name_len", FIX_NONE, false, loc, "entry %s is not unique in its "
				"directory", n1);
		ti->ndent++;
		if (!ti->first)
			ti->first = d;
		if (ti->ip->type == S_IFDIR && di)
			di->nsub++;
	}

	/* Inodes. */
	for (size_t i = 0; i < NII; i++) {
		struct inode_info *ii = &II[i];
		const struct shmfs_attr *a;
		ip = ii->ip;
		a = ip->attr;
		snprintf(loc, sizeof(loc), "inode %" PRIu64, ip->ino);
		if (i % 4096 == 0)
			progress("Checking the namespace", NII + i, NII * 2);
		switch (ip->type) {
		case S_IFDIR: c->dirs++; break;
		case S_IFREG: c->files++; break;
		case S_IFLNK: c->symlinks++; break;
		default: c->others++; break;
		}
		if (ip->type == S_IFDIR) {
			if (ip->ino == SHMFS_ROOT_INO) {
				if (ii->ndent)
					problem("cr_parent", FIX_NONE, false, loc, "the root directory "
						"has %u names", ii->ndent);
				if (ip->parent != SHMFS_ROOT_INO)
					problem("cr_parent", FIX_NONE, false, loc, "the root's parent is "
						"%" PRIu64, ip->parent);
			} else if (ii->ndent != 1) {
				problem("ul_name_len", FIX_NONE, false, loc, "directory has %u names "
					"(must have one)", ii->ndent);
			} else if (ii->first->dir != ip->parent) {
				problem("cr_parent", FIX_NONE, false, loc, "directory's \"..\" is %" PRIu64
					" but it is named in %" PRIu64, ip->parent, ii->first->dir);
			}
			if (a->nlink != 2 + ii->nsub)
				problem("ln_ino", FIX_NONE, false, loc, "directory link count %u, but it "
					"has %u subdirectories (expected %u)", a->nlink, ii->nsub,
					2 + ii->nsub);
			if (ip->nchildren != ii->nchild)
				problem("ln_dir", FIX_NONE, false, loc, "directory counts %" PRIu64
					" entries, the table holds %" PRIu64, ip->nchildren, ii->nchild);
		} else {
			if (a->nlink != ii->ndent)
				problem("ln_ino", FIX_NONE, false, loc, "link count %u, but %u names",
					a->nlink, ii->ndent);
			if (!ii->ndent && !ip->orphan_host)
				problem("rl_ino", FIX_NONE, false, loc, "has no name and is not an "
					"orphan: unreachable");
		}
		if (ip->orphan_host && !a->nlink) {
			uint32_t owner = ip->orphan_host - 1;
			c->orphans++;
			if (owner >= c->sb.sb_max_hosts || !slot_live(owner)) {
				problem("rl_ino", FIX_RELEASE, true, loc, "orphan (open on host slot %u "
					"when its last name went) whose host is not live (repair: release "
					"it, freeing %" PRIu64 " bytes)", owner, a->blocks_bytes)->a = ip->ino;
			}
		}
		if (ip->type == S_IFLNK && (!ip->target || a->size != ip->target_len))
			problem("cr_target_len", FIX_NONE, false, loc, "symlink target is missing or "
				"its size is wrong");

		/* Extents: inside the data area, sorted, owned once. */
		const struct shmfs_extmap *m = ip->ext;
		uint64_t sum = 0, last_end = 0, beyond = 0;
		uint64_t need = shmfs_round_up(a->size, unit);
		for (uint32_t x = 0; m && x < m->n; x++) {
			const struct shmfs_extent *e = &m->e[x];
			sum += e->len;
			if (e->foff % unit || e->doff % unit || e->len % unit || !e->len ||
			    e->doff >= c->sb.sb_data_size || e->len > c->sb.sb_data_size - e->doff) {
				problem("ex_doff", FIX_NONE, false, loc, "extent file [%" PRIu64 ", +%"
					PRIu64 ") at data %" PRIu64 " is unaligned or outside the data "
					"area", e->foff, e->len, e->doff);
				continue;
			}
			if (x && e->foff < last_end)
				problem("ex_foff", FIX_NONE, false, loc, "extents overlap in the file at %"
					PRIu64, e->foff);
			last_end = e->foff + e->len;
			/* Only room a writer reserved ahead (SHMFS_EXT_F_AHEAD) and never
			 * gave back is leaked; fallocate(KEEP_SIZE) space is wanted. */
			uint64_t from = SHMFS_MAX(need, shmfs_round_down(ip->ahead_from, unit));
			if (ip->ahead_from && last_end > from)
				beyond += last_end - SHMFS_MAX(from, e->foff);
			for (uint64_t u = e->doff / unit, end = u + e->len / unit; u < end; u++) {
				uint64_t bit = 1ull << (u % 64);
				if (owned[u / 64] & bit) {
					problem("ex_doff", FIX_NONE, false, loc, "data unit %" PRIu64
						" is owned by another inode too", u);
					break;
				}
				owned[u / 64] |= bit;
			}
		}
		if (sum != a->blocks_bytes)
			problem("ex_len", FIX_NONE, false, loc, "counts %" PRIu64 " allocated bytes, "
				"its extents hold %" PRIu64, a->blocks_bytes, sum);
		c->bytes_used += sum;
		if (beyond && !(ip->orphan_host && !a->nlink)) {
			if (F.nlive)
				verbose("  %s: %" PRIu64 " bytes mapped beyond EOF (a live host may be "
					"writing it)", loc, beyond);
			else
				problem("ex_foff", FIX_UNMAP, true, loc, "%" PRIu64 " bytes of extents lie "
					"wholly beyond the unit holding EOF (size %" PRIu64 "): leaked "
					"preallocation (repair: unmap it)", beyond, a->size)->a = ip->ino;
			struct problem *p = F.nlive ? NULL : &c->pb.v[c->pb.n - 1];
			if (p) {
				/* what the report counts, as a live host gives it back */
				p->b = SHMFS_MAX(need, shmfs_round_down(ip->ahead_from, unit));
				p->c = last_end;
				p->ref_ino = ip->ino;
			}
		}
	}

	/* Cycles: every directory reaches the root by its parents. */
	uint64_t *stack = malloc((NII + 1) * sizeof(*stack));
	for (size_t i = 0; stack && i < NII; i++) {
		size_t sp = 0;
		struct inode_info *cur = &II[i];
		if (cur->ip->type != S_IFDIR || cur->color)
			continue;
		while (cur && cur->color == 0) {
			cur->color = 1;
			stack[sp++] = (uint64_t)(cur - II);
			if (cur->ino == SHMFS_ROOT_INO)
				break;
			struct inode_info *up = ii_find(cur->ip->parent);
			if (!up || up->ip->type != S_IFDIR) {
				snprintf(loc, sizeof(loc), "inode %" PRIu64, cur->ino);
				problem("cr_parent", FIX_NONE, false, loc, "directory's parent %" PRIu64
					" is missing or not a directory", cur->ip->parent);
				break;
			}
			if (up->color == 1) {
				snprintf(loc, sizeof(loc), "inode %" PRIu64, cur->ino);
				problem("rn_newdir", FIX_NONE, false, loc, "directory cycle through "
					"inode %" PRIu64 ": unreachable from the root", up->ino);
				break;
			}
			cur = up;
		}
		while (sp)
			II[stack[--sp]].color = 2;
	}
	free(stack);

	/* The allocator: what replay marked used is what the extents hold. */
	uint64_t leaked = 0, unmarked = 0, first_leak = NONE, first_unmarked = NONE, used = 0;
	for (uint64_t w = 0; w <= nunits / 64; w++) {
		uint64_t mask = w == nunits / 64 ? (nunits % 64 ? (1ull << (nunits % 64)) - 1 : 0)
					       : ~0ull;
		uint64_t al = ns->alloc.bits[w] & mask, ow = owned[w] & mask;
		used += (uint64_t)__builtin_popcountll(al);
		if (al & ~ow) {
			leaked += (uint64_t)__builtin_popcountll(al & ~ow);
			if (first_leak == NONE)
				first_leak = w * 64 + (uint64_t)__builtin_ctzll(al & ~ow);
		}
		if (ow & ~al) {
			unmarked += (uint64_t)__builtin_popcountll(ow & ~al);
			if (first_unmarked == NONE)
				first_unmarked = w * 64 + (uint64_t)__builtin_ctzll(ow & ~al);
		}
	}
	if (leaked)
		problem("ex_len", FIX_NONE, false, "data area", "%" PRIu64 " units are marked used "
			"but no file owns them (first: unit %" PRIu64 "): leaked space", leaked,
			first_leak);
	if (unmarked)
		problem("ex_doff", FIX_NONE, false, "data area", "%" PRIu64 " units owned by files "
			"are free for the allocator (first: unit %" PRIu64 "): they would be handed "
			"out twice", unmarked, first_unmarked);
	if (ns->alloc.nfree != nunits - used)
		problem("ex_len", FIX_NONE, false, "data area", "the allocator counts %" PRIu64
			" free units, its bitmap %" PRIu64, ns->alloc.nfree, nunits - used);
	if (ns->ninodes != NII)
		problem("cr_ino", FIX_NONE, false, "namespace", "counts %" PRIu64 " inodes, holds %zu",
			ns->ninodes, NII);
	if (!ii_find(SHMFS_ROOT_INO))
		problem("sb_root_ino", FIX_NONE, false, "namespace", "the root directory does not "
			"exist");
	c->inodes = NII;
	progress_done();

	/* Name the files the problems are about, while the namespace is here. */
	for (size_t i = 0; i < c->pb.n; i++) {
		struct problem *p = &c->pb.v[i];
		char *extra = NULL;
		if (p->ref_ino && ii_find(p->ref_ino) && p->ref_ino != SHMFS_ROOT_INO)
			extra = xasprintf("%s; inode %" PRIu64 " is %s", p->msg, p->ref_ino,
					  path_of(p->ref_ino, path, sizeof(path)));
		else if (p->ref_ino && p->fix != FIX_UNMAP)
			extra = xasprintf("%s; inode %" PRIu64 " does not exist now", p->msg,
					  p->ref_ino);
		if (extra) {
			free(p->msg);
			p->msg = extra;
		}
		if (p->ref_dir && ii_find(p->ref_dir)) {
			extra = xasprintf("%s; directory %" PRIu64 " is %s", p->msg, p->ref_dir,
					  path_of(p->ref_dir, path, sizeof(path)));
			free(p->msg);
			p->msg = extra;
		}
	}
	rcu_read_unlock();
	free(owned);
	free(II);
	II = NULL;
	NII = 0;
}

/* ------------------------------------------------------------------ */
/* One whole check                                                     */
/* ------------------------------------------------------------------ */

static void free_check(struct check *c)
{
	if (c->ns) {
		shmfs_ns_free(c->ns);
		c->ns = NULL;
	}
}

static int run_check(struct check *c, bool after)
{
	int rc;

	memset(c, 0, sizeof(*c));
	F.c = c;
	F.after = after;
	rc = pass_super();
	if (rc)
		return rc;
	const struct shmfs_super *sb = &c->sb;
	F.log = (struct shmfs_log){ F.r.base + sb->sb_log_off, sb->sb_log_size, sb->sb_log_seed };
	/* A file is read with pread, its holes skipped without a look. */
	bool file = (F.r.kind == SHMFS_REGION_FILE || F.r.kind == SHMFS_REGION_HUGETLBFS) &&
		    F.r.fd >= 0;
	F.scan.log = &F.log;
	F.scan.fd = file ? F.r.fd : -1;
	F.scan.fd_base = F.r.offset + sb->sb_log_off;
	F.scan.hashed = 0;
	F.scan.gave_up = false;
	if (!F.watched && watch_hosts()) {
		fprintf(stderr, PROG ": out of memory\n");
		return FSCK_ERROR;
	}
	pass_hosts();
	if (pass_log()) {
		fprintf(stderr, PROG ": out of memory\n");
		return FSCK_ERROR;
	}
	pass_ns();
	free_check(c);
	for (size_t i = 0; i < c->pb.n; i++)
		out_problem(&c->pb.v[i], after);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Repair                                                              */
/* ------------------------------------------------------------------ */

static bool ask(const char *question)
{
	char line[64];

	fprintf(stderr, "%s? [y/N] ", question);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

static bool want(struct problem *p)
{
	char q[1200];

	if (p->fix == FIX_NONE)
		return false;
	switch (F.mode) {
	case M_YES:
		return true;
	case M_PREEN:
		if (!p->safe && !p->action)
			p->action = xasprintf("not repaired: -p repairs only what is safe; run "
					      PROG " -y");
		return p->safe;
	case M_ASK:
		snprintf(q, sizeof(q), "%s: %s. Repair", p->loc, p->msg);
		return ask(q);
	default:
		return false;
	}
}

static void done(struct problem *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void done(struct problem *p, int rc, const char *fmt, ...)
{
	va_list ap;

	free(p->action);
	if (rc == 0) {
		va_start(ap, fmt);
		p->action = xvasprintf(fmt, ap);
		va_end(ap);
		p->repaired = true;
		F.repaired_any = true;
		F.modified = true;
	} else {
		p->action = xasprintf("repair failed: %s", strerror(-rc));
		if (rc != -EAGAIN && rc != -EBUSY)
			F.op_error = true;
	}
	if (!F.json)
		printf("  %s [%s]: %s\n", p->loc, p->code, p->action);
}

static void skip(struct problem *p, const char *why)
{
	if (!p->action)
		p->action = xasprintf("not repaired: %s", why);
	if (!F.json)
		printf("  %s [%s]: %s\n", p->loc, p->code, p->action);
}

/* Write the NOOPs of a bridged gap [P, X): k records from seq S, 40 bytes
 * each plus the slack spread over the first ones.  The first one last, so
 * that readers see the end of the log until everything after it is there. */
static uint64_t fill_stride(uint64_t gap, uint64_t k, uint64_t i)
{
	const uint64_t most = STRIDE_MAX - SHMFS_LR_HDR_SIZE;
	uint64_t rem = gap - k * SHMFS_LR_HDR_SIZE, full = rem / most;

	if (i < full)
		return STRIDE_MAX;
	return SHMFS_LR_HDR_SIZE + (i == full ? rem % most : 0);
}

static int fill(uint64_t P, uint64_t X, uint64_t S, uint64_t k)
{
	uint64_t gap = X - P, pos = X;
	int rc = shmfs_repair_set_seq(&F.log, P, 0);
	bool root = root_fits(P, S, gap, k);

	if (root) { /* NOOPs after the root's 88 bytes */
		gap -= shmfs_lr_stride(sizeof(struct shmfs_lr_create));
		for (uint64_t i = k - 1; !rc && i-- > 0;) {
			uint64_t st = fill_stride(gap, k - 1, i);
			pos -= st;
			rc = shmfs_repair_noop(&F.log, pos, S + 1 + i, st, NULL, true);
		}
		if (!rc && pos == P + shmfs_lr_stride(sizeof(struct shmfs_lr_create))) {
			struct shmfs_log_rec h;
			struct shmfs_lr_create cr;
			uint64_t next;
			root_record(&F.c->sb, &h, &cr);
			rc = shmfs_log_append(&F.log, P, 1, &h, &cr, &next);
			pos = rc ? pos : P;
		}
		return rc ? rc : pos == P ? 0 : -EIO;
	}
	for (uint64_t i = k; !rc && i-- > 0;) {
		uint64_t st = fill_stride(gap, k, i);
		pos -= st;
		rc = shmfs_repair_noop(&F.log, pos, S + i, st, NULL, true);
	}
	return rc ? rc : pos == P ? 0 : -EIO;
}

static const char *const live_hint =
	"unmount it on every host first, or use --force (dangerous: hosts that are mounted must "
	"remount afterwards)";

/* Can we repair at all?  Live hosts block it unless --force is confirmed. */
static bool may_repair(void)
{
	char who[400];
	size_t o = 0;

	if (!F.nlive)
		return true;
	for (uint32_t i = 0; i < F.nslots && o < sizeof(F.refuse_why) - 1; i++) {
		if (!F.slots[i].live)
			continue;
		host_ident(i, who, sizeof(who));
		o += (size_t)snprintf(F.refuse_why + o, sizeof(F.refuse_why) - o, "%s%s",
				      o ? "; " : "", who);
	}
	if (!F.force) {
		fprintf(stderr, PROG ": %s: not repairing: %u live host%s hold%s a lease: %s\n"
			PROG ": %s\n", F.spec, F.nlive, F.nlive == 1 ? "" : "s",
			F.nlive == 1 ? "s" : "", F.refuse_why, live_hint);
		F.refused = true;
		return false;
	}
	if (F.mode == M_YES)
		return true;
	if (isatty(STDIN_FILENO)) {
		fprintf(stderr, PROG ": %s is mounted: %s\n", F.spec, F.refuse_why);
		if (ask("Repair anyway, while it is mounted"))
			return true;
	}
	fprintf(stderr, PROG ": %s: not repairing while %u host%s %s live (--force needs -y or a "
		"confirmation on a terminal)\n", F.spec, F.nlive, F.nlive == 1 ? "" : "s",
		F.nlive == 1 ? "is" : "are");
	F.refused = true;
	return false;
}

static bool is_log_fix(enum fix f)
{
	return f == FIX_SEQ || f == FIX_SEAL || f == FIX_FILL || f == FIX_NOOP || f == FIX_CUT;
}

static int pos_cmp(const void *a, const void *b)
{
	const struct problem *x = *(struct problem *const *)a, *y = *(struct problem *const *)b;

	return x->a < y->a ? -1 : x->a > y->a;
}

static void repair(void)
{
	struct check *c = &F.c1;
	struct shmfs_fs *fs = NULL;
	struct shmfs_fs_opts o = { .join = true, .tool = true };
	char err[512];
	bool lock_fixed = false, blocked = false, seal = false;
	struct problem *lockp = NULL;
	int rc;

	if (!F.json)
		printf("Repairing %s:\n", F.spec);
	F.c = c;
	/* 1. superblocks, control page, host slots, the lock word. */
	for (size_t i = 0; i < c->pb.n; i++) {
		struct problem *p = &c->pb.v[i];
		switch (p->fix) {
		case FIX_SUPER:
			if (want(p))
				done(p, shmfs_repair_super(&F.r, (unsigned)p->a, &c->sb),
				     "rewritten from the %s", p->a ? "primary" : "backup");
			break;
		case FIX_CTL:
			if (want(p))
				done(p, shmfs_repair_ctl(&F.r, &c->sb), "ctl_magic and padding rewritten");
			break;
		case FIX_HOST:
			if (want(p))
				done(p, shmfs_repair_host_free(&F.r, &c->sb, (uint32_t)p->a, p->b, p->c),
				     "slot freed");
			break;
		case FIX_LOCK:
			if (want(p)) {
				rc = shmfs_repair_lock_release(&F.r, &c->sb, p->a);
				if (rc == 0) {
					lock_fixed = seal = true;
					lockp = p;
				} else {
					done(p, rc, "%s", "");
				}
			}
			break;
		default:
			break;
		}
	}

	/* 2. raw log edits, in log order, holding the metadata lock. */
	size_t nlog = 0;
	struct problem **lp = calloc(c->pb.n + 1, sizeof(*lp));
	for (size_t i = 0; lp && i < c->pb.n; i++)
		if (is_log_fix(c->pb.v[i].fix))
			lp[nlog++] = &c->pb.v[i];
	if (lp && (nlog || lock_fixed)) {
		rc = shmfs_fs_open(&F.r, &o, &fs, err, sizeof(err));
		if (rc) {
			fprintf(stderr, PROG ": %s: cannot join the host table to repair the log: %s\n",
				F.spec, err);
			F.op_error = true;
			blocked = true;
		} else {
			bool broke = false;
			rc = shmfs_lock_acquire(fs, &broke);
			if (rc) {
				fprintf(stderr, PROG ": %s: cannot take the metadata lock: %s\n", F.spec,
					strerror(-rc));
				F.op_error = true;
				blocked = true;
			}
			seal |= broke;
		}
		qsort(lp, nlog, sizeof(*lp), pos_cmp);
		/* The tail must not have moved since the check (a forced repair
		 * while hosts append). */
		bool tail_moved = F.log.size - c->end_pos >= 8 &&
				  load64((const uint64_t *)(F.log.base + c->end_pos)) != c->end_word;
		for (size_t i = 0; i < nlog; i++) {
			struct problem *p = lp[i];
			if (blocked) {
				skip(p, "an earlier problem in the log was not repaired");
				continue;
			}
			if (p->fix == FIX_CUT && p->a >= c->end_pos && tail_moved) {
				skip(p, "the log grew during the check; run " PROG " again");
				F.op_error = true;
				continue;
			}
			if (!want(p)) {
				if (p->fix != FIX_NOOP)
					blocked = true;
				skip(p, F.mode == M_CHECK ? "check only" : "declined");
				continue;
			}
			switch (p->fix) {
			case FIX_SEQ:
				done(p, shmfs_repair_set_seq(&F.log, p->a, p->c), "lr_seq restored");
				break;
			case FIX_SEAL:
				done(p, shmfs_repair_set_seq(&F.log, p->a, SHMFS_LR_SEAL | p->c),
				     "seal restored");
				break;
			case FIX_FILL:
				done(p, fill(p->a, p->b, p->c, p->d), "bridged by %" PRIu64 " NOOP "
				     "record%s", p->d, p->d == 1 ? "" : "s");
				break;
			case FIX_NOOP: {
				struct shmfs_log_entry e;
				if (shmfs_log_read(&F.log, p->a, p->c, &e, F.buf) != SHMFS_LOG_REC ||
				    e.next_pos - p->a != p->b) {
					skip(p, "the record changed during the check");
					break;
				}
				done(p, shmfs_repair_noop(&F.log, p->a, p->c, p->b, &e.hdr, false),
				     "rewritten as a NOOP");
				break;
			}
			case FIX_CUT:
				if (seal && p->a == c->end_pos && !c->tail_bad) {
					/* Junk after the end of a dead holder: seal first. */
					uint64_t next;
					rc = shmfs_log_seal(&F.log, p->a, c->end_seq, &next);
					if (!rc)
						rc = shmfs_repair_log_cut(&F.r, &c->sb, p->a + 8, p->b);
					seal = false;
					done(p, rc, "sealed, and the bytes after the end zeroed");
				} else {
					done(p, shmfs_repair_log_cut(&F.r, &c->sb, p->a, p->b),
					     "the log now ends at pos %" PRIu64, p->a);
				}
				break;
			default:
				break;
			}
		}
		if (seal && !blocked) {
			/* The dead holder may have half-written its next record at
			 * the end: seal that slot, as shmfs_fs_lock() does after
			 * breaking a lease, and clear what lies beyond. */
			uint64_t next, pos = c->end_pos;
			if (tail_moved && !c->tail_bad) {
				rc = -EAGAIN;
			} else {
				rc = shmfs_log_seal(&F.log, pos, c->end_seq, &next);
				if (rc == 0 && c->junk_from != NONE && pos + 8 < F.log.size)
					rc = shmfs_repair_log_cut(&F.r, &c->sb, pos + 8, F.log.size);
			}
			if (lockp)
				done(lockp, rc, "released; the log tail sealed at pos %" PRIu64, pos);
		} else if (lockp) {
			done(lockp, blocked ? -EAGAIN : 0, "released");
		}
		if (fs) {
			if (fs->locked)
				shmfs_lock_release(fs);
			shmfs_fs_close(fs);
			fs = NULL;
		}
	}
	free(lp);

	/* 3. ordinary records through the write path. */
	bool any_ns = false;
	for (size_t i = 0; i < c->pb.n; i++)
		any_ns |= c->pb.v[i].fix == FIX_RELEASE || c->pb.v[i].fix == FIX_UNMAP;
	if (!any_ns)
		return;
	if (!blocked) {
		rc = shmfs_fs_open(&F.r, &o, &fs, err, sizeof(err));
		if (rc) {
			fprintf(stderr, PROG ": %s: cannot open the filesystem to write records: %s\n",
				F.spec, err);
			F.op_error = true;
			blocked = true;
		} else if (fs->stats.stuck) {
			blocked = true;
		}
	}
	for (size_t i = 0; i < c->pb.n; i++) {
		struct problem *p = &c->pb.v[i];
		uint8_t payload[sizeof(struct shmfs_lr_extent)];
		if (p->fix != FIX_RELEASE && p->fix != FIX_UNMAP)
			continue;
		if (blocked) {
			skip(p, "the log is damaged before this point");
			continue;
		}
		if (!want(p)) {
			skip(p, "declined");
			continue;
		}
		rc = shmfs_fs_lock(fs);
		if (rc == 0) {
			if (p->fix == FIX_RELEASE) {
				struct shmfs_lr_release rl = { p->a };
				memcpy(payload, &rl, sizeof(rl));
				rc = shmfs_fs_commit(fs, SHMFS_LR_RELEASE, 0, payload, sizeof(rl));
			} else {
				struct shmfs_lr_extent x = { p->a, p->b, 0, p->c - p->b, 0 };
				memcpy(payload, &x, sizeof(x));
				rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, 0, payload, sizeof(x));
			}
			shmfs_fs_unlock(fs);
		}
		if (p->fix == FIX_RELEASE)
			done(p, rc, "release record %" PRIu64 " appended", fs->seq - 1);
		else
			done(p, rc, "extent-unmap record %" PRIu64 " appended: file [%" PRIu64 ", %"
			     PRIu64 ") released", fs->seq - 1, p->b, p->c);
	}
	if (fs)
		shmfs_fs_close(fs);
}

/* Replay once more the way every mount does. */
static void verify_by_open(void)
{
	struct shmfs_fs_opts o = { .readonly = true };
	struct shmfs_fs *fs = NULL;
	char err[512];
	int rc = shmfs_fs_open(&F.r, &o, &fs, err, sizeof(err));

	if (rc) {
		fprintf(stderr, PROG ": %s: the repaired filesystem does not open: %s\n", F.spec, err);
		F.op_error = true;
		return;
	}
	F.c = &F.c2;
	size_t before = F.c2.pb.n;
	if (fs->stats.stuck)
		problem("lr_csum", FIX_NONE, false, "log", "shmfs_fs_open's replay stops at pos %"
			PRIu64 ": %s", fs->stats.stuck_pos, fs->stats.stuck_why);
	if (fs->stats.rejected)
		problem("lr_type", FIX_NONE, false, "log", "shmfs_fs_open's replay rejects %" PRIu64
			" records (last: %s)", fs->stats.rejected, fs->stats.last_reject);
	for (size_t i = before; i < F.c2.pb.n; i++)
		out_problem(&F.c2.pb.v[i], true);
	verbose("Replayed through shmfs_fs_open: %" PRIu64 " records, %" PRIu64 " inodes",
		fs->stats.records, fs->ns->ninodes);
	shmfs_fs_close(fs);
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", stdout);
		else if (ch < 0x20 || ch >= 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void json_problems(const struct plist *l, bool after, bool *first)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct problem *p = &l->v[i];
		printf("%s\n    {\"code\": ", *first ? "" : ",");
		*first = false;
		json_str(p->code);
		printf(", \"location\": ");
		json_str(p->loc);
		printf(", \"message\": ");
		json_str(p->msg);
		printf(", \"fixable\": %s, \"safe\": %s, \"repaired\": %s, \"after_repair\": %s",
		       p->fix ? "true" : "false", p->safe && p->fix ? "true" : "false",
		       p->repaired ? "true" : "false", after ? "true" : "false");
		if (p->action) {
			printf(", \"action\": ");
			json_str(p->action);
		}
		putchar('}');
	}
}

static void summary(int status, double secs)
{
	const struct check *c = F.c2.have_sb ? &F.c2 : &F.c1;
	const struct shmfs_super *sb = &c->sb;
	char used[32], data[32], logu[32], logs[32], uuid[37];

	if (!c->have_sb) {
		if (F.json) {
			printf("{\n  \"tool\": \"" PROG "\",\n  \"version\": \"%s\",\n  \"region\": ",
			       SHMFS_VERSION_STRING);
			json_str(F.spec);
			printf(",\n  \"problems\": [],\n  \"operational_error\": true,\n"
			       "  \"clean\": false,\n  \"exit\": %d\n}\n", status);
		}
		return;
	}
	shmfs_uuid_format(sb->sb_uuid, uuid);
	if (F.json) {
		bool first = true;
		printf("{\n  \"tool\": \"" PROG "\",\n  \"version\": \"%s\",\n  \"region\": ",
		       SHMFS_VERSION_STRING);
		json_str(F.spec);
		printf(",\n  \"uuid\": \"%s\",\n  \"mode\": \"%s\",\n", uuid,
		       F.mode == M_YES ? "yes" : F.mode == M_PREEN ? "preen" :
		       F.mode == M_ASK ? "ask" : "check");
		printf("  \"live_hosts\": [");
		for (uint32_t i = 0, n = 0; i < F.nslots; i++) {
			char who[400];
			if (!F.slots[i].live)
				continue;
			host_ident(i, who, sizeof(who));
			printf("%s", n++ ? ", " : "");
			json_str(who);
		}
		printf("],\n  \"problems\": [");
		json_problems(&F.c1.pb, false, &first);
		json_problems(&F.c2.pb, true, &first);
		printf("%s],\n", first ? "" : "\n  ");
		printf("  \"summary\": {\"records\": %" PRIu64 ", \"noops\": %" PRIu64 ", \"seals\": %"
		       PRIu64 ", \"rejected\": %" PRIu64 ", \"lost\": %" PRIu64 ", \"inodes\": %"
		       PRIu64 ", \"directories\": %" PRIu64 ", \"files\": %" PRIu64
		       ", \"symlinks\": %" PRIu64 ", \"other\": %" PRIu64 ", \"orphans\": %" PRIu64
		       ", \"bytes_used\": %" PRIu64 ", \"data_size\": %" PRIu64 ", \"log_used\": %"
		       PRIu64 ", \"log_size\": %" PRIu64 ", \"seconds\": %.3f},\n",
		       c->records, c->noops, c->seals, c->rejected, c->lost, c->inodes, c->dirs,
		       c->files, c->symlinks, c->others, c->orphans, c->bytes_used,
		       sb->sb_data_size, c->end_pos, sb->sb_log_size, secs);
		printf("  \"refused\": %s,\n  \"modified\": %s,\n  \"clean\": %s,\n  \"exit\": %d\n}\n",
		       F.refused ? "true" : "false", F.modified ? "true" : "false",
		       (status & ~FSCK_CORRECTED) == 0 ? "true" : "false", status);
		return;
	}
	printf("%s: %" PRIu64 " records (%" PRIu64 " rejected), %" PRIu64 " inodes: %" PRIu64
	       " directories, %" PRIu64 " files, %" PRIu64 " symlinks, %" PRIu64 " other; %s of %s "
	       "data used; log %s of %s; %.3f s\n", F.spec, c->records, c->rejected, c->inodes,
	       c->dirs, c->files, c->symlinks, c->others,
	       shmfs_fmt_size(c->bytes_used, used, sizeof(used)),
	       shmfs_fmt_size(sb->sb_data_size, data, sizeof(data)),
	       shmfs_fmt_size(c->end_pos, logu, sizeof(logu)),
	       shmfs_fmt_size(sb->sb_log_size, logs, sizeof(logs)), secs);
	size_t n1 = F.c1.pb.n, fixed = 0;
	for (size_t i = 0; i < n1; i++)
		fixed += F.c1.pb.v[i].repaired;
	if (!n1)
		printf("%s: clean\n", F.spec);
	else if (F.mode == M_CHECK)
		printf("%s: %zu problem%s found (checked read-only; nothing was changed)\n", F.spec,
		       n1, n1 == 1 ? "" : "s");
	else
		printf("%s: %zu problem%s found, %zu repaired%s%s\n", F.spec, n1, n1 == 1 ? "" : "s",
		       fixed, F.c2.pb.n ? "; PROBLEMS REMAIN" : "",
		       F.modified ? "; ***** FILESYSTEM WAS MODIFIED *****" : "");
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [-n|-p|-y] [-f] [-v] [--json] [--force] REGION\n"
		"Check a shmfs region (PATH[,offset=SIZE][,length=SIZE]) and repair it.\n"
		"\n"
		"  -n, --no            check only: open read-only, change nothing\n"
		"  -p, -a, --preen     repair what is safe without asking\n"
		"  -y, --yes           repair everything that can be repaired\n"
		"  -f, --full          check fully (always done; accepted for fsck(8))\n"
		"  -v, --verbose       say what each pass does\n"
		"      --json          one JSON document on stdout\n"
		"      --force         repair even while other hosts are mounted (needs -y or\n"
		"                      a confirmation on a terminal)\n"
		"  -h, --help          show this help\n"
		"  -V, --version       show the version\n"
		"\n"
		"Without -n, -p or -y it asks before each repair on a terminal, and only\n"
		"checks otherwise.\n"
		"Exit status (ORed): 0 clean, 1 errors corrected, 4 errors left uncorrected,\n"
		"8 operational error, 16 usage error.\n");
}

static int parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no",      no_argument, NULL, 'n' },
		{ "preen",   no_argument, NULL, 'p' },
		{ "yes",     no_argument, NULL, 'y' },
		{ "full",    no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json",    no_argument, NULL, 'j' },
		{ "force",   no_argument, NULL, 'F' },
		{ "help",    no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c, modes = 0;

	argv[0] = (char *)PROG;
	F.mode = M_ASK;
	while ((c = getopt_long(argc, argv, "npaytfvhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': F.mode = M_CHECK; modes++; break;
		case 'p': case 'a': F.mode = M_PREEN; modes++; break;
		case 'y': F.mode = M_YES; modes++; break;
		case 'f': case 't': break;
		case 'v': F.verbose = true; break;
		case 'j': F.json = true; break;
		case 'F': F.force = true; break;
		case 'h':
			usage(stdout);
			return -1;
		case 'V':
			printf(PROG " (shmfs) %s, on-media format version %u\n", SHMFS_VERSION_STRING,
			       SHMFS_VERSION);
			return -1;
		default:
			fprintf(stderr, "Try '" PROG " --help' for more information.\n");
			return FSCK_USAGE;
		}
	}
	if (modes > 1) {
		fprintf(stderr, PROG ": only one of -n, -p and -y may be given\n");
		return FSCK_USAGE;
	}
	if (optind >= argc) {
		fprintf(stderr, PROG ": missing REGION (try '" PROG " --help')\n");
		return FSCK_USAGE;
	}
	if (argc - optind > 1) {
		fprintf(stderr, PROG ": unexpected argument '%s' after REGION\n", argv[optind + 1]);
		return FSCK_USAGE;
	}
	F.spec = argv[optind];
	if (F.mode == M_ASK && !isatty(STDIN_FILENO)) {
		F.mode = M_CHECK;
		if (!F.json)
			fprintf(stderr, PROG ": no -p or -y and no terminal to ask on: checking only\n");
	}
	if (F.mode == M_ASK && F.json) {
		fprintf(stderr, PROG ": --json needs -n, -p or -y\n");
		return FSCK_USAGE;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct shmfs_region_opts ro = { 0 };
	struct sigaction sa = { .sa_handler = on_sigbus };
	char err[512];
	volatile int status = FSCK_OK;
	int rc;

	rc = parse_args(argc, argv);
	if (rc)
		return rc < 0 ? FSCK_OK : rc;
	F.t0 = shmfs_mono_ns();
	F.progress = isatty(STDOUT_FILENO) && !F.json;
	F.buf = malloc(SHMFS_LR_PAYLOAD_MAX);
	F.buf2 = malloc(SHMFS_LR_PAYLOAD_MAX);
	if (!F.buf || !F.buf2 || shmfs_log_scan_init(&F.scan, &F.log, -1, 0)) {
		fprintf(stderr, PROG ": out of memory\n");
		return FSCK_ERROR;
	}
	ro.readonly = F.mode == M_CHECK;
	rc = shmfs_region_open(F.spec, &ro, &F.r, err, sizeof(err));
	if (rc) {
		fprintf(stderr, PROG ": %s%s\n", err,
			!ro.readonly && (rc == -EACCES || rc == -EROFS || rc == -EPERM) ?
			" (use -n to check a region that cannot be written)" : "");
		return FSCK_ERROR;
	}
	F.region_open = true;
	rcu_register_thread();

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1)) {
		fflush(stdout);
		fprintf(stderr, PROG ": %s: the region shrank while it was being read (SIGBUS)\n",
			F.spec);
		return FSCK_ERROR;
	}

	if (!F.json)
		verbose(PROG " %s: %s (%s, %" PRIu64 " bytes)", SHMFS_VERSION_STRING, F.spec,
			shmfs_region_kind_name(F.r.kind), F.r.size);
	rc = run_check(&F.c1, false);
	if (rc) {
		status = rc;
		goto out;
	}
	if (F.nlive && !F.json && F.mode == M_CHECK)
		printf("%s: %u host%s mounted: checked a moving filesystem up to pos %" PRIu64
		       " of its log\n", F.spec, F.nlive, F.nlive == 1 ? " is" : "s are",
		       F.c1.end_pos);

	size_t fixable = 0;
	for (size_t i = 0; i < F.c1.pb.n; i++)
		fixable += F.c1.pb.v[i].fix != FIX_NONE;
	if (F.c1.pb.n && F.mode != M_CHECK && fixable && may_repair()) {
		repair();
		if (F.modified) {
			if (!F.json)
				printf("Checking %s again:\n", F.spec);
			rc = run_check(&F.c2, true);
			if (rc) {
				status |= rc;
				goto out;
			}
			verify_by_open();
		} else {
			/* Nothing changed: what is left is what was found. */
			for (size_t i = 0; i < F.c1.pb.n; i++)
				if (!F.c1.pb.v[i].repaired)
					status |= FSCK_UNCORRECTED;
		}
		if (F.c2.pb.n)
			status |= FSCK_UNCORRECTED;
		if (F.repaired_any)
			status |= FSCK_CORRECTED;
	} else if (F.c1.pb.n) {
		status |= FSCK_UNCORRECTED;
	}
	if (F.op_error)
		status |= FSCK_ERROR;
out:
	summary(status, (double)(shmfs_mono_ns() - F.t0) / 1e9);
	fflush(stdout);
	rcu_unregister_thread();
	if (F.region_open)
		shmfs_region_close(&F.r);
	return status;
}
