/* SPDX-License-Identifier: MIT */
/*
 * shmfs: the FUSE daemon's program (libfuse3 low-level API, multithreaded).
 *
 *   shmfs REGION MOUNTPOINT [-o opts]     mount.fuse3 / fstab: fuse.shmfs
 *
 * Setup, in this order, undone in reverse by the goto ladder in main():
 *
 *   1. parse the command line (ours, then libfuse's)
 *   2. open the region and read its superblock
 *   3. join the host table (shmfs_fs_prepare)
 *   4. create the session, install signal handlers, mount
 *   5. daemonize (fork, unless -f)
 *   6. build the namespace by replay (shmfs_fs_finish)
 *   7. start the follower and heartbeat threads (fs/follower.c)
 *   8. run the session loop until unmount or a signal, then stop them
 *
 * Everything a user can get wrong (options, region, superblock, a host
 * table with no free slot) is checked in 1-3, on the terminal, before the
 * mount and the fork.  No thread may exist before 5: liburcu's and the hash
 * tables' helper threads would not survive fuse_daemonize, so the
 * namespace is built after it.
 */
#include "daemon.h"

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <urcu.h>

#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/super.h"

struct shmfs_daemon dmn;

void shmfs_daemon_log(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (dmn.foreground) {
		fprintf(stderr, "shmfs: ");
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}

/* ---- command line ---------------------------------------------------------- */

struct conf {
	char *region;
	char *host;
	int ro;
	int nodefperm;
};

#define CONF_OPT(t, p) { t, offsetof(struct conf, p), 1 }
static const struct fuse_opt conf_opts[] = {
	CONF_OPT("host=%s", host),
	CONF_OPT("ro", ro),
	{ "rw", offsetof(struct conf, ro), 0 }, /* the last of ro and rw wins, as in the kernel */
	CONF_OPT("nodefault_permissions", nodefperm),
	FUSE_OPT_KEY("ro", FUSE_OPT_KEY_KEEP),
	FUSE_OPT_KEY("rw", FUSE_OPT_KEY_KEEP),
	FUSE_OPT_END
};

static int conf_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct conf *c = data;
	(void)out;

	if (key == FUSE_OPT_KEY_NONOPT && !c->region) {
		c->region = strdup(arg);
		return 0;
	}
	return 1;
}

/* host=NAME goes into the host table, dumps and logs: no spaces or
 * control characters. */
static bool good_host_name(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n >= SHMFS_HOST_NAME_MAX)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static void usage(const char *prog)
{
	printf("usage: %s [options] REGION MOUNTPOINT\n\n"
	       "Mount the shmfs filesystem in REGION (a devdax device, PCI resource, UIO\n"
	       "device or file; PATH[,offset=SIZE][,length=SIZE]) at MOUNTPOINT.\n\n"
	       "shmfs options:\n"
	       "    -o host=NAME           name of this host in the host table\n"
	       "    -o ro                  read-only mount\n"
	       "    -o allow_other         let other users access the mount\n"
	       "    -o nodefault_permissions  do not let the kernel check mode bits\n\n",
	       prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/* What main parsed; freed at its end. */
struct cmdline {
	struct fuse_args args;
	struct fuse_cmdline_opts opts;
	struct conf conf;
};

/* After parsing: answer --help and --version, refuse what cannot mount,
 * and add the mount options we always pass.  Returns the exit status when
 * main should end here, -1 to go on. */
static int check_cmdline(struct cmdline *cl, const char *prog)
{
	if (cl->opts.show_help) {
		usage(prog);
		return 0;
	}
	if (cl->opts.show_version) {
		printf("shmfs %s\n", SHMFS_VERSION_STRING);
		fuse_lowlevel_version();
		return 0;
	}
	if (!cl->conf.region || !cl->opts.mountpoint) {
		fprintf(stderr, "shmfs: usage: shmfs [options] REGION MOUNTPOINT (try --help)\n");
		return 2;
	}
	if (cl->conf.host && !good_host_name(cl->conf.host)) {
		fprintf(stderr, "shmfs: host name must be 1 to %u bytes, without spaces or control "
			"characters\n", SHMFS_HOST_NAME_MAX - 1);
		return 2;
	}
	if (!cl->conf.nodefperm)
		fuse_opt_add_arg(&cl->args, "-odefault_permissions");
	fuse_opt_add_arg(&cl->args, "-osubtype=shmfs");

	char fsname[PATH_MAX + 16];
	snprintf(fsname, sizeof(fsname), "-ofsname=%s", cl->conf.region);
	/* commas would split the option: keep the path only */
	char *c = strchr(fsname + 9, ',');
	if (c)
		*c = 0;
	fuse_opt_add_arg(&cl->args, fsname);
	return -1;
}

/* ---- setup steps ----------------------------------------------------------- */

/* Open the region and check its superblock.  0 or -1 (said on stderr). */
static int open_region(const char *spec)
{
	struct shmfs_region_opts ropts = { .readonly = dmn.readonly };
	struct shmfs_super sb;
	char err[512], other[256];

	if (shmfs_region_open(spec, &ropts, &dmn.region, err, sizeof(err))) {
		fprintf(stderr, "shmfs: %s\n", err);
		return -1;
	}
	if (shmfs_super_read(&dmn.region, &sb, NULL, err, sizeof(err), other, sizeof(other))) {
		fprintf(stderr, "shmfs: %s: %s\n", spec, err);
		shmfs_region_close(&dmn.region);
		return -1;
	}
	if (other[0])
		fprintf(stderr, "shmfs: %s: warning: %s (run fsck.shmfs)\n", spec, other);
	dmn.bounce = dmn.region.kind == SHMFS_REGION_PCI || dmn.region.kind == SHMFS_REGION_UIO;
	return 0;
}

/* Join the host table now, so that a host that cannot join never mounts;
 * the namespace (and its threads) come after the fork. */
static int join(const struct conf *conf)
{
	struct shmfs_fs_opts fopts = { .readonly = dmn.readonly, .join = true,
				       .host_name = conf->host,
				       .on_reject = shmfs_follower_on_reject };
	char err[512];

	if (shmfs_fs_prepare(&dmn.region, &fopts, &dmn.fs, err, sizeof(err))) {
		fprintf(stderr, "shmfs: %s: %s\n", conf->region, err);
		return -1;
	}
	return 0;
}

/* Raise the mount's read-ahead to 1 MiB (the kernel's default for FUSE is
 * 128 KiB): sequential reads and mmap faults then come in 1 MiB requests.
 * The device number comes from mountinfo, not stat(): a stat of our own
 * mount point would be a request to ourselves and could make an unmount
 * that races with it fail with EBUSY. */
static void set_readahead(const char *mountpoint)
{
	char line[4096], real[PATH_MAX], path[128];
	unsigned maj, min;
	bool found = false;
	FILE *f;

	if (!realpath(mountpoint, real) || !(f = fopen("/proc/self/mountinfo", "r")))
		return;
	while (!found && fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX];
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) == 3 &&
		    !strcmp(mnt, real) && strstr(line, " - fuse.shmfs "))
			found = true;
	}
	fclose(f);
	if (!found)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	f = fopen(path, "w");
	if (f) {
		fputs("1024", f);
		fclose(f);
	}
}

/* After the fork: this host's slot is stamped with the daemon's own pid,
 * then replay builds the namespace.  0 or -1 (logged). */
static int build_namespace(const char *spec)
{
	char err[512];

	shmfs_host_restamp(&dmn.fs->coord);
	shmfs_fs_heartbeat(dmn.fs);
	if (shmfs_fs_finish(dmn.fs, err, sizeof(err))) {
		shmfs_daemon_log(LOG_ERR, "%s: %s", spec, err);
		return -1;
	}
	return 0;
}

/* Serve requests until unmount or a signal; returns main's exit status. */
static int session_loop(const struct fuse_cmdline_opts *opts)
{
	struct fuse_loop_config *lc;
	int ret;

	if (opts->singlethread)
		return fuse_session_loop(dmn.se) < 0;
	lc = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(lc, (unsigned)opts->clone_fd);
	/* libfuse's "unset" is UINT_MAX */
	if (opts->max_threads && opts->max_threads != UINT_MAX)
		fuse_loop_cfg_set_max_threads(lc, opts->max_threads);
	if (opts->max_idle_threads != UINT_MAX)
		fuse_loop_cfg_set_idle_threads(lc, opts->max_idle_threads);
	/* libfuse returns the signal that ended the loop: a clean stop */
	ret = fuse_session_loop_mt(dmn.se, lc) < 0;
	fuse_loop_cfg_destroy(lc);
	return ret;
}

int main(int argc, char **argv)
{
	struct cmdline cl = { .args = FUSE_ARGS_INIT(argc, argv) };
	int ret;

	openlog("shmfs", LOG_PID, LOG_DAEMON);
	if (fuse_opt_parse(&cl.args, &cl.conf, conf_opts, conf_proc) == -1)
		return 2;
	if (fuse_parse_cmdline(&cl.args, &cl.opts) != 0) {
		fprintf(stderr, "shmfs: bad command line (try --help)\n");
		return 2;
	}
	ret = check_cmdline(&cl, argv[0]);
	if (ret >= 0)
		goto out_args;
	ret = 1;
	dmn.readonly = cl.conf.ro;
	dmn.foreground = cl.opts.foreground;
	shmfs_daemon_rcu_init();

	if (open_region(cl.conf.region))
		goto out_args;
	if (join(&cl.conf))
		goto out_region;
	dmn.se = fuse_session_new(&cl.args, &shmfs_daemon_ops, sizeof(shmfs_daemon_ops), &dmn);
	if (!dmn.se)
		goto out_fs;
	if (fuse_set_signal_handlers(dmn.se) != 0)
		goto out_session;
	if (fuse_session_mount(dmn.se, cl.opts.mountpoint) != 0)
		goto out_signals;
	set_readahead(cl.opts.mountpoint);
	if (fuse_daemonize(cl.opts.foreground) != 0)
		goto out_unmount;

	shmfs_daemon_rcu_register(); /* with -s, requests are served on this thread */
	if (build_namespace(cl.conf.region))
		goto out_rcu;
	shmfs_follower_start();
	ret = session_loop(&cl.opts);
	shmfs_follower_stop();
out_rcu:
	shmfs_fs_close(dmn.fs);
	dmn.fs = NULL;
	rcu_unregister_thread();
out_unmount:
	fuse_session_unmount(dmn.se);
out_signals:
	fuse_remove_signal_handlers(dmn.se);
out_session:
	fuse_session_destroy(dmn.se);
out_fs:
	shmfs_fs_close(dmn.fs); /* before the fork or on failure: leave the table */
out_region:
	shmfs_region_close(&dmn.region);
out_args:
	free(cl.opts.mountpoint);
	free(cl.conf.region);
	free(cl.conf.host);
	fuse_opt_free_args(&cl.args);
	return ret;
}
