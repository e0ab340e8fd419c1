/* SPDX-License-Identifier: MIT */
/*
 * shmfs-dump's output, as text or as JSON (out.h says how it is called).
 *
 * Each level of the tree remembers its kind and whether it has had a
 * member yet, which is all JSON needs for its commas and text for its
 * spacing.  JSON strings keep valid UTF-8 as it is and write every other
 * byte as \u00XX, so that any bytes from the region give a valid
 * document; text quotes region bytes with anything but printable ASCII as
 * \xNN.  Times are ISO-8601 UTC with nanoseconds, or the raw number when
 * they cannot be shown.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmfs/util.h"

#include "out.h"

static int parent_kind(const struct out *o)
{
	return o->depth ? o->st[o->depth - 1].kind : K_BLOCK;
}

static void indent(const struct out *o, int depth)
{
	for (int i = 0; i < depth; i++)
		fputs("  ", o->f);
}

/* JSON: separator, newline and indentation before a member; the key. */
static void json_member(struct out *o, const char *key)
{
	int pk = parent_kind(o);

	if (o->depth) {
		if (!o->st[o->depth - 1].first)
			fputc(',', o->f);
		o->st[o->depth - 1].first = false;
	}
	if (pk != K_LINE && o->depth) {
		fputc('\n', o->f);
		indent(o, o->depth);
	}
	if (key && pk != K_ARRAY) {
		json_string(o->f, (const uint8_t *)key, strlen(key));
		fputs(pk == K_LINE ? ":" : ": ", o->f);
	}
}

void o_begin(struct out *o, const char *key, int kind)
{
	int pk = parent_kind(o);
	bool first = true;

	if (o->depth >= OUT_DEPTH)
		abort(); /* a bug in this file, not in the region */
	if (o->json) {
		json_member(o, key);
		fputc(kind == K_ARRAY ? '[' : '{', o->f);
	} else if (kind == K_LINE) {
		if (pk == K_LINE)
			first = o->st[o->depth - 1].first; /* fields continue the line */
		else
			indent(o, o->depth ? o->depth - 1 : 0);
	} else if (key) {
		indent(o, o->depth ? o->depth - 1 : 0);
		fprintf(o->f, "%s:\n", key);
	}
	o->st[o->depth].kind = kind;
	o->st[o->depth].first = first;
	o->depth++;
}

void o_end(struct out *o)
{
	int kind = o->st[o->depth - 1].kind;
	bool empty = o->st[o->depth - 1].first;

	o->depth--;
	if (o->json) {
		if (kind != K_LINE && !empty) {
			fputc('\n', o->f);
			indent(o, o->depth);
		}
		fputc(kind == K_ARRAY ? ']' : '}', o->f);
		if (!o->depth)
			fputc('\n', o->f);
	} else if (kind == K_LINE) {
		if (parent_kind(o) == K_LINE)
			o->st[o->depth - 1].first = empty;
		else
			fputc('\n', o->f);
	}
}

/* A field: key, then the caller prints the value, then o_fend(). */
void o_fbegin(struct out *o, const char *key)
{
	if (o->json) {
		json_member(o, key);
		return;
	}
	if (parent_kind(o) == K_LINE) {
		if (!o->st[o->depth - 1].first)
			fputc(' ', o->f);
		o->st[o->depth - 1].first = false;
		fprintf(o->f, "%s=", key);
	} else {
		indent(o, o->depth ? o->depth - 1 : 0);
		fprintf(o->f, "%-18s ", key);
	}
}

void o_fend(struct out *o)
{
	if (!o->json && parent_kind(o) != K_LINE)
		fputc('\n', o->f);
}

/* JSON string: valid UTF-8 passes through, every other byte becomes
 * \u00XX, control characters are escaped. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void json_string(FILE *f, const uint8_t *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len;) {
		uint8_t c = s[i];
		size_t n;

		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			i++;
		} else if (c == '\n') {
			fputs("\\n", f);
			i++;
		} else if (c == '\t') {
			fputs("\\t", f);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			i++;
		} else if ((n = utf8_len(s + i, len - i)) > 0) {
			fwrite(s + i, 1, n, f);
			i += n;
		} else {
			fprintf(f, "\\u%04x", c); /* not UTF-8: the byte as U+00XX */
			i++;
		}
	}
	fputc('"', f);
}

/* Text: quoted, with anything but printable ASCII as \xNN. */
static void text_string(FILE *f, const uint8_t *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			fprintf(f, "\\%c", s[i]);
		else if (s[i] < 0x20 || s[i] >= 0x7f)
			fprintf(f, "\\x%02x", s[i]);
		else
			fputc(s[i], f);
	}
	fputc('"', f);
}

void f_u64(struct out *o, const char *key, uint64_t v)
{
	o_fbegin(o, key);
	fprintf(o->f, "%" PRIu64, v);
	o_fend(o);
}

/* A list of numbers: [1,2] in JSON, 1,2 in text ("-" when empty). */
void f_u64_list(struct out *o, const char *key, const uint64_t *v, size_t n)
{
	o_fbegin(o, key);
	if (o->json)
		fputc('[', o->f);
	for (size_t i = 0; i < n; i++)
		fprintf(o->f, "%s%" PRIu64, i ? "," : "", v[i]);
	if (o->json)
		fputc(']', o->f);
	else if (!n)
		fputc('-', o->f);
	o_fend(o);
}

/* Checksums, tokens, magic numbers: hex strings in both forms. */
void f_hex(struct out *o, const char *key, uint64_t v)
{
	o_fbegin(o, key);
	fprintf(o->f, o->json ? "\"0x%" PRIx64 "\"" : "0x%" PRIx64, v);
	o_fend(o);
}

void f_octal(struct out *o, const char *key, uint32_t v)
{
	o_fbegin(o, key);
	fprintf(o->f, o->json ? "%" PRIu32 : "0%" PRIo32, v);
	o_fend(o);
}

void f_bool(struct out *o, const char *key, bool v)
{
	o_fbegin(o, key);
	fputs(o->json ? (v ? "true" : "false") : (v ? "yes" : "no"), o->f);
	o_fend(o);
}

/* A trusted string (ours): bare in text, escaped in JSON. */
void f_str(struct out *o, const char *key, const char *s)
{
	o_fbegin(o, key);
	if (o->json)
		json_string(o->f, (const uint8_t *)s, strlen(s));
	else
		fputs(s, o->f);
	o_fend(o);
}

/* Bytes from the region (names, labels): always quoted and escaped. */
void f_bytes(struct out *o, const char *key, const void *p, size_t len)
{
	o_fbegin(o, key);
	if (o->json)
		json_string(o->f, p, len);
	else
		text_string(o->f, p, len);
	o_fend(o);
}

void f_size(struct out *o, const char *key, uint64_t v)
{
	char b[32];

	o_fbegin(o, key);
	if (o->json)
		fprintf(o->f, "%" PRIu64, v);
	else if (parent_kind(o) == K_LINE)
		fprintf(o->f, "%" PRIu64, v);
	else
		fprintf(o->f, "%s (%" PRIu64 " bytes)", shmfs_fmt_size(v, b, sizeof(b)), v);
	o_fend(o);
}

/* ISO-8601 UTC with nanoseconds; false if the time cannot be shown. */
static bool iso_time(int64_t sec, uint32_t nsec, char *buf, size_t len)
{
	time_t t = (time_t)sec;
	struct tm tm;
	char d[40];

	if (nsec >= 1000000000u || !gmtime_r(&t, &tm) || tm.tm_year > 9999 - 1900 ||
	    tm.tm_year < -1900)
		return false;
	strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%09" PRIu32 "Z", d, nsec);
	return true;
}

void f_time(struct out *o, const char *key, int64_t sec, uint32_t nsec)
{
	char b[64];

	o_fbegin(o, key);
	if (!iso_time(sec, nsec, b, sizeof(b)))
		snprintf(b, sizeof(b), "%" PRId64 ".%09" PRIu32 " (out of range)", sec, nsec);
	if (o->json)
		json_string(o->f, (const uint8_t *)b, strlen(b));
	else
		fputs(b, o->f);
	o_fend(o);
}

/* CLOCK_REALTIME nanoseconds: ISO string, plus the raw number in JSON. */
void f_time_ns(struct out *o, const char *key, uint64_t ns)
{
	char k[64];

	if (!ns) {
		o_fbegin(o, key);
		fputs(o->json ? "null" : "never", o->f);
		o_fend(o);
	} else {
		f_time(o, key, (int64_t)(ns / 1000000000ull), (uint32_t)(ns % 1000000000ull));
	}
	if (o->json) {
		snprintf(k, sizeof(k), "%s_ns", key);
		f_u64(o, k, ns);
	}
}

/* A line of text that only the text form carries. */
void o_note(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->json)
		return;
	indent(o, o->depth ? o->depth - 1 : 0);
	va_start(ap, fmt);
	vfprintf(o->f, fmt, ap);
	va_end(ap);
	fputc('\n', o->f);
}

void o_indent(const struct out *o)
{
	indent(o, o->depth ? o->depth - 1 : 0);
}
