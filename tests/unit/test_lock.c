/* SPDX-License-Identifier: MIT */
/*
 * The cross-host metadata lock and host slots, with several "hosts" (fs
 * handles) on one memory region: mutual exclusion under contention, lease
 * takeover from a dead holder with its half-written tail sealed, fencing
 * of a holder that lost its lease, and reclaim of a dead host's slot.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#define LEASE_MS 150
static struct shmfs_region r;

static struct shmfs_fs *host(const char *name)
{
	struct shmfs_fs_opts o = { .join = true, .host_name = name, .lease_ms = LEASE_MS };
	struct shmfs_fs *fs = NULL;
	char err[256];
	int rc = shmfs_fs_open(&r, &o, &fs, err, sizeof(err));

	CHECK(rc == 0, "open %s: %d %s", name, rc, err);
	return fs;
}

static int create(struct shmfs_fs *fs, const char *name)
{
	static __thread uint8_t buf[SHMFS_LR_PAYLOAD_MAX];
	uint64_t ino = fs->ns->next_ino;
	uint32_t len = shmfs_rec_create(buf, ino, SHMFS_ROOT_INO, S_IFREG | 0644, 0, 0, 0, name,
					strlen(name), NULL, 0);
	return shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf, len);
}

static bool exists(struct shmfs_fs *fs, const char *name)
{
	rcu_read_lock();
	bool ok = shmfs_ns_lookup(fs->ns, SHMFS_ROOT_INO, name, strlen(name)) != NULL;
	rcu_read_unlock();
	return ok;
}

static void format(uint32_t hosts)
{
	struct shmfs_mkfs_params p = { .max_hosts = hosts, .lease_ms = 1000, .heartbeat_ms = 100 };
	struct shmfs_super sb;
	char err[256];

	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
}

struct worker {
	struct shmfs_fs *fs;
	int id, n, errors;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char name[32];

	rcu_register_thread();
	for (int i = 0; i < w->n; i++) {
		snprintf(name, sizeof(name), "w%d-%d", w->id, i);
		if (shmfs_fs_lock(w->fs) || create(w->fs, name))
			w->errors++;
		shmfs_fs_unlock(w->fs);
		if (i % 64 == 0)
			shmfs_fs_heartbeat(w->fs);
	}
	rcu_unregister_thread();
	return NULL;
}

static void test_contention(void)
{
	struct worker w[2];
	pthread_t t[2];
	char name[32];

	format(8);
	for (int i = 0; i < 2; i++) {
		w[i] = (struct worker){ .fs = host(i ? "b" : "a"), .id = i, .n = 3000 };
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(w[0].errors == 0 && w[1].errors == 0, "errors %d %d", w[0].errors, w[1].errors);

	/* A third host replays everything: 6000 files, no gaps, nothing rejected. */
	struct shmfs_fs *c = host("c");
	if (c) {
		CHECK(c->ns->ninodes == 6001, "%" PRIu64 " inodes", c->ns->ninodes);
		CHECK(c->stats.rejected == 0 && !c->stats.stuck, "rejected %" PRIu64,
		      c->stats.rejected);
		for (int i = 0; i < 2; i++)
			for (int k = 0; k < 3000; k += 97) {
				snprintf(name, sizeof(name), "w%d-%d", i, k);
				CHECK(exists(c, name), "%s missing", name);
			}
		shmfs_fs_close(c);
	}
	for (int i = 0; i < 2; i++)
		shmfs_fs_close(w[i].fs);
}

static void test_dead_holder(void)
{
	format(4);
	struct shmfs_fs *a = host("a"), *b = host("b");
	if (!a || !b)
		return;

	CHECK_RC(shmfs_fs_lock(a), 0);
	CHECK_RC(create(a, "before"), 0);
	/* a starts another record -- payload and header, no publication --
	 * and dies holding the lock. */
	uint8_t *tail = a->log.base + a->pos;
	memset(tail + 8, 0xab, 300);
	uint64_t dead_pos = a->pos;

	uint64_t t0 = shmfs_mono_ns();
	CHECK_RC(shmfs_fs_lock(b), 0);
	uint64_t waited = (shmfs_mono_ns() - t0) / 1000000;
	CHECK(waited >= LEASE_MS, "lock broken after %" PRIu64 " ms, lease %d", waited, LEASE_MS);
	CHECK(exists(b, "before"), "b replayed a's committed record");
	CHECK(b->stats.seals == 1 && b->pos == dead_pos + SHMFS_LOG_SEAL_SKIP, "tail sealed");
	CHECK_RC(create(b, "after"), 0);
	shmfs_fs_unlock(b);

	/* a wakes up: its lease is gone, and it cannot publish. */
	CHECK_RC(create(a, "zombie"), -ESTALE);
	CHECK_RC(create(a, "zombie2"), -ESTALE);
	a->coord.locked = false; /* what the daemon does when it learns it lost the lock */

	/* A fresh host sees before, after, the seal, and nothing of a's tail. */
	struct shmfs_fs *c = host("c");
	if (c) {
		CHECK(exists(c, "before") && exists(c, "after") && !exists(c, "zombie"), "names");
		CHECK(c->stats.seals == 1 && c->stats.rejected == 0 && !c->stats.stuck, "clean replay");
		shmfs_fs_close(c);
	}
	/* b can take the lock again at once: it was released properly. */
	t0 = shmfs_mono_ns();
	CHECK_RC(shmfs_fs_lock(b), 0);
	CHECK((shmfs_mono_ns() - t0) / 1000000 < LEASE_MS, "no wait for a free lock");
	shmfs_fs_unlock(b);
	shmfs_fs_close(a);
	shmfs_fs_close(b);
}

static void test_slots(void)
{
	format(2);
	struct shmfs_fs *a = host("a"), *b = host("b");
	struct shmfs_fs_opts o = { .join = true, .host_name = "c", .lease_ms = LEASE_MS };
	struct shmfs_fs *c = NULL;
	char err[256];

	if (!a || !b)
		return;
	CHECK(a->coord.slot != b->coord.slot, "distinct slots");
	struct shmfs_host *hs = shmfs_host_slot(r.base, &a->sb, (uint32_t)a->coord.slot);
	CHECK(!strcmp(hs->hs_name, "a") && hs->hs_state == SHMFS_HOST_ACTIVE &&
	      hs->hs_ident_csum == shmfs_host_ident_csum(hs), "slot identity");

	/* Both slots live (b keeps beating from this thread): no room for c. */
	int dead_slot = a->coord.slot;
	a->coord.slot = -1; /* a dies without leaving: its slot stays claimed */
	uint64_t t0 = shmfs_mono_ns();
	int rc = shmfs_fs_open(&r, &o, &c, err, sizeof(err));
	CHECK(rc == 0 && c && c->coord.slot == dead_slot, "c reclaims a's slot: rc %d %s", rc, err);
	CHECK((shmfs_mono_ns() - t0) / 1000000 >= LEASE_MS, "only after a lease");
	shmfs_fs_close(c);
	CHECK(shmfs_host_slot(r.base, &b->sb, (uint32_t)dead_slot)->hs_state == SHMFS_HOST_FREE,
	      "clean leave frees the slot");
	shmfs_fs_close(a);
	shmfs_fs_close(b);
}

int main(void)
{
	rcu_register_thread();
	CHECK_RC(shmfs_region_open_mem(32ull << 20, 4096, &r), 0);
	test_contention();
	test_dead_holder();
	test_slots();
	shmfs_region_close(&r);
	rcu_unregister_thread();
	return check_done("test_lock");
}
