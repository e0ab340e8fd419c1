/* SPDX-License-Identifier: MIT */
/*
 * Coordination between hosts on coherent shared memory.
 *
 * Host slots.  A host claims slot i by compare-and-exchange of hs_token
 * from the value it observed to a fresh random token, then writes its
 * identity and sets hs_state.  While mounted it bumps hs_heartbeat every
 * sb_heartbeat_ms.  Liveness is judged by the observer's own monotonic
 * clock -- "this counter has not moved for a whole lease" -- so hosts need
 * no synchronised clocks.  A slot whose heartbeat stood still for a lease
 * may be claimed by another host; the token CAS makes the takeover race
 * free.
 *
 * The metadata lock.  ctl_lock holds (owner slot + 1, generation).  It is
 * taken by CAS from a free word (owner 0) to (self, gen + 1).  A waiter
 * that sees the same lock word and the same owner heartbeat for a whole
 * lease breaks the lock by CAS to (self, gen + 1); the caller then seals
 * the log tail (fs/log.c) so that whatever the old holder half-wrote is
 * never replayed, and a holder that was merely stalled finds its publish
 * CAS failing.  Waiting spins, then yields, then sleeps: cross-host waits
 * cannot use futexes.
 */
#include "shmfs/coord.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

#include <urcu/arch.h>

#include "shmfs/ns.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

static struct shmfs_host *slot(const struct shmfs_coord *c, uint32_t i)
{
	return shmfs_host_slot(c->base, c->sb, i);
}

static uint64_t load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

uint64_t shmfs_host_ident_csum(const struct shmfs_host *h)
{
	struct shmfs_host c;

	memcpy(&c, h, sizeof(c));
	c.hs_heartbeat = c.hs_heartbeat_ns = c.hs_applied_seq = c.hs_pin_seq = 0;
	memset(c.hs_pins, 0, sizeof(c.hs_pins));
	c.hs_state = c.hs_flags = 0;
	c.hs_ident_csum = c.hs_pad1 = 0;
	return shmfs_hash(&c, sizeof(c), 0x486f7374);
}

static void read_boot_id(uint8_t out[16])
{
	char buf[64] = { 0 };
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

	memset(out, 0, 16);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n >= 36) {
		buf[36] = 0;
		shmfs_uuid_parse(buf, out);
	}
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int claim(struct shmfs_coord *c, uint32_t i, uint64_t old, const char *name, uint32_t state)
{
	struct shmfs_host *h = slot(c, i);
	struct shmfs_host id;
	struct utsname u;
	uint64_t token;

	do {
		if (shmfs_random(&token, sizeof(token)))
			return -EIO;
	} while (!token);
	if (!__atomic_compare_exchange_n(&h->hs_token, &old, token, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return -EAGAIN;

	memset(&id, 0, sizeof(id));
	id.hs_token = token;
	id.hs_mount_ns = shmfs_now_ns();
	id.hs_pid = (uint32_t)getpid();
	id.hs_state = SHMFS_HOST_JOINING;
	id.hs_flags = c->readonly ? SHMFS_HOST_F_READONLY : 0;
	if (name)
		snprintf(id.hs_name, sizeof(id.hs_name), "%s", name);
	if (uname(&u) == 0)
		snprintf(id.hs_hostname, sizeof(id.hs_hostname), "%.*s",
			 (int)sizeof(id.hs_hostname) - 1, u.nodename);
	if (!name)
		memcpy(id.hs_name, id.hs_hostname, sizeof(id.hs_name));
	read_boot_id(id.hs_boot_id);
	id.hs_ident_csum = shmfs_host_ident_csum(&id);

	/* Everything but the token (ours already) and the heartbeat (others
	 * watch it move), then the state. */
	memcpy((uint8_t *)h + 16, (uint8_t *)&id + 16, sizeof(id) - 16);
	__atomic_store_n(&h->hs_heartbeat, load(&h->hs_heartbeat) + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&h->hs_state, state, __ATOMIC_RELEASE);
	c->slot = (int)i;
	c->token = token;
	return 0;
}

int shmfs_host_join(struct shmfs_coord *c, const char *name, uint32_t state, char *err,
		    size_t errlen)
{
	uint32_t n = c->sb->sb_max_hosts;
	uint64_t *tok, *hb;

	/* Free slots first: never claimed, or left cleanly (leaving clears the
	 * token).  A slot with a token is someone's, even if its state still
	 * reads FREE: that is a claim in progress, not a free slot. */
	for (uint32_t i = 0; i < n; i++) {
		struct shmfs_host *h = slot(c, i);
		if (load(&h->hs_token) == 0 && claim(c, i, 0, name, state) == 0)
			return 0;
	}
	/* Then slots whose heartbeat stands still for a lease. */
	tok = calloc(n, sizeof(*tok));
	hb = calloc(n, sizeof(*hb));
	if (!tok || !hb) {
		free(tok);
		free(hb);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		tok[i] = load(&slot(c, i)->hs_token);
		hb[i] = load(&slot(c, i)->hs_heartbeat);
	}
	sleep_ns(c->lease_ns);
	for (uint32_t i = 0; i < n; i++) {
		if (load(&slot(c, i)->hs_heartbeat) == hb[i] &&
		    claim(c, i, tok[i], name, state) == 0) {
			free(tok);
			free(hb);
			return 0;
		}
	}
	free(tok);
	free(hb);
	shmfs_errf(err, errlen, "all %u host slots are in use by live hosts", n);
	return -EUSERS;
}

void shmfs_host_restamp(struct shmfs_coord *c)
{
	if (c->slot < 0)
		return;
	struct shmfs_host *h = slot(c, (uint32_t)c->slot);
	if (load(&h->hs_token) != c->token)
		return;
	h->hs_pid = (uint32_t)getpid();
	__atomic_store_n(&h->hs_ident_csum, shmfs_host_ident_csum(h), __ATOMIC_RELEASE);
}

bool shmfs_host_lost(const struct shmfs_coord *c)
{
	return c->slot >= 0 && load(&slot(c, (uint32_t)c->slot)->hs_token) != c->token;
}

void shmfs_host_beat(struct shmfs_coord *c)
{
	if (c->slot < 0)
		return;
	struct shmfs_host *h = slot(c, (uint32_t)c->slot);
	/* Only beat a slot that is still ours: a host whose lease expired
	 * and whose slot was taken over must not revive it. */
	if (load(&h->hs_token) != c->token)
		return;
	__atomic_store_n(&h->hs_heartbeat_ns, shmfs_now_ns(), __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->hs_heartbeat, 1, __ATOMIC_RELEASE);
}

void shmfs_host_leave(struct shmfs_coord *c)
{
	if (c->slot < 0)
		return;
	struct shmfs_host *h = slot(c, (uint32_t)c->slot);
	uint64_t tok = c->token;

	if (load(&h->hs_token) == tok) {
		/* a free slot holds nothing but zeros (fsck checks) */
		for (uint32_t k = 0; k < SHMFS_HOST_PINS; k++)
			__atomic_store_n(&h->hs_pins[k], 0, __ATOMIC_RELEASE);
		__atomic_store_n(&h->hs_pin_seq, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&h->hs_state, SHMFS_HOST_FREE, __ATOMIC_RELEASE);
		__atomic_compare_exchange_n(&h->hs_token, &tok, 0, false, __ATOMIC_ACQ_REL,
					    __ATOMIC_RELAXED);
	}
	c->slot = -1;
	c->token = 0;
}

bool shmfs_host_live_locked(struct shmfs_coord *c, uint32_t i)
{
	struct shmfs_host *h = slot(c, i);
	struct shmfs_coord_watch *w = &c->watch[i];
	uint64_t tok = load(&h->hs_token), beat = load(&h->hs_heartbeat), now = shmfs_mono_ns();
	uint32_t state = __atomic_load_n(&h->hs_state, __ATOMIC_ACQUIRE);

	if ((int)i == c->slot)
		return true;
	if (!tok || state == SHMFS_HOST_FREE)
		return false;
	if (w->token != tok || w->beat != beat) {
		*w = (struct shmfs_coord_watch){ tok, beat, now };
		return true;
	}
	return now - w->since < c->lease_ns; /* silent for a lease: dead */
}

uint64_t shmfs_hosts_safe_seq(struct shmfs_coord *c, uint64_t next_seq)
{
	uint64_t safe = next_seq;

	c->npins = 0;
	for (uint32_t i = 0; i < c->sb->sb_max_hosts; i++) {
		if ((int)i == c->slot || !shmfs_host_live_locked(c, i))
			continue;
		struct shmfs_host *h = slot(c, i);
		/* hs_pin_seq before the list: a seq moves from the one to the
		 * other by a store into the list, then a store that raises
		 * hs_pin_seq (see publish_progress) */
		uint64_t applied = load(&h->hs_applied_seq), pin = load(&h->hs_pin_seq);
		uint64_t s = applied + 1;
		if (pin && pin < s)
			s = pin;
		if (s < safe)
			safe = s;
		for (uint32_t k = 0; k < SHMFS_HOST_PINS; k++) {
			uint64_t p = load(&h->hs_pins[k]);
			if (p && p < s)
				c->pins[c->npins++] = p;
		}
	}
	return safe;
}

/* The heartbeat of a lock owner, or 0 for an owner field that names no slot. */
static uint64_t owner_beat(const struct shmfs_coord *c, uint32_t owner)
{
	if (owner == 0 || owner > c->sb->sb_max_hosts)
		return 0;
	return load(&slot(c, owner - 1)->hs_heartbeat);
}

int shmfs_lock_acquire(struct shmfs_coord *c, bool *broke)
{
	uint64_t *word = &c->ctl->ctl_lock;
	uint64_t seen = load(word), seen_beat = owner_beat(c, shmfs_lock_owner(seen));
	uint64_t since = shmfs_mono_ns();
	uint32_t self = (uint32_t)c->slot + 1;
	unsigned spins = 0;

	*broke = false;
	if (c->slot < 0 || c->readonly)
		return -EROFS;
	if (shmfs_host_lost(c))
		return -ESTALE;
	shmfs_host_beat(c);
	for (;;) {
		uint64_t v = load(word);
		uint32_t owner = shmfs_lock_owner(v);
		uint64_t mine = (uint64_t)self << SHMFS_LOCK_OWNER_SHIFT |
				((shmfs_lock_gen(v) + 1) & SHMFS_LOCK_GEN_MASK);
		bool take = owner == 0;

		if (!take) {
			uint64_t beat = owner_beat(c, owner);
			if (owner == self) {
				/* Our slot holds it, but not us: an earlier life of this
				 * slot died holding it. */
				take = *broke = true;
			} else if (v != seen || beat != seen_beat) {
				seen = v;
				seen_beat = beat;
				since = shmfs_mono_ns();
			} else if (shmfs_mono_ns() - since >= c->lease_ns) {
				take = *broke = true;
			}
		}
		if (take && shmfs_host_lost(c))
			return -ESTALE;
		if (take) {
			if (__atomic_compare_exchange_n(word, &v, mine, false, __ATOMIC_ACQ_REL,
							__ATOMIC_RELAXED)) {
				c->lock_word = mine;
				c->locked = true;
				return 0;
			}
			*broke = false;
			continue;
		}
		if (++spins < 64)
			caa_cpu_relax();
		else if (spins < 256)
			sched_yield();
		else
			sleep_ns(spins < 1024 ? 20000 : 200000);
	}
}

bool shmfs_lock_held(const struct shmfs_coord *c)
{
	return c->locked && load(&c->ctl->ctl_lock) == c->lock_word;
}

int shmfs_lock_release(struct shmfs_coord *c)
{
	uint64_t mine = c->lock_word;
	uint64_t free_word = shmfs_lock_gen(mine);

	if (!c->locked)
		return 0;
	c->locked = false;
	if (!__atomic_compare_exchange_n(&c->ctl->ctl_lock, &mine, free_word, false,
					 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		return -ESTALE;
	return 0;
}

bool shmfs_lock_names_us(const struct shmfs_coord *c)
{
	return c->slot >= 0 && shmfs_lock_owner(load(&c->ctl->ctl_lock)) == (uint32_t)c->slot + 1;
}

/* ---- what this host publishes, and the reuse that follows from it ------ */

/*
 * The pins first, so that nobody sees the new position without them.  A
 * pinned record stays in its hs_pins entry while it is pinned, or is
 * covered by hs_pin_seq; one moves from hs_pin_seq into a freed entry by a
 * store into the entry, then a store that raises hs_pin_seq: a reader that
 * loads hs_pin_seq, then the entries, sees it in one or the other.
 * Records newly pinned are above hs_applied_seq, stored last.
 */
void shmfs_coord_publish_locked(struct shmfs_coord *c, struct shmfs_ns *ns, uint64_t next_seq)
{
	/* A slot taken over (or overwritten) is no longer ours to write. */
	if (c->slot < 0 || shmfs_host_lost(c))
		return;
	struct shmfs_host *h = slot(c, (uint32_t)c->slot);
	uint64_t old[SHMFS_HOST_PINS];
	memcpy(old, c->pub_pins, sizeof(old));
	uint64_t rest = shmfs_ns_pins(ns, c->pub_pins, SHMFS_HOST_PINS);
	for (uint32_t k = 0; k < SHMFS_HOST_PINS; k++)
		if (c->pub_pins[k] != old[k])
			__atomic_store_n(&h->hs_pins[k], c->pub_pins[k], __ATOMIC_RELEASE);
	__atomic_store_n(&h->hs_pin_seq, rest, __ATOMIC_RELEASE);
	__atomic_store_n(&h->hs_applied_seq, next_seq - 1, __ATOMIC_RELEASE);
}

uint64_t shmfs_coord_reap_locked(struct shmfs_coord *c, struct shmfs_ns *ns, uint64_t next_seq)
{
	uint64_t safe = shmfs_hosts_safe_seq(c, next_seq);

	return shmfs_ns_reap(ns, safe, c->pins, c->npins);
}

enum shmfs_coord_pending shmfs_coord_pending_locked(struct shmfs_coord *c, struct shmfs_ns *ns,
						    uint64_t next_seq)
{
	uint64_t applied = next_seq;

	shmfs_coord_reap_locked(c, ns, next_seq);
	if (ns->alloc.nfree > ns->alloc.npend)
		return SHMFS_PENDING_READY;
	for (uint32_t i = 0; i < c->sb->sb_max_hosts; i++) {
		if ((int)i == c->slot || !shmfs_host_live_locked(c, i))
			continue;
		struct shmfs_host *h = slot(c, i);
		applied = SHMFS_MIN(applied, load(&h->hs_applied_seq) + 1);
	}
	for (size_t k = 0; k < ns->npending; k++)
		if (ns->pending[k].seq >= applied)
			return SHMFS_PENDING_WAIT;
	return SHMFS_PENDING_NONE;
}

int shmfs_coord_init(struct shmfs_coord *c, uint8_t *base, const struct shmfs_super *sb,
		     bool readonly, uint32_t lease_ms)
{
	*c = (struct shmfs_coord){
		.base = base, .sb = sb, .readonly = readonly, .slot = -1,
		.ctl = (struct shmfs_ctl *)(base + sb->sb_ctl_off),
		.lease_ns = (uint64_t)(lease_ms ? lease_ms : sb->sb_lease_ms) * 1000000ull,
	};
	c->watch = calloc(sb->sb_max_hosts, sizeof(*c->watch));
	c->pins = calloc((size_t)sb->sb_max_hosts * SHMFS_HOST_PINS, sizeof(*c->pins));
	if (!c->watch || !c->pins) {
		shmfs_coord_fini(c);
		return -ENOMEM;
	}
	return 0;
}

void shmfs_coord_fini(struct shmfs_coord *c)
{
	if (!c->sb)
		return; /* never set up */
	shmfs_host_leave(c);
	free(c->watch);
	free(c->pins);
	c->watch = NULL;
	c->pins = NULL;
}
