/* SPDX-License-Identifier: MIT */
/*
 * Random operation sequences against an independent in-memory model.
 *
 * Each step picks a random operation, predicts its outcome with a plain
 * model (arrays, no hashing, no RCU), commits it through shmfs_fs_commit()
 * and checks the return code.  After the run, the writer's namespace, and
 * the namespace a second host builds by replaying the region's log from
 * scratch, must both equal the model: every name, inode, attribute, link
 * count, extent and free unit.
 *
 * Usage: test_model [seed [steps]]
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#define MAXI   2048
#define MAXD   4096
#define FUNITS 16   /* file units a file may use */
#define UNIT   4096u

struct minode {
	bool live;
	uint32_t mode, uid, gid;
	uint64_t size;
	int nlink;
	uint64_t parent;             /* directories */
	int64_t map[FUNITS];         /* file unit -> data unit, -1 hole */
	int nx;                      /* xattr count */
	char xname[4][8];
};

struct mdent {
	bool live;
	uint64_t dir, ino;
	char name[8];
};

static struct minode mi[MAXI];
static struct mdent md[MAXD];
static uint64_t next_ino = 2, model_used;
static uint64_t rng = 88172645463325252ull;
static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t pick(uint64_t n) { return n ? rnd() % n : 0; }

static int find_dent(uint64_t dir, const char *name)
{
	for (int i = 0; i < MAXD; i++)
		if (md[i].live && md[i].dir == dir && !strcmp(md[i].name, name))
			return i;
	return -1;
}

static int children(uint64_t dir)
{
	int n = 0;
	for (int i = 0; i < MAXD; i++)
		n += md[i].live && md[i].dir == dir;
	return n;
}

static int new_dent(uint64_t dir, uint64_t ino, const char *name)
{
	for (int i = 0; i < MAXD; i++)
		if (!md[i].live) {
			md[i] = (struct mdent){ true, dir, ino, { 0 } };
			strcpy(md[i].name, name);
			return i;
		}
	return -1;
}

static bool is_dir(uint64_t ino) { return S_ISDIR(mi[ino].mode); }

static uint64_t rand_ino(bool want_dir)
{
	for (int tries = 0; tries < 64; tries++) {
		uint64_t i = 1 + pick(next_ino - 1);
		if (mi[i].live && is_dir(i) == want_dir)
			return i;
	}
	return want_dir ? SHMFS_ROOT_INO : 0;
}

static int rand_dent(void)
{
	for (int tries = 0; tries < 64; tries++) {
		int i = (int)pick(MAXD);
		if (md[i].live)
			return i;
	}
	return -1;
}

static void rand_name(char *n) { snprintf(n, 8, "n%u", (unsigned)pick(24)); }

static void release_units(uint64_t ino, unsigned from)
{
	for (unsigned u = from; u < FUNITS; u++)
		if (mi[ino].map[u] >= 0) {
			mi[ino].map[u] = -1;
			model_used--;
		}
}

static void drop_link(uint64_t ino)
{
	if (--mi[ino].nlink <= (is_dir(ino) ? 1 : 0)) {
		release_units(ino, 0);
		mi[ino].live = false;
	}
}

static bool ancestor(uint64_t anc, uint64_t d)
{
	for (int i = 0; i < MAXI; i++) {
		if (d == anc)
			return true;
		if (d == SHMFS_ROOT_INO)
			return false;
		d = mi[d].parent;
	}
	return true;
}

static int commit(struct shmfs_fs *fs, uint16_t type, uint16_t flags, uint32_t len)
{
	return shmfs_fs_commit(fs, type, flags, buf, len);
}

static void step(struct shmfs_fs *fs)
{
	char name[8], name2[8];
	int want, rc, d;
	uint64_t dir, ino;

	switch (pick(11)) {
	case 0: case 1: { /* create a file, dir, symlink or fifo */
		static const uint32_t types[] = { S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO };
		uint32_t mode = types[pick(4)] | 0640;
		dir = rand_ino(true);
		rand_name(name);
		if (next_ino >= MAXI)
			return;
		want = find_dent(dir, name) >= 0 ? -EEXIST : 0;
		uint32_t len = shmfs_rec_create(buf, next_ino, dir, mode, 7, 8, 0, name, strlen(name),
						"tgt", S_ISLNK(mode) ? 3 : 0);
		rc = commit(fs, SHMFS_LR_CREATE, 0, len);
		CHECK(rc == want, "create %s in %" PRIu64 ": %d want %d", name, dir, rc, want);
		if (!rc) {
			mi[next_ino] = (struct minode){ .live = true, .mode = mode, .uid = 7, .gid = 8,
							.nlink = S_ISDIR(mode) ? 2 : 1, .parent = dir,
							.size = S_ISLNK(mode) ? 3 : 0 };
			memset(mi[next_ino].map, 0xff, sizeof(mi[next_ino].map));
			new_dent(dir, next_ino, name);
			if (S_ISDIR(mode))
				mi[dir].nlink++;
			next_ino++;
		}
		break;
	}
	case 2: /* link */
		ino = rand_ino(false);
		dir = rand_ino(true);
		rand_name(name);
		if (!ino)
			return;
		want = find_dent(dir, name) >= 0 ? -EEXIST : 0;
		rc = commit(fs, SHMFS_LR_LINK, 0, shmfs_rec_dirent(buf, dir, ino, name, strlen(name)));
		CHECK(rc == want, "link: %d want %d", rc, want);
		if (!rc) {
			new_dent(dir, ino, name);
			mi[ino].nlink++;
		}
		break;
	case 3: case 4: { /* unlink or rmdir of a random name */
		bool rmd = pick(2);
		d = rand_dent();
		if (d < 0)
			return;
		ino = md[d].ino;
		want = rmd ? (!is_dir(ino) ? -ENOTDIR : children(ino) ? -ENOTEMPTY : 0)
			   : (is_dir(ino) ? -EISDIR : 0);
		rc = commit(fs, rmd ? SHMFS_LR_RMDIR : SHMFS_LR_UNLINK, 0,
			    shmfs_rec_dirent(buf, md[d].dir, ino, md[d].name, strlen(md[d].name)));
		CHECK(rc == want, "%s %s: %d want %d", rmd ? "rmdir" : "unlink", md[d].name, rc, want);
		if (!rc) {
			if (rmd)
				mi[md[d].dir].nlink--;
			md[d].live = false;
			drop_link(ino);
		}
		break;
	}
	case 5: { /* rename, maybe noreplace or exchange */
		uint32_t flags = (uint32_t)pick(3); /* 0, NOREPLACE, EXCHANGE */
		d = rand_dent();
		dir = rand_ino(true);
		rand_name(name2);
		if (d < 0)
			return;
		ino = md[d].ino;
		int t = find_dent(dir, name2);
		uint64_t tino = t >= 0 ? md[t].ino : 0;
		if (tino == ino || (flags == SHMFS_RENAME_EXCHANGE && !tino))
			return; /* the writer handles these without a record */
		uint64_t rec_target = flags == SHMFS_RENAME_NOREPLACE ? 0 : tino;
		uint64_t od = md[d].dir;
		if (flags == SHMFS_RENAME_NOREPLACE && tino)
			want = -EEXIST;
		else if (is_dir(ino) && od != dir && ancestor(ino, dir))
			want = -EINVAL;
		else if (flags == SHMFS_RENAME_EXCHANGE && is_dir(tino) && od != dir &&
			 ancestor(tino, od))
			want = -EINVAL;
		else if (flags != SHMFS_RENAME_EXCHANGE && tino && is_dir(ino) && !is_dir(tino))
			want = -ENOTDIR;
		else if (flags != SHMFS_RENAME_EXCHANGE && tino && !is_dir(ino) && is_dir(tino))
			want = -EISDIR;
		else if (flags != SHMFS_RENAME_EXCHANGE && tino && is_dir(tino) && children(tino))
			want = -ENOTEMPTY;
		else
			want = 0;
		rc = commit(fs, SHMFS_LR_RENAME, 0,
			    shmfs_rec_rename(buf, od, md[d].name, strlen(md[d].name), dir, name2,
					     strlen(name2), ino, rec_target, flags));
		CHECK(rc == want, "rename %s -> %s flags %u: %d want %d", md[d].name, name2, flags,
		      rc, want);
		if (rc)
			break;
		if (flags == SHMFS_RENAME_EXCHANGE) {
			md[t].ino = ino;
			md[d].ino = tino;
			if (od != dir) {
				int sd = is_dir(ino), td = is_dir(tino);
				mi[od].nlink += td - sd;
				mi[dir].nlink += sd - td;
				if (sd)
					mi[ino].parent = dir;
				if (td)
					mi[tino].parent = od;
			}
			break;
		}
		if (t >= 0) {
			md[t].live = false;
			if (is_dir(tino))
				mi[dir].nlink--;
			drop_link(tino);
		}
		md[d].dir = dir;
		strcpy(md[d].name, name2);
		if (is_dir(ino) && od != dir) {
			mi[od].nlink--;
			mi[dir].nlink++;
			mi[ino].parent = dir;
		}
		break;
	}
	case 6: { /* setattr: chmod, chown, truncate */
		ino = rand_ino(pick(4) == 0);
		if (!ino)
			return;
		struct shmfs_lr_setattr s = { .sa_ino = ino, .sa_valid = SHMFS_SA_MODE | SHMFS_SA_UID };
		s.sa_mode = (uint32_t)pick(07777);
		s.sa_uid = (uint32_t)pick(100);
		bool sz = pick(2);
		if (sz) {
			s.sa_valid |= SHMFS_SA_SIZE;
			s.sa_size = pick(2) ? pick(FUNITS + 1) * UNIT : pick(FUNITS * UNIT);
		}
		want = sz && !S_ISREG(mi[ino].mode) ? (is_dir(ino) ? -EISDIR : -EINVAL) : 0;
		memcpy(buf, &s, sizeof(s));
		rc = commit(fs, SHMFS_LR_SETATTR, 0, sizeof(s));
		CHECK(rc == want, "setattr %" PRIu64 ": %d want %d", ino, rc, want);
		if (!rc) {
			mi[ino].mode = (mi[ino].mode & S_IFMT) | s.sa_mode;
			mi[ino].uid = s.sa_uid;
			if (sz) {
				if (s.sa_size < mi[ino].size)
					release_units(ino, (unsigned)((s.sa_size + UNIT - 1) / UNIT));
				mi[ino].size = s.sa_size;
			}
		}
		break;
	}
	case 7: case 8: { /* map a unit of a file */
		ino = rand_ino(false);
		if (!ino || !S_ISREG(mi[ino].mode))
			return;
		unsigned u = (unsigned)pick(FUNITS);
		uint64_t first, got;
		if (shmfs_fs_alloc(fs, 1, &first, &got))
			return;
		want = mi[ino].map[u] >= 0 ? -EEXIST : 0;
		uint64_t size = SHMFS_MAX(mi[ino].size, (u + 1ull) * UNIT);
		rc = commit(fs, SHMFS_LR_EXTENT_MAP, SHMFS_EXT_F_SIZE,
			    shmfs_rec_extent(buf, ino, u * UNIT, first * UNIT, UNIT, size));
		CHECK(rc == want, "map %" PRIu64 " unit %u: %d want %d", ino, u, rc, want);
		if (!rc) {
			mi[ino].map[u] = (int64_t)first;
			mi[ino].size = size;
			model_used++;
		}
		/* Mapping space that is in use is corruption, never applied. */
		if (mi[ino].map[u] >= 0 && u + 1 < FUNITS && mi[ino].map[u + 1] < 0) {
			rc = commit(fs, SHMFS_LR_EXTENT_MAP, 0,
				    shmfs_rec_extent(buf, ino, (u + 1) * UNIT,
						     (uint64_t)mi[ino].map[u] * UNIT, UNIT, 0));
			CHECK(rc == -EUCLEAN, "double map: %d", rc);
		}
		break;
	}
	case 9: { /* punch a range */
		ino = rand_ino(false);
		if (!ino || !S_ISREG(mi[ino].mode))
			return;
		unsigned u = (unsigned)pick(FUNITS), n = 1 + (unsigned)pick(4);
		rc = commit(fs, SHMFS_LR_EXTENT_UNMAP, 0,
			    shmfs_rec_extent(buf, ino, u * UNIT, 0, n * UNIT, 0));
		CHECK(rc == 0, "unmap: %d", rc);
		for (unsigned k = u; k < u + n && k < FUNITS; k++)
			if (mi[ino].map[k] >= 0) {
				mi[ino].map[k] = -1;
				model_used--;
			}
		break;
	}
	case 10: { /* xattrs */
		ino = rand_ino(pick(2));
		if (!ino)
			return;
		snprintf(name, sizeof(name), "user.%u", (unsigned)pick(3));
		int have = -1;
		for (int k = 0; k < mi[ino].nx; k++)
			if (!strcmp(mi[ino].xname[k], name))
				have = k;
		if (pick(2)) {
			rc = commit(fs, SHMFS_LR_XATTR_SET, 0,
				    shmfs_rec_xattr(buf, ino, 0, name, strlen(name), "value", 5));
			CHECK(rc == 0, "xattr set: %d", rc);
			if (!rc && have < 0)
				strcpy(mi[ino].xname[mi[ino].nx++], name);
		} else {
			want = have < 0 ? -ENODATA : 0;
			rc = commit(fs, SHMFS_LR_XATTR_REMOVE, 0,
				    shmfs_rec_xattr(buf, ino, 0, name, strlen(name), NULL, 0));
			CHECK(rc == want, "xattr remove: %d want %d", rc, want);
			if (!rc) {
				memmove(mi[ino].xname[have], mi[ino].xname[mi[ino].nx - 1], 8);
				mi[ino].nx--;
			}
		}
		break;
	}
	}
}

/* The namespace must equal the model, exactly. */
static void compare(struct shmfs_ns *ns, const char *who)
{
	uint64_t live = 0;

	rcu_read_lock();
	for (uint64_t i = 1; i < next_ino; i++) {
		struct shmfs_inode *ip = shmfs_ns_iget(ns, i);
		CHECK(!ip == !mi[i].live, "%s: inode %" PRIu64 " live %d vs model %d", who, i, !!ip,
		      mi[i].live);
		if (!ip || !mi[i].live)
			continue;
		live++;
		struct shmfs_attr *a = ip->attr;
		CHECK(a->mode == mi[i].mode && a->uid == mi[i].uid && a->gid == mi[i].gid &&
		      a->size == mi[i].size && a->nlink == (uint32_t)mi[i].nlink,
		      "%s: inode %" PRIu64 " attrs mode %o/%o uid %u/%u size %" PRIu64 "/%" PRIu64
		      " nlink %u/%d", who, i, a->mode, mi[i].mode, a->uid, mi[i].uid, a->size,
		      mi[i].size, a->nlink, mi[i].nlink);
		if (is_dir(i))
			CHECK(ip->nchildren == (uint64_t)children(i), "%s: dir %" PRIu64 " children",
			      who, i);
		int64_t map[FUNITS];
		memset(map, 0xff, sizeof(map));
		for (uint32_t k = 0; ip->ext && k < ip->ext->n; k++)
			for (uint64_t o = 0; o < ip->ext->e[k].len; o += UNIT)
				if ((ip->ext->e[k].foff + o) / UNIT < FUNITS)
					map[(ip->ext->e[k].foff + o) / UNIT] =
						(int64_t)((ip->ext->e[k].doff + o) / UNIT);
		CHECK(!memcmp(map, mi[i].map, sizeof(map)), "%s: inode %" PRIu64 " extents", who, i);
		CHECK((ip->xattrs ? (int)ip->xattrs->n : 0) == mi[i].nx, "%s: inode %" PRIu64
		      " xattrs", who, i);
	}
	CHECK(live == ns->ninodes, "%s: %" PRIu64 " inodes, model %" PRIu64, who, ns->ninodes, live);
	for (int d = 0; d < MAXD; d++) {
		if (!md[d].live)
			continue;
		struct shmfs_dentry *de = shmfs_ns_lookup(ns, md[d].dir, md[d].name,
							  strlen(md[d].name));
		CHECK(de && de->ino == md[d].ino, "%s: name %s in %" PRIu64, who, md[d].name,
		      md[d].dir);
	}
	rcu_read_unlock();
	CHECK(ns->alloc.nunits - ns->alloc.nfree == model_used, "%s: %" PRIu64 " units used, "
	      "model %" PRIu64, who, ns->alloc.nunits - ns->alloc.nfree, model_used);
}

int main(int argc, char **argv)
{
	uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	unsigned steps = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 20000;
	struct shmfs_region r;
	struct shmfs_mkfs_params p = { .max_hosts = 4 };
	struct shmfs_super sb;
	struct shmfs_fs *fs = NULL, *fs2 = NULL;
	struct shmfs_fs_opts o = { .join = true }, ro = { .readonly = true };
	char err[256];

	rcu_register_thread();
	for (unsigned run = 0; run < 3; run++, seed++) {
		rng = seed * 0x9e3779b97f4a7c15ull | 1;
		memset(mi, 0, sizeof(mi));
		memset(md, 0, sizeof(md));
		next_ino = 2;
		model_used = 0;
		mi[1] = (struct minode){ .live = true, .mode = S_IFDIR | 0755, .nlink = 2, .parent = 1 };
		memset(mi[1].map, 0xff, sizeof(mi[1].map));

		CHECK_RC(shmfs_region_open_mem(64ull << 20, 4096, &r), 0);
		CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
		CHECK_RC(shmfs_fs_open(&r, &o, &fs, err, sizeof(err)), 0);
		if (!fs)
			return check_done("test_model");
		CHECK_RC(shmfs_fs_lock(fs), 0);
		for (unsigned i = 0; i < steps && check_failures == 0; i++)
			step(fs);
		shmfs_fs_unlock(fs);
		if (check_failures)
			fprintf(stderr, "seed %" PRIu64 "\n", seed);
		compare(fs->ns, "writer");
		CHECK(fs->stats.rejected == 0, "writer rejected records");

		/* A second host replays the whole log from the region. */
		CHECK_RC(shmfs_fs_open(&r, &ro, &fs2, err, sizeof(err)), 0);
		if (fs2) {
			compare(fs2->ns, "replayer");
			CHECK(fs2->stats.rejected == 0 && !fs2->stats.stuck,
			      "replayer rejected %" PRIu64 ": %s", fs2->stats.rejected,
			      fs2->stats.last_reject);
			CHECK(fs2->seq == fs->seq, "same tail");
			shmfs_fs_close(fs2);
		}
		printf("seed %" PRIu64 ": %" PRIu64 " records, %" PRIu64 " inodes\n", seed,
		       fs->seq - 1, fs->ns->ninodes);
		shmfs_fs_close(fs);
		shmfs_region_close(&r);
	}
	rcu_unregister_thread();
	return check_done("test_model");
}
