/* SPDX-License-Identifier: MIT */
/*
 * mkfs.shmfs: write a new, empty shmfs onto a region.
 *
 * The order of work is the point of this file:
 *
 *   1. parse and check every argument;
 *   2. open the region read-only (or, for a file that does not exist yet or
 *      is too small to map, plan it from the path alone);
 *   3. refuse if it already holds shmfs or another recognizable signature
 *      (unless -f), and compute the complete layout;
 *   4. only then create/grow the file, reopen read-write and format.
 *
 * Every error before step 4 leaves the region byte-for-byte untouched.
 * The data area is never written: shmfs_fs_format() zeroes only the
 * metadata, and on regular files it does so by punching holes, so a 1 TiB
 * sparse file costs a handful of pages.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <fcntl.h>
#include <unistd.h>

#include "shmfs/cli.h"
#include "shmfs/core.h"
#include "shmfs/format.h"
#include "shmfs/rec.h"
#include "shmfs/region.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#define PROG "mkfs.shmfs"

#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

/* Exit codes. */
#define EX_OK    0
#define EX_FAIL  1  /* operational error: region, signature, layout */
#define EX_USAGE 2  /* bad command line */

struct mkfs_args {
	const char *spec;
	bool force;
	bool dry_run;
	bool quiet;
	bool have_size;
	bool random_uuid;             /* -U not given: we chose one */
	uint64_t size;
	struct shmfs_region_spec rs;  /* the REGION argument, parsed */
	struct shmfs_mkfs_params p;
};

/* What we know about the region before writing anything. */
struct plan {
	bool opened;                  /* r is open read-only */
	struct shmfs_region r;
	enum shmfs_region_kind kind;
	uint64_t align;
	uint64_t avail;               /* bytes of the region that exist now */
	uint64_t fs_size;             /* bytes the filesystem will cover */
	bool create;                  /* regular file to be created */
	uint64_t grow_to;             /* regular file to be extended to this */
	uint64_t offset;              /* spec offset within the path */
	char path[PATH_MAX];
	/* Read access for the signature probe: pread when possible, so that
	 * probing holes of a sparse tmpfs file allocates nothing. */
	int probe_fd;
	uint64_t probe_off;
	const uint8_t *probe_map;
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [options] REGION\n"
		"Write a new shmfs filesystem onto REGION (PATH[,offset=SIZE][,length=SIZE]).\n"
		"\n"
		"  -f, --force           overwrite an existing filesystem or signature\n"
		"  -L, --label LABEL     filesystem label (at most %u bytes)\n"
		"  -U, --uuid UUID       filesystem UUID (default: random)\n"
		"      --alloc-unit SIZE data allocation unit (power of two, >= the region's\n"
		"                        mapping alignment; default: that alignment)\n"
		"      --log-size SIZE   metadata log size (default: region/16, 1 MiB..1 GiB)\n"
		"      --max-hosts N     host table slots (1..%u, default %u)\n"
		"      --size SIZE       filesystem size; a regular file is created or grown\n"
		"                        (sparse) to hold it\n"
		"      --lease-ms N      a host silent this long is dead (default %u)\n"
		"  -n, --dry-run         print the layout, write nothing\n"
		"  -q, --quiet           print nothing on success\n"
		"  -h, --help            show this help\n"
		"  -V, --version         show the version\n",
		SHMFS_LABEL_MAX - 1, SHMFS_MAX_HOSTS, SHMFS_DEFAULT_HOSTS, SHMFS_DEFAULT_LEASE_MS);
}

static const struct shmfs_cli cli = {
	.prog = PROG,
	.usage_status = EX_USAGE,
	.usage = usage,
	.name_operand = true,
};

static void __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shmfs_cli_verror(&cli, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Command line                                                        */
/* ------------------------------------------------------------------ */

enum { OPT_ALLOC_UNIT = 256, OPT_LOG_SIZE, OPT_MAX_HOSTS, OPT_SIZE, OPT_LEASE_MS };

/*
 * The options that take a size or a number, checked against what the format
 * allows; what is left is -h, -V or getopt's error.  Returns a stop code.
 */
static int parse_value(struct mkfs_args *a, int c, const char *arg)
{
	uint32_t lease_min = 100; /* the heartbeat follows: at most a quarter of it */
	uint64_t v;
	int rc;

	switch (c) {
	case OPT_ALLOC_UNIT:
		rc = shmfs_cli_size(&cli, "--alloc-unit", arg, &a->p.alloc_unit);
		if (rc)
			return rc;
		if (!shmfs_is_pow2(a->p.alloc_unit) || a->p.alloc_unit < SHMFS_PAGE ||
		    a->p.alloc_unit > SHMFS_MAX_ALLOC_UNIT)
			return shmfs_cli_usage_error(&cli,
				"--alloc-unit %s: must be a power of two from 4 KiB to 1 GiB", arg);
		return 0;
	case OPT_LOG_SIZE:
		rc = shmfs_cli_size(&cli, "--log-size", arg, &a->p.log_size);
		if (rc)
			return rc;
		if (a->p.log_size % SHMFS_PAGE || a->p.log_size < SHMFS_MIN_LOG ||
		    a->p.log_size > SHMFS_MAX_LOG)
			return shmfs_cli_usage_error(&cli,
				"--log-size %s: must be a multiple of 4 KiB from 256 KiB to 64 GiB",
				arg);
		return 0;
	case OPT_SIZE:
		rc = shmfs_cli_size(&cli, "--size", arg, &a->size);
		if (rc)
			return rc;
		if (a->size == 0 || a->size % SHMFS_PAGE)
			return shmfs_cli_usage_error(&cli,
				"--size %s: must be a nonzero multiple of 4096 bytes", arg);
		a->have_size = true;
		return 0;
	case OPT_MAX_HOSTS:
		rc = shmfs_cli_number(&cli, "--max-hosts", arg, 1, SHMFS_MAX_HOSTS, &v);
		if (!rc)
			a->p.max_hosts = (uint32_t)v;
		return rc;
	case OPT_LEASE_MS:
		rc = shmfs_cli_number(&cli, "--lease-ms", arg, lease_min, 3600 * 1000, &v);
		if (!rc)
			a->p.lease_ms = (uint32_t)v;
		return rc;
	}
	return shmfs_cli_option(&cli, c);
}

/* One option from getopt_long.  Returns a stop code (include/shmfs/cli.h). */
static int parse_option(struct mkfs_args *a, int c, char *arg)
{
	switch (c) {
	case 'f':
		a->force = true;
		return 0;
	case 'n':
		a->dry_run = true;
		return 0;
	case 'q':
		a->quiet = true;
		return 0;
	case 'L':
		if (strlen(arg) >= SHMFS_LABEL_MAX)
			return shmfs_cli_usage_error(&cli,
				"label '%s' is %zu bytes; at most %u are allowed", arg,
				strlen(arg), SHMFS_LABEL_MAX - 1);
		a->p.label = arg;
		return 0;
	case 'U':
		if (shmfs_uuid_parse(arg, a->p.uuid))
			return shmfs_cli_usage_error(&cli,
				"invalid UUID '%s' (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
				arg);
		a->p.have_uuid = true;
		return 0;
	}
	return parse_value(a, c, arg);
}

/* Returns 0 to go on, or the exit code to stop with (-1: exit 0). */
static int parse_args(int argc, char **argv, struct mkfs_args *a)
{
	static const struct option longopts[] = {
		{ "force",      no_argument,       NULL, 'f' },
		{ "label",      required_argument, NULL, 'L' },
		{ "uuid",       required_argument, NULL, 'U' },
		{ "alloc-unit", required_argument, NULL, OPT_ALLOC_UNIT },
		{ "log-size",   required_argument, NULL, OPT_LOG_SIZE },
		{ "max-hosts",  required_argument, NULL, OPT_MAX_HOSTS },
		{ "size",       required_argument, NULL, OPT_SIZE },
		{ "lease-ms",   required_argument, NULL, OPT_LEASE_MS },
		{ "dry-run",    no_argument,       NULL, 'n' },
		{ "quiet",      no_argument,       NULL, 'q' },
		SHMFS_CLI_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	char err[512];
	int c, rc;

	while ((c = shmfs_cli_getopt(&cli, argc, argv, "fL:U:nq" SHMFS_CLI_SHORTOPTS,
				     longopts)) != -1) {
		rc = parse_option(a, c, optarg);
		if (rc)
			return rc;
	}
	rc = shmfs_cli_region(&cli, argc, argv, &a->spec);
	if (rc)
		return rc;
	if (!a->spec[0])
		return shmfs_cli_usage_error(&cli, "REGION is empty");
	if (shmfs_region_parse_spec(a->spec, &a->rs, err, sizeof(err)))
		return shmfs_cli_usage_error(&cli, "%s", err);
	if (a->have_size && a->rs.has_length)
		return shmfs_cli_usage_error(&cli,
			"--size and length= in the region spec cannot be combined");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Planning: what is the region, how big will the filesystem be        */
/* ------------------------------------------------------------------ */

/* Mapping alignment a new file at path would get: the huge page size on
 * hugetlbfs, 4 KiB elsewhere. */
static uint64_t file_align(const char *path)
{
	char dir[PATH_MAX];
	struct statfs sfs;
	char *slash;

	if (statfs(path, &sfs) == 0)
		goto found;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	if (statfs(dir, &sfs))
		return SHMFS_PAGE;
found:
	if ((unsigned long)sfs.f_type == HUGETLBFS_MAGIC && sfs.f_bsize >= (long)SHMFS_PAGE &&
	    shmfs_is_pow2((uint64_t)sfs.f_bsize))
		return (uint64_t)sfs.f_bsize;
	return SHMFS_PAGE;
}

static bool is_file_kind(enum shmfs_region_kind k)
{
	return k == SHMFS_REGION_FILE || k == SHMFS_REGION_HUGETLBFS;
}

static int plan_region(const struct mkfs_args *a, struct plan *pl)
{
	struct shmfs_region_opts ro = { .readonly = true };
	char err[512], a1[32], a2[32];
	struct stat st;
	int rc;

	pl->probe_fd = -1;
	rc = shmfs_region_open(a->spec, &ro, &pl->r, err, sizeof(err));
	if (rc == 0) {
		pl->opened = true;
		pl->kind = pl->r.kind;
		pl->align = pl->r.align;
		pl->avail = pl->r.size;
		pl->offset = pl->r.offset;
		snprintf(pl->path, sizeof(pl->path), "%s", pl->r.path);
		pl->probe_map = pl->r.base;
		if (is_file_kind(pl->kind) && pl->r.fd >= 0) {
			pl->probe_fd = pl->r.fd;
			pl->probe_off = pl->r.offset;
		}
		if (!a->have_size) {
			pl->fs_size = shmfs_round_down(pl->r.size, SHMFS_PAGE);
			return 0;
		}
		if (a->size <= pl->r.size) {
			pl->fs_size = a->size;
			return 0;
		}
		if (!is_file_kind(pl->kind)) {
			fail("%s: --size %s is larger than the %s region (%s)", a->spec,
			     shmfs_fmt_size(a->size, a1, sizeof(a1)), shmfs_region_kind_name(pl->kind),
			     shmfs_fmt_size(pl->r.size, a2, sizeof(a2)));
			return -EFBIG;
		}
		pl->fs_size = a->size;
		pl->grow_to = a->size; /* region bytes, after the offset */
		return 0;
	}

	/*
	 * It could not be mapped.  With --size, a missing regular file or one
	 * too short to map is fine: it will be created or grown.  Anything else
	 * is the region layer's error.
	 */
	if (!a->have_size || !strncmp(a->rs.path, "pci:", 4)) {
		fail("%s", err);
		return rc;
	}
	snprintf(pl->path, sizeof(pl->path), "%s", a->rs.path);
	pl->offset = a->rs.offset;
	if (stat(pl->path, &st) == 0) {
		if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size >= pl->offset + a->size) {
			fail("%s", err);
			return rc;
		}
		pl->probe_fd = open(pl->path, O_RDONLY | O_CLOEXEC);
		if (pl->probe_fd < 0) {
			rc = -errno;
			fail("%s: %s", pl->path, strerror(-rc));
			return rc;
		}
		pl->probe_off = pl->offset;
		pl->avail = (uint64_t)st.st_size > pl->offset ? (uint64_t)st.st_size - pl->offset : 0;
	} else if (errno == ENOENT) {
		pl->create = true;
	} else {
		rc = -errno;
		fail("%s: %s", pl->path, strerror(-rc));
		return rc;
	}
	pl->align = file_align(pl->path);
	pl->kind = pl->align > SHMFS_PAGE ? SHMFS_REGION_HUGETLBFS : SHMFS_REGION_FILE;
	if (pl->offset % pl->align) {
		fail("%s: offset %" PRIu64 " is not a multiple of the mapping alignment %s", a->spec,
		     pl->offset, shmfs_fmt_size(pl->align, a1, sizeof(a1)));
		return -EINVAL;
	}
	pl->fs_size = a->size;
	pl->grow_to = a->size;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Signatures                                                          */
/* ------------------------------------------------------------------ */

/* Copy region bytes [off, off+len) into buf; false if they lie outside. */
static bool probe_read(const struct plan *pl, uint64_t off, void *buf, size_t len)
{
	if (off > pl->avail || len > pl->avail - off)
		return false;
	if (pl->probe_fd >= 0 &&
	    pread(pl->probe_fd, buf, len, (off_t)(pl->probe_off + off)) == (ssize_t)len)
		return true;
	if (!pl->probe_map)
		return false;
	memcpy(buf, pl->probe_map + off, len);
	return true;
}

static bool probe_is(const struct plan *pl, uint64_t off, const void *magic, size_t len)
{
	uint8_t buf[16];

	return len <= sizeof(buf) && probe_read(pl, off, buf, len) && !memcmp(buf, magic, len);
}

static uint32_t le32_at(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ext2/3/4: magic 0xEF53 at 1080, told apart by their feature bits. */
static const char *probe_ext(const struct plan *pl)
{
	uint8_t sb[1024];
	uint32_t compat, incompat, ro_compat;

	if (!probe_read(pl, 1024, sb, sizeof(sb)) || sb[56] != 0x53 || sb[57] != 0xEF)
		return NULL;
	if (le32_at(sb + 24) > 6) /* s_log_block_size: 1 KiB .. 64 KiB */
		return NULL;
	compat = le32_at(sb + 0x5c);
	incompat = le32_at(sb + 0x60);
	ro_compat = le32_at(sb + 0x64);
	if ((incompat & 0x3c0) || (ro_compat & 0x47c)) /* extents, 64bit, flex_bg..; huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum */
		return "an ext4 filesystem";
	if (compat & 0x4) /* has_journal */
		return "an ext3 filesystem";
	return "an ext2 filesystem";
}

/* A DOS boot sector: 0x55AA plus FAT markers or a plausible partition table. */
static const char *probe_dos(const struct plan *pl)
{
	uint8_t s[512];
	bool any = false;

	if (!probe_read(pl, 0, s, sizeof(s)) || s[510] != 0x55 || s[511] != 0xAA)
		return NULL;
	if (!memcmp(s + 54, "FAT1", 4) || !memcmp(s + 82, "FAT32   ", 8))
		return "a FAT filesystem";
	if (!memcmp(s + 3, "NTFS    ", 8))
		return "an NTFS filesystem";
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = s + 446 + 16 * i;

		if (e[0] != 0x00 && e[0] != 0x80)
			return NULL;
		if (e[4] == 0)
			continue;
		if (le32_at(e + 12) == 0)
			return NULL;
		any = true;
	}
	return any ? "a DOS/MBR partition table" : NULL;
}

struct magic_sig {
	const char *what;
	uint64_t off;
	const char *magic;
	size_t len;
};

static const struct magic_sig magic_sigs[] = {
	{ "an XFS filesystem",          0,     "XFSB", 4 },
	{ "a LUKS encrypted volume",    0,     "LUKS\xba\xbe", 6 },
	{ "a squashfs filesystem",      0,     "hsqs", 4 },
	{ "a famfs filesystem",         0,     "\xff\x82\xb2\x87\0\0\0\0", 8 }, /* FAMFS_SUPER_MAGIC, le64 */
	{ "a GPT partition table",      512,   "EFI PART", 8 },
	{ "a GPT partition table",      4096,  "EFI PART", 8 },
	{ "an LVM physical volume",     512,   "LABELONE", 8 },
	{ "an f2fs filesystem",         1024,  "\x10\x20\xf5\xf2", 4 },
	{ "an ISO 9660 filesystem",     32769, "CD001", 5 },
	{ "a btrfs filesystem",         65600, "_BHRfS_M", 8 },
	{ "swap space",                 4086,  "SWAPSPACE2", 10 },
	{ "swap space",                 4086,  "SWAP-SPACE", 10 },
	{ "swap space",                 8182,  "SWAPSPACE2", 10 },
	{ "swap space",                 16374, "SWAPSPACE2", 10 },
	{ "swap space",                 65526, "SWAPSPACE2", 10 },
};

/*
 * Is a valid shmfs mounted by a live host?  A slot counts as live if its
 * heartbeat moves while we watch for three heartbeat periods.  Names the
 * first live host in who.
 */
static bool mounted_somewhere(const struct plan *pl, const struct shmfs_super *sb, char *who,
			      size_t wholen)
{
	uint32_t n = sb->sb_max_hosts;
	uint64_t *beat = calloc(n, sizeof(*beat));
	bool live = false, any = false;

	if (!beat)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		const struct shmfs_host *h = shmfs_host_slot(pl->r.base, sb, i);
		beat[i] = __atomic_load_n(&h->hs_heartbeat, __ATOMIC_ACQUIRE);
		any |= __atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE) == SHMFS_HOST_ACTIVE;
	}
	if (any) {
		uint64_t wait_ms = SHMFS_MIN(3ull * sb->sb_heartbeat_ms, 3000);
		struct timespec ts = { (time_t)(wait_ms / 1000), (long)(wait_ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
		for (uint32_t i = 0; i < n && !live; i++) {
			const struct shmfs_host *h = shmfs_host_slot(pl->r.base, sb, i);
			if (__atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE) == SHMFS_HOST_ACTIVE &&
			    __atomic_load_n(&h->hs_heartbeat, __ATOMIC_ACQUIRE) != beat[i]) {
				live = true;
				snprintf(who, wholen, "slot %u, \"%.*s\"", i, (int)sizeof(h->hs_name) - 1,
					 h->hs_name);
			}
		}
	}
	free(beat);
	return live;
}

/*
 * Returns 0 if the region may be written, else -EEXIST after saying what
 * is there.  An existing shmfs is recognized even when damaged: its magic
 * in either superblock slot is enough.
 */
static int check_signatures(const struct mkfs_args *a, const struct plan *pl)
{
	char what[256], err[256], other[256], uuid[37];
	struct shmfs_super sb;
	const char *found = NULL;
	uint64_t magic;
	int used, rc;

	what[0] = 0;
	if (pl->opened) {
		rc = shmfs_super_read(&pl->r, &sb, &used, err, sizeof(err), other, sizeof(other));
		if (rc == 0 || rc == -EFBIG || rc == -EPROTONOSUPPORT || rc == -EOPNOTSUPP) {
			shmfs_uuid_format(sb.sb_uuid, uuid);
			sb.sb_label[SHMFS_LABEL_MAX - 1] = 0;
			snprintf(what, sizeof(what), "a shmfs filesystem (UUID %s%s%s%s)", uuid,
				 sb.sb_label[0] ? ", label \"" : "", sb.sb_label,
				 sb.sb_label[0] ? "\"" : "");
		}
	}
	if (!what[0]) {
		for (uint64_t off = SHMFS_SB_OFF; off <= SHMFS_BACKUP_OFF; off += SHMFS_BACKUP_OFF) {
			if (probe_read(pl, off, &magic, sizeof(magic)) && magic == SHMFS_SB_MAGIC) {
				snprintf(what, sizeof(what), "a damaged shmfs filesystem");
				break;
			}
		}
	}
	/* A window (,offset=) inside a larger shmfs that starts before it. */
	if (!what[0] && pl->offset && pl->probe_fd >= 0) {
		struct shmfs_super outer;
		if (pread(pl->probe_fd, &outer, sizeof(outer), 0) == (ssize_t)sizeof(outer) &&
		    outer.sb_magic == SHMFS_SB_MAGIC &&
		    shmfs_super_check(&outer, UINT64_MAX, err, sizeof(err)) == 0 &&
		    outer.sb_region_size > pl->offset) {
			shmfs_uuid_format(outer.sb_uuid, uuid);
			snprintf(what, sizeof(what),
				 "part of the shmfs filesystem that starts at offset 0 (UUID %s)", uuid);
		}
	}
	if (!what[0]) {
		for (size_t i = 0; i < SHMFS_ARRAY_SIZE(magic_sigs) && !found; i++)
			if (probe_is(pl, magic_sigs[i].off, magic_sigs[i].magic, magic_sigs[i].len))
				found = magic_sigs[i].what;
		if (!found)
			found = probe_ext(pl);
		if (!found)
			found = probe_dos(pl);
		if (found)
			snprintf(what, sizeof(what), "%s", found);
	}
	if (!what[0])
		return 0;
	if (pl->opened && shmfs_super_check(&sb, pl->r.size, err, sizeof(err)) == 0) {
		char who[128];
		if (mounted_somewhere(pl, &sb, who, sizeof(who))) {
			fail("%s is mounted by a live host (%s); unmount it everywhere first",
			     a->spec, who);
			return -EBUSY;
		}
	}
	if (a->force) {
		if (!a->quiet && !a->dry_run)
			printf("%s contains %s; overwriting it (-f)\n", a->spec, what);
		return 0;
	}
	fail("%s contains %s; use -f to overwrite it", a->spec, what);
	return -EEXIST;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void area(const char *name, uint64_t off, uint64_t size)
{
	char o[32], s[32];

	printf("  %-14s %10s %16" PRIu64 "  %10s %16" PRIu64 "\n", name,
	       shmfs_fmt_size(off, o, sizeof(o)), off, shmfs_fmt_size(size, s, sizeof(s)), size);
}

static void print_layout(const struct mkfs_args *a, const struct plan *pl,
			 const struct shmfs_super *sb, bool dry)
{
	char b1[32], b2[32], uuid[37];
	uint64_t hosts_size = sb->sb_log_off - sb->sb_hosts_off;
	uint64_t log_end = sb->sb_log_off + sb->sb_log_size;
	uint64_t units = sb->sb_data_size / sb->sb_alloc_unit;

	shmfs_uuid_format(sb->sb_uuid, uuid);
	if (dry)
		printf("Dry run: nothing written.  %s would be formatted as:\n", a->spec);
	else
		printf("Formatted %s:\n", a->spec);
	printf("  %-14s %s\n", "uuid", dry && a->random_uuid ? "(random)" : uuid);
	printf("  %-14s %s%s%s\n", "label", sb->sb_label[0] ? "\"" : "",
	       sb->sb_label[0] ? sb->sb_label : "(none)", sb->sb_label[0] ? "\"" : "");
	printf("  %-14s %s %s%s, %s (%" PRIu64 " bytes) at offset %" PRIu64 "\n", "region",
	       shmfs_region_kind_name(pl->kind), pl->path,
	       pl->create ? " (new)" : pl->grow_to ? " (grown)" : "",
	       shmfs_fmt_size(sb->sb_region_size, b1, sizeof(b1)), sb->sb_region_size, pl->offset);
	printf("  %-14s %s (%" PRIu64 " bytes)\n", "map align",
	       shmfs_fmt_size(sb->sb_map_align, b1, sizeof(b1)), sb->sb_map_align);
	printf("  %-14s %s (%" PRIu64 " bytes)\n", "alloc unit",
	       shmfs_fmt_size(sb->sb_alloc_unit, b1, sizeof(b1)), sb->sb_alloc_unit);
	printf("  %-14s %u\n", "max hosts", sb->sb_max_hosts);
	printf("  %-14s %u ms (heartbeat every %u ms)\n", "lease", sb->sb_lease_ms,
	       sb->sb_heartbeat_ms);
	printf("  %-14s version %u\n", "format", sb->sb_version);
	printf("\n  %-14s %10s %16s  %10s %16s\n", "area", "offset", "(bytes)", "size", "(bytes)");
	area("superblock", SHMFS_SB_OFF, SHMFS_PAGE);
	area("control", sb->sb_ctl_off, SHMFS_PAGE);
	area("backup super", sb->sb_backup_off, SHMFS_PAGE);
	area("host table", sb->sb_hosts_off, hosts_size);
	area("log", sb->sb_log_off, sb->sb_log_size);
	if (sb->sb_data_off > log_end)
		area("(padding)", log_end, sb->sb_data_off - log_end);
	area("data", sb->sb_data_off, sb->sb_data_size);
	if (sb->sb_data_off + sb->sb_data_size < sb->sb_region_size)
		area("(unused)", sb->sb_data_off + sb->sb_data_size,
		     sb->sb_region_size - sb->sb_data_off - sb->sb_data_size);
	printf("\n  data area: %" PRIu64 " units of %s (%s)\n", units,
	       shmfs_fmt_size(sb->sb_alloc_unit, b1, sizeof(b1)),
	       shmfs_fmt_size(sb->sb_data_size, b2, sizeof(b2)));
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	struct mkfs_args a = { 0 };
	struct plan pl = { .probe_fd = -1 };
	struct shmfs_region_opts rw = { 0 };
	struct shmfs_region r;
	struct shmfs_super sb;
	char err[512], b1[32], b2[32];
	int ret = EX_FAIL, rc;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? EX_OK : rc;

	/* A random UUID chosen now, so a dry run shows what would be written. */
	if (!a.p.have_uuid) {
		a.random_uuid = true;
		a.p.have_uuid = true;
		rc = shmfs_random(a.p.uuid, sizeof(a.p.uuid));
		if (rc) {
			fail("cannot get random bytes: %s", strerror(-rc));
			return EX_FAIL;
		}
		a.p.uuid[6] = (uint8_t)((a.p.uuid[6] & 0x0f) | 0x40);
		a.p.uuid[8] = (uint8_t)((a.p.uuid[8] & 0x3f) | 0x80);
	}

	if (plan_region(&a, &pl))
		goto out_plan;
	if (a.p.alloc_unit && a.p.alloc_unit < pl.align) {
		fail("--alloc-unit %s is smaller than the mapping alignment of %s (%s)",
		     shmfs_fmt_size(a.p.alloc_unit, b1, sizeof(b1)), a.spec,
		     shmfs_fmt_size(pl.align, b2, sizeof(b2)));
		goto out_plan;
	}
	if (pl.fs_size % pl.align) {
		fail("%s: size %s is not a multiple of the mapping alignment %s", a.spec,
		     shmfs_fmt_size(pl.fs_size, b1, sizeof(b1)),
		     shmfs_fmt_size(pl.align, b2, sizeof(b2)));
		goto out_plan;
	}
	if (shmfs_super_layout(pl.fs_size, pl.align, &a.p, &sb, err, sizeof(err))) {
		fail("%s: %s", a.spec, err);
		goto out_plan;
	}
	if (check_signatures(&a, &pl))
		goto out_plan;

	if (a.dry_run) {
		if (!a.quiet)
			print_layout(&a, &pl, &sb, true);
		ret = EX_OK;
		goto out_plan;
	}

	/* Everything checked: from here on we write. */
	if (pl.probe_fd >= 0 && !(pl.opened && pl.probe_fd == pl.r.fd))
		close(pl.probe_fd);
	pl.probe_fd = -1;
	if (pl.opened) {
		shmfs_region_close(&pl.r);
		pl.opened = false;
	}
	rw.create = pl.create;
	rw.grow_to = pl.grow_to;
	rc = shmfs_region_open(a.spec, &rw, &r, err, sizeof(err));
	if (rc) {
		fail("%s", err);
		goto out_plan;
	}
	if (r.size < pl.fs_size || r.align != pl.align) {
		fail("%s changed while it was being checked (now %s, alignment %s); not formatting",
		     a.spec, shmfs_fmt_size(r.size, b1, sizeof(b1)),
		     shmfs_fmt_size(r.align, b2, sizeof(b2)));
		goto out_region;
	}
	pl.kind = r.kind;
	r.size = pl.fs_size; /* the filesystem covers exactly what was planned */
	err[0] = 0;
	rc = shmfs_fs_format(&r, &a.p, S_IFDIR | SHMFS_ROOT_MODE, (uint32_t)getuid(),
			     (uint32_t)getgid(), &sb, err, sizeof(err));
	if (rc) {
		fail("%s: %s", a.spec, err[0] ? err : strerror(-rc));
		goto out_region;
	}
	if (!a.quiet)
		print_layout(&a, &pl, &sb, false);
	ret = EX_OK;

out_region:
	shmfs_region_close(&r);
out_plan:
	if (pl.probe_fd >= 0 && !(pl.opened && pl.probe_fd == pl.r.fd))
		close(pl.probe_fd);
	if (pl.opened)
		shmfs_region_close(&pl.r);
	return ret;
}
