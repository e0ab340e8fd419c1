/* SPDX-License-Identifier: MIT */
/*
 * Region: turn a spec into a MAP_SHARED mapping {base, size, align}.
 *
 * This is the only file that knows what kind of memory shmfs lives on.
 * shmfs_region_open() runs four steps, in this order:
 *
 *   1. parse   PATH[,offset=SIZE][,length=SIZE][,map=N], options taken
 *              from the end, so a path may contain commas;
 *   2. classify by stat(2), before anything is opened (opening a device
 *              can have side effects, and a devdax device in system-ram
 *              mode fails open with a useless ENXIO);
 *   3. probe   the kind's size and mapping alignment;
 *   4. map     [offset, offset+size) with one mmap(2).
 *
 * The kinds, and where each learns its size and alignment:
 *
 *   devdax     /dev/daxX.Y, a character device whose sysfs subsystem is
 *              "dax".  Size and alignment come from libdaxctl (the
 *              device's align attribute; before Linux 5.10 there is none
 *              and the dax region's align is the fault granularity).  A
 *              device bound to kmem (system-ram mode) or to no driver is
 *              refused with the daxctl command that fixes it.  Offsets,
 *              lengths and sizes must be multiples of the alignment, and
 *              there is no read(2), write(2) or hole punching.
 *   pci        a sysfs PCI resource file .../devices/DDDD:BB:DD.F/resourceN
 *              (pci:DDDD:BB:DD.F is BAR 2 of that device: ivshmem's shared
 *              memory).  Size is the file's st_size, alignment the page
 *              size.  A device whose "enable" reads 0 is enabled first.
 *   uio        /dev/uioN.  Its maps are listed in sysfs as
 *              class/uio/uioN/maps/mapK/{size,offset}; map K is mapped at
 *              file offset K * page size (the UIO convention).  map=K picks
 *              one, the default is the largest.
 *   hugetlbfs  a regular file on hugetlbfs; alignment is the huge page
 *              size (statfs f_bsize), and sizes are multiples of it.
 *   file       any other regular file (tmpfs, ext4, ...); page aligned.
 *              create and grow_to apply to files only.
 *   memory     anonymous MAP_SHARED memory for tests: no path at all.
 *
 * Block devices are refused: their pages live in each host's page cache,
 * so two hosts never see each other's stores.
 *
 * For tests, SHMFS_SYSFS_ROOT replaces /sys in every sysfs lookup made
 * here (libdaxctl always reads the real /sys).  With it set, a regular
 * file named uioN is treated as UIO device N when ROOT/class/uio/uioN
 * exists, so the UIO path can be exercised without a UIO driver.
 *
 * Errors are one line, starting with the path, saying what is wrong and
 * what to run about it; the return value is -errno.
 *
 * Stores into the mapping are fs/region_io.c's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shmfs/region.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <daxctl/libdaxctl.h>

#include "shmfs/util.h"

#define REGION_MAX_UIO_MAPS 64 /* the kernel has 5; a bound for bad sysfs */

/* What step 3 learns about the path, whatever its kind. */
struct probe {
	enum shmfs_region_kind kind;
	uint64_t dev_size;      /* bytes mappable from pgoff */
	uint64_t align;         /* mapping alignment */
	uint64_t pgoff;         /* mmap offset of spec offset 0 (UIO map) */
	bool strict;            /* lengths must be multiples of align too */
	int enable_err;         /* PCI: errno from writing "enable", or 0 */
	int uio_map;            /* UIO: the map chosen */
	char uio_dir[PATH_MAX]; /* UIO: ROOT/class/uio/uioN */
	char dax_name[64];      /* devdax: "dax0.0", for messages */
};

static uint64_t page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (uint64_t)ps : 4096;
}

static const char *sysfs_root(void)
{
	const char *root = getenv("SHMFS_SYSFS_ROOT");

	return root && *root ? root : "/sys";
}

static void region_reset(struct shmfs_region *r)
{
	memset(r, 0, sizeof(*r));
	r->fd = -1;
}

/* Read a small sysfs attribute, trailing whitespace removed. */
static int read_attr(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	return 0;
}

/* sysfs numbers: decimal, or hex with 0x (UIO sizes are "0x00001000"). */
static int read_attr_u64(const char *path, uint64_t *out)
{
	char buf[64], *end;
	int rc;

	rc = read_attr(path, buf, sizeof(buf));
	if (rc)
		return rc;
	if (!isdigit((unsigned char)buf[0]))
		return -EINVAL;
	errno = 0;
	*out = strtoull(buf, &end, 0);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

/* ---- step 1: the spec ------------------------------------------------ */

static const char *const region_keys[] = { "offset=", "length=", "map=" };
enum { KEY_OFFSET, KEY_LENGTH, KEY_MAP };

static int option_key(const char *s)
{
	for (unsigned i = 0; i < SHMFS_ARRAY_SIZE(region_keys); i++)
		if (!strncmp(s, region_keys[i], strlen(region_keys[i])))
			return (int)i;
	return -1;
}

/* "name=..." with a lowercase identifier: written as an option. */
static bool looks_like_option(const char *s)
{
	const char *p = s;

	if (!islower((unsigned char)*p))
		return false;
	while (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_')
		p++;
	return *p == '=';
}

static bool has_known_option(const char *s)
{
	for (unsigned i = 0; i < SHMFS_ARRAY_SIZE(region_keys); i++) {
		char key[16];

		snprintf(key, sizeof(key), ",%s", region_keys[i]);
		if (strstr(s, key))
			return true;
	}
	return false;
}

int shmfs_region_parse_spec(const char *spec, struct shmfs_region_spec *out,
			    char *err, size_t errlen)
{
	char buf[sizeof(out->path)];
	bool seen[SHMFS_ARRAY_SIZE(region_keys)] = { false };

	memset(out, 0, sizeof(*out));
	out->map = -1;
	if (!spec || !*spec) {
		shmfs_errf(err, errlen, "empty region spec: expected PATH[,offset=SIZE][,length=SIZE][,map=N]");
		return -EINVAL;
	}
	if (strlen(spec) >= sizeof(buf)) {
		shmfs_errf(err, errlen, "%.64s...: region spec is too long", spec);
		return -ENAMETOOLONG;
	}
	strcpy(buf, spec);

	for (;;) {
		char *comma = strrchr(buf, ','), *opt, *end;
		const char *val;
		uint64_t v;
		int k;

		if (!comma)
			break;
		opt = comma + 1;
		k = option_key(opt);
		if (k < 0) {
			bool known_left;

			/* "PATH,offset=4K,foo=1" is a typo, not a file name. */
			*comma = '\0';
			known_left = has_known_option(buf);
			*comma = ',';
			if (looks_like_option(opt) && known_left) {
				shmfs_errf(err, errlen,
					   "%s: unknown region option '%s' (options are offset=, length=, map=)",
					   spec, opt);
				return -EINVAL;
			}
			break;
		}
		if (seen[k]) {
			shmfs_errf(err, errlen, "%s: region option '%.*s' given twice", spec,
				   (int)strlen(region_keys[k]) - 1, region_keys[k]);
			return -EINVAL;
		}
		seen[k] = true;
		val = opt + strlen(region_keys[k]);
		if (k == KEY_MAP) {
			errno = 0;
			unsigned long m = strtoul(val, &end, 10);
			if (!isdigit((unsigned char)*val) || *end || errno || m >= REGION_MAX_UIO_MAPS) {
				shmfs_errf(err, errlen, "%s: bad map index '%s' (expected 0 to %d)",
					   spec, val, REGION_MAX_UIO_MAPS - 1);
				return -EINVAL;
			}
			out->map = (int)m;
		} else {
			if (shmfs_parse_size(val, &v)) {
				shmfs_errf(err, errlen,
					   "%s: bad %s '%s' (expected a size such as 4096, 2M, 1G)",
					   spec, k == KEY_OFFSET ? "offset" : "length", val);
				return -EINVAL;
			}
			if (k == KEY_OFFSET) {
				out->offset = v;
				out->has_offset = true;
			} else {
				if (!v) {
					shmfs_errf(err, errlen, "%s: length must not be 0", spec);
					return -EINVAL;
				}
				out->length = v;
				out->has_length = true;
			}
		}
		*comma = '\0';
	}
	if (!buf[0]) {
		shmfs_errf(err, errlen, "%s: region spec has no path", spec);
		return -EINVAL;
	}
	strcpy(out->path, buf);
	return 0;
}

/* ---- step 2: what is it? ------------------------------------------- */

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* "BB:DD.F" (7 chars) or "DDDD:BB:DD.F" (domain 4 to 8 hex digits). */
static bool is_bdf(const char *s, size_t n, bool need_domain)
{
	size_t dom;

	if (n < 7)
		return false;
	dom = n - 7; /* chars before "BB:DD.F" */
	if (dom) {
		if (dom < 5 || dom > 9 || s[dom - 1] != ':' || !is_hex(s, dom - 1))
			return false;
	} else if (need_domain) {
		return false;
	}
	s += dom;
	return is_hex(s, 2) && s[2] == ':' && is_hex(s + 3, 2) && s[5] == '.' &&
	       s[6] >= '0' && s[6] <= '7';
}

/* .../devices/.../DDDD:BB:DD.F/resourceN */
static bool is_pci_resource(const char *path)
{
	const char *base = strrchr(path, '/'), *dev;
	size_t prefix;

	if (!base || base == path)
		return false;
	base++;
	if (strncmp(base, "resource", 8) || !isdigit((unsigned char)base[8]) || base[9])
		return false;
	dev = base - 1; /* the '/' before resourceN */
	while (dev > path && dev[-1] != '/')
		dev--;
	if (!is_bdf(dev, (size_t)(base - 1 - dev), true))
		return false;
	prefix = (size_t)(dev - path);
	if (prefix >= 8 && !strncmp(path, "devices/", 8))
		return true;
	return memmem(path, prefix, "/devices/", 9) != NULL;
}

/* pci:[DDDD:]BB:DD.F -> ROOT/bus/pci/devices/DDDD:BB:DD.F/resource2 */
static int expand_pci(struct shmfs_region_spec *s, char *err, size_t errlen)
{
	const char *bdf = s->path + 4;
	size_t n = strlen(bdf);
	char path[sizeof(s->path)];
	int len;

	if (!is_bdf(bdf, n, false)) {
		shmfs_errf(err, errlen,
			   "%s: not a PCI address (expected pci:DDDD:BB:DD.F, as lspci -D shows it)",
			   s->path);
		return -EINVAL;
	}
	len = snprintf(path, sizeof(path), "%s/bus/pci/devices/%s%s/resource2", sysfs_root(),
		       n == 7 ? "0000:" : "", bdf);
	if (len < 0 || (size_t)len >= sizeof(path)) {
		shmfs_errf(err, errlen, "%s: path too long", s->path);
		return -ENAMETOOLONG;
	}
	strcpy(s->path, path);
	return 0;
}

/*
 * For a character device: the last components of what
 * ROOT/dev/char/MAJ:MIN/subsystem and ROOT/dev/char/MAJ:MIN resolve to,
 * e.g. "dax" + "dax0.0", "uio" + "uio0", "mem" + "null".
 */
static int char_dev_sysfs(dev_t rdev, char *sub, size_t sublen, char *name, size_t namelen)
{
	char link[PATH_MAX], *res;

	snprintf(link, sizeof(link), "%s/dev/char/%u:%u/subsystem", sysfs_root(), major(rdev),
		 minor(rdev));
	res = realpath(link, NULL);
	if (!res)
		return -errno;
	snprintf(sub, sublen, "%s", basename(res));
	free(res);

	*strrchr(link, '/') = '\0';
	res = realpath(link, NULL);
	if (!res)
		return -errno;
	snprintf(name, namelen, "%s", basename(res));
	free(res);
	return 0;
}

/* A regular file standing in for /dev/uioN, only under SHMFS_SYSFS_ROOT. */
static bool is_fake_uio(const char *path, char *dir, size_t dirlen)
{
	const char *root = getenv("SHMFS_SYSFS_ROOT");
	const char *base = strrchr(path, '/');
	struct stat st;
	unsigned n;
	int used;

	base = base ? base + 1 : path;
	if (!root || !*root || strncmp(base, "uio", 3) || !isdigit((unsigned char)base[3]))
		return false;
	if (sscanf(base + 3, "%u%n", &n, &used) != 1 || base[3 + used])
		return false;
	used = snprintf(dir, dirlen, "%s/class/uio/%s", root, base);
	if (used < 0 || (size_t)used >= dirlen)
		return false;
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- step 3: size and alignment, per kind ----------------------------- */

static int probe_devdax(const char *path, dev_t rdev, struct probe *p, char *err, size_t errlen)
{
	struct daxctl_ctx *ctx;
	struct daxctl_region *region;
	struct daxctl_dev *dev, *found = NULL;
	struct daxctl_memory *mem;
	unsigned long align;
	int rc;

	rc = daxctl_new(&ctx);
	if (rc < 0) {
		shmfs_errf(err, errlen, "%s: libdaxctl failed to start: %s", path, strerror(-rc));
		return rc;
	}
	daxctl_region_foreach(ctx, region) {
		daxctl_dev_foreach(region, dev) {
			if ((unsigned)daxctl_dev_get_major(dev) == major(rdev) &&
			    (unsigned)daxctl_dev_get_minor(dev) == minor(rdev)) {
				found = dev;
				break;
			}
		}
		if (found)
			break;
	}
	if (!found) {
		shmfs_errf(err, errlen,
			   "%s: a dax device, but libdaxctl does not list it (see daxctl list -D)",
			   path);
		rc = -ENODEV;
		goto out;
	}
	snprintf(p->dax_name, sizeof(p->dax_name), "%s", daxctl_dev_get_devname(found));

	if (!daxctl_dev_is_enabled(found)) {
		shmfs_errf(err, errlen, "%s: %s is disabled; run: daxctl enable-device %s", path,
			   p->dax_name, p->dax_name);
		rc = -ENXIO;
		goto out;
	}
	/* Non-NULL exactly when the device is bound to kmem (system-ram). */
	mem = daxctl_dev_get_memory(found);
	if (mem) {
		bool online = daxctl_memory_is_online(mem) > 0;

		shmfs_errf(err, errlen,
			   "%s: %s is in system-ram mode (its memory %s); run: daxctl reconfigure-device --mode=devdax%s %s",
			   path, p->dax_name,
			   online ? "is online as system RAM" : "is offline but owned by kmem",
			   online ? " --force" : "", p->dax_name);
		rc = -EBUSY;
		goto out;
	}

	p->dev_size = daxctl_dev_get_size(found);
	align = daxctl_dev_get_align(found);
	if (!align) {
		/* Before Linux 5.10 only the dax region has an align. */
		align = daxctl_region_get_align(daxctl_dev_get_region(found));
		if (align == ULONG_MAX)
			align = 0;
	}
	p->align = align ? align : 4096;
	if (!shmfs_is_pow2(p->align)) {
		shmfs_errf(err, errlen, "%s: %s reports alignment %" PRIu64 ", not a power of two",
			   path, p->dax_name, p->align);
		rc = -EINVAL;
		goto out;
	}
	p->kind = SHMFS_REGION_DEVDAX;
	p->strict = true;
	rc = 0;
out:
	daxctl_unref(ctx);
	return rc;
}

static int probe_uio(const char *path, int want, struct probe *p, char *err, size_t errlen)
{
	char f[PATH_MAX + 32];
	uint64_t size, best_size = 0, off = 0;
	int n, best = -1, rc;

	for (n = 0; n < REGION_MAX_UIO_MAPS; n++) {
		snprintf(f, sizeof(f), "%s/maps/map%d/size", p->uio_dir, n);
		rc = read_attr_u64(f, &size);
		if (rc == -ENOENT)
			break;
		if (rc) {
			shmfs_errf(err, errlen, "%s: cannot read %s: %s", path, f, strerror(-rc));
			return rc;
		}
		if (want == n || (want < 0 && (best < 0 || size > best_size))) {
			best = n;
			best_size = size;
		}
	}
	if (n == 0) {
		shmfs_errf(err, errlen, "%s: UIO device has no memory maps (%s/maps is empty)", path,
			   p->uio_dir);
		return -ENODEV;
	}
	if (best < 0) {
		shmfs_errf(err, errlen, "%s: UIO device has no map %d (it has map0 to map%d)", path,
			   want, n - 1);
		return -EINVAL;
	}
	snprintf(f, sizeof(f), "%s/maps/map%d/offset", p->uio_dir, best);
	rc = read_attr_u64(f, &off);
	if (rc && rc != -ENOENT) {
		shmfs_errf(err, errlen, "%s: cannot read %s: %s", path, f, strerror(-rc));
		return rc;
	}
	if (off) {
		shmfs_errf(err, errlen,
			   "%s: UIO map%d starts %" PRIu64 " bytes into its page; shmfs needs page-aligned memory",
			   path, best, off);
		return -EINVAL;
	}
	p->kind = SHMFS_REGION_UIO;
	p->uio_map = best;
	p->dev_size = best_size;
	p->align = page_size();
	p->pgoff = (uint64_t)best * page_size();
	return 0;
}

/*
 * An ivshmem BAR cannot be mapped until the device's memory decoding is
 * on.  A failure here is only remembered: mmap may still work (it is
 * already on, or the file is a test stand-in), and if it does not, the
 * error says why.
 */
static void pci_enable(const char *path, struct probe *p)
{
	char dir[PATH_MAX], f[PATH_MAX + 8], buf[16];
	int fd;

	snprintf(dir, sizeof(dir), "%s", path);
	snprintf(f, sizeof(f), "%s/enable", dirname(dir));
	if (read_attr(f, buf, sizeof(buf)) || strcmp(buf, "0"))
		return;
	fd = open(f, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0) {
		p->enable_err = errno;
		return;
	}
	if (write(fd, "1\n", 2) != 2)
		p->enable_err = errno ? errno : EIO;
	close(fd);
}

/* Classify by stat, and probe what needs no file descriptor. */
static int classify(const char *path, const struct stat *st, const struct shmfs_region_spec *s,
		    struct probe *p, char *err, size_t errlen)
{
	char sub[64], name[64];

	p->align = page_size();
	if (S_ISDIR(st->st_mode)) {
		shmfs_errf(err, errlen, "%s: is a directory; a region is a file or a device", path);
		return -EISDIR;
	}
	if (S_ISBLK(st->st_mode)) {
		shmfs_errf(err, errlen,
			   "%s: is a block device; block devices are cached per host and not coherent across hosts; use a devdax namespace (ndctl create-namespace --mode=devdax)",
			   path);
		return -ENODEV;
	}
	if (S_ISCHR(st->st_mode)) {
		if (!char_dev_sysfs(st->st_rdev, sub, sizeof(sub), name, sizeof(name))) {
			if (!strcmp(sub, "dax"))
				return probe_devdax(path, st->st_rdev, p, err, errlen);
			if (!strcmp(sub, "uio")) {
				snprintf(p->uio_dir, sizeof(p->uio_dir), "%s/class/uio/%s",
					 sysfs_root(), name);
				return probe_uio(path, s->map, p, err, errlen);
			}
		}
		shmfs_errf(err, errlen, "%s: not a devdax or UIO device", path);
		return -ENODEV;
	}
	if (!S_ISREG(st->st_mode)) {
		shmfs_errf(err, errlen, "%s: not a regular file or a devdax, PCI or UIO device", path);
		return -ENODEV;
	}
	if (is_pci_resource(path)) {
		p->kind = SHMFS_REGION_PCI;
		p->dev_size = (uint64_t)st->st_size;
		return 0;
	}
	if (is_fake_uio(path, p->uio_dir, sizeof(p->uio_dir)))
		return probe_uio(path, s->map, p, err, errlen);
	p->kind = SHMFS_REGION_FILE; /* hugetlbfs is told apart once open */
	return 0;
}

/* Regular files: hugetlbfs or not, and grow_to. */
static int probe_file(const char *path, int fd, const struct shmfs_region_spec *s,
		      const struct shmfs_region_opts *opts, struct probe *p, char *err,
		      size_t errlen)
{
	struct statfs sfs;
	struct stat st;
	uint64_t want;
	char a[32], b[32];

	if (fstatfs(fd, &sfs) < 0 || fstat(fd, &st) < 0) {
		shmfs_errf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if ((uint64_t)sfs.f_type == HUGETLBFS_MAGIC) {
		p->kind = SHMFS_REGION_HUGETLBFS;
		p->align = (uint64_t)sfs.f_bsize;
		p->strict = true;
	}
	p->dev_size = (uint64_t)st.st_size;
	if (!opts->grow_to)
		return 0;

	want = SHMFS_MAX(s->length, opts->grow_to);
	if (s->offset > (uint64_t)INT64_MAX / 2 || want > (uint64_t)INT64_MAX / 2) {
		shmfs_errf(err, errlen, "%s: offset plus size is too large", path);
		return -EFBIG;
	}
	want += s->offset;
	if (p->kind == SHMFS_REGION_HUGETLBFS)
		want = shmfs_round_up(want, p->align); /* hugetlbfs refuses anything else */
	if (p->dev_size >= want)
		return 0;
	if (opts->readonly) {
		shmfs_errf(err, errlen, "%s: is %s, smaller than the %s needed, and it is opened read-only",
			   path, shmfs_fmt_size(p->dev_size, a, sizeof(a)),
			   shmfs_fmt_size(want, b, sizeof(b)));
		return -EROFS;
	}
	if (ftruncate(fd, (off_t)want) < 0) {
		int e = errno;

		shmfs_errf(err, errlen, "%s: cannot extend to %s: %s", path,
			   shmfs_fmt_size(want, a, sizeof(a)), strerror(e));
		return -e;
	}
	p->dev_size = want;
	return 0;
}

/* ---- step 4: the window and the mapping ------------------------------- */

static const char *align_name(const struct probe *p)
{
	switch (p->kind) {
	case SHMFS_REGION_DEVDAX:
		return "devdax alignment";
	case SHMFS_REGION_HUGETLBFS:
		return "huge page size";
	default:
		return "page size";
	}
}

/* The end of a message about alignment: how to get out of it. */
static void align_hint(const struct probe *p, char *buf, size_t len)
{
	if (p->kind == SHMFS_REGION_DEVDAX && p->align > 4096)
		snprintf(buf, len,
			 "; or lower the device's alignment: daxctl disable-device %s && daxctl reconfigure-device --align=4K %s && daxctl enable-device %s",
			 p->dax_name, p->dax_name, p->dax_name);
	else
		buf[0] = '\0';
}

static int check_window(const char *path, const struct shmfs_region_spec *s,
			const struct shmfs_region_opts *opts, const struct probe *p,
			uint64_t *size, char *err, size_t errlen)
{
	char a[32], b[32], c[32], hint[400];

	align_hint(p, hint, sizeof(hint));
	if (s->map >= 0 && p->kind != SHMFS_REGION_UIO) {
		shmfs_errf(err, errlen, "%s: map= applies only to UIO devices", path);
		return -EINVAL;
	}
	if (!p->dev_size) {
		shmfs_errf(err, errlen, "%s: region is empty%s", path,
			   p->kind == SHMFS_REGION_FILE ? " (give a size to extend the file)" : "");
		return -EINVAL;
	}
	if (s->offset % p->align) {
		shmfs_errf(err, errlen, "%s: offset %s is not a multiple of the %s (%s)%s", path,
			   shmfs_fmt_size(s->offset, a, sizeof(a)), align_name(p),
			   shmfs_fmt_size(p->align, b, sizeof(b)), hint);
		return -EINVAL;
	}
	if (s->offset >= p->dev_size) {
		shmfs_errf(err, errlen, "%s: offset %s is at or past the end of the %s region",
			   path, shmfs_fmt_size(s->offset, a, sizeof(a)),
			   shmfs_fmt_size(p->dev_size, b, sizeof(b)));
		return -EINVAL;
	}
	if (s->has_length && s->length > p->dev_size - s->offset) {
		shmfs_errf(err, errlen, "%s: offset %s + length %s goes past the end of the %s region",
			   path, shmfs_fmt_size(s->offset, a, sizeof(a)),
			   shmfs_fmt_size(s->length, b, sizeof(b)),
			   shmfs_fmt_size(p->dev_size, c, sizeof(c)));
		return -EINVAL;
	}
	*size = s->has_length ? s->length : p->dev_size - s->offset;
	if (p->strict && *size % p->align) {
		shmfs_errf(err, errlen, "%s: %s %s is not a multiple of the %s (%s)%s", path,
			   s->has_length ? "length" : "size", shmfs_fmt_size(*size, a, sizeof(a)),
			   align_name(p), shmfs_fmt_size(p->align, b, sizeof(b)), hint);
		return -EINVAL;
	}
	if (opts->grow_to > *size) {
		shmfs_errf(err, errlen, "%s: region is %" PRIu64 " bytes, smaller than --size %" PRIu64,
			   path, *size, opts->grow_to);
		return -ENOSPC;
	}
	if (*size > SIZE_MAX / 2 || p->pgoff + s->offset > (uint64_t)INT64_MAX) {
		shmfs_errf(err, errlen, "%s: region is too large to map", path);
		return -EFBIG;
	}
	return 0;
}

/*
 * On ENOENT for "DIR/x,foo=1": if DIR/x exists, the user meant an option
 * we do not know, and saying so beats "No such file or directory".
 */
static bool unknown_option_instead(const char *path, const char *spec, char *err, size_t errlen)
{
	const char *base = strrchr(path, '/');
	char prefix[4096];
	struct stat st;

	base = base ? base + 1 : path;
	for (const char *c = strchr(base, ','); c; c = strchr(c + 1, ',')) {
		if (!looks_like_option(c + 1))
			continue;
		snprintf(prefix, sizeof(prefix), "%.*s", (int)(c - path), path);
		if (stat(prefix, &st))
			return false;
		shmfs_errf(err, errlen,
			   "%s: unknown region option '%s' (options are offset=, length=, map=)",
			   spec, c + 1);
		return true;
	}
	return false;
}

/* Step 1: the spec, with pci:DDDD:BB:DD.F expanded to its BAR file. */
static int open_parse(const char *spec, struct shmfs_region_spec *s, bool *short_pci, char *err,
		      size_t errlen)
{
	int rc = shmfs_region_parse_spec(spec, s, err, errlen);

	if (rc)
		return rc;
	*short_pci = !strncmp(s->path, "pci:", 4);
	return *short_pci ? expand_pci(s, err, errlen) : 0;
}

/*
 * Steps 2 and 3: classify the path and open it (creating a missing regular
 * file when asked): *fd is the descriptor of exactly what was classified, and p
 * knows the kind, its size and its alignment.  On failure *fd may be open.
 */
static int open_by_kind(const char *spec, const struct shmfs_region_spec *s, bool short_pci,
			const struct shmfs_region_opts *opts, struct probe *p, int *fd, char *err,
			size_t errlen)
{
	const char *path = s->path;
	int flags = (opts->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, rc;
	struct stat st, fst;

	if (stat(path, &st) < 0) {
		rc = -errno;
		if (rc == -ENOENT && short_pci) {
			shmfs_errf(err, errlen,
				   "%s: no such PCI device (find ivshmem with: lspci -D -d 1af4:1110)",
				   path);
			return rc;
		}
		if (rc == -ENOENT && unknown_option_instead(path, spec, err, errlen))
			return -EINVAL;
		if (rc != -ENOENT || !opts->create) {
			shmfs_errf(err, errlen, "%s: %s", path, strerror(-rc));
			return rc;
		}
		*fd = open(path, flags | O_CREAT, 0600);
		if (*fd < 0 || fstat(*fd, &st) < 0) {
			rc = -errno;
			shmfs_errf(err, errlen, "%s: cannot create: %s", path, strerror(-rc));
			return rc;
		}
	}

	rc = classify(path, &st, s, p, err, errlen);
	if (rc)
		return rc;

	if (*fd < 0) {
		*fd = open(path, flags);
		if (*fd < 0) {
			rc = -errno;
			shmfs_errf(err, errlen, "%s: %s%s", path, strerror(-rc),
				   rc != -EACCES && rc != -EPERM ? "" :
				   opts->readonly ? " (run as root, or get read access to it)" :
				   " (run as root, or get read/write access to it)");
			return rc;
		}
		/* What we classified must be what we opened. */
		if (fstat(*fd, &fst) < 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino) {
			shmfs_errf(err, errlen, "%s: changed while being opened; try again", path);
			return -EAGAIN;
		}
	}
	if (p->kind == SHMFS_REGION_FILE)
		return probe_file(path, *fd, s, opts, p, err, errlen);
	return 0;
}

/* Absolute, so that it still names the region after a chdir (and for the
 * programs the daemon tells it to). */
static void set_path(struct shmfs_region *r, const char *path)
{
	char cwd[PATH_MAX];
	size_t cl;

	if (path[0] != '/' && getcwd(cwd, sizeof(cwd)) &&
	    (cl = strlen(cwd)) + 1 + strlen(path) < sizeof(r->path)) {
		memcpy(r->path, cwd, cl);
		r->path[cl] = '/';
		strcpy(r->path + cl + 1, path);
	} else {
		snprintf(r->path, sizeof(r->path), "%s", path);
	}
}

/* Step 4: check the window against what the probe found, map it, and
 * fill r.  fd becomes r's on success. */
static int open_map(const struct shmfs_region_spec *s, const struct shmfs_region_opts *opts,
		    struct probe *p, int fd, struct shmfs_region *r, char *err, size_t errlen)
{
	const char *path = s->path;
	uint64_t size, delta;
	void *addr;
	int rc, prot;

	rc = check_window(path, s, opts, p, &size, err, errlen);
	if (rc)
		return rc;

	if (p->kind == SHMFS_REGION_PCI)
		pci_enable(path, p); /* only now: a bad spec leaves the device alone */

	/* UIO picks the map by mmap offset, so a window inside it is ours. */
	delta = p->kind == SHMFS_REGION_UIO ? s->offset : 0;
	prot = opts->readonly ? PROT_READ : PROT_READ | PROT_WRITE;
	addr = mmap(NULL, (size_t)(delta + size), prot, MAP_SHARED, fd,
		    (off_t)(p->pgoff + s->offset - delta));
	if (addr == MAP_FAILED) {
		char a[32], b[32], why[160] = "";

		rc = -errno;
		if (p->kind == SHMFS_REGION_PCI && p->enable_err)
			snprintf(why, sizeof(why), " (enabling the device failed: %s)",
				 strerror(p->enable_err));
		else if (p->kind == SHMFS_REGION_HUGETLBFS && rc == -ENOMEM)
			snprintf(why, sizeof(why),
				 " (not enough free huge pages; raise /proc/sys/vm/nr_hugepages)");
		shmfs_errf(err, errlen, "%s: cannot map %s at offset %s: %s%s", path,
			   shmfs_fmt_size(size, a, sizeof(a)),
			   shmfs_fmt_size(s->offset, b, sizeof(b)), strerror(-rc), why);
		return rc;
	}

	r->map_addr = addr;
	r->map_len = (size_t)(delta + size);
	r->base = (uint8_t *)addr + delta;
	r->size = size;
	r->align = p->align;
	r->kind = p->kind;
	r->readonly = opts->readonly;
	r->fd = fd;
	r->offset = s->offset;
	set_path(r, path);
	return 0;
}

int shmfs_region_open(const char *spec, const struct shmfs_region_opts *opts,
		      struct shmfs_region *r, char *err, size_t errlen)
{
	static const struct shmfs_region_opts no_opts;
	struct shmfs_region_spec s;
	struct probe p;
	bool short_pci;
	int rc, fd = -1;

	region_reset(r);
	if (!opts)
		opts = &no_opts;
	memset(&p, 0, sizeof(p));
	rc = open_parse(spec, &s, &short_pci, err, errlen);
	if (!rc)
		rc = open_by_kind(spec, &s, short_pci, opts, &p, &fd, err, errlen);
	if (!rc)
		rc = open_map(&s, opts, &p, fd, r, err, errlen);
	if (rc) {
		if (fd >= 0)
			close(fd);
		region_reset(r);
	}
	return rc;
}

int shmfs_region_open_mem(uint64_t size, uint64_t align, struct shmfs_region *r)
{
	uint64_t ps = page_size(), extra, head;
	uint8_t *addr, *aligned;
	size_t len;

	region_reset(r);
	if (!size || size % 4096 || size % ps || size > SIZE_MAX / 4)
		return -EINVAL;
	if (!shmfs_is_pow2(align) || align < 4096 || align > SIZE_MAX / 4)
		return -EINVAL;
	/* Over-allocate, then trim, so base is aligned as a dax mapping would be. */
	extra = align > ps ? align - ps : 0;
	len = (size_t)(size + extra);
	addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (addr == MAP_FAILED)
		return -errno;
	aligned = (uint8_t *)(uintptr_t)shmfs_round_up((uintptr_t)addr, SHMFS_MAX(align, ps));
	head = (uint64_t)(aligned - addr);
	if (head)
		munmap(addr, (size_t)head);
	if (len - head > size)
		munmap(aligned + size, (size_t)(len - head - size));

	r->map_addr = aligned;
	r->map_len = (size_t)size;
	r->base = aligned;
	r->size = size;
	r->align = align;
	r->kind = SHMFS_REGION_MEM;
	snprintf(r->path, sizeof(r->path), "[anonymous memory]");
	return 0;
}

void shmfs_region_close(struct shmfs_region *r)
{
	if (!r)
		return;
	/* Only an open region has a mapping; a zeroed struct's fd 0 is not ours. */
	if (r->map_addr) {
		munmap(r->map_addr, r->map_len);
		if (r->fd >= 0)
			close(r->fd);
	}
	region_reset(r);
}

int shmfs_region_zero(struct shmfs_region *r, uint64_t off, uint64_t len)
{
	uint64_t unit, pos, start, end;

	if (!shmfs_region_ptr(r, off, len))
		return -EINVAL;
	if (!len)
		return 0;
	if (r->readonly)
		return -EROFS;
	if ((r->kind == SHMFS_REGION_FILE || r->kind == SHMFS_REGION_HUGETLBFS) && r->fd >= 0) {
		/* hugetlbfs only frees whole huge pages, and ignores the rest. */
		unit = r->kind == SHMFS_REGION_HUGETLBFS ? r->align : page_size();
		pos = r->offset + off;
		start = shmfs_round_up(pos, unit);
		end = shmfs_round_down(pos + len, unit);
		if (start < end) {
			if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)start, (off_t)(end - start)) == 0) {
				shmfs_region_clear(r, off, start - pos);
				return shmfs_region_clear(r, end - r->offset, pos + len - end);
			}
			if (errno != EOPNOTSUPP && errno != ENOSYS)
				return -errno;
		}
	}
	return shmfs_region_clear(r, off, len);
}

const char *shmfs_region_kind_name(enum shmfs_region_kind kind)
{
	switch (kind) {
	case SHMFS_REGION_MEM:
		return "memory";
	case SHMFS_REGION_FILE:
		return "file";
	case SHMFS_REGION_HUGETLBFS:
		return "hugetlbfs";
	case SHMFS_REGION_DEVDAX:
		return "devdax";
	case SHMFS_REGION_PCI:
		return "pci";
	case SHMFS_REGION_UIO:
		return "uio";
	}
	return "unknown";
}
