/* SPDX-License-Identifier: MIT */
/* shmfs-dump: a record's payload as fields (payload.c). */
#ifndef SHMFS_TOOLS_DUMP_PAYLOAD_H
#define SHMFS_TOOLS_DUMP_PAYLOAD_H

#include <stdint.h>

#include "shmfs/format.h"

#include "out.h"

void print_payload(struct out *o, const struct shmfs_log_rec *h, const uint8_t *p);

#endif
