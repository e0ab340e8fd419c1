/* SPDX-License-Identifier: MIT */
/*
 * The FUSE daemon's private header: what its three files share.
 *
 *   fs/daemon_main.c   command line, setup and teardown, the session loop;
 *                      owns struct shmfs_daemon and the log output
 *   fs/daemon.c        the request handlers (libfuse's worker threads) and
 *                      their RCU registration
 *   fs/follower.c      the follower and heartbeat threads: replay of other
 *                      hosts' records, kernel invalidations, reapers
 *
 * Nothing here is seen outside the daemon; FUSE types stop at this layer.
 */
#ifndef SHMFS_DAEMON_H
#define SHMFS_DAEMON_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stdbool.h>
#include <stdint.h>

#include "shmfs/core.h"
#include "shmfs/log.h"
#include "shmfs/region.h"

/* Set up by main before the session starts; read-only afterwards, except
 * fs, which main clears once it has closed it. */
struct shmfs_daemon {
	struct shmfs_region region;
	struct shmfs_fs *fs;
	struct fuse_session *se;
	bool readonly;
	bool foreground;                /* log to stderr, not syslog */
	bool bounce;                    /* region pages cannot go to the kernel */
};

extern struct shmfs_daemon dmn;

/* A line for the terminal (foreground) or syslog (daemon_main.c). */
void shmfs_daemon_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* daemon.c: the request handlers, and RCU registration of the threads that
 * run them. */
extern const struct fuse_lowlevel_ops shmfs_daemon_ops;
/* Once, before any thread serves a request. */
void shmfs_daemon_rcu_init(void);
/* Register the calling thread for good (main's: with -s it serves
 * requests); it unregisters itself before it ends. */
void shmfs_daemon_rcu_register(void);

/* follower.c.  Replay callback for rejected records (shmfs_fs_opts). */
void shmfs_follower_on_reject(void *ctx, const struct shmfs_log_entry *e, const char *why);
/* After shmfs_fs_finish: hook replay, reap what the mount left over, start
 * the follower and heartbeat threads.  stop ends and joins them. */
void shmfs_follower_start(void);
void shmfs_follower_stop(void);
/* Replay to the log tail and wait (briefly) until the kernel has been told
 * what it must forget.  False if the follower did not get there in time. */
bool shmfs_follower_catch_up(void);
/* Have the follower drop the kernel's attributes and pages of ino. */
void shmfs_follower_inval_inode(uint64_t ino);
/* Before an open replies: drop the kernel's attributes of ino now if an
 * invalidation of it may have lost a race with a lookup. */
void shmfs_follower_retry_now(uint64_t ino);

#endif /* SHMFS_DAEMON_H */
