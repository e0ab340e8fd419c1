/* SPDX-License-Identifier: MIT */
/*
 * What the programs (mkfs.shmfs, fsck.shmfs, shmfs-dump) share on their
 * command lines: the --help/--version options, the version line, one error
 * line on stderr that names the program, sizes and numbers given as option
 * values, and the one REGION operand.  fs/cli.c has the why.
 *
 * Every function here that checks the command line returns a stop code, the
 * convention each program's parse_args already follows: 0 to go on,
 * SHMFS_CLI_STOP_OK to stop with exit status 0 (after --help or
 * --version), or a positive exit status to stop with, having printed one
 * line that says what was wrong.
 */
#ifndef SHMFS_CLI_H
#define SHMFS_CLI_H

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* CMake defines it from the project version; this is for builds without. */
#ifndef SHMFS_VERSION_STRING
#define SHMFS_VERSION_STRING "0.1.0"
#endif

#define SHMFS_CLI_STOP_OK (-1)

/* The options every program has: append to its getopt_long tables. */
#define SHMFS_CLI_SHORTOPTS "hV"
#define SHMFS_CLI_LONGOPTS                                 \
	{ "help",    no_argument, NULL, 'h' },             \
	{ "version", no_argument, NULL, 'V' }

struct shmfs_cli {
	const char *prog;      /* "mkfs.shmfs": starts every message */
	int usage_status;      /* exit status of a bad command line */
	void (*usage)(FILE *f); /* the --help text */
	/* "unexpected argument 'x' after REGION 'spec'": mkfs names the REGION
	 * it took, fsck and dump do not; kept so no message changes. */
	bool name_operand;
};

/* getopt_long, its own messages naming cli->prog rather than argv[0]'s path. */
int shmfs_cli_getopt(const struct shmfs_cli *cli, int argc, char **argv, const char *shortopts,
		     const struct option *longopts);

/* The `default:` of every getopt switch: -h, -V, or getopt's own error (it has
 * printed what was wrong; we add how to get help).  Returns a stop code. */
int shmfs_cli_option(const struct shmfs_cli *cli, int c);

/* "PROG (shmfs) VERSION, on-media format version N" on stdout. */
void shmfs_cli_version(const struct shmfs_cli *cli);

/* "PROG: message" on stderr, one line. */
void shmfs_cli_error(const struct shmfs_cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void shmfs_cli_verror(const struct shmfs_cli *cli, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* shmfs_cli_error, then cli->usage_status to return from parse_args. */
int shmfs_cli_usage_error(const struct shmfs_cli *cli, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The value arg of option opt ("--size") as a size with an optional K, M, G,
 * T or P suffix (shmfs_parse_size), or a decimal number in [min, max].
 * Returns a stop code; *out is set only on 0. */
int shmfs_cli_size(const struct shmfs_cli *cli, const char *opt, const char *arg, uint64_t *out);
int shmfs_cli_number(const struct shmfs_cli *cli, const char *opt, const char *arg, uint64_t min,
		     uint64_t max, uint64_t *out);

/* After the options, exactly one REGION operand: *spec points at it.
 * Returns a stop code. */
int shmfs_cli_region(const struct shmfs_cli *cli, int argc, char **argv, const char **spec);

#endif /* SHMFS_CLI_H */
