/* SPDX-License-Identifier: MIT */
/*
 * The command-line conventions of the programs, kept in one place so that
 * mkfs.shmfs, fsck.shmfs and shmfs-dump cannot drift apart.
 *
 * Errors.  A bad command line costs the user one line on stderr, "PROG:
 * what was wrong", and the program's usage status (2 for mkfs and dump, 16
 * for fsck, as fsck(8) wants); nothing is touched before the whole line has
 * been checked.  The tests hold every program to exactly one error line.
 *
 * Stop codes.  Functions that check the command line return 0 to go on,
 * SHMFS_CLI_STOP_OK for "done, exit 0" (--help, --version) or the exit
 * status to stop with.  That is not the core's 0-or-negative-errno rule:
 * this is the top of the stack, where exit statuses are the result, and a
 * parse_args can pass the code straight up to main.
 *
 * Numbers are parsed strictly: no sign, no trailing junk, overflow is an
 * error (shmfs_parse_size checks every multiplication).
 */
#include "shmfs/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "shmfs/format.h"
#include "shmfs/util.h"

int shmfs_cli_getopt(const struct shmfs_cli *cli, int argc, char **argv, const char *shortopts,
		     const struct option *longopts)
{
	argv[0] = (char *)cli->prog;
	return getopt_long(argc, argv, shortopts, longopts, NULL);
}

void shmfs_cli_version(const struct shmfs_cli *cli)
{
	printf("%s (shmfs) %s, on-media format version %u\n", cli->prog, SHMFS_VERSION_STRING,
	       SHMFS_VERSION);
}

int shmfs_cli_option(const struct shmfs_cli *cli, int c)
{
	switch (c) {
	case 'h':
		cli->usage(stdout);
		return SHMFS_CLI_STOP_OK;
	case 'V':
		shmfs_cli_version(cli);
		return SHMFS_CLI_STOP_OK;
	default:
		fprintf(stderr, "Try '%s --help' for more information.\n", cli->prog);
		return cli->usage_status;
	}
}

void shmfs_cli_verror(const struct shmfs_cli *cli, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", cli->prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void shmfs_cli_error(const struct shmfs_cli *cli, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shmfs_cli_verror(cli, fmt, ap);
	va_end(ap);
}

int shmfs_cli_usage_error(const struct shmfs_cli *cli, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	shmfs_cli_verror(cli, fmt, ap);
	va_end(ap);
	return cli->usage_status;
}

int shmfs_cli_size(const struct shmfs_cli *cli, const char *opt, const char *arg, uint64_t *out)
{
	int rc = shmfs_parse_size(arg, out);

	if (rc == -ERANGE)
		return shmfs_cli_usage_error(cli, "%s: size '%s' is too large", opt, arg);
	if (rc)
		return shmfs_cli_usage_error(cli,
			"%s: cannot parse size '%s' (use e.g. 4096, 64K, 2M, 1G, 1T)", opt, arg);
	return 0;
}

int shmfs_cli_number(const struct shmfs_cli *cli, const char *opt, const char *arg, uint64_t min,
		     uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	/* strtoull would take "-1" as a huge number and "+1" as one. */
	if (!arg[0] || arg[0] == '-' || arg[0] == '+')
		return shmfs_cli_usage_error(cli, "%s: '%s' is not a number", opt, arg);
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (*end)
		return shmfs_cli_usage_error(cli, "%s: '%s' is not a number", opt, arg);
	if (errno || v < min || v > max)
		return shmfs_cli_usage_error(cli,
			"%s: %s is out of range (%" PRIu64 "..%" PRIu64 ")", opt, arg, min, max);
	*out = v;
	return 0;
}

int shmfs_cli_region(const struct shmfs_cli *cli, int argc, char **argv, const char **spec)
{
	if (optind >= argc)
		return shmfs_cli_usage_error(cli, "missing REGION (try '%s --help')", cli->prog);
	if (argc - optind > 1) {
		if (cli->name_operand)
			return shmfs_cli_usage_error(cli,
				"unexpected argument '%s' after REGION '%s'", argv[optind + 1],
				argv[optind]);
		return shmfs_cli_usage_error(cli, "unexpected argument '%s' after REGION",
					     argv[optind + 1]);
	}
	*spec = argv[optind];
	return 0;
}
