// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig converge` with kvmmig.ko, on another process's VM: a `kvmmig run`
 * guest (one vCPU dirtying, one computing) stands for any VMM, its rings
 * reset every 100 ms as a QEMU-like VMM's (kvmmig's own reaper resets them
 * every 0.5 ms, and a computing vCPU re-dirties its counter page after each
 * reset: kvmmig.ko counted up to 4.5 MB/s for it, which counts as
 * dirtying).  converge
 * attaches to it by pid, against a link far slower than the guest dirties
 * (--bandwidth), and must set a dirty limit in the module on the dirtying
 * vCPU only; on SIGINT it must end with its report and leave no limit and
 * no session behind, as the module itself tells over netlink.  Needs
 * /dev/kvmmig: it runs inside the Debian kernels (`selftests/vm/run.sh
 * build/selftests/converge_module_test`); elsewhere it skips.  Every wait
 * has a deadline; no timing is asserted.
 */
#include <sys/stat.h>

#include "clock.h"
#include "cli_util.h"
#include "kselftest_harness.h"
#include "kmod_view.h"
#include "module_client.h"

#define START_MS	60000		/* the guest runs, converge attaches (TCG) */
#define LIMIT_MS	60000		/* converge sets its first limit */
#define END_MS		10000		/* converge ends after SIGINT */
#define WATCH_TICKS	12		/* module views, 250 ms apart */

static bool wait_output(struct cli_child *c, const char *what, int ms, char *buf, size_t len)
{
	double deadline = now_s() + ms / 1000.0;

	while (!strstr(cli_output(c->out, buf, len), what)) {
		if (now_s() > deadline || !cli_wait(c, 0))
			return false;
		usleep(100000);
	}
	return true;
}

FIXTURE(cm) {
	struct cli_child guest, cv;
	char out[65536], err[8192];
};

FIXTURE_SETUP(cm)
{
	const char *guest[] = { "run", "--vcpus", "2", "--ram", "256M", "--workload", "seq",
				"--compute-vcpus", "0x2", "--dirty", "ring", "--seconds", "600",
				"--interval-ms", "1000", "--reap-us", "100000", NULL };
	char path[PATH_MAX];
	struct stat st;

	self->guest.pid = self->cv.pid = 0;
	self->guest.pidfd = self->guest.out = self->guest.err = -1;
	self->cv.pidfd = self->cv.out = self->cv.err = -1;
	if (stat("/dev/kvmmig", &st))
		SKIP(return, "no /dev/kvmmig: kvmmig.ko is not loaded (selftests/vm/run.sh loads it)");
	if (cli_path(path, sizeof(path)))
		SKIP(return, "the kvmmig command is not at %.200s (build it with make)", path);
	ASSERT_EQ(cli_start(&self->guest, guest), 0);
	/* Its first interval line: the guest runs. */
	ASSERT_TRUE(wait_output(&self->guest, "\n", START_MS, self->out, sizeof(self->out)))
		TH_LOG("the guest did not start: %s",
		       cli_output(self->guest.err, self->err, sizeof(self->err)));
}

FIXTURE_TEARDOWN(cm)
{
	cli_end(&self->cv);
	cli_end(&self->guest);
}

TEST_F_TIMEOUT(cm, limits_the_dirtying_vcpu_and_lifts_on_sigint, 300)
{
	char pid[16];
	const char *args[] = { "converge", "--pid", pid, "--bandwidth", "4M", "--json", NULL };
	unsigned int i;
	struct kv_seen w;
	pid_t cv_pid;

	if (_metadata->skip)
		return;
	snprintf(pid, sizeof(pid), "%d", self->guest.pid);
	ASSERT_EQ(cli_start(&self->cv, args), 0);
	cv_pid = self->cv.pid;
	ASSERT_TRUE(wait_output(&self->cv, "\"limit\":", LIMIT_MS, self->out, sizeof(self->out)))
		TH_LOG("no limits event: %s; stderr: %s", self->out,
		       cli_output(self->cv.err, self->err, sizeof(self->err)));
	ASSERT_NE(strstr(self->out, "\"throttle\":\"module-dirty-limit\""), NULL)
		TH_LOG("%s", self->out);
	/* The first limit may land a tick after the event line: look until it does. */
	{
		double deadline = now_s() + LIMIT_MS / 1000.0;

		do {
			ASSERT_EQ(kv_module_view(self->guest.pid, cv_pid, &w), 0);
			if (w.limit[0])
				break;
			usleep(200000);
		} while (now_s() < deadline);
	}
	ASSERT_NE(w.session, 0U) TH_LOG("converge holds no session on the guest");
	TH_LOG("dirty limits in the module: vCPU 0 %llu pages/s, vCPU 1 %llu pages/s",
	       (unsigned long long)w.limit[0], (unsigned long long)w.limit[1]);
	EXPECT_NE(w.limit[0], 0ULL) TH_LOG("no dirty limit on the dirtying vCPU");
	/* The computing vCPU stays free tick after tick. */
	for (i = 0; i < WATCH_TICKS; i++) {
		ASSERT_EQ(kv_module_view(self->guest.pid, cv_pid, &w), 0);
		ASSERT_EQ(w.limit[1], 0ULL) TH_LOG("the computing vCPU was limited: %s",
			  cli_output(self->cv.out, self->out, sizeof(self->out)));
		usleep(250000);
	}

	ASSERT_EQ(kill(self->cv.pid, SIGINT), 0);
	ASSERT_EQ(cli_wait(&self->cv, END_MS), 0) TH_LOG("converge still runs after SIGINT");
	EXPECT_EQ(cli_exit_status(&self->cv), 0)
		TH_LOG("%s", cli_output(self->cv.err, self->err, sizeof(self->err)));
	cli_output(self->cv.out, self->out, sizeof(self->out));
	EXPECT_NE(strstr(self->out, "\"end\":\"stopped by SIGINT\""), NULL) TH_LOG("%s", self->out);
	/* Nothing left: no session of converge's, no limit on the guest. */
	ASSERT_EQ(kv_module_view(self->guest.pid, cv_pid, &w), 0);
	EXPECT_EQ(w.session, 0U);
	EXPECT_EQ(w.sessions, 0U) TH_LOG("a session is left on the guest");
}

TEST_HARNESS_MAIN
