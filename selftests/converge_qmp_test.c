// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig converge` on this host, where kvmmig.ko cannot be loaded: its
 * command line refuses what it cannot use with a message that says why;
 * without the module it says plainly that it cannot throttle; and against a
 * real QEMU (Debian's 7.2 with -accel kvm running the halt-only firmware
 * selftests/qemu_halt_bios.S, source and -incoming destination on
 * loopback) the QMP client (user/lib/qmp.c) reads the migration's status
 * to completion, and `kvmmig converge --qmp` follows that migration and
 * ends with it, or ends on SIGINT with its report; and a deadline that
 * cannot be met is said, with its reason.  The tests with the
 * module, which set limits on QEMU's vCPUs, run inside the Debian kernels
 * (selftests/vm/).  Every wait has a deadline; no timing is asserted.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "clock.h"
#include "cli_util.h"
#include "kselftest_harness.h"
#include "log.h"
#include "qmp.h"

#define QEMU		"qemu-system-x86_64"
#define START_MS	30000		/* a QEMU answers on QMP */
#define QMP_MS		10000		/* one QMP answer */
#define MIGRATE_MS	60000		/* a 64 MiB idle guest migrates */
#define CLI_MS		10000		/* a command refusing its options */

struct qemu {
	pid_t pid;
	char qmp[2][64];		/* abstract sockets: ours, converge's */
};

static int free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && !bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* The halt firmware, next to this program (built with the tree). */
static int bios_path(char *buf, size_t len)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n < 0)
		return -errno;
	exe[n] = 0;
	snprintf(buf, len, "%s/qemu_halt_bios.bin", dirname(exe));
	return access(buf, R_OK) ? -errno : 0;
}

/* A QEMU with two QMP monitors; @incoming: "-incoming" URI, or NULL. */
static int qemu_start(struct qemu *q, const char *name, const char *incoming)
{
	char bios[PATH_MAX], mon[2][96];
	int i;

	if (bios_path(bios, sizeof(bios)))
		return -ENOENT;
	for (i = 0; i < 2; i++) {
		snprintf(q->qmp[i], sizeof(q->qmp[i]), "@kvmmig-cvt-%d-%s-%d", getpid(), name, i);
		snprintf(mon[i], sizeof(mon[i]), "unix:%s,abstract=on,server=on,wait=off",
			 q->qmp[i] + 1);
	}
	q->pid = fork();
	if (q->pid < 0)
		return -errno;
	if (!q->pid) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		execlp(QEMU, QEMU, "-nodefaults", "-machine", "pc", "-accel", "kvm", "-m", "64M",
		       "-smp", "1", "-bios", bios, "-display", "none", "-vga", "none",
		       "-qmp", mon[0], "-qmp", mon[1], incoming ? "-incoming" : NULL, incoming,
		       NULL);
		_exit(127);
	}
	return 0;
}

static void qemu_stop(struct qemu *q)
{
	if (q->pid > 0) {
		kill(q->pid, SIGKILL);
		waitpid(q->pid, NULL, 0);
	}
	q->pid = 0;
}

/* QMP once QEMU listens; -ECHILD if it exited. */
static int qemu_qmp(struct qemu *q, int mon, struct qmp *out)
{
	double deadline = now_s() + START_MS / 1000.0;
	int ret;

	for (;;) {
		ret = qmp_connect(out, q->qmp[mon], QMP_MS);
		if (!ret || now_s() > deadline)
			return ret;
		if (waitpid(q->pid, NULL, WNOHANG) == q->pid) {
			q->pid = 0;
			return -ECHILD;
		}
		usleep(50000);
	}
}

/* The migration's status until it ends, by @ms. */
static int wait_ended(struct qmp *qmp, int ms, struct qmp_migration *m)
{
	double deadline = now_s() + ms / 1000.0;
	int ret;

	while (!(ret = qmp_query_migrate(qmp, m, QMP_MS)) && !qmp_migration_ended(m)) {
		if (now_s() > deadline)
			return -ETIMEDOUT;
		usleep(50000);
	}
	return ret;
}

/* Until @what shows in the child's stdout, by @ms. */
static bool cli_wait_output(struct cli_child *c, const char *what, int ms, char *buf, size_t len)
{
	double deadline = now_s() + ms / 1000.0;

	while (!strstr(cli_output(c->out, buf, len), what)) {
		if (now_s() > deadline || !cli_wait(c, 0))
			return false;
		usleep(50000);
	}
	return true;
}

TEST(usage_errors_say_what_is_missing)
{
	const char *no_pid[] = { "converge", "--bandwidth", "10M", NULL };
	const char *no_bw[] = { "converge", "--pid", "1", NULL };
	const char *stray[] = { "converge", "--pid", "1", "--bandwidth", "1M", "extra", NULL };
	const char *within[] = { "migrate", "--to", "tcp:127.0.0.1:1", "--converge-within", "5",
				 NULL };
	char err[4096];

	ASSERT_EQ(cli_run(no_pid, CLI_MS, err, sizeof(err)), 2);
	EXPECT_NE(strstr(err, "--pid PID is required"), NULL) TH_LOG("%s", err);
	ASSERT_EQ(cli_run(no_bw, CLI_MS, err, sizeof(err)), 2);
	EXPECT_NE(strstr(err, "give --bandwidth RATE"), NULL) TH_LOG("%s", err);
	ASSERT_EQ(cli_run(stray, CLI_MS, err, sizeof(err)), 2);
	EXPECT_NE(strstr(err, "unexpected argument 'extra'"), NULL) TH_LOG("%s", err);
	ASSERT_EQ(cli_run(within, CLI_MS, err, sizeof(err)), 2);
	EXPECT_NE(strstr(err, "add --policy converge"), NULL) TH_LOG("%s", err);
}

/* A pid that runs no VM: said, and nothing is left behind. */
TEST(no_vm_at_pid)
{
	char pid[16], err[4096];
	const char *args[] = { "converge", "--pid", pid, "--bandwidth", "10M", NULL };
	int st;

	snprintf(pid, sizeof(pid), "%d", getpid());
	st = cli_run(args, CLI_MS, err, sizeof(err));
	EXPECT_EQ(st, 1) TH_LOG("%s", err);
	EXPECT_NE(strstr(err, "no vCPU"), NULL) TH_LOG("%s", err);
}

/*
 * A deadline that cannot be met is said, with its reason: a built-in guest
 * (`kvmmig run`) dirtying far faster than a 4 MiB/s link, its 64 MiB to be
 * sent within 3 s.  Without the module the rates come from BPF.
 */
TEST(infeasible_deadline_is_said)
{
	const char *guest[] = { "run", "--vcpus", "1", "--ram", "64M", "--workload", "seq",
				"--dirty", "ring", "--seconds", "120", NULL };
	char pid[16], out[65536], err[4096];
	const char *args[] = { "converge", "--pid", pid, "--bandwidth", "4M",
			       "--converge-within", "3", "--json", NULL };
	struct cli_child g, c;
	struct stat st;

	if (stat("/dev/kvm", &st))
		SKIP(return, "no /dev/kvm");
	if (!access("/dev/kvmmig", F_OK))
		SKIP(return, "kvmmig.ko is loaded: this test is for a host without it");
	ASSERT_EQ(cli_start(&g, guest), 0);
	/* Its first interval's line: the guest and its vCPU exist. */
	ASSERT_TRUE(cli_wait_output(&g, "\n", START_MS, out, sizeof(out))) {
		cli_end(&g);
		TH_LOG("the guest did not start: %s", cli_output(g.err, err, sizeof(err)));
	}
	snprintf(pid, sizeof(pid), "%d", g.pid);
	ASSERT_EQ(cli_start(&c, args), 0);
	if (!cli_wait_output(&c, "\"verdict\":\"infeasible\"", START_MS, out, sizeof(out))) {
		cli_output(c.err, err, sizeof(err));
		cli_end(&c);
		cli_end(&g);
		/* Only a BPF object that would not load is a missing capability. */
		if (strstr(err, "dirtyrate BPF object"))
			SKIP(return, "no BPF rates here: %.900s", err);
		ASSERT_TRUE(false) TH_LOG("no infeasible verdict: %s %s", out, err);
	}
	EXPECT_NE(strstr(out, "\"why\":\"even with every dirtying vCPU limited"), NULL)
		TH_LOG("%s", out);
	EXPECT_NE(strstr(out, "the deadline leaves"), NULL) TH_LOG("%s", out);
	kill(c.pid, SIGINT);
	EXPECT_EQ(cli_wait(&c, START_MS), 0);
	EXPECT_EQ(cli_exit_status(&c), 0);
	cli_end(&c);
	cli_end(&g);
}

FIXTURE(qemu) {
	struct qemu src, dst;
	struct qmp qmp;
	char uri[64];
	char out[65536];
};

FIXTURE_SETUP(qemu)
{
	char incoming[64], bios[PATH_MAX], path[PATH_MAX];
	struct qmp dst_qmp;
	struct stat st;
	int port, ret;

	if (stat("/dev/kvm", &st))
		SKIP(return, "no /dev/kvm: QEMU runs with -accel kvm");
	if (bios_path(bios, sizeof(bios)))
		SKIP(return, "no %.200s (build the tree with make)", bios);
	if (cli_path(path, sizeof(path)))
		SKIP(return, "the kvmmig command is not at %.200s (build it with make)", path);
	if (access("/dev/kvmmig", F_OK) == 0)
		SKIP(return, "kvmmig.ko is loaded: these tests are for a host without it");
	port = free_port();
	ASSERT_GT(port, 0);
	snprintf(incoming, sizeof(incoming), "tcp:127.0.0.1:%d", port);
	snprintf(self->uri, sizeof(self->uri), "tcp:127.0.0.1:%d", port);
	if (qemu_start(&self->dst, "dst", incoming) || qemu_start(&self->src, "src", NULL))
		SKIP(return, "cannot start " QEMU " (apt-get install qemu-system-x86)");
	self->qmp.fd = -1;
	ret = qemu_qmp(&self->src, 0, &self->qmp);
	if (ret == -ECHILD)
		SKIP(return, QEMU " -accel kvm exited at once");
	ASSERT_EQ(ret, 0) TH_LOG("%s", kvmmig_last_error());
	/* The destination answers on QMP once it listens for the migration. */
	ASSERT_EQ(qemu_qmp(&self->dst, 0, &dst_qmp), 0) TH_LOG("%s", kvmmig_last_error());
	qmp_close(&dst_qmp);
	/* Slow enough to be followed for a while, still short. */
	ASSERT_EQ(qmp_command(&self->qmp, NULL, 0, QMP_MS,
			      "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":33554432}}"),
		  0);
}

FIXTURE_TEARDOWN(qemu)
{
	qmp_close(&self->qmp);
	qemu_stop(&self->src);
	qemu_stop(&self->dst);
}

static int start_migration(struct __test_metadata *_metadata, FIXTURE_DATA(qemu) *self)
{
	return qmp_command(&self->qmp, NULL, 0, QMP_MS,
			   "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"%s\"}}", self->uri);
}

TEST_F(qemu, client_follows_a_migration)
{
	char reply[QMP_LINE_MAX], s[32];
	struct qmp_migration m;
	uint64_t v;
	int64_t dl;

	EXPECT_GE(self->qmp.major, 7U);
	ASSERT_EQ(qmp_query_migrate(&self->qmp, &m, QMP_MS), 0);
	EXPECT_STREQ(m.status, "none");
	EXPECT_FALSE(qmp_migration_ended(&m));
	ASSERT_EQ(qmp_migrate_parameter(&self->qmp, "downtime-limit", &dl, QMP_MS), 0);
	EXPECT_EQ(dl, 300);
	/* Values anywhere in an answer: nested, by type. */
	ASSERT_EQ(qmp_command(&self->qmp, reply, sizeof(reply), QMP_MS,
			      "{\"execute\":\"query-migrate-parameters\"}"), 0);
	ASSERT_EQ(qmp_get_u64(reply, "max-bandwidth", &v), 0);
	EXPECT_EQ(v, 33554432ULL);
	EXPECT_EQ(qmp_get_str(reply, "max-bandwidth", s, sizeof(s)), -ENOENT);
	ASSERT_EQ(qmp_command(&self->qmp, reply, sizeof(reply), QMP_MS,
			      "{\"execute\":\"query-status\"}"), 0);
	ASSERT_EQ(qmp_get_str(reply, "status", s, sizeof(s)), 0);
	EXPECT_STREQ(s, "running");
	EXPECT_EQ(qmp_get_u64("not json", "x", &v), -EPROTO);
	/* A QMP error is an error with QEMU's words. */
	EXPECT_EQ(qmp_command(&self->qmp, NULL, 0, QMP_MS, "{\"execute\":\"no-such-command\"}"),
		  -EIO);
	EXPECT_NE(strstr(kvmmig_last_error(), "CommandNotFound"), NULL)
		TH_LOG("%s", kvmmig_last_error());
	ASSERT_EQ(start_migration(_metadata, self), 0);
	ASSERT_EQ(wait_ended(&self->qmp, MIGRATE_MS, &m), 0);
	EXPECT_STREQ(m.status, "completed") TH_LOG("%s", m.error);
	EXPECT_TRUE(m.has_ram);
	EXPECT_GE(m.total, 64ULL << 20);
	EXPECT_EQ(m.remaining, 0ULL);
}

/* converge --qmp follows QEMU's migration and ends when it completes. */
TEST_F(qemu, converge_ends_with_the_migration)
{
	char pid[16], err[4096];
	const char *args[] = { "converge", "--pid", pid, "--qmp", self->src.qmp[1], "--json",
			       NULL };
	struct qmp_migration m;
	struct cli_child c;

	snprintf(pid, sizeof(pid), "%d", self->src.pid);
	ASSERT_EQ(cli_start(&c, args), 0);
	ASSERT_TRUE(cli_wait_output(&c, "\"event\":\"start\"", START_MS, self->out,
				    sizeof(self->out)))
		TH_LOG("no start event; stderr: %s", cli_output(c.err, err, sizeof(err)));
	EXPECT_NE(strstr(self->out, "\"throttle\":\"none\""), NULL) TH_LOG("%s", self->out);
	EXPECT_NE(strstr(cli_output(c.err, err, sizeof(err)), "cannot throttle"), NULL)
		TH_LOG("%s", err);
	ASSERT_EQ(start_migration(_metadata, self), 0);
	ASSERT_EQ(wait_ended(&self->qmp, MIGRATE_MS, &m), 0);
	ASSERT_EQ(cli_wait(&c, START_MS), 0) {
		cli_end(&c);
		TH_LOG("converge still running after the migration ended");
	}
	EXPECT_EQ(cli_exit_status(&c), 0) TH_LOG("%s", cli_output(c.err, err, sizeof(err)));
	cli_output(c.out, self->out, sizeof(self->out));
	EXPECT_NE(strstr(self->out, "\"event\":\"migration\",\"t\":"), NULL) TH_LOG("%s", self->out);
	EXPECT_NE(strstr(self->out, "\"end\":\"completed\""), NULL) TH_LOG("%s", self->out);
	cli_end(&c);
}

/* SIGINT ends it with its report, the migration left to QEMU. */
TEST_F(qemu, converge_ends_on_sigint)
{
	char pid[16], err[4096];
	const char *args[] = { "converge", "--pid", pid, "--qmp", self->src.qmp[1], "--json",
			       NULL };
	struct cli_child c;

	snprintf(pid, sizeof(pid), "%d", self->src.pid);
	ASSERT_EQ(cli_start(&c, args), 0);
	ASSERT_TRUE(cli_wait_output(&c, "\"event\":\"start\"", START_MS, self->out,
				    sizeof(self->out)))
		TH_LOG("no start event; stderr: %s", cli_output(c.err, err, sizeof(err)));
	ASSERT_EQ(kill(c.pid, SIGINT), 0);
	ASSERT_EQ(cli_wait(&c, START_MS), 0) {
		cli_end(&c);
		TH_LOG("converge still running after SIGINT");
	}
	EXPECT_EQ(cli_exit_status(&c), 0) TH_LOG("%s", cli_output(c.err, err, sizeof(err)));
	cli_output(c.out, self->out, sizeof(self->out));
	EXPECT_NE(strstr(self->out, "\"end\":\"stopped by SIGINT\""), NULL)
		TH_LOG("%s", self->out);
	EXPECT_NE(strstr(self->out, "{\"vcpu\":0,\"strongest_limit\":0,"), NULL)
		TH_LOG("%s", self->out);
	cli_end(&c);
}

TEST_HARNESS_MAIN
