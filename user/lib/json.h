/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small streaming JSON writer on a FILE *, for the report, the events of
 * `kvmmig migrate --json` and every other JSON the command and benchmarks
 * print.  It places commas and colons, escapes strings (RFC 8259, control
 * characters included) and tracks nesting itself: a value where a key is
 * due, a key in an array, a mismatched end or a document left open is an
 * error that stops further output, so what it writes is valid JSON or
 * visibly cut short, and json_finish() says which.
 */
#ifndef KVMMIG_JSON_H
#define KVMMIG_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH	16

struct json_writer {
	FILE *f;
	int err;		/* the first misuse, as a negative errno */
	unsigned int depth;	/* open objects and arrays */
	bool done;		/* the top-level value is complete */
	bool key_due;		/* in an object, a key comes next */
	char open[JSON_MAX_DEPTH];	/* '{' or '[' per level */
	bool members[JSON_MAX_DEPTH];	/* the level has a member: a comma before the next */
};

/* One document (one top-level value) on @f. */
void json_start(struct json_writer *w, FILE *f);
/* Ends the document with a newline: 0, or the first misuse or write error. */
int json_finish(struct json_writer *w);

void json_object_begin(struct json_writer *w);
void json_object_end(struct json_writer *w);
void json_array_begin(struct json_writer *w);
void json_array_end(struct json_writer *w);
/* The next member's name, in an object. */
void json_key(struct json_writer *w, const char *key);

/* Values: in an array, after a key, or as the document itself. */
void json_str(struct json_writer *w, const char *s);	/* NULL: null */
void json_u64(struct json_writer *w, uint64_t v);
void json_i64(struct json_writer *w, int64_t v);
/* Fixed point with @decimals (0-17) digits; NaN and infinities are null. */
void json_double(struct json_writer *w, double v, int decimals);
/* @digits significant digits (1-17, printf's %g); NaN and infinities are null. */
void json_double_sig(struct json_writer *w, double v, int digits);
void json_bool(struct json_writer *w, bool v);
void json_null(struct json_writer *w);

/*
 * One object on one line of a JSON Lines stream: the members go between the
 * two calls; the end closes the object, ends the line and flushes it for
 * whoever reads the stream as it comes.
 */
void json_line_begin(struct json_writer *w, FILE *f);
int json_line_end(struct json_writer *w);

/* A member: json_key() then the value. */
static inline void json_key_str(struct json_writer *w, const char *key, const char *s)
{
	json_key(w, key);
	json_str(w, s);
}

static inline void json_key_u64(struct json_writer *w, const char *key, uint64_t v)
{
	json_key(w, key);
	json_u64(w, v);
}

static inline void json_key_i64(struct json_writer *w, const char *key, int64_t v)
{
	json_key(w, key);
	json_i64(w, v);
}

static inline void json_key_double(struct json_writer *w, const char *key, double v,
				   int decimals)
{
	json_key(w, key);
	json_double(w, v, decimals);
}

static inline void json_key_bool(struct json_writer *w, const char *key, bool v)
{
	json_key(w, key);
	json_bool(w, v);
}

static inline void json_key_null(struct json_writer *w, const char *key)
{
	json_key(w, key);
	json_null(w);
}

/* An event line, as `kvmmig migrate --json` prints them: {"event":@event, ...}. */
static inline void json_event_begin(struct json_writer *w, FILE *f, const char *event)
{
	json_line_begin(w, f);
	json_key_str(w, "event", event);
}

#endif /* KVMMIG_JSON_H */
