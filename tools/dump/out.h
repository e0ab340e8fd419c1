/* SPDX-License-Identifier: MIT */
/*
 * shmfs-dump's output: one set of calls, written as text or as JSON.
 *
 * A document is a tree of blocks (K_BLOCK: an object, one field a line in
 * text), lines (K_LINE: an object on one line, key=value in text) and
 * arrays (K_ARRAY), opened with o_begin() and closed with o_end(), and
 * fields inside them (f_u64(), f_str(), ...; or o_fbegin(), the value,
 * o_fend() for a value of the caller's own).  Strings from the region go
 * through f_bytes(): quoted and escaped in both forms.  o_note() writes a
 * line only the text form carries.
 */
#ifndef SHMFS_TOOLS_DUMP_OUT_H
#define SHMFS_TOOLS_DUMP_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { K_BLOCK, K_LINE, K_ARRAY };

#define OUT_DEPTH 16

struct out {
	FILE *f;
	bool json;
	int depth;
	struct {
		int kind;
		bool first;
	} st[OUT_DEPTH];
};

void o_begin(struct out *o, const char *key, int kind);
void o_end(struct out *o);
void o_fbegin(struct out *o, const char *key);
void o_fend(struct out *o);
void o_note(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Text: the indentation of a line at the current depth. */
void o_indent(const struct out *o);

void json_string(FILE *f, const uint8_t *s, size_t len);

void f_u64(struct out *o, const char *key, uint64_t v);
void f_u64_list(struct out *o, const char *key, const uint64_t *v, size_t n);
void f_hex(struct out *o, const char *key, uint64_t v);
void f_octal(struct out *o, const char *key, uint32_t v);
void f_bool(struct out *o, const char *key, bool v);
void f_str(struct out *o, const char *key, const char *s);
void f_bytes(struct out *o, const char *key, const void *p, size_t len);
void f_size(struct out *o, const char *key, uint64_t v);
void f_time(struct out *o, const char *key, int64_t sec, uint32_t nsec);
void f_time_ns(struct out *o, const char *key, uint64_t ns);

#endif
