// SPDX-License-Identifier: GPL-2.0-only
/*
 * The convergence controller (the rule is in converge.h and
 * Documentation/converge.rst): per tick, the total dirty rate that brings
 * the backlog to half the downtime's worth in time, shared out over the
 * vCPUs that dirty by water-filling, so that the lightest writers run free
 * and the heaviest ones share one limit.  No I/O, no clock: the callers
 * measure and apply.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "converge.h"
#include "log.h"

#define MIB	(1024.0 * 1024.0)

static const char *const verdict_names[] = {
	"wait", "free", "limited", "infeasible", "done",
};

const char *converge_verdict_name(enum converge_verdict v)
{
	return v <= CONVERGE_DONE ? verdict_names[v] : "?";
}

int converge_init(struct converge *c, const struct converge_params *p)
{
	if (!p->nr_vcpus || p->nr_vcpus > CONVERGE_MAX_VCPUS) {
		kvmmig_err("converge: %u vCPUs, expected 1 to %u", p->nr_vcpus,
			   CONVERGE_MAX_VCPUS);
		return -EINVAL;
	}
	if (p->downtime_s <= 0 || p->deadline_s < 0 || p->horizon_s < 0 ||
	    p->idle_rate < 0 || p->min_limit < 0) {
		kvmmig_err("converge: downtime %g s, deadline %g s, horizon %g s, idle rate %g, minimum limit %g: expected a positive downtime and no negative value",
			   p->downtime_s, p->deadline_s, p->horizon_s, p->idle_rate, p->min_limit);
		return -EINVAL;
	}
	memset(c, 0, sizeof(*c));
	c->p = *p;
	if (!c->p.horizon_s)
		c->p.horizon_s = CONVERGE_HORIZON_S;
	if (!c->p.idle_rate)
		c->p.idle_rate = CONVERGE_IDLE_RATE;
	if (!c->p.min_limit)
		c->p.min_limit = CONVERGE_MIN_LIMIT;
	return 0;
}

/* What the backlog must come down to: half the downtime's worth. */
static double converge_goal(const struct converge *c, double bandwidth)
{
	return bandwidth * c->p.downtime_s / 2;
}

double converge_eta(const struct converge *c, uint64_t remaining, double bandwidth,
		    double rate)
{
	double excess = remaining - converge_goal(c, bandwidth);

	if (excess <= 0)
		return 0;
	if (rate >= bandwidth)
		return -1;
	return excess / (bandwidth - rate);
}

/*
 * A held vCPU dirtied at its limit: it wants at least what it wanted
 * before.  A vCPU counts as dirtying after CONVERGE_BUSY_PERIODS periods in
 * a row at idle_rate or more: one busy period (a computing vCPU starting)
 * is no reason to limit it.
 */
static void converge_update_demand(struct converge *c, const struct converge_vcpu *v)
{
	unsigned int i;

	for (i = 0; i < c->p.nr_vcpus; i++) {
		if (!v[i].held || !c->limit[i] || c->demand[i] <= v[i].rate)
			c->demand[i] = v[i].rate;
		if (c->demand[i] < c->p.idle_rate)
			c->busy[i] = 0;
		else if (c->busy[i] < CONVERGE_BUSY_PERIODS)
			c->busy[i]++;
	}
}

static bool converge_limitable(const struct converge *c, const struct converge_vcpu *v,
			       unsigned int i)
{
	return v[i].can_limit && c->busy[i] >= CONVERGE_BUSY_PERIODS;
}

/*
 * Seconds of the deadline left for the backlog (the switchover takes the
 * downtime); without one, twice what the backlog takes at the full
 * bandwidth, at least the horizon.
 */
static double converge_time_left(const struct converge *c, const struct converge_tick *in)
{
	double twice = 2 * in->remaining / in->bandwidth;

	if (c->p.deadline_s)
		return c->p.deadline_s - in->t - c->p.downtime_s;
	return twice > c->p.horizon_s ? twice : c->p.horizon_s;
}

static void converge_set_all(struct converge *c, const struct converge_vcpu *v,
			     double limit)
{
	uint64_t l = (uint64_t)(limit / CONVERGE_LIMIT_STEP) * CONVERGE_LIMIT_STEP;
	unsigned int i;

	if (l < c->p.min_limit)
		l = ((uint64_t)c->p.min_limit + CONVERGE_LIMIT_STEP - 1) /
		    CONVERGE_LIMIT_STEP * CONVERGE_LIMIT_STEP;
	for (i = 0; i < c->p.nr_vcpus; i++)
		c->limit[i] = converge_limitable(c, v, i) && c->demand[i] > l ? l : 0;
}

/*
 * The one limit L with sum(min(demand, L)) = budget over the limitable
 * vCPUs: take them from the lightest, each runs free while it is under an
 * equal share of what is left.
 */
static double converge_water_fill(const struct converge *c, const struct converge_vcpu *v,
				  double budget)
{
	bool done[CONVERGE_MAX_VCPUS] = { false };
	unsigned int i, n = 0, left;

	for (i = 0; i < c->p.nr_vcpus; i++)
		n += converge_limitable(c, v, i);
	for (left = n; left; left--) {
		int min = -1;

		for (i = 0; i < c->p.nr_vcpus; i++)
			if (converge_limitable(c, v, i) && !done[i] &&
			    (min < 0 || c->demand[i] < c->demand[min]))
				min = i;
		if (c->demand[min] * left > budget)
			return budget > 0 ? budget / left : 0;
		done[min] = true;
		budget -= c->demand[min];
	}
	return -1;	/* nobody needs a limit */
}

/* Total dirty rate with the limits in c->limit. */
static double converge_limited_rate(const struct converge *c)
{
	double sum = 0;
	unsigned int i;

	for (i = 0; i < c->p.nr_vcpus; i++)
		sum += c->limit[i] && c->limit[i] < c->demand[i] ? c->limit[i] : c->demand[i];
	return sum;
}

const char *converge_fmt(char *buf, size_t len, double bytes)
{
	if (bytes < MIB)
		snprintf(buf, len, "%.0f KiB", bytes / 1024);
	else
		snprintf(buf, len, "%.1f MiB", bytes / MIB);
	return buf;
}

static void converge_explain(const struct converge *c, const struct converge_tick *in,
			     struct converge_out *out, double left)
{
	double excess = in->remaining - converge_goal(c, in->bandwidth);
	char min[24], fl[24], bw[24], rem[24];

	converge_fmt(min, sizeof(min), c->p.min_limit);
	converge_fmt(fl, sizeof(fl), out->floor);
	converge_fmt(bw, sizeof(bw), in->bandwidth);
	converge_fmt(rem, sizeof(rem), in->remaining);
	if (left <= 0) {
		snprintf(out->why, sizeof(out->why),
			 "the deadline (%.1f s, less the %.0f ms downtime) has passed with %s still to send",
			 c->p.deadline_s, c->p.downtime_s * 1000, rem);
	} else if (out->floor >= in->bandwidth) {
		snprintf(out->why, sizeof(out->why),
			 "even with every dirtying vCPU limited to %s/s the guest dirties %s/s, not less than the %s/s bandwidth: it cannot converge",
			 min, fl, bw);
	} else {
		snprintf(out->why, sizeof(out->why),
			 "even with every dirtying vCPU limited to %s/s the guest dirties %s/s: at %s/s the %s left need %.1f s to fit the downtime, the deadline leaves %.1f s",
			 min, fl, bw, rem, excess / (in->bandwidth - out->floor), left);
	}
}

static void converge_decide(struct converge *c, const struct converge_tick *in,
			    struct converge_out *out)
{
	double left = converge_time_left(c, in), fixed = 0, floor = 0, limit;
	double excess = in->remaining - converge_goal(c, in->bandwidth);
	unsigned int i;

	for (i = 0; i < c->p.nr_vcpus; i++) {
		double d = c->demand[i];

		out->demand += d;
		if (!converge_limitable(c, in->vcpu, i))
			fixed += d;
		/* One that started dirtying a period ago could be limited next. */
		if (in->vcpu[i].can_limit && d >= c->p.idle_rate)
			floor += d < c->p.min_limit ? d : c->p.min_limit;
		else
			floor += d;
	}
	out->floor = floor;
	if (left <= 0)
		out->allowed = excess > 0 ? -1 : in->bandwidth;
	else
		out->allowed = in->bandwidth - excess / left;
	if (out->demand <= out->allowed) {
		memset(c->limit, 0, sizeof(c->limit));
		out->verdict = CONVERGE_FREE;
		return;
	}
	/*
	 * Without a deadline only a floor at the bandwidth never converges;
	 * below it, the strongest limits converge, later than the horizon.
	 */
	if (out->allowed < out->floor) {
		converge_set_all(c, in->vcpu, c->p.min_limit);
		out->verdict = CONVERGE_LIMITED;
		if (c->p.deadline_s || out->floor >= in->bandwidth) {
			out->verdict = CONVERGE_INFEASIBLE;
			converge_explain(c, in, out, left);
		}
		return;
	}
	limit = converge_water_fill(c, in->vcpu, out->allowed - fixed);
	if (limit < 0) {
		memset(c->limit, 0, sizeof(c->limit));
		out->verdict = CONVERGE_FREE;
		return;
	}
	converge_set_all(c, in->vcpu, limit);
	out->verdict = CONVERGE_LIMITED;
}

void converge_tick(struct converge *c, const struct converge_tick *in,
		   struct converge_out *out)
{
	unsigned int i;

	memset(out, 0, sizeof(*out));
	converge_update_demand(c, in->vcpu);
	if (in->bandwidth <= 0) {
		out->verdict = CONVERGE_WAIT;
		for (i = 0; i < c->p.nr_vcpus; i++)
			out->demand += c->demand[i];
	} else {
		converge_decide(c, in, out);
	}
	memcpy(out->limit, c->limit, sizeof(out->limit));
	for (i = 0; i < c->p.nr_vcpus; i++)
		out->nr_limited += !!c->limit[i];
	out->eta_s = in->bandwidth > 0 ? converge_eta(c, in->remaining, in->bandwidth,
						      converge_limited_rate(c)) : -1;
}

void converge_finish(struct converge *c, struct converge_out *out)
{
	memset(c->limit, 0, sizeof(c->limit));
	memset(out, 0, sizeof(*out));
	out->verdict = CONVERGE_DONE;
	out->eta_s = 0;
}
