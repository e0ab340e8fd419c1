/* SPDX-License-Identifier: MIT */
/*
 * One whole check, and how what it finds is told.
 *
 * A check runs the passes in order over a fresh struct check: superblocks
 * (pass 1), then -- once, before the first check -- a watch of the host
 * table for live hosts, the control page and host slots (pass 2), the log
 * (pass 3) and the namespace it replays to (pass 4).  Each pass records
 * what is wrong as a struct problem: the format.h word it is about, where,
 * what, and the repair that would fix it, with the numbers that repair
 * needs.  The problems are printed once the check is over, when pass 4 has
 * named the files they are about.
 *
 * The messages here (problems, -v, the progress line on a terminal) know
 * of each other: a progress line is erased before anything else is
 * printed over it.  With --json nothing but the final document goes to
 * stdout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmfs/util.h"

#include "fsck.h"

char *fsck_xvasprintf(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(FSCK_ERROR);
	}
	return s;
}

char *fsck_xasprintf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	char *s = fsck_xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

/* Bytes from the region, printable: quoted, anything but printable ASCII
 * as \xNN.  Returns buf. */
const char *fsck_esc(const void *p, size_t len, char *buf, size_t buflen)
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

/* A progress line on the terminal is erased before anything is printed. */
static void clear_progress(struct fsck *ck)
{
	if (ck->progress_shown) {
		printf("\r\033[K");
		ck->progress_shown = false;
	}
}

void fsck_out_problem(struct fsck *ck, const struct problem *p, bool after)
{
	if (ck->json)
		return;
	clear_progress(ck);
	printf("%s%s: %s [%s]\n", after ? "after repair: " : "", p->loc, p->msg, p->code);
	fflush(stdout);
}

struct problem *fsck_problem(struct fsck *ck, const char *code, enum fix fix, bool safe,
			     const char *loc, const char *fmt, ...)
{
	struct plist *l = &ck->c->pb;
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
	p->loc = fsck_xasprintf("%s", loc);
	va_start(ap, fmt);
	p->msg = fsck_xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

void fsck_verbose(struct fsck *ck, const char *fmt, ...)
{
	va_list ap;

	if (!ck->verbose || ck->json)
		return;
	clear_progress(ck);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

void fsck_progress(struct fsck *ck, const char *what, uint64_t done, uint64_t total)
{
	uint64_t now;

	if (!ck->progress)
		return;
	now = shmfs_mono_ns();
	if (now - ck->t0 < 500000000ull || now - ck->last_progress < 100000000ull)
		return;
	ck->last_progress = now;
	ck->progress_shown = true;
	printf("\r%s: %3u%%", what, total ? (unsigned)(done * 100 / total) : 0);
	fflush(stdout);
}

void fsck_progress_done(struct fsck *ck)
{
	if (ck->progress_shown) {
		printf("\r\033[K");
		fflush(stdout);
		ck->progress_shown = false;
	}
}

static void free_check(struct check *c)
{
	if (c->ns) {
		shmfs_ns_free(c->ns);
		c->ns = NULL;
	}
}

/* Returns 0, or an exit status (no usable superblock, out of memory). */
int fsck_run_check(struct fsck *ck, struct check *c, bool after)
{
	int rc;

	memset(c, 0, sizeof(*c));
	ck->c = c;
	ck->after = after;
	rc = fsck_pass_super(ck);
	if (rc)
		return rc;
	const struct shmfs_super *sb = &c->sb;
	ck->log = (struct shmfs_log){ ck->r.base + sb->sb_log_off, sb->sb_log_size,
				      sb->sb_log_seed };
	/* A file is read with pread, its holes skipped without a look. */
	bool file = (ck->r.kind == SHMFS_REGION_FILE || ck->r.kind == SHMFS_REGION_HUGETLBFS) &&
		    ck->r.fd >= 0;
	ck->scan.log = &ck->log;
	ck->scan.fd = file ? ck->r.fd : -1;
	ck->scan.fd_base = ck->r.offset + sb->sb_log_off;
	ck->scan.hashed = 0;
	ck->scan.gave_up = false;
	if (!ck->watched && fsck_watch_hosts(ck)) {
		fprintf(stderr, PROG ": out of memory\n");
		return FSCK_ERROR;
	}
	fsck_pass_hosts(ck);
	if (fsck_pass_log(ck)) {
		fprintf(stderr, PROG ": out of memory\n");
		return FSCK_ERROR;
	}
	fsck_pass_ns(ck);
	free_check(c);
	for (size_t i = 0; i < c->pb.n; i++)
		fsck_out_problem(ck, &c->pb.v[i], after);
	return 0;
}
