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
#include <dirent.h>
#include <stdarg.h>

#include "kselftest_harness.h"
#include "mig_test_util.h"

#define GUEST_RAM	(32ULL << 20)
#define NS_PREFIX	"kvmmig-"
#define SRC_ADDR	"10.213.7.1"
#define DST_ADDR	"10.213.7.2"
#define LINK_BITS	1000000000.0	/* the tbf rate below */
#define LINK_SHAPE	"tbf rate 1gbit burst 256kb latency 20ms"

/*
 * Run a shell command: 0 or its wait status, its output (stderr included)
 * in @out, and shown with the command when it fails.
 */
static int shell_out(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int shell_out(char *out, size_t len, const char *fmt, ...)
{
	char cmd[512];
	size_t got = 0;
	va_list ap;
	FILE *f;
	int ret;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
	va_end(ap);
	strcat(cmd, " 2>&1");
	out[0] = '\0';
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (got < len - 1 && fgets(out + got, len - got, f))
		got = strlen(out);
	ret = pclose(f);
	if (got && out[got - 1] == '\n')
		out[got - 1] = '\0';
	if (ret)
		fprintf(stderr, "# '%s' failed (status %d): %s\n", cmd, ret, out);
	return ret;
}

#define shell(...)	({ char __out[256]; shell_out(__out, sizeof(__out), __VA_ARGS__); })

/* Namespaces "kvmmig-<pid>-src/dst" of test runs that no longer exist. */
static void netns_remove_stale(void)
{
	struct dirent *e;
	DIR *d = opendir("/run/netns");
	char role[8];
	int pid;

	while (d && (e = readdir(d))) {
		if (sscanf(e->d_name, NS_PREFIX "%d-%7s", &pid, role) != 2 || pid <= 0 ||
		    (strcmp(role, "src") && strcmp(role, "dst")))
			continue;
		if (kill(pid, 0) && errno == ESRCH)
			shell("ip netns del %s", e->d_name);
	}
	if (d)
		closedir(d);
}

/* Bytes the qdisc on @dev in @ns has sent, or 0. */
static uint64_t qdisc_sent_bytes(const char *ns, const char *dev)
{
	unsigned long long sent = 0;
	char cmd[160], line[256];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "tc -n %s -s qdisc show dev %s root", ns, dev);
	f = popen(cmd, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, " Sent %llu bytes", &sent) == 1)
			break;
	if (f)
		pclose(f);
	return sent;
}

FIXTURE(netns) {
	char skip[320];		/* why the test cannot run here */
	char src_ns[32], dst_ns[32];
	bool src_made, dst_made;
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
	int pid = getpid();
	char out[256];

	netns_remove_stale();
	snprintf(self->src_ns, sizeof(self->src_ns), NS_PREFIX "%d-src", pid);
	snprintf(self->dst_ns, sizeof(self->dst_ns), NS_PREFIX "%d-dst", pid);
	if (shell_out(out, sizeof(out), "ip netns add %s", self->src_ns)) {
		snprintf(self->skip, sizeof(self->skip),
			 "`ip netns add` is impossible here (root and iproute2 needed): %s", out);
		return;
	}
	self->src_made = true;
	ASSERT_EQ(shell("ip netns add %s", self->dst_ns), 0);
	self->dst_made = true;

	/* The veth pair, one end in each, a /30 between them. */
	ASSERT_EQ(shell("ip -n %s link add kvm0 type veth peer name kvm1 netns %s",
			self->src_ns, self->dst_ns), 0);
	ASSERT_EQ(shell("ip -n %s addr add %s/30 dev kvm0", self->src_ns, SRC_ADDR), 0);
	ASSERT_EQ(shell("ip -n %s addr add %s/30 dev kvm1", self->dst_ns, DST_ADDR), 0);
	ASSERT_EQ(shell("ip -n %s link set kvm0 up", self->src_ns), 0);
	ASSERT_EQ(shell("ip -n %s link set kvm1 up", self->dst_ns), 0);
	/* Both directions: the stream one way, the acknowledgements the other. */
	if (shell_out(out, sizeof(out), "tc -n %s qdisc add dev kvm0 root %s", self->src_ns,
		      LINK_SHAPE) && strstr(out, "qdisc kind is unknown")) {
		snprintf(self->skip, sizeof(self->skip),
			 "this kernel has no tbf qdisc (CONFIG_NET_SCH_TBF)");
		return;
	}
	ASSERT_EQ(shell("tc -n %s qdisc show dev kvm0 root | grep -q tbf", self->src_ns), 0);
	ASSERT_EQ(shell("tc -n %s qdisc add dev kvm1 root %s", self->dst_ns, LINK_SHAPE), 0);

	self->vm = source_guest(2, GUEST_RAM, &backend);
	ASSERT_NE(self->vm, NULL);
	ASSERT_EQ(dest_child_start(&self->dest, DST_ADDR, self->dst_ns), 0);
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
	/* Deleting a namespace deletes its end of the veth pair, and so both. */
	if (self->src_made)
		shell("ip netns del %s", self->src_ns);
	if (self->dst_made)
		shell("ip netns del %s", self->dst_ns);
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
	ASSERT_EQ(dest_enter_netns(self->src_ns), 0) TH_LOG("setns: %s", strerror(errno));
	ret = mig_source_run(self->vm->kv, &o, &rep);
	ASSERT_EQ(setns(self->home_ns, CLONE_NEWNET), 0);
	close(self->home_ns);
	self->home_ns = -1;

	for (i = 0; i < rep.nr_samples; i++)
		if (rep.samples[i].throughput > peak)
			peak = rep.samples[i].throughput;
	sent = qdisc_sent_bytes(self->src_ns, "kvm0");
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
	ASSERT_LT(rep.throughput * 8, 1.1 * LINK_BITS);
	mig_report_free(&rep);
}

TEST_HARNESS_MAIN
