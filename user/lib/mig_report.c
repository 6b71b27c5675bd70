// SPDX-License-Identifier: GPL-2.0-only
/*
 * The outputs of a finished migration: a concise text report in the manner
 * of QEMU's `info migrate`, the same as one JSON line, the sample timeline
 * as CSV, and a self-contained SVG chart of that timeline (remaining bytes,
 * dirty rate and throughput, throttle, sync markers) that needs no script
 * or external resource.  A migration that switched to postcopy adds its
 * figures and the remote-fault latency histogram (powers of two of
 * microseconds, as QEMU 10.1 prints it).  Also the timeline's growable
 * sample array.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "mig_report.h"

#define MIB			(1024.0 * 1024.0)
#define MB			1e6
#define SAMPLES_MIN_CAP		64
#define ARRAY_SIZE(a)		(sizeof(a) / sizeof((a)[0]))

int mig_report_add_sample(struct mig_report *r, const struct mig_sample *s)
{
	struct mig_sample *samples;
	unsigned int cap;

	if (r->nr_samples == r->cap_samples) {
		if (r->cap_samples == UINT_MAX)
			return -E2BIG;
		if (!r->cap_samples)
			cap = SAMPLES_MIN_CAP;
		else if (r->cap_samples > UINT_MAX / 2)
			cap = UINT_MAX;
		else
			cap = r->cap_samples * 2;
		samples = reallocarray(r->samples, cap, sizeof(*samples));
		if (!samples)
			return -ENOMEM;
		r->samples = samples;
		r->cap_samples = cap;
	}
	r->samples[r->nr_samples++] = *s;
	return 0;
}

void mig_report_free(struct mig_report *r)
{
	free(r->samples);
	r->samples = NULL;
	r->nr_samples = 0;
	r->cap_samples = 0;
}

static bool report_has_error(const struct mig_report *r)
{
	return r->state == MIG_FAILED || r->state == MIG_CANCELLED;
}

static const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

/* Non-finite or negative measurements plot and print as 0. */
static double sane(double v)
{
	return isfinite(v) && v > 0 ? v : 0;
}

/* "1.50 GiB"; plain bytes below 1 KiB. */
static void format_bytes(uint64_t bytes, char *buf, size_t size)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = bytes;
	unsigned int i;

	if (bytes < 1024) {
		snprintf(buf, size, "%" PRIu64 " B", bytes);
		return;
	}
	for (i = 0, v /= 1024; v >= 1024 && i + 1 < ARRAY_SIZE(units); i++)
		v /= 1024;
	snprintf(buf, size, "%.2f %s", v, units[i]);
}

/* "module-dirty-limit 2.0 MB/s, slept 12 ms", "vmm-cpu-throttle up to 80%", "none". */
static void vcpu_throttle_print(const struct mig_vcpu_throttle *v, unsigned int i, FILE *f)
{
	char label[32];

	snprintf(label, sizeof(label), "vCPU %u throttle:", i);
	fprintf(f, "%-17s %s", label, mig_throttle_mech_name(v->mech));
	if (v->dirty_limit)
		fprintf(f, " %.1f MB/s", v->dirty_limit / MB);
	if (v->max_pct)
		fprintf(f, " up to %u%%", v->max_pct);
	if (v->slept_ms >= 0)
		fprintf(f, ", slept %.0f ms", v->slept_ms);
	fputc('\n', f);
}

/* Bucket @b of a lat_hist: [from, to) us; the last has no end (to = 0). */
static void lat_bucket(unsigned int b, uint64_t *from, uint64_t *to)
{
	*from = lat_hist_lo(b);
	*to = b + 1 < LAT_HIST_BUCKETS ? 2ULL << b : 0;
}

/* The non-empty buckets, one a line: "    [64, 128) us: 12". */
static void lat_hist_print(const uint64_t *hist, FILE *f)
{
	uint64_t from, to;
	unsigned int b;

	for (b = 0; b < LAT_HIST_BUCKETS; b++) {
		uint64_t n = lat_hist_bucket(hist, b);

		if (!n)
			continue;
		lat_bucket(b, &from, &to);
		if (to)
			fprintf(f, "    [%" PRIu64 ", %" PRIu64 ") us: %" PRIu64 "\n", from, to, n);
		else
			fprintf(f, "    >= %" PRIu64 " us: %" PRIu64 "\n", from, n);
	}
}

static void postcopy_print(const struct mig_report *r, FILE *f)
{
	const uint64_t *hist = r->postcopy_fault_us_hist;

	fprintf(f, "postcopy:         yes%s\n", r->postcopy_preempt ? ", preempt channel" : "");
	fprintf(f, "  time:           %.3f s\n", sane(r->postcopy_s));
	fprintf(f, "  requests:       %" PRIu64 "\n", r->postcopy_requests);
	fprintf(f, "  urgent pages:   %" PRIu64 "\n", r->postcopy_urgent_pages);
	fprintf(f, "  background:     %" PRIu64 " pages\n", r->postcopy_background_pages);
	fprintf(f, "  dropped:        %" PRIu64 " pages (arrived already placed)\n",
		r->postcopy_dropped);
	fprintf(f, "  remote faults:  %" PRIu64 "\n", r->postcopy_remote_faults);
	fprintf(f, "  blocktime:      %.1f ms\n", r->postcopy_blocktime_ns / 1e6);
	fprintf(f, "  recoveries:     %u\n", r->postcopy_recoveries);
	if (!lat_hist_count(hist)) {
		fprintf(f, "  fault latency:  no remote fault\n");
		return;
	}
	fprintf(f, "  fault latency:  p50 %" PRIu64 " us, p99 %" PRIu64 " us\n",
		lat_hist_percentile_us(hist, 50), lat_hist_percentile_us(hist, 99));
	lat_hist_print(hist, f);
}

void mig_report_print(const struct mig_report *r, FILE *f)
{
	double tput = sane(r->throughput);
	char bytes[32];
	unsigned int i;

	format_bytes(r->bytes_sent, bytes, sizeof(bytes));
	fprintf(f, "status:           %s\n", mig_state_name(r->state));
	fprintf(f, "total time:       %.3f s\n", r->total_s);
	fprintf(f, "downtime:         %.1f ms\n", r->downtime_ms);
	fprintf(f, "setup time:       %.1f ms\n", r->setup_ms);
	fprintf(f, "passes:           %" PRIu64 "\n", r->passes);
	fprintf(f, "syncs:            %" PRIu64 "\n", r->syncs);
	fprintf(f, "bytes sent:       %s (%" PRIu64 " bytes)\n", bytes, r->bytes_sent);
	fprintf(f, "pages with data:  %" PRIu64 "\n", r->pages_sent);
	fprintf(f, "zero pages:       %" PRIu64 "\n", r->zero_pages);
	fprintf(f, "dirty pages:      %" PRIu64 "\n", r->dirty_pages);
	fprintf(f, "max throttle:     %u%%\n", r->max_throttle_pct);
	fprintf(f, "throughput:       %.1f MB/s (%.2f Gbit/s)\n", tput / MB, tput * 8 / 1e9);
	fprintf(f, "dirty backend:    %s\n", str_or(r->dirty_backend, "-"));
	fprintf(f, "throttle backend: %s\n", str_or(r->throttle_backend, "none"));
	for (i = 0; i < r->nr_vcpus && i < ARRAY_SIZE(r->vcpu_throttle); i++)
		vcpu_throttle_print(&r->vcpu_throttle[i], i, f);
	if (r->rate_source)
		fprintf(f, "rate source:      %s\n", r->rate_source);
	fprintf(f, "tls:              %s\n", str_or(r->tls, "none (plaintext)"));
	if (r->postcopy)
		postcopy_print(r, f);
	if (report_has_error(r))
		fprintf(f, "error:            %s\n", r->error[0] ? r->error : "(no reason given)");
}

/* Per vCPU: what throttled it (the report's "vCPU N throttle:" lines). */
static void report_json_vcpu_throttles(const struct mig_report *r, struct json_writer *w)
{
	const struct mig_vcpu_throttle *v;
	unsigned int i;

	json_key(w, "vcpu_throttle");
	json_array_begin(w);
	for (i = 0; i < r->nr_vcpus && i < ARRAY_SIZE(r->vcpu_throttle); i++) {
		v = &r->vcpu_throttle[i];
		json_object_begin(w);
		json_key_u64(w, "vcpu", i);
		json_key_str(w, "mechanism", mig_throttle_mech_name(v->mech));
		json_key_u64(w, "max_pct", v->max_pct);
		json_key_u64(w, "dirty_limit_bytes_per_s", v->dirty_limit);
		json_key_double(w, "slept_ms", v->slept_ms >= 0 ? v->slept_ms : NAN, 1);
		json_object_end(w);
	}
	json_array_end(w);
}

/* {"p50":N,"p99":N,"buckets":[{"from_us":64,"to_us":128,"count":12},...]}: non-empty ones. */
static void report_json_lat_hist(const uint64_t *hist, struct json_writer *w)
{
	uint64_t from, to;
	unsigned int b;

	json_object_begin(w);
	json_key_u64(w, "p50", lat_hist_percentile_us(hist, 50));
	json_key_u64(w, "p99", lat_hist_percentile_us(hist, 99));
	json_key(w, "buckets");
	json_array_begin(w);
	for (b = 0; b < LAT_HIST_BUCKETS; b++) {
		uint64_t n = lat_hist_bucket(hist, b);

		if (!n)
			continue;
		lat_bucket(b, &from, &to);
		json_object_begin(w);
		json_key_u64(w, "from_us", from);
		if (to)
			json_key_u64(w, "to_us", to);
		else
			json_key_null(w, "to_us");
		json_key_u64(w, "count", n);
		json_object_end(w);
	}
	json_array_end(w);
	json_object_end(w);
}

/* Always there, zero unless it switched: one schema for every report. */
static void report_json_postcopy(const struct mig_report *r, struct json_writer *w)
{
	json_key_bool(w, "postcopy", r->postcopy);
	json_key_bool(w, "postcopy_preempt", r->postcopy_preempt);
	json_key_double(w, "postcopy_s", r->postcopy_s, 3);
	json_key_u64(w, "postcopy_requests", r->postcopy_requests);
	json_key_u64(w, "postcopy_urgent_pages", r->postcopy_urgent_pages);
	json_key_u64(w, "postcopy_background_pages", r->postcopy_background_pages);
	json_key_u64(w, "postcopy_remote_faults", r->postcopy_remote_faults);
	json_key_double(w, "postcopy_blocktime_ms", r->postcopy_blocktime_ns / 1e6, 3);
	json_key_u64(w, "postcopy_dropped", r->postcopy_dropped);
	json_key_u64(w, "postcopy_recoveries", r->postcopy_recoveries);
	json_key(w, "postcopy_fault_latency_us");
	report_json_lat_hist(r->postcopy_fault_us_hist, w);
}

int mig_report_print_json(const struct mig_report *r, FILE *f)
{
	struct json_writer w;

	json_event_begin(&w, f, "report");
	json_key_str(&w, "status", mig_state_name(r->state));
	json_key_double(&w, "total_s", r->total_s, 3);
	json_key_double(&w, "downtime_ms", r->downtime_ms, 3);
	json_key_double(&w, "setup_ms", r->setup_ms, 3);
	json_key_u64(&w, "passes", r->passes);
	json_key_u64(&w, "syncs", r->syncs);
	json_key_u64(&w, "bytes_sent", r->bytes_sent);
	json_key_u64(&w, "pages_sent", r->pages_sent);
	json_key_u64(&w, "zero_pages", r->zero_pages);
	json_key_u64(&w, "dirty_pages", r->dirty_pages);
	json_key_u64(&w, "max_throttle_pct", r->max_throttle_pct);
	json_key_double(&w, "throughput_bytes_per_s", r->throughput, 0);
	json_key_str(&w, "dirty_backend", r->dirty_backend);
	json_key_str(&w, "throttle_backend", r->throttle_backend);
	report_json_vcpu_throttles(r, &w);
	json_key_str(&w, "rate_source", r->rate_source);
	json_key_str(&w, "tls", r->tls);
	report_json_postcopy(r, &w);
	json_key_str(&w, "error", report_has_error(r) ? r->error : NULL);
	return json_line_end(&w);
}

static int report_open(const char *path, FILE **f)
{
	*f = fopen(path, "w");
	if (!*f) {
		int err = errno;

		kvmmig_err("cannot create %s: %s", path, strerror(err));
		return -err;
	}
	/* A write error below leaves its errno for report_close(). */
	errno = 0;
	return 0;
}

static int report_close(FILE *f, const char *path)
{
	int err = 0;

	if (fflush(f) || ferror(f))
		err = errno ? errno : EIO;
	if (fclose(f) && !err)
		err = errno ? errno : EIO;
	if (!err)
		return 0;
	kvmmig_err("cannot write %s: %s", path, strerror(err));
	return -err;
}

/* An empty field for a measurement that is not a number. */
static void csv_double(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, ",%.0f", v);
	else
		fputc(',', f);
}

int mig_report_write_csv(const struct mig_report *r, const char *path)
{
	const struct mig_sample *s;
	unsigned int i;
	FILE *f;
	int ret;

	ret = report_open(path, &f);
	if (ret)
		return ret;
	fputs("t,pass,remaining_bytes,dirty_rate_bytes_per_s,throughput_bytes_per_s,"
	      "throttle_pct,sync\n",
	      f);
	for (i = 0; i < r->nr_samples; i++) {
		s = &r->samples[i];
		fprintf(f, "%.3f,%" PRIu64 ",%" PRIu64, sane(s->t), s->pass, s->remaining_bytes);
		csv_double(f, s->dirty_rate);
		csv_double(f, s->throughput);
		fprintf(f, ",%u,%d\n", s->throttle_pct, s->sync);
	}
	return report_close(f, path);
}

/*
 * The SVG chart: three panels over one time axis, remaining bytes on top,
 * dirty rate and throughput in the middle, the throttle in a small panel at
 * the bottom; dashed vertical lines at the sync samples.
 */
#define SVG_W		960
#define SVG_H		600
#define SVG_LEFT	80
#define SVG_RIGHT	30
#define SVG_PLOT_W	(SVG_W - SVG_LEFT - SVG_RIGHT)
#define SVG_X_TICKS	10
#define SVG_Y_TICKS	5
#define SVG_FONT	"font-family=\"sans-serif\" font-size=\"12\""
#define SVG_GRID	"#e3e3e3"
#define SVG_SYNC	"#8c8c8c"

/*
 * An axis from 0 to max, in steps of 1, 2 or 5 times a power of ten.  Rather
 * than six digits or more, tick labels are divided by scale and get a suffix
 * (250k, 1.5M).
 */
struct svg_axis {
	double max;
	double step;
	double scale;
	const char *suffix;
	int decimals;
};

struct svg_panel {
	double top, height;
	const char *label;
	unsigned int ticks;
	double fixed_max;	/* 0: from the data */
	struct svg_axis y;
};

struct svg_series {
	const char *name;	/* CSS class */
	const char *label;	/* legend */
	const char *color;
	unsigned int panel;
	double (*value)(const struct mig_sample *s);
};

static double sample_remaining_mib(const struct mig_sample *s)
{
	return s->remaining_bytes / MIB;
}

static double sample_dirty_mbs(const struct mig_sample *s)
{
	return sane(s->dirty_rate) / MB;
}

static double sample_throughput_mbs(const struct mig_sample *s)
{
	return sane(s->throughput) / MB;
}

static double sample_throttle(const struct mig_sample *s)
{
	return s->throttle_pct;
}

static const struct svg_series svg_series[] = {
	{ "remaining", "remaining (MiB)", "#1f77b4", 0, sample_remaining_mib },
	{ "dirty-rate", "dirty rate (MB/s)", "#d62728", 1, sample_dirty_mbs },
	{ "throughput", "throughput (MB/s)", "#2ca02c", 1, sample_throughput_mbs },
	{ "throttle", "throttle (%)", "#ff7f0e", 2, sample_throttle },
};

#define SVG_NR_SERIES	ARRAY_SIZE(svg_series)

static const struct svg_panel svg_panels_init[] = {
	{ .top = 80, .height = 170, .label = "remaining (MiB)", .ticks = SVG_Y_TICKS },
	{ .top = 274, .height = 170, .label = "rate (MB/s)", .ticks = SVG_Y_TICKS },
	{ .top = 468, .height = 80, .label = "throttle (%)", .ticks = 2, .fixed_max = 100 },
};

#define SVG_NR_PANELS	ARRAY_SIZE(svg_panels_init)

/* 1, 2 or 5 times a power of ten, at least @raw (> 0). */
static double nice_step(double raw)
{
	double mag = 1;

	while (mag * 10 <= raw)
		mag *= 10;
	while (mag > raw)
		mag /= 10;
	if (raw <= mag)
		return mag;
	if (raw <= 2 * mag)
		return 2 * mag;
	if (raw <= 5 * mag)
		return 5 * mag;
	return 10 * mag;
}

/*
 * About @ticks intervals from 0 to at least @data_max, without libm.  Axes
 * are in MiB, MB/s, s or %: below 0.001 nothing is worth showing, and past
 * 1e18 (the "E" suffix) the data is garbage and gets clamped.
 */
static void svg_axis_init(struct svg_axis *a, double data_max, unsigned int ticks)
{
	static const char *const suffixes[] = { "", "k", "M", "G", "T", "P", "E" };
	unsigned int i;
	double n, m;

	if (!(data_max >= 1e-3))
		data_max = 1;
	else if (data_max > 1e18)
		data_max = 1e18;
	a->step = nice_step(data_max / ticks);
	n = (uint64_t)(data_max / a->step);
	if (n * a->step < data_max * (1 - 1e-9))
		n++;
	a->max = n * a->step;
	for (a->scale = 1, i = 0;
	     a->max >= 1e5 && a->max / a->scale >= 1e3 && i + 1 < ARRAY_SIZE(suffixes); i++)
		a->scale *= 1e3;
	a->suffix = suffixes[i];
	for (a->decimals = 0, m = a->step / a->scale; m < 1 - 1e-9; m *= 10)
		a->decimals++;
}

static void svg_tick_label(FILE *f, const struct svg_axis *a, double v)
{
	if (v == 0)
		fputc('0', f);
	else
		fprintf(f, "%.*f%s", a->decimals, v / a->scale, a->suffix);
}

static double clamp_max(double v, double max)
{
	v = sane(v);
	return v < max ? v : max;
}

static double svg_x(const struct svg_axis *x, double t)
{
	return SVG_LEFT + clamp_max(t, x->max) / x->max * SVG_PLOT_W;
}

static double svg_y(const struct svg_panel *p, double v)
{
	return p->top + p->height - clamp_max(v, p->y.max) / p->y.max * p->height;
}

/* Text content or attribute value; drops control characters XML 1.0 forbids. */
static void xml_str(FILE *f, const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&apos;", f);
			break;
		default:
			if (*p >= 0x20 || *p == '\t' || *p == '\n')
				fputc(*p, f);
		}
	}
}

static void svg_header(FILE *f, const struct mig_report *r, const char *title)
{
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" " SVG_FONT ">\n",
		SVG_W, SVG_H, SVG_W, SVG_H);
	fputs("<title>", f);
	xml_str(f, title);
	fputs("</title>\n", f);
	fputs("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", f);
	fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", SVG_LEFT);
	xml_str(f, title);
	fputs("</text>\n", f);
	fprintf(f, "<text x=\"%d\" y=\"42\" fill=\"#555\">", SVG_LEFT);
	xml_str(f, mig_state_name(r->state));
	fprintf(f, ", %.1f s, downtime %.1f ms, %" PRIu64 " passes, %" PRIu64 " syncs",
		sane(r->total_s), sane(r->downtime_ms), r->passes, r->syncs);
	if (r->postcopy)
		fprintf(f, ", postcopy %.1f s (%" PRIu64 " remote faults)", sane(r->postcopy_s),
			r->postcopy_remote_faults);
	fputs("</text>\n", f);
}

static void svg_legend(FILE *f)
{
	double x = SVG_LEFT;
	unsigned int i;

	for (i = 0; i < SVG_NR_SERIES; i++, x += 165) {
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"60\" x2=\"%.1f\" y2=\"60\" stroke=\"%s\" "
			"stroke-width=\"2.5\"/>\n",
			x, x + 22, svg_series[i].color);
		fprintf(f, "<text x=\"%.1f\" y=\"64\">%s</text>\n", x + 28, svg_series[i].label);
	}
	fprintf(f,
		"<line x1=\"%.1f\" y1=\"60\" x2=\"%.1f\" y2=\"60\" stroke=\"" SVG_SYNC "\" "
		"stroke-dasharray=\"4 3\"/>\n",
		x, x + 22);
	fprintf(f, "<text x=\"%.1f\" y=\"64\">dirty sync</text>\n", x + 28);
}

/* Frame, grid, y ticks and label; the bottom panel also labels the time axis. */
static void svg_panel(FILE *f, const struct svg_panel *p, const struct svg_axis *x, bool bottom)
{
	double bot = p->top + p->height, v, px, py;
	unsigned int i;

	for (i = 0; (v = i * p->y.step) <= p->y.max * (1 + 1e-9); i++) {
		py = svg_y(p, v);
		fprintf(f,
			"<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"" SVG_GRID
			"\"/>\n",
			SVG_LEFT, py, SVG_W - SVG_RIGHT, py);
		fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", SVG_LEFT - 6, py + 4);
		svg_tick_label(f, &p->y, v);
		fputs("</text>\n", f);
	}
	for (i = 0; (v = i * x->step) <= x->max * (1 + 1e-9); i++) {
		px = svg_x(x, v);
		fprintf(f,
			"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"" SVG_GRID
			"\"/>\n",
			px, p->top, px, bot);
		if (!bottom)
			continue;
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", px, bot + 16);
		svg_tick_label(f, x, v);
		fputs("</text>\n", f);
	}
	fprintf(f,
		"<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"none\" "
		"stroke=\"#444\"/>\n",
		SVG_LEFT, p->top, SVG_PLOT_W, p->height);
	fprintf(f,
		"<text transform=\"translate(%d,%.1f) rotate(-90)\" text-anchor=\"middle\">"
		"%s</text>\n",
		24, p->top + p->height / 2, p->label);
	if (bottom)
		fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">time (s)</text>\n",
			SVG_LEFT + SVG_PLOT_W / 2, bot + 36);
}

static void svg_sync_markers(FILE *f, const struct mig_report *r, const struct svg_axis *x,
			     const struct svg_panel *first, const struct svg_panel *last)
{
	unsigned int i;
	double px;

	for (i = 0; i < r->nr_samples; i++) {
		if (!r->samples[i].sync)
			continue;
		px = svg_x(x, r->samples[i].t);
		fprintf(f,
			"<line class=\"sync\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
			"stroke=\"" SVG_SYNC "\" stroke-dasharray=\"4 3\"/>\n",
			px, first->top, px, last->top + last->height);
	}
}

/* One polyline per series; a single sample also gets a dot, a line being invisible. */
static void svg_polyline(FILE *f, const struct mig_report *r, const struct svg_series *s,
			 const struct svg_panel *p, const struct svg_axis *x)
{
	const struct mig_sample *smp;
	unsigned int i;

	fprintf(f,
		"<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" "
		"stroke-linejoin=\"round\" stroke-linecap=\"round\" points=\"",
		s->name, s->color);
	for (i = 0; i < r->nr_samples; i++) {
		smp = &r->samples[i];
		fprintf(f, "%s%.1f,%.1f", i % 8 ? " " : "\n", svg_x(x, smp->t),
			svg_y(p, s->value(smp)));
	}
	fputs("\"/>\n", f);
	if (r->nr_samples == 1)
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
			svg_x(x, r->samples[0].t), svg_y(p, s->value(&r->samples[0])), s->color);
}

static void svg_scale(const struct mig_report *r, struct svg_axis *x, struct svg_panel *panels)
{
	double max[SVG_NR_PANELS] = { 0 }, t_max = sane(r->total_s), v;
	unsigned int i, j;

	for (i = 0; i < r->nr_samples; i++) {
		if (sane(r->samples[i].t) > t_max)
			t_max = r->samples[i].t;
		for (j = 0; j < SVG_NR_SERIES; j++) {
			v = sane(svg_series[j].value(&r->samples[i]));
			if (v > max[svg_series[j].panel])
				max[svg_series[j].panel] = v;
		}
	}
	svg_axis_init(x, t_max, SVG_X_TICKS);
	for (j = 0; j < SVG_NR_PANELS; j++) {
		panels[j] = svg_panels_init[j];
		svg_axis_init(&panels[j].y, panels[j].fixed_max ?: max[j], panels[j].ticks);
	}
}

int mig_report_write_svg(const struct mig_report *r, const char *path, const char *title)
{
	struct svg_panel panels[SVG_NR_PANELS];
	const struct svg_panel *last = &panels[SVG_NR_PANELS - 1];
	struct svg_axis x;
	unsigned int i;
	FILE *f;
	int ret;

	ret = report_open(path, &f);
	if (ret)
		return ret;
	svg_scale(r, &x, panels);
	svg_header(f, r, title ? title : "migration");
	svg_legend(f);
	for (i = 0; i < SVG_NR_PANELS; i++)
		svg_panel(f, &panels[i], &x, &panels[i] == last);
	svg_sync_markers(f, r, &x, &panels[0], last);
	if (r->nr_samples) {
		for (i = 0; i < SVG_NR_SERIES; i++)
			svg_polyline(f, r, &svg_series[i], &panels[svg_series[i].panel], &x);
	} else {
		fprintf(f,
			"<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#888\">"
			"no samples</text>\n",
			SVG_LEFT + SVG_PLOT_W / 2, panels[0].top + panels[0].height / 2);
	}
	fputs("</svg>\n", f);
	return report_close(f, path);
}
