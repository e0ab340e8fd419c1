/* SPDX-License-Identifier: MIT */
/*
 * Releasing pending free space (shmfs_ns_reap).
 *
 * 1. A unit freed, reused (by a host that could already reuse it) and freed
 *    again is in two pending entries: releasing the older one must leave it
 *    pending for the newer one.
 * 2. Replaying a long log leaves one pending entry per freeing record, and
 *    the first reap after it releases them all at once: that must take time
 *    linear in the entries.  It took time quadratic in them, holding the
 *    replay lock -- seconds to minutes after mounting a region whose log
 *    freed tens of thousands of files, during which the host applied
 *    nothing and no host could reuse space it freed.
 */
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "check.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#define UNIT 4096u

static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];
static uint64_t seq;

/* Apply one record written by host slot 1 (never this host: nothing pinned). */
static int apply(struct shmfs_ns *ns, uint16_t type, uint32_t len)
{
	struct shmfs_log_rec h;
	char why[160];

	memset(&h, 0, sizeof(h));
	h.lr_seq = ++seq;
	h.lr_type = type;
	h.lr_len = len;
	h.lr_host = 1;
	int rc = shmfs_ns_apply(ns, &h, buf, false, why, sizeof(why));
	CHECK(rc == 0, "record %llu (type %u): %d %s", (unsigned long long)seq, type, rc, why);
	return rc;
}

/* A file named f<ino> holding data unit u, then unlinked: u is pending. */
static uint64_t file_at(struct shmfs_ns *ns, uint64_t ino, uint64_t u, bool unlink)
{
	char name[32];
	size_t n = (size_t)snprintf(name, sizeof(name), "f%llu", (unsigned long long)ino);

	apply(ns, SHMFS_LR_CREATE, shmfs_rec_create(buf, ino, SHMFS_ROOT_INO, S_IFREG | 0644, 0, 0,
						    0, name, n, NULL, 0));
	apply(ns, SHMFS_LR_EXTENT_MAP, shmfs_rec_extent(buf, ino, 0, u * UNIT, UNIT, 0));
	if (unlink)
		apply(ns, SHMFS_LR_UNLINK, shmfs_rec_dirent(buf, SHMFS_ROOT_INO, ino, name, n));
	return seq;
}

static bool pending(const struct shmfs_ns *ns, uint64_t u)
{
	return ns->alloc.pend[u / 64] >> (u % 64) & 1;
}

static struct shmfs_ns *new_ns(uint64_t units)
{
	struct shmfs_ns *ns = shmfs_ns_new(units * UNIT, UNIT, 0);

	CHECK(ns != NULL, "shmfs_ns_new");
	if (!ns)
		exit(check_done("test_reap"));
	ns->self_host = 0;
	seq = 0;
	apply(ns, SHMFS_LR_CREATE, shmfs_rec_create(buf, SHMFS_ROOT_INO, 0, S_IFDIR | 0755, 0, 0,
						    0, "", 0, NULL, 0));
	return ns;
}

int main(void)
{
	rcu_register_thread();

	/* 1. Freed, reused, freed again. */
	struct shmfs_ns *ns = new_ns(64);
	uint64_t first = file_at(ns, 2, 5, true);       /* unit 5 freed */
	file_at(ns, 3, 6, true);                        /* unit 6 freed */
	uint64_t again = file_at(ns, 4, 5, true);       /* unit 5 reused and freed again */
	CHECK(pending(ns, 5) && pending(ns, 6), "freed units are pending");
	shmfs_ns_reap(ns, first + 1, NULL, 0);
	CHECK(pending(ns, 5), "unit 5 released with its older entry, though freed again since");
	CHECK(pending(ns, 6), "unit 6 released before its record is safe");
	shmfs_ns_reap(ns, again, NULL, 0);
	CHECK(pending(ns, 5), "unit 5 released before the record that freed it again is safe");
	CHECK(!pending(ns, 6), "unit 6 still pending");
	shmfs_ns_reap(ns, again + 1, NULL, 0);
	CHECK(!pending(ns, 5) && ns->npending == 0, "everything released (%zu pending)",
	      ns->npending);
	CHECK(ns->alloc.npend == 0, "npend %llu", (unsigned long long)ns->alloc.npend);
	shmfs_ns_free(ns);

	/* 2. Many entries released at once. */
	const uint64_t n = 150000;
	ns = new_ns(n);
	for (uint64_t i = 0; i < n; i++)
		file_at(ns, i + 2, i, true);
	CHECK(ns->npending == n, "%zu pending entries", ns->npending);
	uint64_t t0 = shmfs_mono_ns();
	uint64_t released = shmfs_ns_reap(ns, seq + 1, NULL, 0);
	double secs = (double)(shmfs_mono_ns() - t0) / 1e9;
	printf("released %llu units of %llu pending entries in %.3f s\n",
	       (unsigned long long)released, (unsigned long long)n, secs);
	CHECK(released == n && ns->npending == 0 && ns->alloc.npend == 0,
	      "released %llu, %zu left", (unsigned long long)released, ns->npending);
	/* linear: milliseconds (a slow sanitizer build: well under a second);
	 * quadratic: 2e10 steps */
	CHECK(secs < 10.0, "releasing %llu entries took %.1f s", (unsigned long long)n, secs);
	shmfs_ns_free(ns);

	rcu_unregister_thread();
	return check_done("test_reap");
}
