// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests of the convergence controller (user/lib/converge.c), no KVM:
 * scripted per-vCPU dirty rates, bandwidth and backlog go in, and the
 * limits that come out are checked against the rule of converge.h: only
 * vCPUs that dirty (and can be limited) are limited, the limits are just
 * enough (the backlog reaches half the downtime's worth exactly at the
 * deadline, and a small step above any one limit would miss it), they are
 * lifted when no longer needed and at completion, and a deadline that
 * cannot be met is said so with its reason.  A simulated migration closes
 * the loop: the backlog shrinks at the bandwidth less what the limited
 * guest dirties, and must fit the downtime before the deadline.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "converge.h"
#include "kselftest_harness.h"

#define MIB		(1024.0 * 1024.0)
#define DOWNTIME_S	0.3
#define BW		(100 * MIB)

struct script {
	struct converge c;
	struct converge_vcpu v[CONVERGE_MAX_VCPUS];
	struct converge_tick in;
	struct converge_out out;
	unsigned int ticks;
};

static void script_init(struct script *s, unsigned int nr, double deadline)
{
	struct converge_params p = {
		.nr_vcpus = nr, .downtime_s = DOWNTIME_S, .deadline_s = deadline,
	};
	unsigned int i;

	memset(s, 0, sizeof(*s));
	if (converge_init(&s->c, &p))
		abort();
	for (i = 0; i < nr; i++)
		s->v[i].can_limit = true;
	s->in.vcpu = s->v;
	s->in.bandwidth = BW;
}

/*
 * A vCPU counts as dirtying after CONVERGE_BUSY_PERIODS periods in a row:
 * a script's first tick is played that many times, so that its rates count.
 */
static void script_tick(struct script *s, double t, double remaining)
{
	unsigned int i, n = s->ticks++ ? 1 : CONVERGE_BUSY_PERIODS;

	s->in.t = t;
	s->in.remaining = remaining;
	for (i = 0; i < n; i++)
		converge_tick(&s->c, &s->in, &s->out);
}

/* Total the guest dirties under the limits of the last tick. */
static double limited_total(const struct script *s, int bump, double step)
{
	double sum = 0;
	unsigned int i;

	for (i = 0; i < s->c.p.nr_vcpus; i++) {
		double d = s->c.demand[i], l = s->out.limit[i];

		if ((int)i == bump)
			l += step;
		sum += l && l < d ? l : d;
	}
	return sum;
}

TEST(bad_params)
{
	struct converge_params p = { .nr_vcpus = 0, .downtime_s = 0.3 };
	struct converge c;

	ASSERT_EQ(converge_init(&c, &p), -EINVAL);
	p.nr_vcpus = CONVERGE_MAX_VCPUS + 1;
	ASSERT_EQ(converge_init(&c, &p), -EINVAL);
	p.nr_vcpus = 2;
	p.downtime_s = 0;
	ASSERT_EQ(converge_init(&c, &p), -EINVAL);
	p.downtime_s = 0.3;
	p.deadline_s = -1;
	ASSERT_EQ(converge_init(&c, &p), -EINVAL);
	p.deadline_s = 10;
	ASSERT_EQ(converge_init(&c, &p), 0);
}

/* A guest that dirties less than the link needs nothing. */
TEST(slow_writer_runs_free)
{
	struct script s;

	script_init(&s, 2, 0);
	s.v[0].rate = 20 * MIB;
	s.v[1].rate = 10 * MIB;
	script_tick(&s, 0, 500 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_FREE);
	ASSERT_EQ(s.out.nr_limited, 0U);
	ASSERT_EQ(s.out.limit[0], 0ULL);
	ASSERT_EQ(s.out.limit[1], 0ULL);
	ASSERT_GT(s.out.eta_s, 0);
}

/* A vCPU busy in one period only (a computing vCPU starting) is not limited. */
TEST(one_busy_period_is_not_dirtying)
{
	struct script s;

	script_init(&s, 2, 0);
	s.v[0].rate = 300 * MIB;
	s.v[1].rate = 0;
	script_tick(&s, 0, 3000 * MIB);
	ASSERT_NE(s.out.limit[0], 0ULL);
	s.v[1].rate = 50 * MIB;
	script_tick(&s, 0.5, 3000 * MIB);
	EXPECT_EQ(s.out.limit[1], 0ULL);
	s.v[1].rate = 0;
	script_tick(&s, 1, 3000 * MIB);
	EXPECT_EQ(s.out.limit[1], 0ULL);
	/* Busy twice in a row: it dirties, and gets its share of the limit. */
	s.v[1].rate = 50 * MIB;
	script_tick(&s, 1.5, 3000 * MIB);
	script_tick(&s, 2, 3000 * MIB);
	EXPECT_NE(s.out.limit[1], 0ULL);
}

/* Idle vCPUs and those the backend cannot limit keep running free. */
TEST(only_dirtying_vcpus_are_limited)
{
	struct script s;
	unsigned int i;
	double t;

	script_init(&s, 5, 0);
	s.v[2].can_limit = false;
	for (t = 0; t < 30; t += 0.5) {
		s.v[0].rate = 200 * MIB;
		s.v[1].rate = 0;
		s.v[2].rate = 30 * MIB;
		s.v[3].rate = 3.5 * MIB;	/* below the idle rate */
		s.v[4].rate = 150 * MIB;
		script_tick(&s, t, 2000 * MIB);
		ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_LIMITED);
		ASSERT_EQ(s.out.limit[1], 0ULL);
		ASSERT_EQ(s.out.limit[2], 0ULL);
		ASSERT_EQ(s.out.limit[3], 0ULL);
		ASSERT_NE(s.out.limit[0], 0ULL);
		ASSERT_NE(s.out.limit[4], 0ULL);
		for (i = 0; i < 5; i++)
			s.v[i].held = !!s.out.limit[i];
	}
}

/*
 * Just enough: at the limits the backlog fits in time, and one page a
 * second plus 1% above any single limit it would not.
 */
TEST(limits_are_minimal)
{
	struct script s;
	double left, total;
	unsigned int i;

	script_init(&s, 4, 0);
	s.v[0].rate = 300 * MIB;
	s.v[1].rate = 120 * MIB;
	s.v[2].rate = 10 * MIB;
	s.v[3].rate = 0;
	script_tick(&s, 0, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_LIMITED);
	/* No deadline: twice the backlog's time at the full bandwidth. */
	left = 2 * 3000 * MIB / BW;
	total = limited_total(&s, -1, 0);
	ASSERT_LE(total, s.out.allowed);
	ASSERT_LE(converge_eta(&s.c, 3000 * MIB, BW, total), left);
	ASSERT_EQ(s.out.nr_limited, 2U);
	for (i = 0; i < 4; i++) {
		double step = s.out.limit[i] * 0.01 + CONVERGE_LIMIT_STEP;

		if (!s.out.limit[i])
			continue;
		ASSERT_GT(converge_eta(&s.c, 3000 * MIB, BW, limited_total(&s, i, step)), left)
			TH_LOG("vCPU %u: limit %llu + %.0f still converges in time", i,
			       (unsigned long long)s.out.limit[i], step);
	}
	/* Water-filling: the lightest writer under the shared limit runs free. */
	ASSERT_EQ(s.out.limit[2], 0ULL);
	ASSERT_EQ(s.out.limit[0], s.out.limit[1]);
	ASSERT_GT(s.out.limit[0], 10 * MIB);
}

/*
 * A held vCPU dirties at its limit; the controller must remember what it
 * wants, or it would lift the limit at the next tick and oscillate.
 */
TEST(held_vcpu_keeps_its_limit)
{
	struct script s;
	uint64_t l;

	script_init(&s, 1, 0);
	s.v[0].rate = 300 * MIB;
	script_tick(&s, 0, 3000 * MIB);
	l = s.out.limit[0];
	ASSERT_NE(l, 0ULL);
	s.v[0].rate = l;
	s.v[0].held = true;
	script_tick(&s, 0.5, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_LIMITED);
	ASSERT_EQ(s.out.limit[0], l);
	/* Not held and dirtying little: it wants little now, the limit goes. */
	s.v[0].rate = 5 * MIB;
	s.v[0].held = false;
	script_tick(&s, 1, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_FREE);
	ASSERT_EQ(s.out.limit[0], 0ULL);
}

/* Limits rise as the backlog shrinks, go once not needed, and at the end. */
TEST(lifted_when_not_needed_and_at_completion)
{
	struct script s;
	uint64_t first;

	script_init(&s, 2, 0);
	s.v[0].rate = 200 * MIB;
	s.v[1].rate = 0;
	script_tick(&s, 0, 4000 * MIB);
	first = s.out.limit[0];
	ASSERT_NE(first, 0ULL);
	s.v[0].rate = first;
	s.v[0].held = true;
	script_tick(&s, 1, 1000 * MIB);
	ASSERT_GT(s.out.limit[0], first);
	/* The backlog fits the downtime: anything below the link is allowed. */
	script_tick(&s, 2, 10 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_LIMITED);
	s.v[0].rate = 50 * MIB;
	s.v[0].held = false;
	script_tick(&s, 3, 10 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_FREE);
	ASSERT_EQ(s.out.limit[0], 0ULL);
	s.v[0].rate = 200 * MIB;
	script_tick(&s, 4, 3000 * MIB);
	ASSERT_NE(s.out.limit[0], 0ULL);
	converge_finish(&s.c, &s.out);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_DONE);
	ASSERT_EQ(s.out.limit[0], 0ULL);
	ASSERT_EQ(s.c.limit[0], 0ULL);
}

/* No bandwidth measured yet: nothing is decided, limits stay. */
TEST(waits_for_bandwidth)
{
	struct script s;
	uint64_t l;

	script_init(&s, 1, 0);
	s.v[0].rate = 300 * MIB;
	script_tick(&s, 0, 3000 * MIB);
	l = s.out.limit[0];
	ASSERT_NE(l, 0ULL);
	s.in.bandwidth = 0;
	script_tick(&s, 1, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_WAIT);
	ASSERT_EQ(s.out.limit[0], l);
	ASSERT_EQ(s.out.eta_s, -1);
}

/* The allowed rate is the bandwidth less the excess over the time left. */
TEST(deadline_math)
{
	double remaining = 2000 * MIB, goal = BW * DOWNTIME_S / 2;
	struct script s;
	uint64_t l;

	script_init(&s, 2, 40);
	s.v[0].rate = 300 * MIB;
	s.v[1].rate = 300 * MIB;
	script_tick(&s, 10, remaining);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_LIMITED);
	ASSERT_LT(fabs(s.out.allowed - (BW - (remaining - goal) / (40 - 10 - DOWNTIME_S))), 1);
	/* Two equal writers share it equally, to a page a second. */
	ASSERT_EQ(s.out.limit[0], s.out.limit[1]);
	ASSERT_LE(s.out.allowed / 2 - s.out.limit[0], CONVERGE_LIMIT_STEP);
	ASSERT_LE(s.out.eta_s, 40 - 10 - DOWNTIME_S);
	/* Later with the same backlog, the deadline is nearer: tighter limits. */
	l = s.out.limit[0];
	s.v[0].held = s.v[1].held = true;
	s.v[0].rate = s.v[1].rate = l;
	script_tick(&s, 20, remaining);
	ASSERT_LT(s.out.limit[0], l);
	ASSERT_LT(s.out.allowed, BW - (remaining - goal) / (40 - 10 - DOWNTIME_S));
}

/*
 * Closed loop: the backlog grows by what the guest dirties under its limits
 * and shrinks by the bandwidth; with a deadline, it must fit the downtime
 * before the deadline, and the idle vCPU is never touched.
 */
TEST(simulated_migration_meets_deadline)
{
	double r = 3000 * MIB, t, dt = 0.1, deadline = 60;
	struct script s;
	unsigned int i;

	script_init(&s, 3, deadline);
	for (t = 0; r > BW * DOWNTIME_S; t += dt) {
		double want[3] = { 250 * MIB, 90 * MIB, 0 };

		ASSERT_LT(t, deadline - DOWNTIME_S);
		for (i = 0; i < 3; i++) {
			uint64_t l = s.c.limit[i];

			s.v[i].held = l && want[i] > l;
			s.v[i].rate = s.v[i].held ? l : want[i];
		}
		script_tick(&s, t, r);
		ASSERT_NE(s.out.verdict, (enum converge_verdict)CONVERGE_INFEASIBLE) TH_LOG("%s", s.out.why);
		ASSERT_EQ(s.out.limit[2], 0ULL);
		r += (limited_total(&s, -1, 0) - BW) * dt;
		if (r < 0)
			r = 0;
	}
	TH_LOG("converged at %.1f s of a %.0f s deadline", t, deadline);
}

/* A deadline too near: said plainly, and the strongest limits meanwhile. */
TEST(infeasible_deadline)
{
	struct script s;

	script_init(&s, 3, 5);
	s.v[0].rate = 300 * MIB;
	s.v[1].rate = 0;
	s.v[2].rate = 200 * MIB;
	script_tick(&s, 0, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_INFEASIBLE);
	ASSERT_NE(strstr(s.out.why, "deadline leaves"), NULL) TH_LOG("%s", s.out.why);
	ASSERT_EQ(s.out.limit[0], (uint64_t)CONVERGE_MIN_LIMIT);
	ASSERT_EQ(s.out.limit[1], 0ULL);
	ASSERT_EQ(s.out.limit[2], (uint64_t)CONVERGE_MIN_LIMIT);
	/* Past the deadline: said so. */
	script_tick(&s, 6, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_INFEASIBLE);
	ASSERT_NE(strstr(s.out.why, "has passed"), NULL) TH_LOG("%s", s.out.why);
}

/* What cannot be limited dirties faster than the link: it never converges. */
TEST(infeasible_without_deadline)
{
	struct script s;

	script_init(&s, 2, 0);
	s.v[0].rate = 150 * MIB;
	s.v[0].can_limit = false;
	s.v[1].rate = 50 * MIB;
	script_tick(&s, 0, 3000 * MIB);
	ASSERT_EQ(s.out.verdict, (enum converge_verdict)CONVERGE_INFEASIBLE);
	ASSERT_NE(strstr(s.out.why, "cannot converge"), NULL) TH_LOG("%s", s.out.why);
	ASSERT_EQ(s.out.limit[0], 0ULL);
	ASSERT_EQ(s.out.limit[1], (uint64_t)CONVERGE_MIN_LIMIT);
	ASSERT_EQ(s.out.eta_s, -1);
}

TEST_HARNESS_MAIN
