// SPDX-License-Identifier: GPL-2.0-only
/*
 * The JSON writer (json.h).  Output goes straight to the FILE *, so the
 * writer keeps only what the grammar needs: per open level, whether it is an
 * object or an array and whether it has a member yet (a comma comes before
 * the next), and whether an object waits for a key or for its value.
 * Strings come from peers and from /proc as well as from us: every byte
 * that is not valid UTF-8 becomes U+FFFD, so the text stays valid JSON.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "json.h"
#include "log.h"

static void json_misuse(struct json_writer *w, int err, const char *what)
{
	if (w->err)
		return;
	kvmmig_err("JSON writer: %s; expected %s", what,
		   !w->depth ? "one value for the document" :
		   w->open[w->depth - 1] == '[' ? "a value or the end of the array" :
		   w->key_due ? "a key or the end of the object" : "the value of the key");
	w->err = err;
}

static bool json_in_object(const struct json_writer *w)
{
	return w->depth && w->open[w->depth - 1] == '{';
}

/* A member of the open level: a comma after the one before. */
static void json_comma(struct json_writer *w)
{
	if (w->members[w->depth - 1])
		fputc(',', w->f);
	w->members[w->depth - 1] = true;
}

/* Before a value: its comma; false if one is not allowed here. */
static bool json_value_begin(struct json_writer *w)
{
	if (w->err)
		return false;
	if (!w->depth) {
		if (w->done)
			json_misuse(w, -EINVAL, "a second value after the document");
		return !w->err;
	}
	if (json_in_object(w)) {
		if (w->key_due)
			json_misuse(w, -EINVAL, "a value with no key in an object");
		return !w->err;
	}
	json_comma(w);
	return true;
}

/* After a value: the document is complete, or its object wants a key. */
static void json_value_end(struct json_writer *w)
{
	if (!w->depth)
		w->done = true;
	else if (json_in_object(w))
		w->key_due = true;
}

void json_start(struct json_writer *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
}

/* The first error so far; a failed write (or flush) becomes -EIO. */
static int json_write_error(struct json_writer *w, bool flush)
{
	if (w->err)
		return w->err;
	if ((flush && fflush(w->f)) || ferror(w->f)) {
		kvmmig_err("JSON writer: cannot write the output: %s", strerror(errno));
		w->err = -EIO;
	}
	return w->err;
}

int json_finish(struct json_writer *w)
{
	if (!w->err && (w->depth || !w->done))
		json_misuse(w, -EINVAL, w->depth ? "the document ends open" :
			    "the document ends empty");
	if (!w->err)
		fputc('\n', w->f);
	return json_write_error(w, false);
}

void json_line_begin(struct json_writer *w, FILE *f)
{
	json_start(w, f);
	json_object_begin(w);
}

int json_line_end(struct json_writer *w)
{
	json_object_end(w);
	json_finish(w);
	return json_write_error(w, true);
}

static void json_push(struct json_writer *w, char open)
{
	if (!json_value_begin(w))
		return;
	if (w->depth == JSON_MAX_DEPTH) {
		json_misuse(w, -E2BIG, "nesting deeper than JSON_MAX_DEPTH");
		return;
	}
	fputc(open, w->f);
	w->open[w->depth] = open;
	w->members[w->depth] = false;
	w->depth++;
	w->key_due = open == '{';
}

static void json_pop(struct json_writer *w, char open)
{
	if (w->err)
		return;
	if (!w->depth || w->open[w->depth - 1] != open) {
		json_misuse(w, -EINVAL, open == '{' ? "the end of an object not open" :
			    "the end of an array not open");
		return;
	}
	if (open == '{' && !w->key_due) {
		json_misuse(w, -EINVAL, "the end of the object after a key");
		return;
	}
	fputc(open == '{' ? '}' : ']', w->f);
	w->depth--;
	json_value_end(w);
}

void json_object_begin(struct json_writer *w)
{
	json_push(w, '{');
}

void json_object_end(struct json_writer *w)
{
	json_pop(w, '{');
}

void json_array_begin(struct json_writer *w)
{
	json_push(w, '[');
}

void json_array_end(struct json_writer *w)
{
	json_pop(w, '[');
}

/* The length of the UTF-8 sequence at @p (RFC 3629), or 0 if it is not one. */
static unsigned int utf8_len(const unsigned char *p)
{
	unsigned int n, i;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, c = p[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		/* A NUL ends the string here too: it is no continuation byte. */
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and past U+10FFFF are not UTF-8. */
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	return n;
}

static void json_escaped(FILE *f, const char *s)
{
	static const char short_form[0x20] = {
		['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
	};
	const unsigned char *p = (const unsigned char *)s;
	unsigned int n;

	fputc('"', f);
	while (*p) {
		n = utf8_len(p);
		if (!n) {
			fputs("\\ufffd", f);
			n = 1;
		} else if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
		} else if (*p < 0x20 && short_form[*p]) {
			fprintf(f, "\\%c", short_form[*p]);
		} else if (*p < 0x20) {
			fprintf(f, "\\u%04x", *p);
		} else {
			fwrite(p, 1, n, f);
		}
		p += n;
	}
	fputc('"', f);
}

void json_key(struct json_writer *w, const char *key)
{
	if (w->err)
		return;
	if (!json_in_object(w) || !w->key_due) {
		json_misuse(w, -EINVAL, json_in_object(w) ? "a key after a key" :
			    "a key outside an object");
		return;
	}
	json_comma(w);
	json_escaped(w->f, key);
	fputc(':', w->f);
	w->key_due = false;
}

void json_str(struct json_writer *w, const char *s)
{
	if (!json_value_begin(w))
		return;
	if (s)
		json_escaped(w->f, s);
	else
		fputs("null", w->f);
	json_value_end(w);
}

void json_u64(struct json_writer *w, uint64_t v)
{
	if (!json_value_begin(w))
		return;
	fprintf(w->f, "%" PRIu64, v);
	json_value_end(w);
}

void json_i64(struct json_writer *w, int64_t v)
{
	if (!json_value_begin(w))
		return;
	fprintf(w->f, "%" PRId64, v);
	json_value_end(w);
}

/* printf's @conv ('f' or 'g') with @prec; JSON has no NaN or infinity. */
static void json_number(struct json_writer *w, double v, char conv, int prec, int lo)
{
	if (prec < lo || prec > 17) {
		json_misuse(w, -EINVAL, conv == 'f' ? "decimals out of 0-17" :
			    "significant digits out of 1-17");
		return;
	}
	if (!json_value_begin(w))
		return;
	if (!isfinite(v))
		fputs("null", w->f);
	else if (conv == 'f')
		fprintf(w->f, "%.*f", prec, v);
	else
		fprintf(w->f, "%.*g", prec, v);
	json_value_end(w);
}

void json_double(struct json_writer *w, double v, int decimals)
{
	json_number(w, v, 'f', decimals, 0);
}

void json_double_sig(struct json_writer *w, double v, int digits)
{
	json_number(w, v, 'g', digits, 1);
}

void json_bool(struct json_writer *w, bool v)
{
	if (!json_value_begin(w))
		return;
	fputs(v ? "true" : "false", w->f);
	json_value_end(w);
}

void json_null(struct json_writer *w)
{
	if (!json_value_begin(w))
		return;
	fputs("null", w->f);
	json_value_end(w);
}
