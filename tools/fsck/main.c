/* SPDX-License-Identifier: MIT */
/*
 * fsck.shmfs: check a shmfs region, and repair what can be repaired.
 *
 *   fsck.shmfs [-n|-p|-y] [-f] [-v] [--json] [--force] REGION
 *
 * Passes (each names problems with the words of include/shmfs/format.h;
 * fsck.h says which file holds which):
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
 *   3. log           walked and replayed exactly as shmfs_fs_open does, into
 *                    a private namespace; past damage the walk scans for the
 *                    next record that verifies, and goes on as if the damage
 *                    were already repaired, so -n reports what -y would do.
 *   4. namespace     the invariants of the replayed namespace: parents, unique
 *                    names, no cycles, link counts, extents inside the data
 *                    area and owned once, the allocator's view, leaked
 *                    preallocation beyond EOF, orphans of dead hosts.
 *
 * Repairs (repair.c), only when no other host is live (or --force): what
 * lies before the log, then the raw log edits holding the metadata lock,
 * then ordinary records through shmfs_fs_commit.  Then everything is
 * checked again, and the namespace is replayed once more through
 * shmfs_fs_open, the path every mount takes.
 *
 * This file owns the command line, the report (text or one JSON document)
 * and the exit status.  Exit status (fsck(8)), ORed: 0 clean, 1 errors
 * corrected, 4 errors left uncorrected, 8 operational error, 16 usage
 * error.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmfs/cli.h"
#include "shmfs/region.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#include "fsck.h"


static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, sig);
}

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

static void summary(const struct fsck *ck, int status, double secs)
{
	const struct check *c = ck->c2.have_sb ? &ck->c2 : &ck->c1;
	const struct shmfs_super *sb = &c->sb;
	char used[32], data[32], logu[32], logs[32], uuid[37];

	if (!c->have_sb) {
		if (ck->json) {
			printf("{\n  \"tool\": \"" PROG "\",\n  \"version\": \"%s\",\n  \"region\": ",
			       SHMFS_VERSION_STRING);
			json_str(ck->spec);
			printf(",\n  \"problems\": [],\n  \"operational_error\": true,\n"
			       "  \"clean\": false,\n  \"exit\": %d\n}\n", status);
		}
		return;
	}
	shmfs_uuid_format(sb->sb_uuid, uuid);
	if (ck->json) {
		bool first = true;
		printf("{\n  \"tool\": \"" PROG "\",\n  \"version\": \"%s\",\n  \"region\": ",
		       SHMFS_VERSION_STRING);
		json_str(ck->spec);
		printf(",\n  \"uuid\": \"%s\",\n  \"mode\": \"%s\",\n", uuid,
		       ck->mode == M_YES ? "yes" : ck->mode == M_PREEN ? "preen" :
		       ck->mode == M_ASK ? "ask" : "check");
		printf("  \"live_hosts\": [");
		for (uint32_t i = 0, n = 0; i < ck->nslots; i++) {
			char who[400];
			if (!ck->slots[i].live)
				continue;
			fsck_host_ident(ck, i, who, sizeof(who));
			printf("%s", n++ ? ", " : "");
			json_str(who);
		}
		printf("],\n  \"problems\": [");
		json_problems(&ck->c1.pb, false, &first);
		json_problems(&ck->c2.pb, true, &first);
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
		       ck->refused ? "true" : "false", ck->modified ? "true" : "false",
		       (status & ~FSCK_CORRECTED) == 0 ? "true" : "false", status);
		return;
	}
	printf("%s: %" PRIu64 " records (%" PRIu64 " rejected), %" PRIu64 " inodes: %" PRIu64
	       " directories, %" PRIu64 " files, %" PRIu64 " symlinks, %" PRIu64 " other; %s of %s "
	       "data used; log %s of %s; %.3f s\n", ck->spec, c->records, c->rejected, c->inodes,
	       c->dirs, c->files, c->symlinks, c->others,
	       shmfs_fmt_size(c->bytes_used, used, sizeof(used)),
	       shmfs_fmt_size(sb->sb_data_size, data, sizeof(data)),
	       shmfs_fmt_size(c->end_pos, logu, sizeof(logu)),
	       shmfs_fmt_size(sb->sb_log_size, logs, sizeof(logs)), secs);
	size_t n1 = ck->c1.pb.n, fixed = 0;
	for (size_t i = 0; i < n1; i++)
		fixed += ck->c1.pb.v[i].repaired;
	if (!n1)
		printf("%s: clean\n", ck->spec);
	else if (ck->mode == M_CHECK)
		printf("%s: %zu problem%s found (checked read-only; nothing was changed)\n", ck->spec,
		       n1, n1 == 1 ? "" : "s");
	else
		printf("%s: %zu problem%s found, %zu repaired%s%s\n", ck->spec, n1, n1 == 1 ? "" : "s",
		       fixed, ck->c2.pb.n ? "; PROBLEMS REMAIN" : "",
		       ck->modified ? "; ***** FILESYSTEM WAS MODIFIED *****" : "");
}

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

static const struct shmfs_cli cli = { .prog = PROG, .usage_status = FSCK_USAGE, .usage = usage };

static int parse_args(struct fsck *ck, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "no",      no_argument, NULL, 'n' },
		{ "preen",   no_argument, NULL, 'p' },
		{ "yes",     no_argument, NULL, 'y' },
		{ "full",    no_argument, NULL, 'f' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "json",    no_argument, NULL, 'j' },
		{ "force",   no_argument, NULL, 'F' },
		SHMFS_CLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	int c, rc, modes = 0;

	ck->mode = M_ASK;
	while ((c = shmfs_cli_getopt(&cli, argc, argv, "npaytfv" SHMFS_CLI_SHORTOPTS,
				     longopts)) != -1) {
		switch (c) {
		case 'n': ck->mode = M_CHECK; modes++; break;
		case 'p': case 'a': ck->mode = M_PREEN; modes++; break;
		case 'y': ck->mode = M_YES; modes++; break;
		case 'f': case 't': break;
		case 'v': ck->verbose = true; break;
		case 'j': ck->json = true; break;
		case 'F': ck->force = true; break;
		default: return shmfs_cli_option(&cli, c);
		}
	}
	if (modes > 1)
		return shmfs_cli_usage_error(&cli, "only one of -n, -p and -y may be given");
	rc = shmfs_cli_region(&cli, argc, argv, &ck->spec);
	if (rc)
		return rc;
	if (ck->mode == M_ASK && !isatty(STDIN_FILENO)) {
		ck->mode = M_CHECK;
		if (!ck->json)
			fprintf(stderr, PROG ": no -p or -y and no terminal to ask on: checking only\n");
	}
	if (ck->mode == M_ASK && ck->json)
		return shmfs_cli_usage_error(&cli, "--json needs -n, -p or -y");
	return 0;
}

int main(int argc, char **argv)
{
	static struct fsck run; /* static: siglongjmp must not clobber it */
	struct fsck *ck = &run;
	struct shmfs_region_opts ro = { 0 };
	struct sigaction sa = { .sa_handler = on_sigbus };
	char err[512];
	volatile int status = FSCK_OK;
	int rc;

	rc = parse_args(ck, argc, argv);
	if (rc)
		return rc < 0 ? FSCK_OK : rc;
	ck->t0 = shmfs_mono_ns();
	ck->progress = isatty(STDOUT_FILENO) && !ck->json;
	ck->buf = malloc(SHMFS_LR_PAYLOAD_MAX);
	ck->buf2 = malloc(SHMFS_LR_PAYLOAD_MAX);
	if (!ck->buf || !ck->buf2 || shmfs_log_scan_init(&ck->scan, &ck->log, -1, 0)) {
		fprintf(stderr, PROG ": out of memory\n");
		return FSCK_ERROR;
	}
	ro.readonly = ck->mode == M_CHECK;
	rc = shmfs_region_open(ck->spec, &ro, &ck->r, err, sizeof(err));
	if (rc) {
		fprintf(stderr, PROG ": %s%s\n", err,
			!ro.readonly && (rc == -EACCES || rc == -EROFS || rc == -EPERM) ?
			" (use -n to check a region that cannot be written)" : "");
		return FSCK_ERROR;
	}
	ck->region_open = true;
	rcu_register_thread();

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1)) {
		fflush(stdout);
		fprintf(stderr, PROG ": %s: the region shrank while it was being read (SIGBUS)\n",
			ck->spec);
		return FSCK_ERROR;
	}

	if (!ck->json)
		fsck_verbose(ck, PROG " %s: %s (%s, %" PRIu64 " bytes)", SHMFS_VERSION_STRING,
			     ck->spec, shmfs_region_kind_name(ck->r.kind), ck->r.size);
	rc = fsck_run_check(ck, &ck->c1, false);
	if (rc) {
		status = rc;
		goto out;
	}
	if (ck->nlive && !ck->json && ck->mode == M_CHECK)
		printf("%s: %u host%s mounted: checked a moving filesystem up to pos %" PRIu64
		       " of its log\n", ck->spec, ck->nlive, ck->nlive == 1 ? " is" : "s are",
		       ck->c1.end_pos);

	size_t fixable = 0;
	for (size_t i = 0; i < ck->c1.pb.n; i++)
		fixable += ck->c1.pb.v[i].fix != FIX_NONE;
	if (ck->c1.pb.n && ck->mode != M_CHECK && fixable && fsck_may_repair(ck)) {
		fsck_repair(ck);
		if (ck->modified) {
			if (!ck->json)
				printf("Checking %s again:\n", ck->spec);
			rc = fsck_run_check(ck, &ck->c2, true);
			if (rc) {
				status |= rc;
				goto out;
			}
			fsck_verify_by_open(ck);
		} else {
			/* Nothing changed: what is left is what was found. */
			for (size_t i = 0; i < ck->c1.pb.n; i++)
				if (!ck->c1.pb.v[i].repaired)
					status |= FSCK_UNCORRECTED;
		}
		if (ck->c2.pb.n)
			status |= FSCK_UNCORRECTED;
		if (ck->repaired_any)
			status |= FSCK_CORRECTED;
	} else if (ck->c1.pb.n) {
		status |= FSCK_UNCORRECTED;
	}
	if (ck->op_error)
		status |= FSCK_ERROR;
out:
	summary(ck, status, (double)(shmfs_mono_ns() - ck->t0) / 1e9);
	fflush(stdout);
	rcu_unregister_thread();
	if (ck->region_open)
		shmfs_region_close(&ck->r);
	return status;
}
