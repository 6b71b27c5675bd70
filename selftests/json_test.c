// SPDX-License-Identifier: GPL-2.0-only
/*
 * The JSON writer (user/lib/json.c) on a memory stream: strings escaped per
 * RFC 8259 (every control character, quotes, backslashes) with bytes that
 * are not UTF-8 replaced, nesting and commas, integers at their limits,
 * fixed and significant-digit doubles with NaN and infinities as null, each
 * compared byte for byte; every misuse (a value with no key, a key in an
 * array, a mismatched or missing end, a second document, nesting too deep)
 * stops the output and is returned and named; a failed write is -EIO.  One
 * document with all of it is also read back by Python's json module, value
 * by value.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "kselftest_harness.h"
#include "log.h"

static void quiet_log(int level, const char *msg)
{
}

FIXTURE(json) {
	char *buf;
	size_t size;
	FILE *m;
	struct json_writer w;
};

FIXTURE_SETUP(json)
{
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	self->m = open_memstream(&self->buf, &self->size);
	ASSERT_NE(NULL, self->m);
	json_start(&self->w, self->m);
}

FIXTURE_TEARDOWN(json)
{
	fclose(self->m);
	free(self->buf);
}

/* What was written so far. */
static const char *out(FIXTURE_DATA(json) *self)
{
	fflush(self->m);
	return self->buf;
}

TEST_F(json, control_characters_escaped)
{
	char s[32];
	int i;

	for (i = 1; i < 32; i++)
		s[i - 1] = (char)i;
	s[31] = '\0';
	json_str(&self->w, s);
	ASSERT_EQ(0, json_finish(&self->w));
	EXPECT_STREQ("\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n"
		     "\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014"
		     "\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d"
		     "\\u001e\\u001f\"\n", out(self));
}

TEST_F(json, quotes_backslashes_and_utf8)
{
	json_array_begin(&self->w);
	json_str(&self->w, "say \"hi\" \\ to / me\x7f");
	/* é, €, U+1F600: passed through as they are. */
	json_str(&self->w, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	json_str(&self->w, "");
	json_str(&self->w, NULL);
	json_array_end(&self->w);
	ASSERT_EQ(0, json_finish(&self->w));
	EXPECT_STREQ("[\"say \\\"hi\\\" \\\\ to / me\x7f\","
		     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"\",null]\n", out(self));
}

TEST_F(json, invalid_utf8_replaced)
{
	/*
	 * A stray continuation byte, 0xff, an overlong '/', a UTF-16
	 * surrogate, past U+10FFFF, and a sequence cut short by the end:
	 * each bad byte is one U+FFFD, the valid bytes around them stay.
	 */
	json_str(&self->w, "a\x80" "b\xff" "c\xc0\xaf" "d\xed\xa0\x80" "e\xf4\x90\x80\x80"
			   "f\xe2\x82");
	ASSERT_EQ(0, json_finish(&self->w));
	EXPECT_STREQ("\"a\\ufffdb\\ufffdc\\ufffd\\ufffdd\\ufffd\\ufffd\\ufffde"
		     "\\ufffd\\ufffd\\ufffd\\ufffdf\\ufffd\\ufffd\"\n", out(self));
}

TEST_F(json, nesting_and_commas)
{
	json_object_begin(&self->w);
	json_key(&self->w, "a");
	json_array_begin(&self->w);
	json_object_begin(&self->w);
	json_object_end(&self->w);
	json_array_begin(&self->w);
	json_array_end(&self->w);
	json_object_begin(&self->w);
	json_key_u64(&self->w, "x", 1);
	json_key(&self->w, "y");
	json_array_begin(&self->w);
	json_u64(&self->w, 2);
	json_u64(&self->w, 3);
	json_array_end(&self->w);
	json_object_end(&self->w);
	json_array_end(&self->w);
	json_key_bool(&self->w, "t", true);
	json_key_bool(&self->w, "f", false);
	json_key_null(&self->w, "n");
	json_key_str(&self->w, "k\"ey", "v");
	json_object_end(&self->w);
	ASSERT_EQ(0, json_finish(&self->w));
	EXPECT_STREQ("{\"a\":[{},[],{\"x\":1,\"y\":[2,3]}],\"t\":true,\"f\":false,\"n\":null,"
		     "\"k\\\"ey\":\"v\"}\n", out(self));
}

TEST_F(json, numbers)
{
	json_array_begin(&self->w);
	json_u64(&self->w, UINT64_MAX);
	json_i64(&self->w, INT64_MIN);
	json_i64(&self->w, -1);
	json_double(&self->w, 1.23456, 3);
	json_double(&self->w, 2.5e9, 0);
	json_double(&self->w, -0.25, 1);
	json_double(&self->w, NAN, 3);
	json_double(&self->w, INFINITY, 0);
	json_double(&self->w, -INFINITY, 2);
	json_double_sig(&self->w, 1234567.0, 6);
	json_double_sig(&self->w, 1e-9, 6);
	json_double_sig(&self->w, NAN, 6);
	json_array_end(&self->w);
	ASSERT_EQ(0, json_finish(&self->w));
	EXPECT_STREQ("[18446744073709551615,-9223372036854775808,-1,1.235,2500000000,-0.2,"
		     "null,null,null,1.23457e+06,1e-09,null]\n", out(self));
}

TEST_F(json, lines_one_object_each)
{
	json_event_begin(&self->w, self->m, "one");
	json_key_i64(&self->w, "port", 4242);
	ASSERT_EQ(0, json_line_end(&self->w));
	json_line_begin(&self->w, self->m);
	json_key_double(&self->w, "t", 0.5, 3);
	ASSERT_EQ(0, json_line_end(&self->w));
	EXPECT_STREQ("{\"event\":\"one\",\"port\":4242}\n{\"t\":0.500}\n", out(self));
}

/* Each misuse: its errno, the message naming it, and nothing more written. */
struct misuse {
	const char *name;
	void (*run)(struct json_writer *w);
	int err;
	const char *written;
	const char *said;
};

static void value_without_key(struct json_writer *w)
{
	json_object_begin(w);
	json_u64(w, 1);
	json_key_u64(w, "a", 2);
	json_object_end(w);
}

static void key_in_array(struct json_writer *w)
{
	json_array_begin(w);
	json_key(w, "a");
	json_array_end(w);
}

static void key_after_key(struct json_writer *w)
{
	json_object_begin(w);
	json_key(w, "a");
	json_key(w, "b");
}

static void end_after_key(struct json_writer *w)
{
	json_object_begin(w);
	json_key(w, "a");
	json_object_end(w);
}

static void wrong_end(struct json_writer *w)
{
	json_object_begin(w);
	json_array_end(w);
}

static void end_not_open(struct json_writer *w)
{
	json_object_end(w);
}

static void left_open(struct json_writer *w)
{
	json_array_begin(w);
	json_u64(w, 1);
}

static void empty(struct json_writer *w)
{
}

static void second_value(struct json_writer *w)
{
	json_u64(w, 1);
	json_u64(w, 2);
}

static void too_deep(struct json_writer *w)
{
	int i;

	for (i = 0; i <= JSON_MAX_DEPTH; i++)
		json_array_begin(w);
}

static void bad_decimals(struct json_writer *w)
{
	json_array_begin(w);
	json_double(w, 1, 18);
	json_double_sig(w, 1, 0);
}

static const struct misuse misuses[] = {
	{ "value_without_key", value_without_key, -EINVAL, "{", "a value with no key" },
	{ "key_in_array", key_in_array, -EINVAL, "[", "a key outside an object" },
	{ "key_after_key", key_after_key, -EINVAL, "{\"a\":", "a key after a key" },
	{ "end_after_key", end_after_key, -EINVAL, "{\"a\":", "after a key" },
	{ "wrong_end", wrong_end, -EINVAL, "{", "the end of an array not open" },
	{ "end_not_open", end_not_open, -EINVAL, "", "the end of an object not open" },
	{ "left_open", left_open, -EINVAL, "[1", "the document ends open" },
	{ "empty", empty, -EINVAL, "", "the document ends empty" },
	{ "second_value", second_value, -EINVAL, "1", "a second value" },
	{ "too_deep", too_deep, -E2BIG, "[[[[[[[[[[[[[[[[", "nesting deeper" },
	{ "bad_decimals", bad_decimals, -EINVAL, "[", "decimals out of 0-17" },
};

TEST_F(json, misuse_stops_and_says)
{
	unsigned int i;

	for (i = 0; i < sizeof(misuses) / sizeof(misuses[0]); i++) {
		const struct misuse *m = &misuses[i];

		rewind(self->m);
		fflush(self->m);
		json_start(&self->w, self->m);
		m->run(&self->w);
		EXPECT_EQ(m->err, json_finish(&self->w)) TH_LOG("%s", m->name);
		/* Further calls write nothing and keep the first error. */
		json_u64(&self->w, 7);
		json_object_end(&self->w);
		EXPECT_EQ(m->err, json_finish(&self->w)) TH_LOG("%s", m->name);
		fflush(self->m);
		EXPECT_EQ((long)strlen(m->written), ftell(self->m)) TH_LOG("%s", m->name);
		EXPECT_EQ(0, strncmp(m->written, self->buf, strlen(m->written)))
			TH_LOG("%s wrote %.*s", m->name, (int)ftell(self->m), self->buf);
		EXPECT_NE(NULL, strstr(kvmmig_last_error(), m->said))
			TH_LOG("%s said: %s", m->name, kvmmig_last_error());
		EXPECT_NE(NULL, strstr(kvmmig_last_error(), "expected"))
			TH_LOG("%s said: %s", m->name, kvmmig_last_error());
	}
}

TEST(write_error_is_eio)
{
	struct json_writer w;
	FILE *f = fopen("/dev/full", "w");

	if (!f)
		SKIP(return, "no /dev/full here: %s", strerror(errno));
	setvbuf(f, NULL, _IONBF, 0);
	json_line_begin(&w, f);
	json_key_str(&w, "a", "b");
	EXPECT_EQ(-EIO, json_line_end(&w));
	fclose(f);
}

/* Python reads what Python is told it must find, value for value. */
static const char py_check[] =
	"import json, math, sys\n"
	"d = json.load(open(sys.argv[1], encoding='utf-8'))\n"
	"ctl = ''.join(chr(i) for i in range(1, 32))\n"
	"assert d['ctl'] == ctl + '\"\\\\/', repr(d['ctl'])\n"
	"assert d['utf8'] == '\\u00e9\\u20ac\\U0001f600', repr(d['utf8'])\n"
	"assert d['bad'] == 'a\\ufffdb', repr(d['bad'])\n"
	"assert d['nest'] == [{}, [], {'x': [1, None, True, False]}], repr(d['nest'])\n"
	"assert d['u64'] == 18446744073709551615 and d['i64'] == -9223372036854775808\n"
	"assert d['fixed'] == 3.142 and d['sig'] == 1.23457e+06 and d['nan'] is None\n"
	"assert list(d) == ['ctl', 'utf8', 'bad', 'nest', 'u64', 'i64', 'fixed', 'sig', 'nan']\n";

TEST(python_reads_it_back)
{
	char path[] = "/tmp/json_test.XXXXXX", ctl[40], cmd[512];
	struct json_writer w;
	FILE *f;
	int fd, i, st;

	if (system("python3 -c 'import json' 2>/dev/null"))
		SKIP(return, "python3 with its json module is not installed "
			     "(Debian package python3)");
	fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	f = fdopen(fd, "w");
	ASSERT_NE(NULL, f);
	for (i = 1; i < 32; i++)
		ctl[i - 1] = (char)i;
	strcpy(ctl + 31, "\"\\/");
	json_start(&w, f);
	json_object_begin(&w);
	json_key_str(&w, "ctl", ctl);
	json_key_str(&w, "utf8", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	json_key_str(&w, "bad", "a\xfe" "b");
	json_key(&w, "nest");
	json_array_begin(&w);
	json_object_begin(&w);
	json_object_end(&w);
	json_array_begin(&w);
	json_array_end(&w);
	json_object_begin(&w);
	json_key(&w, "x");
	json_array_begin(&w);
	json_u64(&w, 1);
	json_null(&w);
	json_bool(&w, true);
	json_bool(&w, false);
	json_array_end(&w);
	json_object_end(&w);
	json_array_end(&w);
	json_key_u64(&w, "u64", UINT64_MAX);
	json_key_i64(&w, "i64", INT64_MIN);
	json_key_double(&w, "fixed", M_PI, 3);
	json_key(&w, "sig");
	json_double_sig(&w, 1234567.0, 6);
	json_key_double(&w, "nan", NAN, 3);
	json_object_end(&w);
	ASSERT_EQ(0, json_finish(&w));
	ASSERT_EQ(0, fclose(f));

	snprintf(cmd, sizeof(cmd), "python3 -c \"$JSON_TEST_PY\" %s", path);
	setenv("JSON_TEST_PY", py_check, 1);
	st = system(cmd);
	unlink(path);
	ASSERT_TRUE(WIFEXITED(st));
	EXPECT_EQ(0, WEXITSTATUS(st));
}

TEST_HARNESS_MAIN
