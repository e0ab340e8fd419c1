/* SPDX-License-Identifier: MIT */
/*
 * Reuse of freed space across hosts.  Host A has a file open; host B
 * deletes (or truncates) it.  B must not hand the file's units to anyone
 * while A can still reach them, and must once A closes the file.  An
 * orphan kept by its own host (unlink while open there) keeps its data
 * until the release record, on every host.  A dead host's pins do not
 * block reuse after its lease.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "check.h"
#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/util.h"

#define UNIT 4096u
#define LEASE_MS 300 /* a loaded 2-core machine can deschedule a test for 100 ms */
static struct shmfs_region r;
static struct shmfs_fs *hosts[2];

/* What each daemon's follower and heartbeat threads do continuously. */
static void follow(void)
{
	for (int i = 0; i < 2; i++)
		if (hosts[i] && hosts[i]->coord.slot >= 0) {
			shmfs_fs_replay(hosts[i]);
			shmfs_fs_heartbeat(hosts[i]);
		}
}

/* What the heartbeat threads of live hosts do meanwhile: a long fill on a
 * loaded machine must not outlast the lease of a host that is alive. */
static void beat(void)
{
	for (int i = 0; i < 2; i++)
		if (hosts[i] && hosts[i]->coord.slot >= 0)
			shmfs_fs_heartbeat(hosts[i]);
}

static struct shmfs_fs *host(const char *name)
{
	struct shmfs_fs_opts o = { .join = true, .host_name = name, .lease_ms = LEASE_MS };
	struct shmfs_fs *fs = NULL;
	char err[256];

	CHECK_RC(shmfs_fs_open(&r, &o, &fs, err, sizeof(err)), 0);
	return fs;
}

static uint64_t make_file(struct shmfs_fs *fs, const char *name, size_t bytes, int fill)
{
	static uint8_t buf[1 << 20];
	struct shmfs_cred cred = { 0, 0 };
	struct stat st;

	CHECK_RC(shmfs_op_mknod(fs, SHMFS_ROOT_INO, name, S_IFREG | 0644, 0, NULL, &cred, &st), 0);
	memset(buf, fill, sizeof(buf));
	for (size_t off = 0; off < bytes; off += sizeof(buf))
	{
		beat();
		ssize_t w = shmfs_op_write(fs, st.st_ino, off, buf, SHMFS_MIN(sizeof(buf), bytes - off));
		CHECK(w > 0, "write %s at %zu: %zd", name, off, w);
	}
	CHECK_RC(shmfs_op_flush(fs, st.st_ino, true), 0);
	follow();
	return st.st_ino;
}

/* Every data byte of ino reads as fill (through host fs's view). */
static bool reads_as(struct shmfs_fs *fs, uint64_t ino, size_t bytes, int fill)
{
	struct shmfs_piece p[64];
	size_t total, off = 0;
	bool ok = true;

	while (off < bytes && ok) {
		rcu_read_lock();
		int n = shmfs_op_read_map(fs, ino, off, 1 << 20, p, 64, &total);
		for (int i = 0; i < n && ok; i++)
			for (size_t k = 0; k < p[i].len && ok; k += 512)
				ok = p[i].mem && p[i].mem[k] == fill;
		rcu_read_unlock();
		if (n <= 0)
			return false;
		off += total;
	}
	return ok;
}

static uint64_t free_units(struct shmfs_fs *fs)
{
	return fs->ns->alloc.nfree;
}

int main(void)
{
	struct shmfs_mkfs_params p = { .max_hosts = 4, .log_size = 1 << 20, .lease_ms = 1000,
				       .heartbeat_ms = 100 };
	struct shmfs_super sb;
	char err[256];
	const size_t big = 24u << 20;

	rcu_register_thread();
	/* A region whose data area holds the big file about twice. */
	CHECK_RC(shmfs_region_open_mem(56ull << 20, 4096, &r), 0);
	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
	struct shmfs_fs *a = host("a"), *b = host("b");
	if (!a || !b)
		return check_done("test_reuse");
	hosts[0] = a;
	hosts[1] = b;

	/* 1. B deletes a file A has open: B cannot reuse its space. */
	uint64_t ino = make_file(b, "shared", big, 0x11);
	shmfs_fs_replay(a);
	shmfs_fs_open_inode(a, ino);
	CHECK_RC(shmfs_op_unlink(b, SHMFS_ROOT_INO, "shared", false), 0);
	shmfs_fs_replay(a); /* A applies the unlink, publishes its pin */
	CHECK(a->ns->npending > 0, "A keeps the freed units pending");
	struct shmfs_host *ha = shmfs_host_slot(r.base, &a->sb, (uint32_t)a->coord.slot);
	CHECK(ha->hs_pins[0] != 0 && ha->hs_pin_seq == 0, "A publishes a pin (%" PRIu64 ", %" PRIu64 ")",
	      ha->hs_pins[0], ha->hs_pin_seq);
	/* B fills the filesystem: it may not take A's units. */
	uint64_t f1 = make_file(b, "fill1", big, 0x22);
	struct stat st;
	struct shmfs_cred cred = { 0, 0 };
	CHECK_RC(shmfs_op_mknod(b, SHMFS_ROOT_INO, "fill2", S_IFREG | 0644, 0, NULL, &cred, &st), 0);
	static uint8_t chunk[1 << 20];
	memset(chunk, 0x33, sizeof(chunk));
	ssize_t w = 0;
	for (size_t off = 0; off < big && w >= 0; off += sizeof(chunk)) {
		beat();
		w = shmfs_op_write(b, st.st_ino, off, chunk, sizeof(chunk));
	}
	CHECK(w == -ENOSPC, "B runs out of space instead of reusing A's file (%zd)", w);
	CHECK(reads_as(a, ino, big, 0x11), "A still reads the deleted file's bytes");
	CHECK(reads_as(b, f1, big, 0x22), "fill1 intact");

	/* Space freed after A's pin is not held by it: only the pinned
	 * record is.  (A single "oldest pin" held every later one too: one
	 * deleted file kept open anywhere stopped all reuse of space.) */
	CHECK_RC(shmfs_op_unlink(b, SHMFS_ROOT_INO, "fill1", false), 0);
	follow();
	uint64_t f3 = make_file(b, "fill3", big - (1u << 20), 0x66);
	CHECK(reads_as(b, f3, big - (1u << 20), 0x66), "B reuses fill1's space while A's pin stands");
	CHECK(reads_as(a, ino, big, 0x11), "A still reads the deleted file's bytes");

	/* A closes: the pin goes, B may now reuse the space. */
	shmfs_fs_close_inode(a, ino);
	CHECK(ha->hs_pin_seq == 0 && ha->hs_pins[0] == 0, "pin dropped at close");
	w = shmfs_op_write(b, st.st_ino, 0, chunk, sizeof(chunk));
	CHECK(w == (ssize_t)sizeof(chunk), "B reuses the space after A's close (%zd)", w);
	CHECK_RC(shmfs_op_unlink(b, SHMFS_ROOT_INO, "fill3", false), 0);
	CHECK_RC(shmfs_op_unlink(b, SHMFS_ROOT_INO, "fill2", false), 0);

	/* 1b. More pinned records than hs_pins holds: the four oldest are
	 * listed, the rest from hs_pin_seq on; as files close, later ones
	 * move into the list, each keeping its entry. */
	uint64_t six[6], seqs[6];
	for (int i = 0; i < 6; i++) {
		char name[16];
		snprintf(name, sizeof(name), "six%d", i);
		six[i] = make_file(b, name, UNIT, 0x70 + i);
		shmfs_fs_replay(a);
		shmfs_fs_open_inode(a, six[i]);
	}
	for (int i = 0; i < 6; i++) {
		char name[16];
		snprintf(name, sizeof(name), "six%d", i);
		CHECK_RC(shmfs_op_unlink(b, SHMFS_ROOT_INO, name, false), 0);
		seqs[i] = b->seq - 1;
	}
	shmfs_fs_replay(a);
	for (int i = 0; i < 4; i++)
		CHECK(ha->hs_pins[i] == seqs[i], "pin %d: %" PRIu64 ", want %" PRIu64, i,
		      ha->hs_pins[i], seqs[i]);
	CHECK(ha->hs_pin_seq == seqs[4], "the rest from %" PRIu64 " (want %" PRIu64 ")",
	      ha->hs_pin_seq, seqs[4]);
	shmfs_fs_close_inode(a, six[1]);
	CHECK(ha->hs_pins[0] == seqs[0] && ha->hs_pins[1] == seqs[4] && ha->hs_pins[2] == seqs[2] &&
	      ha->hs_pins[3] == seqs[3] && ha->hs_pin_seq == seqs[5],
	      "after a close: %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 ", rest %" PRIu64,
	      ha->hs_pins[0], ha->hs_pins[1], ha->hs_pins[2], ha->hs_pins[3], ha->hs_pin_seq);
	for (int i = 0; i < 6; i++)
		if (i != 1)
			shmfs_fs_close_inode(a, six[i]);
	CHECK(!ha->hs_pins[0] && !ha->hs_pins[1] && !ha->hs_pins[2] && !ha->hs_pins[3] &&
	      !ha->hs_pin_seq, "no pins once all are closed");
	follow();

	/* 2. Unlink on the host that has it open: an orphan, kept everywhere. */
	uint64_t free0 = free_units(b);
	ino = make_file(a, "tmp", 4u << 20, 0x44);
	shmfs_fs_open_inode(a, ino);
	CHECK_RC(shmfs_op_unlink(a, SHMFS_ROOT_INO, "tmp", false), 0);
	shmfs_fs_replay(b);
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(b->ns, ino);
	CHECK(ip && ip->orphan_host == (uint32_t)a->coord.slot + 1 && ip->attr->nlink == 0,
	      "B sees the orphan kept by A");
	rcu_read_unlock();
	CHECK(free_units(b) == free0 - (4u << 20) / UNIT, "orphan's space still owned on B");
	/* A can still grow it. */
	CHECK(shmfs_op_write(a, ino, 4u << 20, chunk, sizeof(chunk)) == (ssize_t)sizeof(chunk),
	      "write to an open unlinked file");
	shmfs_fs_close_inode(a, ino);
	CHECK_RC(shmfs_op_release_orphan(a, ino), 0);
	shmfs_fs_replay(b);
	rcu_read_lock();
	CHECK(!shmfs_ns_iget(b->ns, ino), "released everywhere");
	rcu_read_unlock();
	CHECK(free_units(b) == free0, "space back after release");

	/* 3. A dies holding a pin: after its lease, B may reuse the space. */
	ino = make_file(b, "pinned", big, 0x55);
	shmfs_fs_replay(a);
	shmfs_fs_open_inode(a, ino);
	CHECK_RC(shmfs_op_unlink(b, SHMFS_ROOT_INO, "pinned", false), 0);
	shmfs_fs_replay(a);
	CHECK(ha->hs_pins[0] != 0, "pinned");
	a->coord.slot = -1; /* A dies: no more heartbeats, slot stays claimed */
	CHECK_RC(shmfs_op_mknod(b, SHMFS_ROOT_INO, "after", S_IFREG | 0644, 0, NULL, &cred, &st), 0);
	w = shmfs_op_write(b, st.st_ino, 0, chunk, sizeof(chunk)); /* B observes A's beat */
	uint64_t t0 = shmfs_mono_ns();
	/* 40 MiB: more than is free unless A's pinned 24 MiB come back */
	for (size_t off = 0; off < (40u << 20);) {
		w = shmfs_op_write(b, st.st_ino, off, chunk, sizeof(chunk));
		if (w == -ENOSPC && (shmfs_mono_ns() - t0) / 1000000 < 10 * LEASE_MS) {
			struct timespec ts = { 0, 20000000 };
			nanosleep(&ts, NULL); /* until A's lease runs out */
			follow();
			continue;
		}
		if (w < 0)
			break;
		off += sizeof(chunk);
	}
	CHECK(w == (ssize_t)sizeof(chunk), "B reuses a dead host's pinned space (%zd)", w);
	CHECK((shmfs_mono_ns() - t0) / 1000000 >= LEASE_MS / 2, "but only after its lease");

	shmfs_fs_close(b);
	shmfs_fs_close(a);
	hosts[0] = hosts[1] = NULL;

	/* 4. A full log: creates fail with ENOSPC, deletes still work, and
	 * another host replays the same consistent namespace. */
	struct shmfs_mkfs_params small = { .max_hosts = 2, .log_size = SHMFS_MIN_LOG };
	CHECK_RC(shmfs_fs_format(&r, &small, 0755, 0, 0, &sb, err, sizeof(err)), 0);
	a = host("a");
	if (a) {
		char name[32];
		int made = 0, rc = 0;
		while (made < 100000) {
			snprintf(name, sizeof(name), "file-%d", made);
			rc = shmfs_op_mknod(a, SHMFS_ROOT_INO, name, S_IFREG | 0644, 0, NULL, &cred, &st);
			if (rc)
				break;
			made++;
		}
		CHECK(rc == -ENOSPC && made > 1000, "log full after %d creates: %d", made, rc);
		int deleted = 0;
		for (int i = 0; i < made; i += 7) {
			snprintf(name, sizeof(name), "file-%d", i);
			if (shmfs_op_unlink(a, SHMFS_ROOT_INO, name, false))
				break;
			deleted++;
		}
		CHECK(deleted >= 100, "only %d deletes fit in the reserve", deleted);
		struct shmfs_fs *c = host("c");
		if (c) {
			CHECK(c->ns->ninodes == a->ns->ninodes && c->stats.rejected == 0,
			      "replay agrees: %" PRIu64 " vs %" PRIu64, c->ns->ninodes, a->ns->ninodes);
			shmfs_fs_close(c);
		}
		shmfs_fs_close(a);
	}
	shmfs_region_close(&r);
	rcu_unregister_thread();
	return check_done("test_reuse");
}
