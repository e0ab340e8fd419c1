/* SPDX-License-Identifier: MIT */
/*
 * Region layer: turn a path into a shared mapping {base, size, align}.
 * Nothing above this layer knows what kind of memory it is on.
 *
 * Region specs (one syntax for every tool):
 *
 *   PATH[,offset=SIZE][,length=SIZE][,map=N]
 *
 *   /dev/daxX.Y                          devdax character device
 *   /sys/bus/pci/devices/D:B:D.F/resourceN   PCI BAR (ivshmem: resource2)
 *   pci:DDDD:BB:DD.F                     short form of the above, BAR 2
 *   /dev/uioN                            UIO device; map=N picks the map
 *                                        (default: the largest)
 *   any regular file                     tmpfs, hugetlbfs or other
 *
 * SIZE takes K, M, G, T suffixes (powers of 1024).  offset must be a
 * multiple of the kind's mapping alignment; length defaults to the rest.
 */
#ifndef SHMFS_REGION_H
#define SHMFS_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum shmfs_region_kind {
	SHMFS_REGION_MEM = 0,   /* anonymous shared memory (tests) */
	SHMFS_REGION_FILE,      /* regular file on tmpfs or another fs */
	SHMFS_REGION_HUGETLBFS, /* regular file on hugetlbfs */
	SHMFS_REGION_DEVDAX,    /* /dev/daxX.Y */
	SHMFS_REGION_PCI,       /* sysfs PCI resource file */
	SHMFS_REGION_UIO,       /* /dev/uioN */
};

struct shmfs_region_opts {
	bool readonly;          /* map PROT_READ only */
	bool create;            /* regular files: create if missing */
	uint64_t grow_to;       /* regular files: extend (sparse) to this many
	                         * bytes if smaller; 0 = leave the size alone */
};

struct shmfs_region {
	uint8_t *base;          /* first byte of the region (after offset) */
	uint64_t size;          /* bytes usable from base */
	uint64_t align;         /* mapping alignment: 4 KiB, huge page, dax align */
	enum shmfs_region_kind kind;
	bool readonly;
	int fd;                 /* -1 for SHMFS_REGION_MEM */
	void *map_addr;         /* what mmap returned */
	size_t map_len;
	uint64_t offset;        /* offset of base within the path */
	char path[4096];        /* resolved path that was mapped */
};

/* Parse and open a region spec.  On failure returns -errno and writes one
 * line (no trailing newline) naming the problem into err. */
int shmfs_region_open(const char *spec, const struct shmfs_region_opts *opts,
		      struct shmfs_region *r, char *err, size_t errlen);

/* An anonymous MAP_SHARED region for tests and tools; align >= 4096. */
int shmfs_region_open_mem(uint64_t size, uint64_t align, struct shmfs_region *r);

void shmfs_region_close(struct shmfs_region *r);

/* Make [off, off+len) of the region read as zeros.  On regular files this
 * punches a hole (no memory is allocated); elsewhere it stores zeros.
 * For mkfs and repair, over metadata: the data area uses shmfs_region_clear. */
int shmfs_region_zero(struct shmfs_region *r, uint64_t off, uint64_t len);

/*
 * Access to the data area.  Every store of file bytes into the region, and
 * every store of zeros that hides stale bytes, goes through
 * shmfs_region_store or shmfs_region_clear; nothing above this layer
 * writes through r->base into the data area.  That gives later work one
 * place to hook in: fencing (a host never stores into memory it might no
 * longer own, so its standing is checked before a batch of stores) and
 * memory without cache coherence (the lines stored are written back, the
 * lines read are invalidated first).  Offsets are region offsets (the
 * caller adds sb_data_off); each call is bounds-checked against r->size
 * and returns -EINVAL outside it, -EROFS on a read-only region.
 *
 * shmfs_region_store  copies len bytes in.  On a regular file (tmpfs) it
 *                     uses pwrite(2): the kernel fills fresh pages much
 *                     faster than page faults on the mapping do, and the
 *                     mapping sees the same pages.  Elsewhere (devdax,
 *                     BARs, hugetlbfs, memory) it copies through the map.
 * shmfs_region_clear  stores zeros in place.  Unlike shmfs_region_zero it
 *                     never punches a hole: the pages stay allocated, so a
 *                     write that follows does not fault them in again.
 * shmfs_region_load   copies len bytes out.
 * shmfs_region_ptr    the address of [off, off+len) for readers that hand
 *                     region memory on by reference (the read path's
 *                     replies); NULL outside the region.
 */
int shmfs_region_store(struct shmfs_region *r, uint64_t off, const void *src, size_t len);
int shmfs_region_clear(struct shmfs_region *r, uint64_t off, uint64_t len);
int shmfs_region_load(const struct shmfs_region *r, uint64_t off, void *dst, size_t len);
const uint8_t *shmfs_region_ptr(const struct shmfs_region *r, uint64_t off, uint64_t len);

const char *shmfs_region_kind_name(enum shmfs_region_kind kind);

/* A region spec split into its parts (shmfs_region_open does this first).
 * Options are taken from the end of the string; a trailing ",x" that is
 * not one of them stays part of the path, so paths may contain commas. */
struct shmfs_region_spec {
	char path[4096];        /* as written; "pci:..." is not expanded */
	uint64_t offset;        /* 0 unless given */
	uint64_t length;        /* 0 = to the end */
	int map;                /* UIO map index; -1 = the largest map */
	bool has_offset;
	bool has_length;
};

/* Returns 0, or -EINVAL / -ENAMETOOLONG with one line in err. */
int shmfs_region_parse_spec(const char *spec, struct shmfs_region_spec *out,
			    char *err, size_t errlen);

#endif /* SHMFS_REGION_H */
