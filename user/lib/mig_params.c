// SPDX-License-Identifier: GPL-2.0-only
/*
 * Migration parameters: QEMU's defaults, and the names of sync modes,
 * policies, throttle mechanisms and states as the command line and the
 * JSON output spell them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "net.h"

void mig_params_init(struct mig_params *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_limit_ms = 300;
	p->multifd_channels = 1;
	p->zero_page_detection = true;
	p->sync_mode = MIG_SYNC_LEGACY;
	p->sync_interval_ms = 5000;
	p->policy = MIG_POLICY_NONE;
	p->cpu_throttle_initial = 20;
	p->cpu_throttle_increment = 10;
	p->max_cpu_throttle = 99;
	p->throttle_trigger_threshold = 50;
	p->vcpu_dirty_limit = 1;
	p->dirty_limit_period_ms = 1000;
	p->dirty_backend = DIRTY_AUTO;
	p->dirty_clear_on_send = true;
	p->connect_timeout_ms = NET_CONNECT_TIMEOUT_MS;
	p->io_timeout_ms = NET_IO_TIMEOUT_MS;
	p->postcopy_hint = true;
	p->postcopy_start = MIG_POSTCOPY_START_AUTO;
}

static const char *const sync_names[NR_MIG_SYNC_MODES] = {
	"legacy", "background", "periodic",
};
static const char *const policy_names[NR_MIG_POLICIES] = {
	"none", "auto-converge", "dirty-limit", "rate-driven", "converge",
};
static const char *const rate_source_names[NR_MIG_RATE_SOURCES] = {
	"dirty", "bpf",
};
static const char *const throttle_mech_names[NR_MIG_THROTTLE_MECHS] = {
	"none", "vmm-cpu-throttle", "module-cpu-throttle", "module-dirty-limit",
};
static const char *const state_names[NR_MIG_STATES] = {
	"setup", "active", "switchover", "completed", "failed", "cancelled",
	"postcopy-active", "postcopy-paused", "postcopy-recover",
};
static const char *const postcopy_start_names[NR_MIG_POSTCOPY_STARTS] = {
	"auto", "manual", "passes",
};

static int name_parse(const char *const *names, int n, const char *s)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return i;
	return -EINVAL;
}

const char *mig_sync_mode_name(enum mig_sync_mode m)
{
	return m < NR_MIG_SYNC_MODES ? sync_names[m] : "?";
}

int mig_sync_mode_parse(const char *s)
{
	return name_parse(sync_names, NR_MIG_SYNC_MODES, s);
}

const char *mig_policy_name(enum mig_policy p)
{
	return p < NR_MIG_POLICIES ? policy_names[p] : "?";
}

int mig_policy_parse(const char *s)
{
	return name_parse(policy_names, NR_MIG_POLICIES, s);
}

const char *mig_rate_source_name(enum mig_rate_source r)
{
	return r < NR_MIG_RATE_SOURCES ? rate_source_names[r] : "?";
}

int mig_rate_source_parse(const char *s)
{
	return name_parse(rate_source_names, NR_MIG_RATE_SOURCES, s);
}

const char *mig_state_name(enum mig_state s)
{
	return s < NR_MIG_STATES ? state_names[s] : "?";
}

const char *mig_postcopy_start_name(enum mig_postcopy_start m)
{
	return m < NR_MIG_POSTCOPY_STARTS ? postcopy_start_names[m] : "?";
}

int mig_postcopy_start_parse(const char *s, unsigned int *passes)
{
	char *end;
	unsigned long n;

	if (strncmp(s, "passes:", 7))
		return strcmp(s, "passes") ? name_parse(postcopy_start_names, NR_MIG_POSTCOPY_STARTS, s) :
					     -EINVAL;
	errno = 0;
	n = strtoul(s + 7, &end, 10);
	if (errno || end == s + 7 || *end || !n || n > 1000000)
		return -EINVAL;
	*passes = n;
	return MIG_POSTCOPY_START_PASSES;
}

const char *mig_throttle_mech_name(enum mig_throttle_mech m)
{
	return m < NR_MIG_THROTTLE_MECHS ? throttle_mech_names[m] : "?";
}
