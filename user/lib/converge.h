/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The convergence controller shared by `kvmmig migrate --policy converge`
 * and `kvmmig converge` (any VMM's migration): a pure function of what is
 * measured at each tick (remaining bytes, bandwidth, per-vCPU dirty rates),
 * with no I/O, so it is tested without KVM (selftests/converge_test.c).
 * It answers with per-vCPU dirty limits in bytes/s (0: none), set only on
 * vCPUs that dirty and can be limited, and just strong enough.  The rule
 * (Documentation/converge.rst):
 *
 *   goal G = bandwidth * downtime / 2 (half the downtime, as a margin)
 *   excess E = remaining - G
 *   H = time left before the deadline minus the downtime, or, without a
 *       deadline, twice what the backlog takes at the full bandwidth
 *       (2 * remaining / bandwidth), at least horizon_s
 *   allowed total dirty rate A = bandwidth - E / H
 *
 * The backlog shrinks at (bandwidth - dirty rate), so a total dirty rate of
 * A brings it from remaining to G in H seconds.  A is shared out by
 * water-filling: vCPUs that cannot be limited and vCPUs below idle_rate
 * (or above it in one period only, as a computing vCPU may be at its
 * start) keep their rate, the limitable dirtying vCPUs get one limit L with
 * sum(min(demand_i, L)) = A; a vCPU whose demand is below L gets no limit.
 * Raising any limit would make the total exceed A.  When A is below the
 * floor (every limitable dirtying vCPU at min_limit), the verdict is
 * CONVERGE_INFEASIBLE with the reason, and every such vCPU gets min_limit
 * (the fastest finish there is); without a deadline that is only
 * infeasible when the floor is not below the bandwidth.  A vCPU held at its limit dirties at the
 * limit, not at what it wants: its demand is the highest rate seen since
 * it was last free (the caller says whether it was held).
 */
#ifndef KVMMIG_CONVERGE_H
#define KVMMIG_CONVERGE_H

#include <stdbool.h>
#include <stdint.h>

#define CONVERGE_MAX_VCPUS		64	/* MIG_MAX_VCPUS */
#define CONVERGE_HORIZON_S		10.0
/*
 * Below this a vCPU is not dirtying (bytes/s): a computing vCPU writes its
 * stack and counters again after every ring reset, which kvmmig.ko counted
 * at ~1.8 MB/s for the built-in guest's compute loop (Debian 6.1, 6.12).
 */
#define CONVERGE_IDLE_RATE		(4 << 20)
#define CONVERGE_MIN_LIMIT		(1 << 20)	/* bytes/s: the strongest limit */
#define CONVERGE_LIMIT_STEP		4096		/* limits are whole pages/s */
#define CONVERGE_BUSY_PERIODS		2		/* dirtying this many periods in a row */

struct converge_params {
	unsigned int nr_vcpus;
	double downtime_s;		/* downtime-limit */
	double deadline_s;		/* finish by then (from t = 0), 0: none */
	double horizon_s;		/* without a deadline; 0: CONVERGE_HORIZON_S */
	double idle_rate;		/* 0: CONVERGE_IDLE_RATE */
	double min_limit;		/* 0: CONVERGE_MIN_LIMIT */
};

/* One vCPU at one tick. */
struct converge_vcpu {
	double rate;			/* bytes/s dirtied over the last period */
	bool held;			/* its limit held it back in that period */
	bool can_limit;			/* the backend can limit this vCPU */
};

struct converge_tick {
	double t;			/* seconds since the start */
	uint64_t remaining;		/* bytes still to send */
	double bandwidth;		/* bytes/s measured (0: not yet known) */
	const struct converge_vcpu *vcpu;	/* nr_vcpus entries */
};

enum converge_verdict {
	CONVERGE_WAIT,			/* no bandwidth yet: limits unchanged */
	CONVERGE_FREE,			/* converges without limits */
	CONVERGE_LIMITED,		/* converges with the limits given */
	CONVERGE_INFEASIBLE,		/* not even at min_limit: see why */
	CONVERGE_DONE,			/* migration over: every limit lifted */
};

struct converge_out {
	enum converge_verdict verdict;
	uint64_t limit[CONVERGE_MAX_VCPUS];	/* bytes/s, 0: none */
	unsigned int nr_limited;
	double allowed;			/* A, bytes/s (< 0: nothing may dirty) */
	double floor;			/* total dirty rate at the strongest limits */
	double demand;			/* total dirty rate the guest wants */
	double eta_s;			/* time to converge at the limits, -1: never */
	char why[256];			/* CONVERGE_INFEASIBLE: the reason */
};

struct converge {
	struct converge_params p;
	double demand[CONVERGE_MAX_VCPUS];
	uint64_t limit[CONVERGE_MAX_VCPUS];
	unsigned int busy[CONVERGE_MAX_VCPUS];	/* periods in a row at idle_rate or more */
};

/* 0, or -EINVAL (said) for a bad parameter. */
int converge_init(struct converge *c, const struct converge_params *p);
/* One tick: the limits to apply now (always the whole set). */
void converge_tick(struct converge *c, const struct converge_tick *in,
		   struct converge_out *out);
/* The migration is over (any outcome): every limit lifted. */
void converge_finish(struct converge *c, struct converge_out *out);
/*
 * Seconds until the backlog fits the downtime at @bandwidth when the guest
 * dirties @rate bytes/s; -1 when it never does.
 */
double converge_eta(const struct converge *c, uint64_t remaining, double bandwidth,
		    double rate);
const char *converge_verdict_name(enum converge_verdict v);
/* @bytes as "1.5 MiB", or "24 KiB" below a MiB (small guests' rates), into @buf. */
const char *converge_fmt(char *buf, size_t len, double bytes);

/*
 * Whether a backend should move a vCPU's limit from @cur to @want: set,
 * lifted or tightened at once; raised only by more than 5%, so that the
 * noise of the rates does not rewrite a limit every tick (a limit kept a
 * little stronger still converges).
 */
static inline bool converge_limit_changed(uint64_t cur, uint64_t want)
{
	if (!cur || !want || want < cur)
		return want != cur;
	return want > cur + cur / 20;
}

/*
 * A backend with CPU throttles only: a vCPU throttled by @pct percent runs
 * (100 - pct)% of the time and dirties about that share of its demand.
 */
static inline double converge_demand_under_cpu(double rate, unsigned int pct)
{
	return pct < 100 ? rate * 100 / (100 - pct) : rate;
}

/* The CPU throttle that runs a vCPU limit / demand of the time (0: none, at most 99). */
static inline unsigned int converge_cpu_pct(double demand, uint64_t limit)
{
	double run = demand > 0 ? limit / demand : 1;

	if (!limit || run >= 1)
		return 0;
	return run <= 0.01 ? 99 : (unsigned int)(100 - run * 100 + 0.5);
}

#endif /* KVMMIG_CONVERGE_H */
