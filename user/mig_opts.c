// SPDX-License-Identifier: GPL-2.0-only
/*
 * Parsing of the migration parameters (see mig_opts.h).
 */
#include <stdio.h>
#include <string.h>

#include "mig_opts.h"
#include "stream.h"

#define MIG_MAX_BANDWIDTH	(1ULL << 50)

/* Percentages: 0 is no throttle step at all, as in QEMU's parameter checks. */
static int parse_pct(const char *opt, const char *arg, unsigned int max, unsigned int *out)
{
	uint64_t v;

	if (parse_uint(opt, arg, 1, max, &v))
		return -1;
	*out = v;
	return 1;
}

/* 0 is unlimited, as in QEMU; below 1K a second nothing would get through. */
static int parse_bandwidth(const char *arg, uint64_t *out)
{
	uint64_t v;

	if (size_value(arg, &v) || v > MIG_MAX_BANDWIDTH || (v && v < 1024)) {
		opt_bad("--max-bandwidth", arg,
			"expected bytes per second from 1K to 1P, such as 200M, or 0 for unlimited");
		return -1;
	}
	*out = v;
	return 1;
}

/* --x-postcopy-hint on|off, --x-postcopy-start auto|manual|passes:N */
static int parse_postcopy(struct mig_params *p, int c, const char *arg)
{
	int r;

	if (c == MIG_OPT_POSTCOPY_HINT) {
		if (strcmp(arg, "on") && strcmp(arg, "off")) {
			opt_bad("--x-postcopy-hint", arg, "expected on or off");
			return -1;
		}
		p->postcopy_hint = !strcmp(arg, "on");
		return 1;
	}
	r = mig_postcopy_start_parse(arg, &p->postcopy_after_passes);
	if (r < 0) {
		opt_bad("--x-postcopy-start", arg,
			"expected auto, manual or passes:N with N from 1 to 1000000");
		return -1;
	}
	p->postcopy_start = r;
	return 1;
}

int mig_opts_parse(struct mig_params *p, int c, const char *arg)
{
	uint64_t v;
	int r;

	switch (c) {
	case 0x100:
		return parse_uint("--downtime-limit", arg, 1, 2000000, &p->downtime_limit_ms) ? -1 : 1;
	case 0x101:
		return parse_bandwidth(arg, &p->max_bandwidth);
	case 0x102:
		if (parse_uint("--multifd-channels", arg, 1, 64, &v))
			return -1;
		p->multifd_channels = v;
		return 1;
	case 0x103:
		if (!strcmp(arg, "multifd") || !strcmp(arg, "none")) {
			p->zero_page_detection = !strcmp(arg, "multifd");
			return 1;
		}
		opt_bad("--zero-page-detection", arg, "expected multifd or none");
		return -1;
	case 0x104:
		r = mig_sync_mode_parse(arg);
		if (r < 0) {
			opt_bad("--sync", arg, "expected legacy, background or periodic");
			return -1;
		}
		p->sync_mode = r;
		return 1;
	case 0x105:
		if (parse_uint("--sync-interval", arg, 100, 600000, &v))
			return -1;
		p->sync_interval_ms = v;
		return 1;
	case 0x106:
		r = mig_policy_parse(arg);
		if (r < 0) {
			opt_bad("--policy", arg, "expected none, auto-converge, dirty-limit, rate-driven or converge");
			return -1;
		}
		p->policy = r;
		return 1;
	case 0x107:
		return parse_pct("--cpu-throttle-initial", arg, 99, &p->cpu_throttle_initial);
	case 0x108:
		return parse_pct("--cpu-throttle-increment", arg, 99, &p->cpu_throttle_increment);
	case 0x109:
		return parse_pct("--max-cpu-throttle", arg, 99, &p->max_cpu_throttle);
	case 0x10a:
		return parse_pct("--throttle-trigger-threshold", arg, 100,
				 &p->throttle_trigger_threshold);
	case 0x10b:
		p->cpu_throttle_tailslow = true;
		return 1;
	case 0x10c:
		return parse_uint("--vcpu-dirty-limit", arg, 1, 1000000, &p->vcpu_dirty_limit) ? -1 : 1;
	case 0x10d:
		if (parse_uint("--x-vcpu-dirty-limit-period", arg, 1, 1000, &v))
			return -1;
		p->dirty_limit_period_ms = v;
		return 1;
	case 0x10e:
		if (parse_uint("--max-passes", arg, 1, 1000000, &v))
			return -1;
		p->max_passes = v;
		return 1;
	case 0x10f:
		r = mig_rate_source_parse(arg);
		if (r < 0) {
			opt_bad("--x-rate-source", arg, "expected dirty or bpf");
			return -1;
		}
		p->rate_source = r;
		return 1;
	case 0x110:
		if (parse_uint("--connect-timeout", arg, 1, 3600, &v))
			return -1;
		p->connect_timeout_ms = v * 1000;
		return 1;
	case 0x111:
		if (parse_uint("--io-timeout", arg, 1, 3600, &v))
			return -1;
		p->io_timeout_ms = v * 1000;
		return 1;
	case 0x112:
		if (parse_uint("--converge-within", arg, 1, 86400, &v))
			return -1;
		p->converge_within_s = v;
		return 1;
	case MIG_OPT_POSTCOPY:
		p->postcopy_ram = true;
		return 1;
	case MIG_OPT_POSTCOPY_PREEMPT:
		p->postcopy_preempt = true;
		return 1;
	case MIG_OPT_POSTCOPY_HINT:
	case MIG_OPT_POSTCOPY_START:
		return parse_postcopy(p, c, arg);
	case MIG_OPT_POSTCOPY_RECOVER:
		if (parse_uint("--postcopy-recover-timeout", arg, 0, 86400, &v))
			return -1;
		p->postcopy_recover_timeout_ms = v * 1000;
		return 1;
	}
	return 0;
}

int mig_opts_postcopy_check(const struct mig_params *p, unsigned int given, const char *cmd)
{
	static const char *const names[] = {
		[MIG_OPT_POSTCOPY_PREEMPT - MIG_OPT_POSTCOPY] =
			"--postcopy-preempt is a postcopy capability",
		[MIG_OPT_POSTCOPY_HINT - MIG_OPT_POSTCOPY] =
			"--x-postcopy-hint steers postcopy's background scan",
		[MIG_OPT_POSTCOPY_START - MIG_OPT_POSTCOPY] =
			"--x-postcopy-start says when to switch to postcopy",
		[MIG_OPT_POSTCOPY_RECOVER - MIG_OPT_POSTCOPY] =
			"--postcopy-recover-timeout bounds postcopy's recovery",
	};
	unsigned int i;

	for (i = 1; !p->postcopy_ram && i < sizeof(names) / sizeof(names[0]); i++) {
		if (given & (1u << i)) {
			fprintf(stderr, "kvmmig %s: %s: add --postcopy\n", cmd, names[i]);
			return -1;
		}
	}
	/* The preempt channel is a page channel too (postcopy.rst: the protocol). */
	if (p->postcopy_preempt && p->multifd_channels + 2 > MIG_MAX_CHANNELS) {
		fprintf(stderr, "kvmmig %s: --postcopy-preempt takes a page channel of its own: --multifd-channels %u is more than the %d it leaves\n",
			cmd, p->multifd_channels, MIG_MAX_CHANNELS - 2);
		return -1;
	}
	return 0;
}

int tls_opts_parse(struct tls_opts *t, int c, const char *arg)
{
	const char **slot;

	switch (c) {
	case 0x120:
		slot = &t->creds_dir;
		break;
	case 0x121:
		slot = &t->psk_file;
		break;
	case 0x122:
		slot = &t->psk_user;
		break;
	case 0x123:
		slot = &t->hostname;
		break;
	case 0x124:
		slot = &t->authz;
		break;
	default:
		return 0;
	}
	if (!*arg) {
		fprintf(stderr, "kvmmig: an empty value for a --tls-* option: expected a path, a name or a DN\n");
		return -1;
	}
	*slot = arg;
	return 1;
}

int tls_opts_check(const struct tls_opts *t, const char *cmd)
{
	const char *why = NULL;

	if (t->creds_dir && t->psk_file)
		why = "--tls-creds and --tls-psk are exclusive: x509 or a pre-shared key";
	else if (t->psk_user && !t->psk_file)
		why = "--tls-psk-user names a key of --tls-psk FILE, which is missing";
	else if ((t->hostname || t->authz) && !t->creds_dir)
		why = "--tls-hostname and --tls-authz check certificates: they need --tls-creds DIR";
	if (why)
		fprintf(stderr, "kvmmig %s: %s\n", cmd, why);
	return why ? -1 : 0;
}
