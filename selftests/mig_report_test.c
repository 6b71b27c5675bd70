// SPDX-License-Identifier: GPL-2.0-only
/*
 * The outputs of a migration report (user/lib/mig_report.c), without a
 * migration: reports with 0, 1 and 200 samples are written as CSV and read
 * back value by value, as SVG and checked for balanced tags, escaped title,
 * one polyline per series and one marker per sync (also with NaN, infinite
 * and absurd values), and as JSON, checked by
 * a small parser here (keys present, failure message with quotes and a
 * newline decoded back intact).  The text report must name downtime and
 * zero pages, and an unwritable path must give its errno and be named in
 * the error message.  The postcopy latency histogram puts every value in
 * the slot whose bounds hold it, prints its power-of-two buckets as their
 * slots' sums and gives percentiles to an eighth of a bucket.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "log.h"
#include "mig_report.h"

#define SVG_TITLE		"guest <b> & \"quoted\" 'title'"
#define SVG_TITLE_ESCAPED	"guest &lt;b&gt; &amp; &quot;quoted&quot; &apos;title&apos;"
#define FAIL_MSG		"peer said \"no\"\n\tand closed \\ the socket\x01"
#define NR_SERIES		4U
#define SYNC_EVERY		10

static void quiet_log(int level, const char *msg)
{
}

static struct mig_sample make_sample(unsigned int i)
{
	return (struct mig_sample){
		.t = i * 0.25,
		.pass = 1 + i / 40,
		.remaining_bytes = (2ULL << 30) - (uint64_t)(i % 40) * (48ULL << 20),
		.dirty_rate = 150e6 + i * 1e6,
		.throughput = 1100e6 - (i % 7) * 10e6,
		.throttle_pct = i < 100 ? i : 99,
		.sync = i % SYNC_EVERY == SYNC_EVERY - 1,
	};
}

static void fill_report(struct __test_metadata *_metadata, struct mig_report *r,
			unsigned int nr_samples)
{
	struct mig_sample s;
	unsigned int i;

	*r = (struct mig_report){
		.state = MIG_COMPLETED,
		.total_s = nr_samples * 0.25 + 0.5,
		.downtime_ms = 123.5,
		.setup_ms = 4.25,
		.passes = 1 + nr_samples / 40,
		.syncs = nr_samples / SYNC_EVERY,
		.bytes_sent = 3ULL << 30,
		.pages_sent = 700000,
		.zero_pages = 86432,
		.dirty_pages = 180000,
		.max_throttle_pct = 99,
		.throughput = 1.05e9,
		.dirty_backend = "ring",
		.throttle_backend = "module",
		.nr_vcpus = 2,
		.vcpu_throttle = {
			{ .mech = MIG_THROTTLE_MODULE_DIRTY_LIMIT, .dirty_limit = 2000000,
			  .slept_ms = 1234.4 },
			{ .mech = MIG_THROTTLE_VMM_CPU, .max_pct = 40, .slept_ms = -1 },
		},
	};
	for (i = 0; i < nr_samples; i++) {
		s = make_sample(i);
		ASSERT_EQ(mig_report_add_sample(r, &s), 0);
	}
}

static char *slurp(const char *path)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f, *m;
	int c;

	f = fopen(path, "r");
	if (!f)
		return NULL;
	m = open_memstream(&buf, &size);
	if (m) {
		while ((c = fgetc(f)) != EOF)
			fputc(c, m);
		fclose(m);
	}
	fclose(f);
	return buf;
}

static unsigned int count_str(const char *s, const char *needle)
{
	unsigned int n = 0;

	while ((s = strstr(s, needle))) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/*
 * Enough of XML to catch a broken writer: tags nest and close, one root,
 * quoted attribute values, and every '&' starts a known entity.
 */
static bool xml_well_formed(const char *s)
{
	static const char *const entities[] = { "&amp;", "&lt;", "&gt;", "&quot;", "&apos;" };
	char stack[16][32];
	int depth = 0, roots = 0;
	const char *end, *amp;
	size_t len;
	unsigned int i;
	bool quoted;

	for (amp = s; (amp = strchr(amp, '&')); amp++) {
		for (i = 0; i < 5 && strncmp(amp, entities[i], strlen(entities[i])); i++)
			;
		if (i == 5)
			return false;
	}
	while ((s = strchr(s, '<'))) {
		bool closing = s[1] == '/';

		s += closing ? 2 : 1;
		len = strcspn(s, " \t\n/>");
		if (!len || len >= sizeof(stack[0]))
			return false;
		for (end = s + len, quoted = false; *end && (quoted || *end != '>'); end++) {
			if (*end == '"')
				quoted = !quoted;
			else if (*end == '<')
				return false;
		}
		if (!*end)
			return false;
		if (closing) {
			if (!depth || strncmp(stack[depth - 1], s, len) || stack[depth - 1][len])
				return false;
			depth--;
		} else {
			if (!depth && roots++)
				return false;
			if (end[-1] != '/') {
				if (depth == 16)
					return false;
				memcpy(stack[depth], s, len);
				stack[depth++][len] = '\0';
			}
		}
		s = end + 1;
	}
	return !depth && roots == 1;
}

/*
 * A JSON parser just big enough to check the report: json_value() accepts
 * any value and, when @out is set, stores a string's decoded text or another
 * value's source text there.
 */
static void json_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static void out_putc(char **out, char *end, char c)
{
	if (*out && *out < end - 1) {
		*(*out)++ = c;
		**out = '\0';
	}
}

static bool json_string(const char **p, char *out, size_t size)
{
	char *o = out, *end = out + size;
	unsigned int code;
	char c;

	if (o)
		*o = '\0';
	if (*(*p)++ != '"')
		return false;
	while ((c = *(*p)++) != '"') {
		if ((unsigned char)c < 0x20)
			return false;
		if (c != '\\') {
			out_putc(&o, end, c);
			continue;
		}
		c = *(*p)++;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			break;
		case 'b':
			c = '\b';
			break;
		case 'f':
			c = '\f';
			break;
		case 'n':
			c = '\n';
			break;
		case 'r':
			c = '\r';
			break;
		case 't':
			c = '\t';
			break;
		case 'u':
			if (sscanf(*p, "%4x", &code) != 1 ||
			    strspn(*p, "0123456789abcdefABCDEF") < 4)
				return false;
			*p += 4;
			c = code < 0x80 ? (char)code : '?';
			break;
		default:
			return false;
		}
		out_putc(&o, end, c);
	}
	return true;
}

static bool json_number(const char **p)
{
	const char *s = *p;

	if (**p == '-')
		(*p)++;
	if (**p == '0')
		(*p)++;
	else if (!strchr("123456789", **p) || !**p)
		return false;
	*p += strspn(*p, "0123456789");
	if (**p == '.') {
		(*p)++;
		if (!strspn(*p, "0123456789"))
			return false;
		*p += strspn(*p, "0123456789");
	}
	if (**p == 'e' || **p == 'E') {
		(*p)++;
		*p += strspn(*p, "+-") ? 1 : 0;
		if (!strspn(*p, "0123456789"))
			return false;
		*p += strspn(*p, "0123456789");
	}
	return *p > s;
}

static bool json_value(const char **p, char *out, size_t size);

static bool json_members(const char **p, char close, const char *key, char *out, size_t size,
			 bool *found)
{
	char name[64];

	(*p)++;
	json_ws(p);
	if (**p == close) {
		(*p)++;
		return true;
	}
	for (;;) {
		json_ws(p);
		if (close == '}') {
			if (!json_string(p, name, sizeof(name)))
				return false;
			json_ws(p);
			if (*(*p)++ != ':')
				return false;
			json_ws(p);
			if (key && !strcmp(name, key)) {
				*found = true;
				if (!json_value(p, out, size))
					return false;
				goto next;
			}
		}
		if (!json_value(p, NULL, 0))
			return false;
next:
		json_ws(p);
		if (**p == close) {
			(*p)++;
			return true;
		}
		if (*(*p)++ != ',')
			return false;
	}
}

static bool json_value(const char **p, char *out, size_t size)
{
	const char *start = *p;
	bool ok;

	switch (**p) {
	case '"':
		return json_string(p, out, size);
	case '{':
		ok = json_members(p, '}', NULL, NULL, 0, NULL);
		break;
	case '[':
		ok = json_members(p, ']', NULL, NULL, 0, NULL);
		break;
	default:
		if (!strncmp(*p, "true", 4) || !strncmp(*p, "null", 4))
			*p += 4;
		else if (!strncmp(*p, "false", 5))
			*p += 5;
		else if (!json_number(p))
			return false;
		ok = true;
	}
	if (ok && out)
		snprintf(out, size, "%.*s", (int)(*p - start), start);
	return ok;
}

/* 1: @key found in the one-object document @doc, 0: not found, -1: not JSON. */
static int json_get(const char *doc, const char *key, char *out, size_t size)
{
	bool found = false;

	json_ws(&doc);
	if (*doc != '{' || !json_members(&doc, '}', key, out, size, &found))
		return -1;
	json_ws(&doc);
	if (*doc)
		return -1;
	return found;
}

static char *print_json(const struct mig_report *r)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *m = open_memstream(&buf, &size);

	if (!m)
		return NULL;
	mig_report_print_json(r, m);
	fclose(m);
	return buf;
}

static char *print_text(const struct mig_report *r)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *m = open_memstream(&buf, &size);

	if (!m)
		return NULL;
	mig_report_print(r, m);
	fclose(m);
	return buf;
}

FIXTURE(report) {
	struct mig_report r;
	char path[64];
};

FIXTURE_VARIANT(report) {
	unsigned int nr_samples;
};

FIXTURE_VARIANT_ADD(report, empty) { 0 };
FIXTURE_VARIANT_ADD(report, one_sample) { 1 };
FIXTURE_VARIANT_ADD(report, many_samples) { 200 };

FIXTURE_SETUP(report)
{
	int fd;

	fill_report(_metadata, &self->r, variant->nr_samples);
	strcpy(self->path, "/tmp/mig_report_test.XXXXXX");
	fd = mkstemp(self->path);
	ASSERT_GE(fd, 0);
	close(fd);
}

FIXTURE_TEARDOWN(report)
{
	if (self->path[0])
		unlink(self->path);
	mig_report_free(&self->r);
}

TEST_F(report, csv_reads_back)
{
	unsigned int rows = 0, throttle;
	uint64_t pass, remaining;
	double t, dirty, tput;
	struct mig_sample s;
	char line[256];
	FILE *f;
	int sync, n;

	ASSERT_EQ(mig_report_write_csv(&self->r, self->path), 0);
	f = fopen(self->path, "r");
	ASSERT_NE(NULL, f);
	ASSERT_NE(NULL, fgets(line, sizeof(line), f));
	EXPECT_STREQ("t,pass,remaining_bytes,dirty_rate_bytes_per_s,throughput_bytes_per_s,"
		     "throttle_pct,sync\n",
		     line);
	while (fgets(line, sizeof(line), f)) {
		ASSERT_LT(rows, variant->nr_samples);
		n = -1;
		ASSERT_EQ(7, sscanf(line, "%lf,%" SCNu64 ",%" SCNu64 ",%lf,%lf,%u,%d%n", &t, &pass,
				    &remaining, &dirty, &tput, &throttle, &sync, &n));
		EXPECT_STREQ("\n", line + n);
		s = make_sample(rows);
		EXPECT_LT(fabs(t - s.t), 0.001);
		EXPECT_EQ(s.pass, pass);
		EXPECT_EQ(s.remaining_bytes, remaining);
		EXPECT_LT(fabs(dirty - s.dirty_rate), 1);
		EXPECT_LT(fabs(tput - s.throughput), 1);
		EXPECT_EQ(s.throttle_pct, throttle);
		EXPECT_EQ(s.sync, sync);
		rows++;
	}
	fclose(f);
	EXPECT_EQ(variant->nr_samples, rows);
}

TEST_F(report, svg_well_formed)
{
	static const char *const classes[NR_SERIES] = {
		"class=\"remaining\"", "class=\"dirty-rate\"", "class=\"throughput\"",
		"class=\"throttle\"",
	};
	unsigned int i, syncs = 0;
	char *svg;
	size_t len;

	ASSERT_EQ(mig_report_write_svg(&self->r, self->path, SVG_TITLE), 0);
	svg = slurp(self->path);
	ASSERT_NE(NULL, svg);
	len = strlen(svg);
	while (len && strchr(" \n", svg[len - 1]))
		svg[--len] = '\0';
	EXPECT_EQ(0, strncmp(svg, "<svg", 4));
	EXPECT_TRUE(len > 6 && !strcmp(svg + len - 6, "</svg>"));
	EXPECT_TRUE(xml_well_formed(svg));
	EXPECT_NE(NULL, strstr(svg, SVG_TITLE_ESCAPED));
	EXPECT_EQ(NULL, strstr(svg, "<b>"));
	EXPECT_EQ(NULL, strstr(svg, "nan"));
	EXPECT_EQ(NULL, strstr(svg, "inf"));
	EXPECT_EQ(variant->nr_samples ? NR_SERIES : 0U, count_str(svg, "<polyline"));
	for (i = 0; i < NR_SERIES; i++)
		EXPECT_EQ(variant->nr_samples ? 1U : 0U, count_str(svg, classes[i]));
	for (i = 0; i < variant->nr_samples; i++)
		syncs += make_sample(i).sync;
	EXPECT_EQ(syncs, count_str(svg, "class=\"sync\""));
	free(svg);
}

TEST_F(report, json_one_line)
{
	static const char *const keys[] = {
		"event", "status", "total_s", "downtime_ms", "setup_ms", "passes", "syncs",
		"bytes_sent", "pages_sent", "zero_pages", "dirty_pages", "max_throttle_pct",
		"throughput_bytes_per_s", "dirty_backend", "throttle_backend", "error",
	};
	char *json, val[64];
	unsigned int i;

	json = print_json(&self->r);
	ASSERT_NE(NULL, json);
	EXPECT_EQ(1U, count_str(json, "\n"));
	EXPECT_EQ('\n', json[strlen(json) - 1]);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		EXPECT_EQ(1, json_get(json, keys[i], val, sizeof(val)))
			TH_LOG("key %s in %s", keys[i], json);
	}
	ASSERT_EQ(1, json_get(json, "event", val, sizeof(val)));
	EXPECT_STREQ("report", val);
	ASSERT_EQ(1, json_get(json, "zero_pages", val, sizeof(val)));
	EXPECT_STREQ("86432", val);
	ASSERT_EQ(1, json_get(json, "downtime_ms", val, sizeof(val)));
	EXPECT_EQ(123.5, strtod(val, NULL));
	ASSERT_EQ(1, json_get(json, "dirty_backend", val, sizeof(val)));
	EXPECT_STREQ("ring", val);
	ASSERT_EQ(1, json_get(json, "error", val, sizeof(val)));
	EXPECT_STREQ("null", val);
	EXPECT_EQ(2U, count_str(json, "\"mechanism\""));
	EXPECT_NE(NULL, strstr(json, "\"vcpu_throttle\":[{\"vcpu\":0,"
			       "\"mechanism\":\"module-dirty-limit\",\"max_pct\":0,"
			       "\"dirty_limit_bytes_per_s\":2000000,\"slept_ms\":1234.4},"
			       "{\"vcpu\":1,\"mechanism\":\"vmm-cpu-throttle\",\"max_pct\":40,"
			       "\"dirty_limit_bytes_per_s\":0,\"slept_ms\":null}]"))
		TH_LOG("%s", json);
	free(json);
}

TEST_F(report, text_names_fields)
{
	char *text = print_text(&self->r);

	ASSERT_NE(NULL, text);
	EXPECT_NE(NULL, strstr(text, "downtime:"));
	EXPECT_NE(NULL, strstr(text, "123.5 ms"));
	EXPECT_NE(NULL, strstr(text, "zero pages:"));
	EXPECT_NE(NULL, strstr(text, "86432"));
	EXPECT_NE(NULL, strstr(text, "3.00 GiB"));
	EXPECT_NE(NULL, strstr(text, "1050.0 MB/s (8.40 Gbit/s)"));
	EXPECT_NE(NULL, strstr(text, "vCPU 0 throttle:  module-dirty-limit 2.0 MB/s, slept 1234 ms\n"))
		TH_LOG("%s", text);
	/* A VMM's throttle op does not say how long the vCPU slept. */
	EXPECT_NE(NULL, strstr(text, "vCPU 1 throttle:  vmm-cpu-throttle up to 40%\n"));
	EXPECT_EQ(NULL, strstr(text, "error"));
	free(text);
}

TEST(failure_escaped)
{
	struct mig_report r = { .state = MIG_FAILED, .dirty_backend = "bitmap" };
	char *json, *text, val[256];

	snprintf(r.error, sizeof(r.error), "%s", FAIL_MSG);
	json = print_json(&r);
	ASSERT_NE(NULL, json);
	EXPECT_EQ(1U, count_str(json, "\n"));
	ASSERT_EQ(1, json_get(json, "error", val, sizeof(val))) TH_LOG("%s", json);
	EXPECT_STREQ(FAIL_MSG, val);
	ASSERT_EQ(1, json_get(json, "throttle_backend", val, sizeof(val)));
	EXPECT_STREQ("null", val);
	free(json);

	text = print_text(&r);
	ASSERT_NE(NULL, text);
	EXPECT_NE(NULL, strstr(text, "error:"));
	EXPECT_NE(NULL, strstr(text, "peer said \"no\""));
	/* No throttle backend was chosen: no per-vCPU lines. */
	EXPECT_EQ(NULL, strstr(text, "vCPU"));
	free(text);
}

TEST(odd_values)
{
	struct mig_report r = { .state = MIG_CANCELLED, .total_s = NAN, .throughput = INFINITY };
	struct mig_sample odd[] = {
		{ .t = NAN, .dirty_rate = -INFINITY, .throughput = NAN },
		{ .t = -1, .dirty_rate = 1e300, .throughput = 1e-310, .throttle_pct = 1000 },
		{ .t = INFINITY, .remaining_bytes = UINT64_MAX, .dirty_rate = 1e-300 },
	};
	char path[] = "/tmp/mig_report_test.XXXXXX", *json, *svg, val[64];
	unsigned int i;
	int fd;

	for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		ASSERT_EQ(0, mig_report_add_sample(&r, &odd[i]));
	json = print_json(&r);
	ASSERT_NE(NULL, json);
	ASSERT_EQ(1, json_get(json, "total_s", val, sizeof(val))) TH_LOG("%s", json);
	EXPECT_STREQ("null", val);
	free(json);

	fd = mkstemp(path);
	ASSERT_GE(fd, 0);
	close(fd);
	EXPECT_EQ(0, mig_report_write_svg(&r, path, ""));
	svg = slurp(path);
	unlink(path);
	mig_report_free(&r);
	ASSERT_NE(NULL, svg);
	EXPECT_TRUE(xml_well_formed(svg));
	EXPECT_EQ(NULL, strstr(svg, "nan"));
	EXPECT_EQ(NULL, strstr(svg, "inf"));
	free(svg);
}

TEST(io_errors)
{
	static const char *const missing = "/nonexistent-kvmmig-dir/report";
	struct mig_report r;

	fill_report(_metadata, &r, 300);
	kvmmig_set_log(quiet_log, KVMMIG_LOG_ERR);
	EXPECT_EQ(-ENOENT, mig_report_write_csv(&r, missing));
	EXPECT_NE(NULL, strstr(kvmmig_last_error(), missing));
	EXPECT_EQ(-ENOENT, mig_report_write_svg(&r, missing, "t"));
	EXPECT_NE(NULL, strstr(kvmmig_last_error(), missing));
	if (access("/dev/full", W_OK) == 0) {
		EXPECT_EQ(-ENOSPC, mig_report_write_csv(&r, "/dev/full"));
		EXPECT_NE(NULL, strstr(kvmmig_last_error(), "/dev/full"));
		EXPECT_EQ(-ENOSPC, mig_report_write_svg(&r, "/dev/full", "t"));
	}
	mig_report_free(&r);
	EXPECT_EQ(NULL, r.samples);
	EXPECT_EQ(0U, r.nr_samples);
}

TEST(add_sample_grows_geometrically)
{
	struct mig_report r = { 0 };
	unsigned int i, grows = 0, cap = 0;
	struct mig_sample s;

	for (i = 0; i < 100000; i++) {
		s = make_sample(i);
		ASSERT_EQ(0, mig_report_add_sample(&r, &s));
		if (r.cap_samples != cap) {
			grows++;
			cap = r.cap_samples;
		}
		ASSERT_GE(r.cap_samples, r.nr_samples);
	}
	EXPECT_EQ(100000U, r.nr_samples);
	EXPECT_LE(grows, 12U);
	EXPECT_LE(r.cap_samples, 2 * r.nr_samples);
	for (i = 0; i < r.nr_samples; i += 997)
		EXPECT_EQ(make_sample(i).remaining_bytes, r.samples[i].remaining_bytes);
	mig_report_free(&r);
	mig_report_free(&r);
}

/* Every latency lands in the slot whose bounds hold it, slots in order. */
TEST(lat_hist_slots_hold_their_values)
{
	static const uint64_t big[] = { 1ULL << 23, (1ULL << 24) - 1, 1ULL << 24, 1ULL << 40 };
	uint64_t us, hist[LAT_HIST_SLOTS];
	unsigned int i;
	int slot;

	for (i = 1; i < LAT_HIST_SLOTS; i++)
		ASSERT_LE(lat_hist_slot_lo(i), lat_hist_slot_hi(i - 1));
	for (us = 0; us < (1ULL << 20); us++) {
		memset(hist, 0, sizeof(hist));
		lat_hist_add(hist, us);
		slot = lat_hist_percentile_slot(hist, 100);
		ASSERT_GE(slot, 0);
		ASSERT_LE(lat_hist_slot_lo(slot), us) TH_LOG("%" PRIu64 " us in slot %d", us, slot);
		ASSERT_LT(us, lat_hist_slot_hi(slot)) TH_LOG("%" PRIu64 " us in slot %d", us, slot);
		ASSERT_EQ(1ULL, lat_hist_bucket(hist, slot / LAT_HIST_SUB));
	}
	for (i = 0; i < sizeof(big) / sizeof(big[0]); i++) {
		memset(hist, 0, sizeof(hist));
		lat_hist_add(hist, big[i]);
		EXPECT_EQ(1ULL, lat_hist_count(hist));
		EXPECT_EQ(big[i] < (1ULL << 23) ? 0ULL : 1ULL,
			  lat_hist_bucket(hist, LAT_HIST_BUCKETS - 1));
	}
}

/* p50 and p99 to an eighth of a bucket: a 1 ms goal is told from 1024 us. */
TEST(lat_hist_percentiles_within_a_slot)
{
	struct mig_report r = { 0 };
	char *text = NULL;
	size_t len = 0;
	unsigned int i;
	FILE *f;

	EXPECT_EQ(0ULL, lat_hist_percentile_us(r.postcopy_fault_us_hist, 50));
	for (i = 0; i < 98; i++)
		lat_hist_add(r.postcopy_fault_us_hist, 70);
	lat_hist_add(r.postcopy_fault_us_hist, 900);
	lat_hist_add(r.postcopy_fault_us_hist, 5000);
	/* 70 us: bucket [64, 128), slot [64, 72). */
	EXPECT_EQ(72ULL, lat_hist_percentile_us(r.postcopy_fault_us_hist, 50));
	EXPECT_EQ(64ULL, lat_hist_percentile_floor_us(r.postcopy_fault_us_hist, 50));
	/* 900 us: slot [896, 960), under a 1 ms goal that a bucket could not decide. */
	EXPECT_EQ(960ULL, lat_hist_percentile_us(r.postcopy_fault_us_hist, 99));
	EXPECT_EQ(5120ULL, lat_hist_percentile_us(r.postcopy_fault_us_hist, 100));
	r.postcopy = true;
	f = open_memstream(&text, &len);
	ASSERT_NE(NULL, f);
	mig_report_print(&r, f);
	fclose(f);
	EXPECT_NE(NULL, strstr(text, "p50 72 us, p99 960 us")) TH_LOG("%s", text);
	EXPECT_NE(NULL, strstr(text, "[64, 128) us: 98")) TH_LOG("%s", text);
	EXPECT_NE(NULL, strstr(text, "[512, 1024) us: 1")) TH_LOG("%s", text);
	EXPECT_NE(NULL, strstr(text, "[4096, 8192) us: 1")) TH_LOG("%s", text);
	free(text);
}

TEST_HARNESS_MAIN
