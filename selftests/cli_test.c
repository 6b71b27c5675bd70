// SPDX-License-Identifier: GPL-2.0-only
/*
 * The kvmmig command refuses bad options before it does anything: every
 * subcommand's numbers, sizes, rates, addresses and names, given negative,
 * overflowing, with trailing garbage, zero where zero means nothing, or
 * out of range, end it with exit status 2 and one message that names the
 * option, repeats the bad value and says what is accepted.  Also: a
 * migration whose timeline cannot be written exits non-zero naming the
 * file and the errno, and `demo --vcpus 0` says what is wrong instead of
 * an empty reason.  build/kvmmig runs as a child process (cli_util.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_util.h"
#include "kselftest_harness.h"
#include "log.h"
#include "uffd.h"

/* A refused option ends the command at once; one that slips through may not. */
#define REFUSE_MS	20000
/* A short demo: 64 MiB migrated on loopback and checked, with room for a busy machine. */
#define DEMO_MS		300000

FIXTURE(bad) {
	char err[4096];
};

FIXTURE_VARIANT(bad) {
	const char *args[10];	/* argv after "kvmmig", NULL-terminated */
	const char *option;	/* must be named */
	const char *value;	/* must be repeated */
	const char *accepted;	/* what the message says is accepted */
};

FIXTURE_SETUP(bad)
{
	char path[PATH_MAX];

	if (cli_path(path, sizeof(path)))
		SKIP(return, "the kvmmig command is not at %.200s (build it with make)", path);
}

FIXTURE_TEARDOWN(bad)
{
}

/*
 * Cases that could do something if not refused carry options that keep
 * them short: --once for top, a closed port for migrate.
 */
#define TO	"--to", "tcp:127.0.0.1:1"

/* ---- guest options (run, migrate, demo) ---- */
FIXTURE_VARIANT_ADD(bad, vcpus_zero) {
	{ "run", "--vcpus", "0" }, "--vcpus", "'0'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, vcpus_over) {
	{ "run", "--vcpus", "65" }, "--vcpus", "'65'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, vcpus_negative) {
	{ "run", "--vcpus", "-1" }, "--vcpus", "'-1'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, vcpus_garbage) {
	{ "run", "--vcpus", "2x" }, "--vcpus", "'2x'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, vcpus_overflow) {
	{ "run", "--vcpus", "99999999999999999999" }, "--vcpus", "'99999999999999999999'",
	"from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, vcpus_space) {
	{ "run", "--vcpus", " 2" }, "--vcpus", "' 2'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, ram_negative) {
	{ "run", "--ram", "-5" }, "--ram", "'-5'", "from 1M to" };
FIXTURE_VARIANT_ADD(bad, ram_overflow) {
	{ "run", "--ram", "99999999999999999999G" }, "--ram", "'99999999999999999999G'",
	"from 1M to" };
FIXTURE_VARIANT_ADD(bad, ram_unit_overflow) {
	{ "run", "--ram", "17000000P" }, "--ram", "'17000000P'", "from 1M to" };
FIXTURE_VARIANT_ADD(bad, ram_garbage) {
	{ "run", "--ram", "10x" }, "--ram", "'10x'", "from 1M to" };
FIXTURE_VARIANT_ADD(bad, ram_too_small) {
	{ "run", "--ram", "512K" }, "--ram", "'512K'", "from 1M to" };
FIXTURE_VARIANT_ADD(bad, ram_not_pages) {
	{ "run", "--ram", "1048577" }, "--ram", "'1048577'", "whole 4K pages" };
FIXTURE_VARIANT_ADD(bad, ram_more_than_host) {
	{ "run", "--ram", "1P" }, "--ram", "'1P'", "more than this host has" };
FIXTURE_VARIANT_ADD(bad, slots_zero) {
	{ "run", "--slots", "0" }, "--slots", "'0'", "from 1 to 31" };
FIXTURE_VARIANT_ADD(bad, slots_over) {
	{ "run", "--slots", "32" }, "--slots", "'32'", "from 1 to 31" };
FIXTURE_VARIANT_ADD(bad, workload_unknown) {
	{ "run", "--workload", "nope" }, "--workload", "'nope'", "incr, random, rate" };
FIXTURE_VARIANT_ADD(bad, backing_unknown) {
	{ "run", "--backing", "nope" }, "--backing", "'nope'", "anon, memfd, hugetlb or thp" };
FIXTURE_VARIANT_ADD(bad, receive_backing_unknown) {
	{ "receive", "--backing", "nope", "--listen", "tcp:127.0.0.1:0" }, "--backing", "'nope'",
	"anon, memfd, hugetlb or thp" };
FIXTURE_VARIANT_ADD(bad, dirty_unknown) {
	{ "run", "--dirty", "nope" }, "--dirty", "'nope'", "auto, bitmap, bitmap-manual" };
FIXTURE_VARIANT_ADD(bad, ring_entries_not_pow2) {
	{ "run", "--ring-entries", "1000" }, "--ring-entries", "'1000'",
	"power of two from 256 to 1048576" };
FIXTURE_VARIANT_ADD(bad, ring_entries_small) {
	{ "run", "--ring-entries", "128" }, "--ring-entries", "'128'", "from 256 to 1048576" };
FIXTURE_VARIANT_ADD(bad, pages_per_sec_zero) {
	{ "run", "--pages-per-sec", "0" }, "--pages-per-sec", "'0'", "from 1 to 100000000" };
FIXTURE_VARIANT_ADD(bad, wss_zero) {
	{ "run", "--wss", "0" }, "--wss", "'0'", "at least 4K" };
FIXTURE_VARIANT_ADD(bad, wss_above_ram) {
	{ "run", "--ram", "64M", "--wss", "128M" }, "--wss", "'128M'", "from 4K to the guest's RAM" };
FIXTURE_VARIANT_ADD(bad, compute_vcpus_beyond) {
	{ "run", "--vcpus", "2", "--compute-vcpus", "0x4" }, "--compute-vcpus", "'0x4'",
	"from 0 to 0x3" };
FIXTURE_VARIANT_ADD(bad, run_seconds_zero) {
	{ "run", "--seconds", "0" }, "--seconds", "'0'", "from 1 to 86400" };
FIXTURE_VARIANT_ADD(bad, run_interval_garbage) {
	{ "run", "--interval-ms", "100ms" }, "--interval-ms", "'100ms'", "from 10 to 60000" };
FIXTURE_VARIANT_ADD(bad, demo_vcpus_zero) {
	{ "demo", "--ram", "64M", "--vcpus", "0" }, "--vcpus", "'0'", "from 1 to 64" };

/* ---- migration parameters (migrate, demo) ---- */
FIXTURE_VARIANT_ADD(bad, to_port_zero) {
	{ "migrate", "--to", "tcp:127.0.0.1:0" }, "--to", "'tcp:127.0.0.1:0'",
	"port from 1 to 65535" };
FIXTURE_VARIANT_ADD(bad, to_not_an_address) {
	{ "migrate", "--to", "127.0.0.1" }, "--to", "'127.0.0.1'", "tcp:HOST:PORT" };
FIXTURE_VARIANT_ADD(bad, to_port_over) {
	{ "migrate", "--to", "tcp:127.0.0.1:99999" }, "--to", "'tcp:127.0.0.1:99999'", "65535" };
FIXTURE_VARIANT_ADD(bad, downtime_zero) {
	{ "migrate", TO, "--downtime-limit", "0" }, "--downtime-limit", "'0'",
	"from 1 to 2000000" };
FIXTURE_VARIANT_ADD(bad, bandwidth_negative) {
	{ "migrate", TO, "--max-bandwidth", "-5" }, "--max-bandwidth", "'-5'",
	"from 1K to 1P, such as 200M, or 0 for unlimited" };
FIXTURE_VARIANT_ADD(bad, bandwidth_overflow) {
	{ "migrate", TO, "--max-bandwidth", "99999999999999999999G" }, "--max-bandwidth",
	"'99999999999999999999G'", "from 1K to 1P" };
FIXTURE_VARIANT_ADD(bad, bandwidth_garbage) {
	{ "migrate", TO, "--max-bandwidth", "10x" }, "--max-bandwidth", "'10x'", "from 1K to 1P" };
/* A space after the number once read as a unit of 2^60. */
FIXTURE_VARIANT_ADD(bad, bandwidth_trailing_space) {
	{ "migrate", TO, "--max-bandwidth", "10 " }, "--max-bandwidth", "'10 '", "from 1K to 1P" };
FIXTURE_VARIANT_ADD(bad, bandwidth_tiny) {
	{ "migrate", TO, "--max-bandwidth", "5" }, "--max-bandwidth", "'5'", "from 1K to 1P" };
FIXTURE_VARIANT_ADD(bad, channels_zero) {
	{ "migrate", TO, "--multifd-channels", "0" }, "--multifd-channels", "'0'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, channels_over) {
	{ "migrate", TO, "--channels", "65" }, "--multifd-channels", "'65'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, zero_page_unknown) {
	{ "migrate", TO, "--zero-page-detection", "x" }, "--zero-page-detection", "'x'",
	"multifd or none" };
FIXTURE_VARIANT_ADD(bad, sync_unknown) {
	{ "migrate", TO, "--sync", "x" }, "--sync", "'x'", "legacy, background or periodic" };
FIXTURE_VARIANT_ADD(bad, sync_interval_small) {
	{ "migrate", TO, "--sync-interval", "99" }, "--sync-interval", "'99'",
	"from 100 to 600000" };
FIXTURE_VARIANT_ADD(bad, policy_unknown) {
	{ "migrate", TO, "--policy", "x" }, "--policy", "'x'",
	"auto-converge, dirty-limit, rate-driven or converge" };
FIXTURE_VARIANT_ADD(bad, throttle_initial_zero) {
	{ "migrate", TO, "--cpu-throttle-initial", "0" }, "--cpu-throttle-initial", "'0'",
	"from 1 to 99" };
FIXTURE_VARIANT_ADD(bad, throttle_increment_over) {
	{ "migrate", TO, "--cpu-throttle-increment", "100" }, "--cpu-throttle-increment", "'100'",
	"from 1 to 99" };
FIXTURE_VARIANT_ADD(bad, max_throttle_zero) {
	{ "migrate", TO, "--max-cpu-throttle", "0" }, "--max-cpu-throttle", "'0'",
	"from 1 to 99" };
FIXTURE_VARIANT_ADD(bad, trigger_threshold_over) {
	{ "migrate", TO, "--throttle-trigger-threshold", "101" }, "--throttle-trigger-threshold",
	"'101'", "from 1 to 100" };
FIXTURE_VARIANT_ADD(bad, dirty_limit_zero) {
	{ "migrate", TO, "--vcpu-dirty-limit", "0" }, "--vcpu-dirty-limit", "'0'",
	"from 1 to 1000000" };
FIXTURE_VARIANT_ADD(bad, dirty_limit_period_over) {
	{ "migrate", TO, "--x-vcpu-dirty-limit-period", "1001" }, "--x-vcpu-dirty-limit-period",
	"'1001'", "from 1 to 1000" };
FIXTURE_VARIANT_ADD(bad, max_passes_zero) {
	{ "migrate", TO, "--max-passes", "0" }, "--max-passes", "'0'", "from 1 to 1000000" };
FIXTURE_VARIANT_ADD(bad, rate_source_unknown) {
	{ "migrate", TO, "--x-rate-source", "x" }, "--x-rate-source", "'x'", "dirty or bpf" };
FIXTURE_VARIANT_ADD(bad, warmup_negative) {
	{ "migrate", TO, "--warmup", "-1" }, "--warmup", "'-1'", "from 0 to 3600000" };
FIXTURE_VARIANT_ADD(bad, csv_no_folder) {
	{ "migrate", TO, "--csv", "/nonexistent-kvmmig/x.csv" }, "--csv",
	"'/nonexistent-kvmmig/x.csv'", "No such file or directory" };
FIXTURE_VARIANT_ADD(bad, svg_no_folder) {
	{ "demo", "--ram", "64M", "--svg", "/nonexistent-kvmmig/x.svg" }, "--svg",
	"'/nonexistent-kvmmig/x.svg'", "No such file or directory" };
FIXTURE_VARIANT_ADD(bad, demo_bandwidth_negative) {
	{ "demo", "--ram", "64M", "--max-bandwidth", "-5" }, "--max-bandwidth", "'-5'",
	"from 1K to 1P" };

/* ---- receive ---- */
FIXTURE_VARIANT_ADD(bad, listen_port_over) {
	{ "receive", "--listen", "tcp:127.0.0.1:99999" }, "--listen", "'tcp:127.0.0.1:99999'",
	"65535" };
FIXTURE_VARIANT_ADD(bad, listen_not_an_address) {
	{ "receive", "--listen", "4444" }, "--listen", "'4444'", "tcp:HOST:PORT" };
FIXTURE_VARIANT_ADD(bad, run_seconds_negative) {
	{ "receive", "--listen", "tcp:127.0.0.1:0", "--run-seconds", "-1" }, "--run-seconds",
	"'-1'", "from 0 to 86400" };

FIXTURE_VARIANT_ADD(bad, hello_timeout_zero) {
	{ "receive", "--listen", "tcp:127.0.0.1:0", "--hello-timeout", "0" }, "--hello-timeout",
	"'0'", "from 1 to 600" };
FIXTURE_VARIANT_ADD(bad, receive_io_timeout_over) {
	{ "receive", "--listen", "tcp:127.0.0.1:0", "--io-timeout", "3601" }, "--io-timeout",
	"'3601'", "from 1 to 3600" };
FIXTURE_VARIANT_ADD(bad, connect_timeout_zero) {
	{ "migrate", TO, "--connect-timeout", "0" }, "--connect-timeout", "'0'", "from 1 to 3600" };

/* ---- top, attach, stats, throttle, cancel ---- */
FIXTURE_VARIANT_ADD(bad, top_delay_nan) {
	{ "top", "--once", "--delay", "nan" }, "--delay", "'nan'", "from 0.1 to 60" };
FIXTURE_VARIANT_ADD(bad, top_delay_zero) {
	{ "top", "--once", "--delay", "0" }, "--delay", "'0'", "from 0.1 to 60" };
FIXTURE_VARIANT_ADD(bad, top_pid_negative) {
	{ "top", "--once", "--pid", "-1" }, "--pid", "'-1'", "from 1 to 4194304" };
FIXTURE_VARIANT_ADD(bad, top_iterations_zero) {
	{ "top", "--iterations", "0" }, "--iterations", "'0'", "from 1 to 4294967295" };
FIXTURE_VARIANT_ADD(bad, attach_pid_negative) {
	{ "attach", "--pid", "-3" }, "--pid", "'-3'", "from 1 to 2147483647" };
FIXTURE_VARIANT_ADD(bad, attach_delay_zero) {
	{ "attach", "--pid", "1", "--delay", "0" }, "--delay", "'0'", "from 1 to 3600" };
FIXTURE_VARIANT_ADD(bad, stats_session_zero) {
	{ "stats", "--session", "0" }, "--session", "'0'", "from 1 to 4294967295" };
FIXTURE_VARIANT_ADD(bad, throttle_limit_negative) {
	{ "throttle", "--dirty-limit", "-5MB/s" }, "--dirty-limit", "'-5MB/s'",
	"from 0 (off) to 4294967296pages/s" };
FIXTURE_VARIANT_ADD(bad, throttle_limit_nan) {
	{ "throttle", "--dirty-limit", "nan" }, "--dirty-limit", "'nan'", "from 0 (off)" };
FIXTURE_VARIANT_ADD(bad, throttle_limit_overflow) {
	{ "throttle", "--dirty-limit", "1e400" }, "--dirty-limit", "'1e400'", "from 0 (off)" };
FIXTURE_VARIANT_ADD(bad, throttle_cpu_over) {
	{ "throttle", "--cpu-throttle", "100" }, "--cpu-throttle", "'100'", "from 0 to 99" };
FIXTURE_VARIANT_ADD(bad, throttle_quota_negative) {
	{ "throttle", "--ring-quota", "-1" }, "--ring-quota", "'-1'", "from 0 to 4294967295" };
FIXTURE_VARIANT_ADD(bad, throttle_vcpu_garbage) {
	{ "throttle", "--vcpu", "1x", "--off" }, "--vcpu", "'1x'", "from 0 to" };
FIXTURE_VARIANT_ADD(bad, snapshot_writers_zero) {
	{ "snapshot", "--to", "/tmp/never.snap", "--writers", "0" }, "--writers", "'0'",
	"from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, snapshot_ram_garbage) {
	{ "snapshot", "--to", "/tmp/never.snap", "--ram", "lots" }, "--ram", "'lots'", "from 1M to" };
FIXTURE_VARIANT_ADD(bad, snapshot_channels_over) {
	{ "snapshot", "--to", "/tmp/never.snap", "--channels", "65" }, "--channels", "'65'",
	"from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, snapshot_receive_io_timeout_low) {
	{ "snapshot-receive", "--listen", "tcp:127.0.0.1:0", "--to", "/tmp/never.snap",
	  "--io-timeout", "5" }, "--io-timeout", "'5'", "from 100 to 3600000" };
FIXTURE_VARIANT_ADD(bad, snapshot_increments_over) {
	{ "snapshot", "--to", "/tmp/never.snap", "--increments", "32" }, "--increments", "'32'",
	"from 0 to 31" };
FIXTURE_VARIANT_ADD(bad, snapshot_tracker_unknown) {
	{ "snapshot", "--to", "/tmp/never.snap", "--tracker", "soft-dirty" }, "--tracker",
	"'soft-dirty'", "expected dirty or pagemap" };
FIXTURE_VARIANT_ADD(bad, restore_run_seconds_over) {
	{ "restore", "/tmp/never.snap", "--run-seconds", "99999" }, "--run-seconds", "'99999'",
	"from 0 to 86400" };
FIXTURE_VARIANT_ADD(bad, restore_readers_zero) {
	{ "restore", "/tmp/never.snap", "--lazy", "--readers", "0" }, "--readers", "'0'",
	"from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, restore_readers_over) {
	{ "restore", "/tmp/never.snap", "--readers", "65" }, "--readers", "'65'", "from 1 to 64" };
FIXTURE_VARIANT_ADD(bad, run_reap_us_small) {
	{ "run", "--reap-us", "50" }, "--reap-us", "'50'", "from 100 to 1000000" };
FIXTURE_VARIANT_ADD(bad, converge_pid_zero) {
	{ "converge", "--pid", "0", "--bandwidth", "1M" }, "--pid", "'0'", "from 1 to 2147483647" };
FIXTURE_VARIANT_ADD(bad, converge_bandwidth_tiny) {
	{ "converge", "--pid", "1", "--bandwidth", "10" }, "--bandwidth", "'10'", "from 1K" };
FIXTURE_VARIANT_ADD(bad, converge_within_zero) {
	{ "converge", "--pid", "1", "--bandwidth", "1M", "--converge-within", "0" },
	"--converge-within", "'0'", "from 1 to 86400" };
FIXTURE_VARIANT_ADD(bad, converge_downtime_zero) {
	{ "converge", "--pid", "1", "--bandwidth", "1M", "--downtime-limit", "0" },
	"--downtime-limit", "'0'", "from 1 to 2000000" };
FIXTURE_VARIANT_ADD(bad, migrate_converge_within_over) {
	{ "migrate", TO, "--policy", "converge", "--converge-within", "86401" },
	"--converge-within", "'86401'", "from 1 to 86400" };
FIXTURE_VARIANT_ADD(bad, postcopy_start_unknown) {
	{ "migrate", TO, "--postcopy", "--x-postcopy-start", "sometimes" }, "--x-postcopy-start",
	"'sometimes'", "expected auto, manual or passes:N with N from 1 to 1000000" };
FIXTURE_VARIANT_ADD(bad, postcopy_start_passes_zero) {
	{ "migrate", TO, "--postcopy", "--x-postcopy-start", "passes:0" }, "--x-postcopy-start",
	"'passes:0'", "passes:N with N from 1 to 1000000" };
FIXTURE_VARIANT_ADD(bad, postcopy_start_passes_garbage) {
	{ "demo", "--postcopy", "--x-postcopy-start", "passes:2x" }, "--x-postcopy-start",
	"'passes:2x'", "passes:N with N from 1 to 1000000" };
FIXTURE_VARIANT_ADD(bad, postcopy_hint_unknown) {
	{ "migrate", TO, "--postcopy", "--x-postcopy-hint", "maybe" }, "--x-postcopy-hint",
	"'maybe'", "expected on or off" };
FIXTURE_VARIANT_ADD(bad, postcopy_recover_timeout_over) {
	{ "migrate", TO, "--postcopy", "--postcopy-recover-timeout", "86401" },
	"--postcopy-recover-timeout", "'86401'", "from 0 to 86400" };
FIXTURE_VARIANT_ADD(bad, receive_postcopy_recover_timeout_garbage) {
	{ "receive", "--listen", "tcp:127.0.0.1:0", "--postcopy-recover-timeout", "5s" },
	"--postcopy-recover-timeout", "'5s'", "from 0 to 86400" };
FIXTURE_VARIANT_ADD(bad, migrate_resume_port_zero) {
	{ "migrate", "--settle", "00001234abcd5678", "--resume", "tcp:127.0.0.1:0" }, "--resume",
	"'tcp:127.0.0.1:0'", "port from 1 to 65535" };
FIXTURE_VARIANT_ADD(bad, receive_recover_not_an_address) {
	{ "receive", "--settle", "00001234abcd5678", "--recover", "127.0.0.1" }, "--recover",
	"'127.0.0.1'", "tcp:HOST:PORT" };
FIXTURE_VARIANT_ADD(bad, start_postcopy_pid_zero) {
	{ "migrate-start-postcopy", "--pid", "0" }, "--pid", "'0'", "from 1 to 1073741824" };
FIXTURE_VARIANT_ADD(bad, cancel_pid_overflow) {
	{ "cancel", "--pid", "99999999999999999999" }, "--pid", "'99999999999999999999'",
	"from 1 to 1073741824" };

TEST_F(bad, refused)
{
	int st;

	if (_metadata->skip)
		return;
	st = cli_run(variant->args, REFUSE_MS, self->err, sizeof(self->err));
	EXPECT_EQ(st, 2) {
		TH_LOG("exit status %d (-110: still running after %d ms); stderr: %s", st,
		       REFUSE_MS, self->err);
	}
	EXPECT_NE(strstr(self->err, variant->option), NULL)
		TH_LOG("the option is not named: %s", self->err);
	EXPECT_NE(strstr(self->err, variant->value), NULL)
		TH_LOG("the value is not repeated: %s", self->err);
	EXPECT_NE(strstr(self->err, variant->accepted), NULL)
		TH_LOG("'%s' is not said: %s", variant->accepted, self->err);
	/* One message, not a usage page: the reason must not scroll away. */
	EXPECT_EQ(strchr(self->err, '\n'), strrchr(self->err, '\n'))
		TH_LOG("more than one line: %s", self->err);
}

/*
 * A migration that completed but whose timeline could not be written is
 * not a success: /dev/full takes the open and fails the write (ENOSPC).
 */
FIXTURE(timeline) {
	char err[8192];
};

FIXTURE_VARIANT(timeline) {
	const char *option;
};

FIXTURE_VARIANT_ADD(timeline, csv) { "--csv" };
FIXTURE_VARIANT_ADD(timeline, svg) { "--svg" };

FIXTURE_SETUP(timeline)
{
	char path[PATH_MAX];
	struct stat st;

	if (cli_path(path, sizeof(path)))
		SKIP(return, "the kvmmig command is not at %.200s (build it with make)", path);
	if (stat("/dev/kvm", &st))
		SKIP(return, "no /dev/kvm: the demo needs KVM");
	if (stat("/dev/full", &st))
		SKIP(return, "no /dev/full to fail the write");
}

FIXTURE_TEARDOWN(timeline)
{
}

TEST_F(timeline, unwritable_after_migration)
{
	const char *const args[] = { "demo", "--ram", "64M", variant->option, "/dev/full",
				     NULL };
	int st;

	if (_metadata->skip)
		return;
	st = cli_run(args, DEMO_MS, self->err, sizeof(self->err));
	EXPECT_EQ(st, 1) TH_LOG("exit status %d; stderr: %s", st, self->err);
	EXPECT_NE(strstr(self->err, "cannot write /dev/full: No space left on device"), NULL)
		TH_LOG("stderr: %s", self->err);
	EXPECT_NE(strstr(self->err, "the migration completed"), NULL)
		TH_LOG("stderr: %s", self->err);
}

/*
 * Postcopy's options that only mean something with --postcopy, and the
 * preempt channel that must fit: refused before anything runs, with this
 * one line.
 */
FIXTURE(needs) {
	char err[4096];
};

FIXTURE_VARIANT(needs) {
	const char *args[10];
	const char *message;	/* all of stderr */
};

FIXTURE_VARIANT_ADD(needs, preempt_without_postcopy) {
	{ "migrate", TO, "--postcopy-preempt" },
	"kvmmig migrate: --postcopy-preempt is a postcopy capability: add --postcopy\n" };
FIXTURE_VARIANT_ADD(needs, start_without_postcopy) {
	{ "migrate", TO, "--x-postcopy-start", "manual" },
	"kvmmig migrate: --x-postcopy-start says when to switch to postcopy: add --postcopy\n" };
FIXTURE_VARIANT_ADD(needs, hint_without_postcopy) {
	{ "demo", "--x-postcopy-hint", "off" },
	"kvmmig demo: --x-postcopy-hint steers postcopy's background scan: add --postcopy\n" };
FIXTURE_VARIANT_ADD(needs, recover_timeout_without_postcopy) {
	{ "migrate", TO, "--postcopy-recover-timeout", "60" },
	"kvmmig migrate: --postcopy-recover-timeout bounds postcopy's recovery: add --postcopy\n" };
FIXTURE_VARIANT_ADD(needs, preempt_channel_does_not_fit) {
	{ "migrate", TO, "--postcopy", "--postcopy-preempt", "--multifd-channels", "64" },
	"kvmmig migrate: --postcopy-preempt takes a page channel of its own: --multifd-channels 64 is more than the 63 it leaves\n" };
FIXTURE_VARIANT_ADD(needs, resume_without_session) {
	{ "migrate", "--resume", "tcp:127.0.0.1:4444" },
	"kvmmig migrate: --settle SESSION needs --resume-source, --discard or --resume tcp:HOST:PORT, and they go together\n" };
FIXTURE_VARIANT_ADD(needs, recover_without_session) {
	{ "receive", "--recover", "tcp:127.0.0.1:4444" },
	"kvmmig receive: --settle SESSION needs --start, --discard or --recover tcp:HOST:PORT, and they go together\n" };

FIXTURE_SETUP(needs)
{
	char path[PATH_MAX];

	if (cli_path(path, sizeof(path)))
		SKIP(return, "the kvmmig command is not at %.200s (build it with make)", path);
}

FIXTURE_TEARDOWN(needs)
{
}

TEST_F(needs, refused)
{
	int st;

	if (_metadata->skip)
		return;
	st = cli_run(variant->args, REFUSE_MS, self->err, sizeof(self->err));
	EXPECT_EQ(st, 2) TH_LOG("exit status %d; stderr: %s", st, self->err);
	EXPECT_STREQ(self->err, variant->message);
}

/* -h shows the postcopy options and commands, with examples of them. */
TEST(postcopy_help)
{
	static const struct {
		const char *args[3];
		const char *says[5];
	} helps[] = {
		{ { "migrate", "-h" }, { "--postcopy ", "--postcopy-preempt", "--x-postcopy-hint on|off",
			"--x-postcopy-start MODE", "--postcopy-recover-timeout S" } },
		{ { "migrate", "-h" }, { "examples:", "--postcopy --postcopy-preempt",
			"kvmmig migrate-start-postcopy", "--settle 00001234abcd5678 --resume tcp:" } },
		{ { "receive", "-h" }, { "--postcopy-recover-timeout S", "--recover tcp:HOST:PORT",
			"examples:", "--postcopy-recover-timeout 600",
			"--settle 00001234abcd5678 --recover tcp:" } },
		{ { "demo", "-h" }, { "--postcopy ", "passes:2", "kvmmig demo --postcopy" } },
		{ { "migrate-start-postcopy", "-h" }, { "usage: kvmmig migrate-start-postcopy [--pid PID]",
			"examples:", "kvmmig migrate-start-postcopy --pid 4242" } },
		{ { "-h" }, { "migrate-start-postcopy " } },
	};
	struct cli_child c;
	unsigned int i, j;
	char out[16384];

	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		ASSERT_EQ(cli_start(&c, helps[i].args), 0);
		ASSERT_EQ(cli_wait(&c, REFUSE_MS), 0);
		EXPECT_EQ(cli_exit_status(&c), 0) TH_LOG("kvmmig %s -h", helps[i].args[0]);
		cli_output(c.out, out, sizeof(out));
		for (j = 0; j < 5 && helps[i].says[j]; j++)
			EXPECT_NE(strstr(out, helps[i].says[j]), NULL)
				TH_LOG("kvmmig %s %s does not say '%s': %s", helps[i].args[0],
				       helps[i].args[1] ? helps[i].args[1] : "", helps[i].says[j], out);
		cli_end(&c);
	}
}

/* A pid that is no process: a child of ours, ended and reaped. */
static pid_t gone_pid(void)
{
	pid_t pid = fork();

	if (!pid)
		_exit(0);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return pid;
}

/*
 * migrate-start-postcopy names what it cannot signal.  Never without --pid
 * here: it would reach the migrations of whoever else runs kvmmig on this
 * machine.
 */
TEST(start_postcopy_no_such_process)
{
	char pid[2][32], want[128], err[4096];
	const char *gone[] = { "migrate-start-postcopy", "--pid", pid[0], NULL };
	const char *self[] = { "migrate-start-postcopy", "--pid", pid[1], NULL };
	pid_t p = gone_pid();

	ASSERT_GT(p, 0);
	snprintf(pid[0], sizeof(pid[0]), "%d", p);
	snprintf(pid[1], sizeof(pid[1]), "%d", getpid());
	EXPECT_EQ(cli_run(gone, REFUSE_MS, err, sizeof(err)), 1) TH_LOG("stderr: %s", err);
	snprintf(want, sizeof(want),
		 "kvmmig migrate-start-postcopy: process %d is not a running kvmmig migrate or demo\n",
		 p);
	EXPECT_STREQ(err, want);
	EXPECT_EQ(cli_run(self, REFUSE_MS, err, sizeof(err)), 1) TH_LOG("stderr: %s", err);
	snprintf(want, sizeof(want),
		 "kvmmig migrate-start-postcopy: process %d is not a running kvmmig migrate or demo\n",
		 getpid());
	EXPECT_STREQ(err, want);
}

/* @pid handles @sig: its handler is in place (SigCgt of /proc/PID/status). */
static bool catches(pid_t pid, int sig)
{
	unsigned long long mask = 0;
	char path[64], line[256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "SigCgt: %llx", &mask) == 1;
	fclose(f);
	return mask & (1ULL << (sig - 1));
}

/* A `kvmmig migrate` that stays in its warm-up (a minute) until told otherwise. */
static int start_waiting_migrate(struct cli_child *c, bool postcopy)
{
	const char *args[] = { "migrate", TO, "--ram", "16M", "--warmup", "60000",
			       postcopy ? "--postcopy" : NULL, NULL };
	int waited, ret = cli_start(c, args);

	/* Until then the signal would end it: its default action. */
	for (waited = 0; !ret && !catches(c->pid, SIGUSR2); waited += 10) {
		if (waited >= REFUSE_MS)
			return -ETIMEDOUT;
		usleep(10000);
	}
	return ret;
}

/*
 * A migration without --postcopy cannot switch: the command says so and
 * sends nothing; a SIGUSR2 sent anyway is ignored by the migration, which
 * says why and goes on.  With --postcopy the request is sent.
 */
TEST(start_postcopy_needs_postcopy)
{
	char pid[32], want[256], out[4096], err[4096];
	const char *args[] = { "migrate-start-postcopy", "--pid", pid, NULL };
	struct cli_child m, c;

	ASSERT_EQ(start_waiting_migrate(&m, false), 0);
	snprintf(pid, sizeof(pid), "%d", m.pid);
	EXPECT_EQ(cli_run(args, REFUSE_MS, err, sizeof(err)), 1) TH_LOG("stderr: %s", err);
	snprintf(want, sizeof(want),
		 "kvmmig migrate-start-postcopy: the migration of process %d was started without --postcopy: it cannot switch to postcopy\n",
		 m.pid);
	EXPECT_STREQ(err, want);
	ASSERT_EQ(kill(m.pid, SIGUSR2), 0);
	usleep(200000);
	ASSERT_EQ(kill(m.pid, SIGINT), 0);
	ASSERT_EQ(cli_wait(&m, REFUSE_MS), 0);
	cli_output(m.err, err, sizeof(err));
	EXPECT_NE(strstr(err, "kvmmig: migrate-start-postcopy ignored: this migration was started without --postcopy\n"),
		  NULL) TH_LOG("stderr: %s", err);
	/* It lived on until cancelled. */
	EXPECT_NE(strstr(err, "interrupted before the migration started"), NULL)
		TH_LOG("stderr: %s", err);
	cli_end(&m);

	ASSERT_EQ(start_waiting_migrate(&m, true), 0);
	snprintf(pid, sizeof(pid), "%d", m.pid);
	ASSERT_EQ(cli_start(&c, args), 0);
	ASSERT_EQ(cli_wait(&c, REFUSE_MS), 0);
	cli_output(c.out, out, sizeof(out));
	cli_output(c.err, err, sizeof(err));
	EXPECT_EQ(cli_exit_status(&c), 0) TH_LOG("stderr: %s", err);
	snprintf(want, sizeof(want), "asked process %d to switch its migration to postcopy\n",
		 m.pid);
	EXPECT_STREQ(out, want);
	cli_end(&c);
	ASSERT_EQ(kill(m.pid, SIGINT), 0);
	ASSERT_EQ(cli_wait(&m, REFUSE_MS), 0);
	cli_output(m.err, err, sizeof(err));
	EXPECT_EQ(strstr(err, "ignored"), NULL) TH_LOG("stderr: %s", err);
	cli_end(&m);
}

/* The lines of @out (cut there) that hold @what, up to @max of them: how many. */
static unsigned int find_lines(char *out, const char *what, char **lines, unsigned int max)
{
	unsigned int n = 0;
	char *line, *save;

	for (line = strtok_r(out, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save))
		if (strstr(line, what))
			lines[n++] = line;
	return n;
}

/*
 * `kvmmig demo --postcopy --json`: a guest that does not converge at
 * 20 MB/s switches to postcopy after two passes and completes; both sides'
 * reports say postcopy with a non-empty fault histogram, and the guest's
 * memory check passes on the destination.
 */
TEST(demo_postcopy_reports)
{
	const char *const args[] = { "demo", "--postcopy", "--ram", "64M", "--max-bandwidth",
				     "20M", "--json", NULL };
	static char out[1 << 20];
	char err[8192], *report[2];
	struct cli_child c;
	struct uffd u;
	struct stat st;
	unsigned int i;
	int ret;

	if (stat("/dev/kvm", &st))
		SKIP(return, "no /dev/kvm: the demo needs KVM");
	ret = uffd_open(&u, UFFD_MISSING);
	if (ret == -EPERM || ret == -ENOSYS || ret == -EOPNOTSUPP)
		SKIP(return, "no userfaultfd here, which postcopy needs: %s", kvmmig_last_error());
	ASSERT_EQ(ret, 0);
	uffd_close(&u);
	ASSERT_EQ(cli_start(&c, args), 0);
	ASSERT_EQ(cli_wait(&c, DEMO_MS), 0);
	cli_output(c.out, out, sizeof(out));
	cli_output(c.err, err, sizeof(err));
	EXPECT_EQ(cli_exit_status(&c), 0) TH_LOG("stderr: %s", err);
	cli_end(&c);
	EXPECT_NE(strstr(out, "{\"event\":\"postcopy_started\"}"), NULL);
	EXPECT_NE(strstr(out, "\"memory_check\":\"passed\""), NULL);
	/* The source's report and the destination's. */
	ASSERT_EQ(find_lines(out, "\"event\":\"report\"", report, 2), 2U)
		TH_LOG("not two reports; stderr: %s", err);
	for (i = 0; i < 2; i++) {
		EXPECT_NE(strstr(report[i], "\"status\":\"completed\""), NULL)
			TH_LOG("%s", report[i]);
		EXPECT_NE(strstr(report[i], "\"postcopy\":true"), NULL) TH_LOG("%s", report[i]);
		EXPECT_NE(strstr(report[i], "\"buckets\":[{\"from_us\":"), NULL)
			TH_LOG("an empty histogram: %s", report[i]);
		EXPECT_EQ(strstr(report[i], "\"p50\":0,"), NULL) TH_LOG("%s", report[i]);
	}
}

/* The report of the issue: "receiving the guest failed: ; nothing was kept". */
TEST(demo_vcpus_zero_says_why)
{
	const char *const args[] = { "demo", "--ram", "64M", "--vcpus", "0", NULL };
	char err[4096];

	ASSERT_EQ(cli_run(args, REFUSE_MS, err, sizeof(err)), 2) TH_LOG("stderr: %s", err);
	EXPECT_NE(strstr(err, "kvmmig: --vcpus '0': expected a whole number from 1 to 64"), NULL)
		TH_LOG("stderr: %s", err);
	EXPECT_EQ(strstr(err, ": ;"), NULL) TH_LOG("an empty reason: %s", err);
	EXPECT_EQ(strstr(err, "receiving the guest failed"), NULL) TH_LOG("stderr: %s", err);
}

/* A snapshot needs a destination, and a restore a file that is one. */
TEST(snapshot_and_restore_say_what_is_missing)
{
	const char *const no_to[] = { "snapshot", "--ram", "64M", NULL };
	const char *const junk[] = { "restore", "/proc/self/status", NULL };
	char err[4096];

	ASSERT_EQ(cli_run(no_to, REFUSE_MS, err, sizeof(err)), 2) TH_LOG("stderr: %s", err);
	EXPECT_NE(strstr(err, "--to FILE is required"), NULL) TH_LOG("stderr: %s", err);
	ASSERT_EQ(cli_run(junk, REFUSE_MS, err, sizeof(err)), 1) TH_LOG("stderr: %s", err);
	EXPECT_NE(strstr(err, "is not a kvmmig snapshot"), NULL) TH_LOG("stderr: %s", err);
	EXPECT_NE(strstr(err, "/proc/self/status was not restored"), NULL) TH_LOG("stderr: %s", err);
}

/* `kvmmig restore --lazy --readers 2 --json` of a real snapshot: running, loaded, verified. */
TEST(restore_lazy_reports)
{
	char dir[] = "/tmp/kvmmig-cli-XXXXXX", path[64], out[8192], err[4096];
	const char *snap[] = { "snapshot", "--to", path, "--ram", "32M", "--workload", "incr",
			       "--run-seconds", "0", NULL };
	const char *lazy[] = { "restore", path, "--lazy", "--readers", "2", "--run-seconds", "1",
			       "--json", NULL };
	struct cli_child c;

	ASSERT_NE(mkdtemp(dir), NULL);
	snprintf(path, sizeof(path), "%s/g.snap", dir);
	ASSERT_EQ(cli_run(snap, 60000, err, sizeof(err)), 0) TH_LOG("stderr: %s", err);
	ASSERT_EQ(cli_start(&c, lazy), 0);
	ASSERT_EQ(cli_wait(&c, 60000), 0);
	cli_output(c.out, out, sizeof(out));
	cli_output(c.err, err, sizeof(err));
	EXPECT_EQ(cli_exit_status(&c), 0) TH_LOG("stderr: %s", err);
	EXPECT_NE(strstr(out, "\"event\":\"restored\""), NULL) TH_LOG("stdout: %s", out);
	EXPECT_NE(strstr(out, "\"mode\":\"lazy\""), NULL) TH_LOG("stdout: %s", out);
	EXPECT_NE(strstr(out, "\"readers\":2"), NULL) TH_LOG("stdout: %s", out);
	EXPECT_NE(strstr(out, "\"fault_p99_us\":"), NULL) TH_LOG("stdout: %s", out);
	EXPECT_NE(strstr(out, "\"event\":\"verified\""), NULL) TH_LOG("stdout: %s", out);
	cli_end(&c);
	unlink(path);
	rmdir(dir);
}

TEST_HARNESS_MAIN
