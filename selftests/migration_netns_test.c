// SPDX-License-Identifier: GPL-2.0-only
/*
 * Live migration between two hosts: the source and the destination live in
 * two network namespaces joined by a veth pair whose both ends are shaped
 * to 1 Gbit/s with tc's token bucket filter, as two machines on a gigabit
 * link would be.  An incr guest migrates across; the destination runs it
 * and checks its memory, and the source's report must show the link's
 * limit (a property of the shaping, not a timing of kvmmig), with every
 * byte of the stream counted by the shaped qdisc.  Namespaces are named
 * after the test's pid so that parallel runs do not collide, and are
 * always deleted; ones left by a run that was killed are deleted too.
 */
#include "kselftest_harness.h"
#include "mig_test_util.h"
#include "netns_util.h"

#define GUEST_RAM	(32ULL << 20)

FIXTURE(netns) {
	char skip[320];		/* why the test cannot run here */
	struct netns_hosts hosts;
	int home_ns;		/* this thread's own namespace */
	struct vm *vm;
	struct dest_child dest;
};

FIXTURE_SETUP(netns)
{
	self->home_ns = -1;
}

/*
 * The two hosts.  Called from the test, not the fixture's setup: the
 * harness runs the teardown only after a setup that completed, and the
 * namespaces must go whatever fails.
 */
static void hosts_setup(struct __test_metadata *_metadata, FIXTURE_DATA(netns) *self)
{
	enum dirty_backend backend = DIRTY_AUTO;
	int ret = netns_hosts_setup(&self->hosts, self->skip, sizeof(self->skip));

	if (ret > 0)
		return;
	ASSERT_EQ(ret, 0);
	self->vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(self->vm, NULL);
	ASSERT_EQ(dest_child_start(&self->dest, NETNS_DST_ADDR, self->hosts.dst), 0);
}

FIXTURE_TEARDOWN(netns)
{
	if (self->home_ns >= 0) {
		setns(self->home_ns, CLONE_NEWNET);
		close(self->home_ns);
	}
	if (self->dest.pid > 0) {
		kill(self->dest.pid, SIGKILL);
		dest_child_wait(&self->dest);
	}
	if (self->vm)
		vm_destroy(self->vm);
	netns_hosts_remove(&self->hosts);
}

TEST_F_TIMEOUT(netns, incr_guest_over_gigabit_veth, 120)
{
	struct mig_source_opts o = { .to = self->dest.addr };
	struct mig_report rep;
	double peak = 0;
	unsigned int i;
	uint64_t sent;
	int ret, st;

	hosts_setup(_metadata, self);
	if (self->skip[0])
		SKIP(return, "%s", self->skip);
	mig_params_init(&o.params);
	o.params.max_passes = 400;

	/* Only this thread moves; the senders it starts are born there. */
	self->home_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	ASSERT_GE(self->home_ns, 0);
	ASSERT_EQ(dest_enter_netns(self->hosts.src), 0) TH_LOG("setns: %s", strerror(errno));
	ret = mig_source_run(self->vm->kv, &o, &rep);
	ASSERT_EQ(setns(self->home_ns, CLONE_NEWNET), 0);
	close(self->home_ns);
	self->home_ns = -1;

	for (i = 0; i < rep.nr_samples; i++)
		if (rep.samples[i].throughput > peak)
			peak = rep.samples[i].throughput;
	sent = netns_qdisc_sent_bytes(self->hosts.src, "kvm0");
	TH_LOG("%s in %.2f s, %llu passes, %llu bytes at %.0f Mbit/s (peak sample %.0f Mbit/s), downtime %.0f ms; the source's qdisc sent %llu bytes%s%s",
	       mig_state_name(rep.state), rep.total_s, (unsigned long long)rep.passes,
	       (unsigned long long)rep.bytes_sent, rep.throughput * 8 / 1e6, peak * 8 / 1e6,
	       rep.downtime_ms, (unsigned long long)sent, rep.error[0] ? ": " : "", rep.error);
	ASSERT_EQ(ret, 0);
	ASSERT_EQ(rep.state, (enum mig_state)MIG_COMPLETED);
	st = dest_child_wait(&self->dest);
	self->dest.pid = 0;
	ASSERT_EQ(st, DEST_OK) TH_LOG("destination exit code %d", st);
	/* The stream crossed the shaped link, and the link held it down. */
	ASSERT_GE(sent, rep.bytes_sent);
	ASSERT_LT(rep.throughput * 8, 1.1 * NETNS_LINK_BITS);
	mig_report_free(&rep);
}

TEST_HARNESS_MAIN
