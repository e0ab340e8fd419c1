/* SPDX-License-Identifier: MIT */
/*
 * A main() for the fuzz targets where libFuzzer is not available (gcc):
 *
 *   fuzz_TARGET [-runs=N] [-seed=S] [-max_len=N] [-timeout=SECONDS]
 *               [-close_fd_mask=M] PATH...
 *
 * runs every file given, and every file of every directory given, through
 * LLVMFuzzerTestOneInput(), then N more inputs made from them by
 * deterministic pseudo-random mutations (bit flips, interesting values at
 * aligned offsets, inserted, erased and copied ranges, splices of two
 * inputs, a new flags byte).  The same seed gives the same inputs.
 *
 * An input that crashes, aborts (a broken invariant, a sanitizer report)
 * or runs longer than the timeout is written to ./crash-TARGET-HASH and
 * its path printed; the exit status is then nonzero.  -close_fd_mask=1
 * silences stdout, 2 stderr (failures are still reported).  Run a single file to
 * reproduce it.  The arguments are a subset of libFuzzer's, so ctest and
 * people can call both builds alike.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "shmfs/util.h"

/* Sanitizer hooks, when the build has them. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));
void __sanitizer_set_report_fd(void *fd) __attribute__((weak));

struct input {
	uint8_t *p;
	size_t n;
	char *name;
};

static struct input *corpus;
static size_t ncorpus, capcorpus;
static const char *target = "fuzz";
static const uint8_t *cur;      /* the input being run */
static size_t curlen;
static const char *curname;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- reporting (async-signal-safe) ------------------------------------------ */

static void say(const char *s)
{
	ssize_t r = write(fuzz_report_fd, s, strlen(s));
	(void)r;
}

static void hex64(uint64_t v, char *out)
{
	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = "0123456789abcdef"[v & 15];
	out[16] = 0;
}

static void save_current(const char *why)
{
	char path[256], h[17];
	uint64_t x = 0xcbf29ce484222325ull;

	if (!cur)
		return;
	for (size_t i = 0; i < curlen; i++)
		x = (x ^ cur[i]) * 0x100000001b3ull;
	hex64(x, h);
	size_t o = 0;
	const char *parts[] = { "crash-", target, "-", h };
	for (size_t k = 0; k < 4; k++)
		for (const char *s = parts[k]; *s && o < sizeof(path) - 1; s++)
			path[o++] = *s;
	path[o] = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		for (size_t done = 0; done < curlen;) {
			ssize_t w = write(fd, cur + done, curlen - done);
			if (w <= 0)
				break;
			done += (size_t)w;
		}
		close(fd);
	}
	say("\n==fuzz== ");
	say(why);
	say(" on input ");
	say(curname ? curname : "(mutation)");
	say("\n==fuzz== reproducer written to ");
	say(path);
	say("\n");
	cur = NULL;
}

static void on_signal(int sig)
{
	save_current(sig == SIGALRM ? "timeout" : sig == SIGABRT ? "abort" : "crash");
	signal(sig, SIG_DFL);
	if (sig == SIGALRM)
		_exit(70);
	raise(sig);
}

static void on_death(void)
{
	save_current("sanitizer report");
}

/* ---- corpus ---------------------------------------------------------------------- */

static void add_file(const char *path, size_t max_len)
{
	FILE *f = fopen(path, "rb");
	struct input in = { .name = strdup(path) };

	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", target, path, strerror(errno));
		exit(2);
	}
	struct stat st;
	size_t want = fstat(fileno(f), &st) ? max_len : SHMFS_MIN((size_t)st.st_size, max_len);
	in.p = malloc(want ? want : 1);
	if (!in.p || !in.name) {
		fprintf(stderr, "%s: out of memory\n", target);
		exit(2);
	}
	in.n = fread(in.p, 1, want, f);
	fclose(f);
	if (ncorpus == capcorpus) {
		capcorpus = capcorpus ? capcorpus * 2 : 64;
		corpus = realloc(corpus, capcorpus * sizeof(*corpus));
		if (!corpus) {
			fprintf(stderr, "%s: out of memory\n", target);
			exit(2);
		}
	}
	corpus[ncorpus++] = in;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_path(const char *path, size_t max_len)
{
	struct stat st;

	if (stat(path, &st)) {
		fprintf(stderr, "%s: %s: %s\n", target, path, strerror(errno));
		exit(2);
	}
	if (!S_ISDIR(st.st_mode)) {
		add_file(path, max_len);
		return;
	}
	DIR *d = opendir(path);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				exit(2);
		}
		if (asprintf(&names[n++], "%s/%s", path, e->d_name) < 0)
			exit(2);
	}
	if (d)
		closedir(d);
	qsort(names, n, sizeof(*names), name_cmp); /* the same order everywhere */
	for (size_t i = 0; i < n; i++) {
		add_file(names[i], max_len);
		free(names[i]);
	}
	free(names);
}

/* ---- mutations --------------------------------------------------------------------- */

static size_t pick_off(size_t n)
{
	size_t o = (size_t)(rnd() % n);

	return rnd() % 2 ? o & ~(size_t)7 : o; /* fields are aligned: often hit a start */
}

static size_t mutate(uint8_t *d, size_t n, size_t cap)
{
	static const uint64_t vals[] = { 0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000,
					 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff,
					 0x100000000ull, 0x4000000000000000ull, 0x7fffffffffffffffull,
					 0x8000000000000000ull, ~0ull, 40, 48, 255, 256, 4096, 65536,
					 69632, 131072, 262144, 1048576 };
	int k = 1 + (int)(rnd() % 4);

	while (k-- > 0) {
		size_t o, l;
		switch (rnd() % 11) {
		case 0: /* flip a bit */
			if (n)
				d[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1: /* a random byte */
			if (n)
				d[rnd() % n] = (uint8_t)rnd();
			break;
		case 2: case 3: { /* an interesting value of 1, 2, 4 or 8 bytes */
			size_t w = (size_t)1 << (rnd() % 4);
			uint64_t v = vals[rnd() % (sizeof(vals) / sizeof(vals[0]))];
			if (rnd() % 4 == 0)
				v = -v;
			if (n < w)
				break;
			o = pick_off(n - w + 1);
			memcpy(d + o, &v, w);
			break;
		}
		case 4: { /* add a small delta to an aligned word */
			uint64_t v;
			if (n < 8)
				break;
			o = (size_t)(rnd() % (n - 7)) & ~(size_t)7;
			memcpy(&v, d + o, 8);
			v += (uint64_t)(int64_t)((int)(rnd() % 33) - 16);
			memcpy(d + o, &v, 8);
			break;
		}
		case 5: /* copy a range over another */
			if (n < 2)
				break;
			l = 1 + (size_t)(rnd() % SHMFS_MIN(n / 2, (size_t)512));
			o = (size_t)(rnd() % (n - l + 1));
			memmove(d + (size_t)(rnd() % (n - l + 1)), d + o, l);
			break;
		case 6: /* insert bytes */
			l = 1 + (size_t)(rnd() % 64);
			if (n + l > cap)
				break;
			o = n ? pick_off(n) : 0;
			memmove(d + o + l, d + o, n - o);
			for (size_t i = 0; i < l; i++)
				d[o + i] = rnd() % 2 ? 0 : (uint8_t)rnd();
			n += l;
			break;
		case 7: /* erase bytes */
			if (n < 2)
				break;
			l = 1 + (size_t)(rnd() % SHMFS_MIN(n - 1, (size_t)64));
			o = (size_t)(rnd() % (n - l + 1));
			memmove(d + o, d + o + l, n - o - l);
			n -= l;
			break;
		case 8: { /* splice in a range of another input at the same offset */
			const struct input *b = &corpus[rnd() % ncorpus];
			if (!b->n || !n)
				break;
			o = (size_t)(rnd() % SHMFS_MIN(n, b->n));
			l = 1 + (size_t)(rnd() % SHMFS_MIN(b->n - o, (size_t)4096));
			if (o + l > cap)
				l = cap - o;
			memcpy(d + o, b->p + o, l);
			n = SHMFS_MAX(n, o + l);
			break;
		}
		case 9: /* the flags byte */
			if (n)
				d[0] = (uint8_t)rnd();
			break;
		case 10: /* cut the end off */
			if (n > 2)
				n -= (size_t)(rnd() % (n - 2));
			break;
		}
	}
	return n;
}

/* ---- main ---------------------------------------------------------------------------- */

static void run(const uint8_t *p, size_t n, const char *name, unsigned timeout)
{
	cur = p;
	curlen = n;
	curname = name;
	alarm(timeout);
	LLVMFuzzerTestOneInput(p, n);
	alarm(0);
	cur = NULL;
}

int main(int argc, char **argv)
{
	uint64_t runs = 0, seed = 1;
	size_t max_len = FUZZ_REGION + FUZZ_HDR;
	unsigned timeout = 30, close_mask = 0;
	int npaths = 0;

	target = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	for (int i = 1; i < argc; i++) {
		if (!strncmp(argv[i], "-runs=", 6))
			runs = strtoull(argv[i] + 6, NULL, 0);
		else if (!strncmp(argv[i], "-seed=", 6))
			seed = strtoull(argv[i] + 6, NULL, 0);
		else if (!strncmp(argv[i], "-max_len=", 9))
			max_len = (size_t)strtoull(argv[i] + 9, NULL, 0);
		else if (!strncmp(argv[i], "-timeout=", 9))
			timeout = (unsigned)strtoul(argv[i] + 9, NULL, 0);
		else if (!strncmp(argv[i], "-close_fd_mask=", 15))
			close_mask = (unsigned)strtoul(argv[i] + 15, NULL, 0);
		else if (argv[i][0] == '-')
			fprintf(stderr, "%s: ignoring %s (this is not libFuzzer)\n", target, argv[i]);
		else
			npaths++;
	}
	if (!npaths || !max_len) {
		fprintf(stderr, "usage: %s [-runs=N] [-seed=S] [-max_len=N] [-timeout=S] "
			"[-close_fd_mask=M] PATH...\n", target);
		return 2;
	}
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++)
		if (argv[i][0] != '-')
			add_path(argv[i], max_len);

	/* With a sanitizer, it reports faults (and then calls on_death). */
	if (__sanitizer_set_death_callback) {
		__sanitizer_set_death_callback(on_death);
	} else {
		signal(SIGSEGV, on_signal);
		signal(SIGBUS, on_signal);
		signal(SIGFPE, on_signal);
		signal(SIGILL, on_signal);
	}
	signal(SIGABRT, on_signal);
	signal(SIGALRM, on_signal);
	/* The library's programs (fsck) talk; failures are told on a copy of
	 * stderr. */
	if (close_mask & 2) {
		fuzz_report_fd = dup(STDERR_FILENO);
		if (fuzz_report_fd < 0)
			return 2;
		if (__sanitizer_set_report_fd)
			__sanitizer_set_report_fd((void *)(intptr_t)fuzz_report_fd);
		if (!freopen("/dev/null", "w", stderr))
			return 2;
	}
	if ((close_mask & 1) && !freopen("/dev/null", "w", stdout))
		return 2;

	for (size_t i = 0; i < ncorpus; i++)
		run(corpus[i].p, corpus[i].n, corpus[i].name, timeout);
	if (!ncorpus) {
		fprintf(stderr, "%s: no inputs\n", target);
		return 2;
	}
	rng ^= seed * 0x2545f4914f6cdd1dull;
	uint8_t *buf = malloc(max_len);
	if (!buf)
		return 2;
	for (uint64_t r = 0; r < runs; r++) {
		const struct input *in = &corpus[rnd() % ncorpus];
		size_t n = SHMFS_MIN(in->n, max_len);
		memcpy(buf, in->p, n);
		n = mutate(buf, n, max_len);
		run(buf, n, NULL, timeout);
	}
	dprintf(fuzz_report_fd, "%s: %zu inputs and %" PRIu64 " mutations of them: ok\n", target,
		ncorpus, runs);
	free(buf);
	for (size_t i = 0; i < ncorpus; i++) {
		free(corpus[i].p);
		free(corpus[i].name);
	}
	free(corpus);
	return 0;
}
