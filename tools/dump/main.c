/* SPDX-License-Identifier: MIT */
/*
 * shmfs-dump: print everything a region holds -- superblock, control page,
 * host table, every log record -- as text or as one JSON document.
 *
 * It maps the region read-only and never writes.  It trusts nothing: only
 * offsets from a superblock that passed shmfs_super_check() are used, every
 * record is copied and verified by shmfs_log_read() before it is decoded,
 * and decoding never reads past a record's own length.  Corruption is
 * reported and stepped over: after a bad record the walk scans forward at
 * 8-byte steps for the next record that verifies, so damage in the middle
 * of the log does not hide what follows it.  Every loop advances through
 * the log and ends at its end; resynchronisation has a work budget.
 *
 * This file owns the walk and the command line; out.c writes the text or
 * JSON, payload.c decodes a record's payload into fields.
 *
 * Exit status: 0 when everything read was consistent, 1 when corruption
 * was found or there is no filesystem, 2 on usage errors.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "shmfs/cli.h"
#include "shmfs/coord.h"
#include "shmfs/format.h"
#include "shmfs/log.h"
#include "shmfs/region.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#include "out.h"
#include "payload.h"


#define PROG "shmfs-dump"

#define EX_OK    0
#define EX_BAD   1  /* corruption found, no filesystem, or cannot read */
#define EX_USAGE 2

/* What scan_for_record() returns when nothing verifies from there on. */
#define NO_RECORD     UINT64_MAX

/* ------------------------------------------------------------------ */
/* The dump                                                            */
/* ------------------------------------------------------------------ */

struct dump {
	const char *spec;
	bool hosts_only, super_only;
	uint64_t rec_limit;             /* 0: no limit */

	struct out o;
	struct shmfs_region r;
	bool region_open;

	struct shmfs_super sb;          /* validated copy (have_sb) */
	bool have_sb;
	bool printed_super;
	uint64_t avail;                 /* region bytes that may be read */

	struct shmfs_log log;           /* log clipped to what the region holds */
	bool have_log;
	struct shmfs_log_scan scan;     /* resynchronising past damage */
	uint8_t *buf;                   /* SHMFS_LR_PAYLOAD_MAX */

	unsigned problems;
	char **errors;                  /* JSON: every problem, in order */
	size_t nerrors;
};

static void __attribute__((format(printf, 2, 3))) problem(struct dump *d, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->problems++;
	if (!d->o.json) {
		o_indent(&d->o);
		fprintf(d->o.f, "!! %s\n", msg);
		return;
	}
	char **n = realloc(d->errors, (d->nerrors + 1) * sizeof(*n));
	if (n) {
		d->errors = n;
		d->errors[d->nerrors] = strdup(msg);
		if (d->errors[d->nerrors])
			d->nerrors++;
	}
}

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	siglongjmp(bus_jmp, sig);
}

/* ---- superblock --------------------------------------------------- */

static void print_features(struct out *o, const char *key, uint64_t v, uint64_t supp)
{
	f_hex(o, key, v);
	if (v & ~supp) {
		char k[64];
		snprintf(k, sizeof(k), "%s_unknown", key);
		f_hex(o, k, v & ~supp);
	}
}

static void print_super(struct dump *d, const struct shmfs_super *sb, const char *copy,
			const char *status, const char *other)
{
	struct out *o = &d->o;
	char uuid[37], magic[9];

	d->printed_super = true;
	o_begin(o, "superblock", K_BLOCK);
	f_str(o, "copy", copy);
	f_bool(o, "valid", !status);
	if (status)
		f_str(o, "invalid_because", status);
	if (other)
		f_str(o, "other_copy", other);
	memcpy(magic, &sb->sb_magic, 8);
	magic[8] = 0;
	o_fbegin(o, "magic");
	if (o->json)
		fprintf(o->f, "\"0x%" PRIx64 "\"", sb->sb_magic);
	else if (sb->sb_magic == SHMFS_SB_MAGIC)
		fprintf(o->f, "0x%" PRIx64 " (\"%s\")", sb->sb_magic, magic);
	else
		fprintf(o->f, "0x%" PRIx64 " (not shmfs)", sb->sb_magic);
	o_fend(o);
	f_u64(o, "version", sb->sb_version);
	f_hex(o, "flags", sb->sb_flags);
	print_features(o, "feature_compat", sb->sb_feature_compat, SHMFS_FEATURE_COMPAT_SUPP);
	print_features(o, "feature_ro_compat", sb->sb_feature_ro_compat,
		       SHMFS_FEATURE_RO_COMPAT_SUPP);
	print_features(o, "feature_incompat", sb->sb_feature_incompat,
		       SHMFS_FEATURE_INCOMPAT_SUPP);
	shmfs_uuid_format(sb->sb_uuid, uuid);
	f_str(o, "uuid", uuid);
	f_bytes(o, "label", sb->sb_label, strnlen(sb->sb_label, SHMFS_LABEL_MAX));
	f_size(o, "region_size", sb->sb_region_size);
	f_size(o, "map_align", sb->sb_map_align);
	f_size(o, "alloc_unit", sb->sb_alloc_unit);
	f_u64(o, "ctl_off", sb->sb_ctl_off);
	f_u64(o, "backup_off", sb->sb_backup_off);
	f_u64(o, "hosts_off", sb->sb_hosts_off);
	f_u64(o, "max_hosts", sb->sb_max_hosts);
	f_u64(o, "host_slot_size", sb->sb_host_slot_size);
	f_u64(o, "log_off", sb->sb_log_off);
	f_size(o, "log_size", sb->sb_log_size);
	f_u64(o, "data_off", sb->sb_data_off);
	f_size(o, "data_size", sb->sb_data_size);
	if (sb->sb_alloc_unit && shmfs_is_pow2(sb->sb_alloc_unit))
		f_u64(o, "data_units", sb->sb_data_size / sb->sb_alloc_unit);
	f_hex(o, "log_seed", sb->sb_log_seed);
	f_time_ns(o, "mkfs_time", sb->sb_mkfs_time);
	f_u64(o, "lease_ms", sb->sb_lease_ms);
	f_u64(o, "heartbeat_ms", sb->sb_heartbeat_ms);
	f_u64(o, "root_ino", sb->sb_root_ino);
	f_hex(o, "checksum", sb->sb_checksum);
	o_end(o);
}

/*
 * Find a superblock to trust.  Returns 0 with d->sb set and d->have_sb; or
 * -errno after printing what there is.  A region shorter than its
 * filesystem (-EFBIG) still gets a partial dump when the superblock is
 * otherwise sound.
 */
static int read_super(struct dump *d)
{
	char err[256], other[256], why[256];
	struct shmfs_super raw;
	int used = 0, rc;

	d->avail = d->r.size;
	rc = shmfs_super_read(&d->r, &d->sb, &used, err, sizeof(err), other, sizeof(other));
	if (rc == 0) {
		d->have_sb = true;
		if (other[0])
			problem(d, "%s (the %s copy is used)", other, used ? "backup" : "primary");
		if (!d->hosts_only)
			print_super(d, &d->sb, used ? "backup" : "primary", NULL,
				    other[0] ? other : "valid");
		return 0;
	}

	if (d->r.size < SHMFS_HOSTS_OFF) {
		uint64_t magic = 0;

		if (d->r.size >= sizeof(magic))
			memcpy(&magic, d->r.base, sizeof(magic));
		problem(d, "no shmfs superblock: %s%s", err,
			magic == SHMFS_SB_MAGIC ? " (but it starts with the shmfs magic)" : "");
		return rc;
	}
	memcpy(&raw, d->r.base + (used ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF), sizeof(raw));
	if (rc == -ENODATA) {
		problem(d, "no shmfs superblock (no magic in the primary or the backup)");
		return rc;
	}
	if (rc == -EFBIG && shmfs_super_check(&raw, raw.sb_region_size, why, sizeof(why)) == 0) {
		/* Sound, but the region was truncated: show what is there. */
		problem(d, "region is truncated: %s", err);
		if (!d->hosts_only)
			print_super(d, &raw, used ? "backup" : "primary", NULL,
				    other[0] ? other : NULL);
		d->sb = raw;
		d->have_sb = true;
		return 0;
	}
	switch (rc) {
	case -EPROTONOSUPPORT:
	case -EOPNOTSUPP:
		problem(d, "cannot interpret this filesystem: %s", err);
		break;
	default:
		problem(d, "no valid shmfs superblock: %s", err);
		if (other[0])
			problem(d, "%s", other);
		break;
	}
	/* Show the fields anyway, marked as untrusted; nothing is followed. */
	if (raw.sb_magic == SHMFS_SB_MAGIC && !d->hosts_only)
		print_super(d, &raw, used ? "backup" : "primary", err, other[0] ? other : NULL);
	return rc;
}

/* ---- control page and hosts --------------------------------------- */

static void print_control(struct dump *d)
{
	struct out *o = &d->o;
	struct shmfs_ctl ctl;
	uint64_t lock;
	uint32_t owner;

	memcpy(&ctl, d->r.base + d->sb.sb_ctl_off, sizeof(ctl));
	lock = ctl.ctl_lock;
	owner = shmfs_lock_owner(lock);
	o_begin(o, "control", K_BLOCK);
	f_hex(o, "magic", ctl.ctl_magic);
	f_hex(o, "lock_word", lock);
	if (owner) {
		f_u64(o, "lock_owner_slot", owner - 1);
	} else {
		o_fbegin(o, "lock_owner_slot");
		fputs(o->json ? "null" : "none (unlocked)", o->f);
		o_fend(o);
	}
	f_u64(o, "lock_generation", shmfs_lock_gen(lock));
	o_end(o);
	if (ctl.ctl_magic != SHMFS_CTL_MAGIC)
		problem(d, "control page has a bad magic 0x%" PRIx64, ctl.ctl_magic);
	if (owner && owner - 1 >= d->sb.sb_max_hosts)
		problem(d, "lock word names host slot %u, but there are only %u", owner - 1,
			d->sb.sb_max_hosts);
}

static const char *host_state_name(uint32_t s)
{
	switch (s) {
	case SHMFS_HOST_FREE: return "free";
	case SHMFS_HOST_JOINING: return "joining";
	case SHMFS_HOST_ACTIVE: return "active";
	case SHMFS_HOST_TOOL: return "tool";
	default: return NULL;
	}
}

static void print_hosts(struct dump *d)
{
	struct out *o = &d->o;
	uint64_t end = d->sb.sb_hosts_off + (uint64_t)d->sb.sb_max_hosts * SHMFS_HOST_SLOT_SIZE;
	uint32_t n = d->sb.sb_max_hosts, used = 0;
	struct shmfs_host h;

	if (end > d->avail) {
		n = (uint32_t)((d->avail - SHMFS_HOSTS_OFF) / SHMFS_HOST_SLOT_SIZE);
		problem(d, "host table is cut off by the end of the region: %u of %u slots readable",
			n, d->sb.sb_max_hosts);
	}
	o_begin(o, "hosts", K_ARRAY);
	for (uint32_t i = 0; i < n; i++) {
		const char *state;
		char unknown[32];
		bool ident_ok;

		memcpy(&h, shmfs_host_slot(d->r.base, &d->sb, i), sizeof(h));
		if (h.hs_state == SHMFS_HOST_FREE)
			continue;
		used++;
		state = host_state_name(h.hs_state);
		ident_ok = shmfs_host_ident_csum(&h) == h.hs_ident_csum;
		o_begin(o, NULL, K_LINE);
		f_u64(o, "slot", i);
		if (state) {
			f_str(o, "state", state);
		} else {
			snprintf(unknown, sizeof(unknown), "invalid(%" PRIu32 ")", h.hs_state);
			f_str(o, "state", unknown);
		}
		f_bytes(o, "name", h.hs_name, strnlen(h.hs_name, sizeof(h.hs_name)));
		f_bytes(o, "hostname", h.hs_hostname, strnlen(h.hs_hostname, sizeof(h.hs_hostname)));
		f_u64(o, "pid", h.hs_pid);
		f_hex(o, "flags", h.hs_flags);
		f_hex(o, "token", h.hs_token);
		f_time_ns(o, "mounted", h.hs_mount_ns);
		f_u64(o, "heartbeat", h.hs_heartbeat);
		f_time_ns(o, "heartbeat_time", h.hs_heartbeat_ns);
		f_u64(o, "applied_seq", h.hs_applied_seq);
		f_u64(o, "pin_seq", h.hs_pin_seq);
		{
			uint64_t pins[SHMFS_HOST_PINS];
			size_t np = 0;
			for (uint32_t k = 0; k < SHMFS_HOST_PINS; k++)
				if (h.hs_pins[k])
					pins[np++] = h.hs_pins[k];
			f_u64_list(o, "pins", pins, np);
		}
		f_bool(o, "ident_ok", ident_ok);
		o_end(o);
		if (!state)
			problem(d, "host slot %u has an invalid state %u", i, h.hs_state);
		else if (!ident_ok && h.hs_state != SHMFS_HOST_JOINING)
			problem(d, "host slot %u (%s): identity checksum mismatch", i, state);
	}
	o_end(o);
	o_note(o, "(%u of %u host slots in use)", used, d->sb.sb_max_hosts);
}

/* ---- records -------------------------------------------------------- */

static void print_record(struct dump *d, const struct shmfs_log_entry *e)
{
	struct out *o = &d->o;
	char why[200], tname[32];
	bool bad_shape;

	bad_shape = shmfs_lr_check_shape(&e->hdr, e->payload, d->sb.sb_alloc_unit, why,
					 sizeof(why)) != 0;
	o_begin(o, NULL, K_LINE);
	f_u64(o, "pos", e->pos);
	f_u64(o, "seq", e->hdr.lr_seq);
	if (e->hdr.lr_type < SHMFS_LR_TYPE_COUNT) {
		f_str(o, "type", shmfs_lr_type_name(e->hdr.lr_type));
	} else {
		snprintf(tname, sizeof(tname), "unknown(%u)", e->hdr.lr_type);
		f_str(o, "type", tname);
	}
	f_u64(o, "host", e->hdr.lr_host);
	f_time_ns(o, "time", e->hdr.lr_time);
	f_hex(o, "flags", e->hdr.lr_flags);
	f_u64(o, "len", e->hdr.lr_len);
	if (o->json)
		f_u64(o, "lock_gen", e->hdr.lr_lock_gen);
	o_begin(o, "payload", K_LINE);
	print_payload(o, &e->hdr, e->payload);
	o_end(o);
	if (bad_shape && o->json)
		f_str(o, "malformed", why);
	o_end(o);
	if (bad_shape)
		problem(d, "record %" PRIu64 " at pos %" PRIu64 " is malformed: %s", e->hdr.lr_seq,
			e->pos, why);
}

static void print_seal(struct dump *d, const struct shmfs_log_entry *e)
{
	struct out *o = &d->o;

	o_begin(o, NULL, K_LINE);
	f_u64(o, "pos", e->pos);
	f_str(o, "type", "seal");
	f_u64(o, "seq", (uint64_t)(e->hdr.lr_seq & ~SHMFS_LR_SEAL));
	f_u64(o, "next_pos", e->next_pos);
	o_end(o);
	o_note(o, "  (slot abandoned by a holder whose lease was broken; record %" PRIu64
	       " follows at %" PRIu64 ")", (uint64_t)(e->hdr.lr_seq & ~SHMFS_LR_SEAL), e->next_pos);
}

/* ---- scanning for records after damage ------------------------------ */

/*
 * The first position >= from where a record verifies (any sequence
 * number), with it read into *e; NO_RECORD if there is none, or if the
 * work budget ran out (*gave_up).
 */
static uint64_t scan_for_record(struct dump *d, uint64_t from, struct shmfs_log_entry *e,
				bool *gave_up)
{
	struct shmfs_log_anchor a;
	bool found = shmfs_log_scan_next(&d->scan, from, 0, false, &a, e, NULL);

	*gave_up = d->scan.gave_up;
	return found ? a.pos : NO_RECORD;
}

/* ---- the walk -------------------------------------------------------- */

static void walk_log(struct dump *d)
{
	struct out *o = &d->o;
	struct shmfs_log_entry e;
	uint64_t pos = 0, seq = 1, min_scan = 0, end_pos = 0;
	uint64_t nrec = 0, nseal = 0, shown = 0;
	bool reached_end = false, limited = false, gave_up = false;
	char b2[32];

	o_begin(o, "records", K_ARRAY);
	for (;;) {
		enum shmfs_log_status st;
		uint64_t p;

		if (d->rec_limit && shown >= d->rec_limit) {
			limited = true;
			end_pos = pos;
			break;
		}
		st = shmfs_log_read(&d->log, pos, seq, &e, d->buf);
		if (st == SHMFS_LOG_REC || st == SHMFS_LOG_SEALED) {
			if (st == SHMFS_LOG_REC) {
				print_record(d, &e);
				nrec++;
				seq = e.hdr.lr_seq + 1;
			} else {
				print_seal(d, &e);
				nseal++;
			}
			shown++;
			if (e.next_pos <= pos) { /* cannot happen; never loop on it */
				problem(d, "log walk stuck at pos %" PRIu64, pos);
				end_pos = pos;
				break;
			}
			pos = e.next_pos;
			continue;
		}
		if (st == SHMFS_LOG_END) {
			end_pos = pos;
			reached_end = true;
			/* A record that verifies beyond the end means the log was
			 * cut (a published word zeroed), not that it ended. */
			p = scan_for_record(d, SHMFS_MAX(pos + SHMFS_LOG_ALIGN, min_scan), &e,
					    &gave_up);
			if (p == NO_RECORD)
				break;
			problem(d, "record %" PRIu64 " at pos %" PRIu64 " verifies, but lies beyond the "
				"end of the log at pos %" PRIu64 ": the log is damaged", e.hdr.lr_seq,
				p, pos);
		} else {
			problem(d, "bad record at pos %" PRIu64 ": %s", pos, e.why);
			p = scan_for_record(d, SHMFS_MAX(pos, min_scan), &e, &gave_up);
			if (p == NO_RECORD) {
				if (!gave_up)
					problem(d, "no valid record after pos %" PRIu64 "; %" PRIu64
						" bytes to the end of the log skipped", pos,
						d->log.size - pos);
				end_pos = pos;
				break;
			}
			if (p == pos)
				problem(d, "sequence jumps from %" PRIu64 " to %" PRIu64
					" at pos %" PRIu64, seq, e.hdr.lr_seq, pos);
			else
				problem(d, "skipped %" PRIu64 " bytes from pos %" PRIu64 " to %" PRIu64
					"; resuming at record %" PRIu64, p - pos, pos, p, e.hdr.lr_seq);
		}
		reached_end = false;
		min_scan = p + SHMFS_LOG_ALIGN;
		pos = p;
		seq = e.hdr.lr_seq;
	}
	o_end(o);
	if (gave_up)
		problem(d, "gave up looking for records after pos %" PRIu64
			": too many near-records to verify", end_pos);

	if (reached_end)
		o_note(o, "end of log at pos %" PRIu64 " (%" PRIu64 " records, %" PRIu64
		       " bytes used of %" PRIu64 ", %s free)", end_pos, nrec, end_pos,
		       d->sb.sb_log_size, shmfs_fmt_size(d->sb.sb_log_size - end_pos, b2,
		       sizeof(b2)));
	else if (limited)
		o_note(o, "(stopped after %" PRIu64 " entries: --records)", shown);
	if (nseal)
		o_note(o, "(%" PRIu64 " sealed slots)", nseal);

	if (o->json) {
		o_begin(o, "log", K_BLOCK);
		f_u64(o, "offset", d->sb.sb_log_off);
		f_u64(o, "size", d->sb.sb_log_size);
		f_u64(o, "readable", d->log.size);
		f_u64(o, "records", nrec);
		f_u64(o, "seals", nseal);
		f_bool(o, "reached_end", reached_end);
		f_bool(o, "limited", limited);
		f_u64(o, "end_pos", end_pos);
		f_u64(o, "bytes_used", end_pos);
		o_end(o);
	}
}

/* ---- setup ---------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [options] REGION\n"
		"Print the superblock, host table and metadata log of a shmfs region\n"
		"(PATH[,offset=SIZE][,length=SIZE]).  Read-only.\n"
		"\n"
		"      --json          one JSON document instead of text\n"
		"  -H, --hosts-only    only the host table\n"
		"  -s, --super-only    only the superblock\n"
		"      --records N     print at most N log entries\n"
		"  -h, --help          show this help\n"
		"  -V, --version       show the version\n"
		"\n"
		"Exit status: 0 consistent, 1 corruption found or no filesystem, 2 usage.\n");
}

static const struct shmfs_cli cli = { .prog = PROG, .usage_status = EX_USAGE, .usage = usage };

static int parse_args(int argc, char **argv, struct dump *d)
{
	static const struct option longopts[] = {
		{ "json",       no_argument,       NULL, 'j' },
		{ "hosts-only", no_argument,       NULL, 'H' },
		{ "super-only", no_argument,       NULL, 's' },
		{ "records",    required_argument, NULL, 'r' },
		SHMFS_CLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c, rc;

	while ((c = shmfs_cli_getopt(&cli, argc, argv, "Hs" SHMFS_CLI_SHORTOPTS, longopts)) != -1) {
		switch (c) {
		case 'j':
			d->o.json = true;
			break;
		case 'H':
			d->hosts_only = true;
			break;
		case 's':
			d->super_only = true;
			break;
		case 'r':
			errno = 0;
			d->rec_limit = strtoull(optarg, &end, 10);
			if (!optarg[0] || *end || errno || optarg[0] == '-' || d->rec_limit == 0)
				return shmfs_cli_usage_error(&cli, "--records: '%s' is not a positive "
							     "number", optarg);
			break;
		default:
			return shmfs_cli_option(&cli, c);
		}
	}
	rc = shmfs_cli_region(&cli, argc, argv, &d->spec);
	if (rc)
		return rc;
	if (d->hosts_only && d->super_only)
		return shmfs_cli_usage_error(&cli, "--hosts-only and --super-only exclude each other");
	return 0;
}

static void print_region(struct dump *d)
{
	struct out *o = &d->o;

	o_begin(o, "region", K_BLOCK);
	f_bytes(o, "spec", d->spec, strlen(d->spec));
	f_bytes(o, "path", d->r.path, strnlen(d->r.path, sizeof(d->r.path)));
	f_str(o, "kind", shmfs_region_kind_name(d->r.kind));
	f_u64(o, "offset", d->r.offset);
	f_size(o, "size", d->r.size);
	f_size(o, "align", d->r.align);
	o_end(o);
}

/* Clip the log to the region and prepare scanning. */
static void setup_log(struct dump *d)
{
	uint64_t size = d->sb.sb_log_size;

	if (d->sb.sb_log_off >= d->avail) {
		problem(d, "the log at %" PRIu64 " lies beyond the end of the truncated region",
			d->sb.sb_log_off);
		return;
	}
	if (size > d->avail - d->sb.sb_log_off) {
		size = shmfs_round_down(d->avail - d->sb.sb_log_off, SHMFS_LOG_ALIGN);
		problem(d, "the log is cut off by the end of the region: %" PRIu64 " of %" PRIu64
			" bytes readable", size, d->sb.sb_log_size);
	}
	d->log = (struct shmfs_log){ d->r.base + d->sb.sb_log_off, size, d->sb.sb_log_seed };
	d->have_log = true;
	/* A file is read with pread, its holes skipped without a look. */
	if ((d->r.kind == SHMFS_REGION_FILE || d->r.kind == SHMFS_REGION_HUGETLBFS) && d->r.fd >= 0) {
		d->scan.fd = d->r.fd;
		d->scan.fd_base = d->r.offset + d->sb.sb_log_off;
	}
}

int main(int argc, char **argv)
{
	static struct dump d; /* static: siglongjmp must not clobber it */
	struct shmfs_region_opts ro = { .readonly = true };
	struct sigaction sa = { .sa_handler = on_sigbus };
	char err[512];
	int ret = EX_BAD, rc;

	d.o.f = stdout;
	rc = parse_args(argc, argv, &d);
	if (rc)
		return rc < 0 ? EX_OK : rc;

	d.buf = malloc(SHMFS_LR_PAYLOAD_MAX);
	if (!d.buf || shmfs_log_scan_init(&d.scan, &d.log, -1, 0)) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out_mem;
	}
	rc = shmfs_region_open(d.spec, &ro, &d.r, err, sizeof(err));
	if (rc) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out_mem;
	}
	d.region_open = true;

	/* A file truncated under us turns reads into SIGBUS: report, exit 1. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(bus_jmp, 1)) {
		fflush(stdout);
		fprintf(stderr, PROG ": %s: the region shrank while it was being read (SIGBUS)\n",
			d.spec);
		ret = EX_BAD;
		goto out_region;
	}

	o_begin(&d.o, NULL, K_BLOCK);
	if (d.o.json) {
		f_str(&d.o, "tool", PROG);
		f_str(&d.o, "version", SHMFS_VERSION_STRING);
	}
	if (!d.hosts_only)
		print_region(&d);
	if (read_super(&d)) {
		if (d.o.json && !d.hosts_only && !d.printed_super) {
			o_fbegin(&d.o, "superblock");
			fputs("null", d.o.f);
			o_fend(&d.o);
		}
		goto out_doc;
	}
	if (d.super_only)
		goto out_doc;
	if (!d.hosts_only)
		print_control(&d);
	print_hosts(&d);
	if (d.hosts_only)
		goto out_doc;
	setup_log(&d);
	if (d.have_log)
		walk_log(&d);

out_doc:
	if (d.o.json) {
		o_begin(&d.o, "errors", K_ARRAY);
		for (size_t i = 0; i < d.nerrors; i++) {
			o_fbegin(&d.o, NULL);
			json_string(d.o.f, (const uint8_t *)d.errors[i], strlen(d.errors[i]));
			o_fend(&d.o);
		}
		o_end(&d.o);
		f_bool(&d.o, "consistent", d.problems == 0);
	} else if (d.problems) {
		o_note(&d.o, "%u problem%s found", d.problems, d.problems == 1 ? "" : "s");
	}
	o_end(&d.o);
	fflush(stdout);
	if (d.problems)
		fprintf(stderr, PROG ": %s: %u problem%s found\n", d.spec, d.problems,
			d.problems == 1 ? "" : "s");
	ret = d.problems ? EX_BAD : EX_OK;
out_region:
	shmfs_region_close(&d.r);
out_mem:
	for (size_t i = 0; i < d.nerrors; i++)
		free(d.errors[i]);
	free(d.errors);
	shmfs_log_scan_fini(&d.scan);
	free(d.buf);
	return ret;
}
