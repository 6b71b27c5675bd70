// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig migrate`, `kvmmig receive` and `kvmmig demo`: the source runs a
 * built-in guest and migrates it to a destination listening with `kvmmig
 * receive`, which resumes the guest, lets it run, pauses it and checks its
 * memory (the incr workload's one-edge property).  `kvmmig demo` runs both,
 * as two processes joined by TCP on loopback.  On a terminal a progress
 * line is redrawn in place; --json prints events instead; --csv and --svg
 * write the timeline.  `migrate --settle` and `receive --settle` settle a
 * handover that neither side could decide (Documentation/handover.rst), and
 * point a postcopy that lost its link at a new address (`--resume`,
 * `--recover`: Documentation/postcopy.rst).  SIGUSR2, which `kvmmig
 * migrate-start-postcopy` sends, switches a --postcopy migration to postcopy.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cancel.h"
#include "commands.h"
#include "guest_check.h"
#include "json.h"
#include "kvmmig_procs.h"
#include "log.h"
#include "mig_listen.h"
#include "mig_opts.h"
#include "migrate.h"
#include "net.h"

struct mig_env {
	struct guest_opts guest;
	struct mig_source_opts src;
	const char *listen;
	const char *csv, *svg;
	uint64_t warmup_ms;
	uint64_t run_seconds;
	uint64_t hello_timeout_s;	/* receive: 0 for the default */
	bool json;
	bool live;
	const char *who;	/* "source" / "destination" prefix in the demo */
	int port_fd;		/* demo: where the destination writes its port */
	uint64_t settle_session;	/* --settle: the undecided handover */
	int settle_cmd;		/* --start, --resume-source, --discard, --resume,
				   --recover; -1: none */
	const char *settle_addr;	/* --resume, --recover: the new link's address */
	unsigned int postcopy_given;	/* mig_opts_postcopy_bit() of each given */
	bool policy_given;	/* demo: --policy, else its default */
	struct vm *received;	/* receive: the guest the stream brings */
};

/* Settle options: MIG_OPTS_LONG uses 0x100-0x1ff. */
enum {
	OPT_HANDOVER_TIMEOUT = 0x200,
	OPT_SETTLE,
	OPT_START,
	OPT_RESUME_SOURCE,
	OPT_DISCARD,
	OPT_RESUME_AT,
	OPT_RECOVER_AT,
};

#define SETTLE_HELP(side, at)							\
	"  --handover-timeout S       each wait of the handover, in seconds (default 30)\n" \
	"  --settle SESSION " side "\n"					\
	"                             settle an undecided handover (handover.rst)\n" \
	"  --settle SESSION " at " tcp:HOST:PORT\n"				\
	"                             a postcopy-paused migration: go on over a new link\n" \
	"                             at this address (postcopy.rst)\n"

/*
 * The signal that cancels the migration, 0 until one comes; the migration's
 * cancel flag too.  volatile sig_atomic_t, the type C lets a handler store
 * to; accessed atomically (cancel.h) because the handler may run on any
 * thread and the library's threads read it.
 */
static volatile sig_atomic_t mig_cancel;

static void mig_on_signal(int sig)
{
	kvmmig_cancel_set(&mig_cancel, sig);
}

/*
 * migrate-start-postcopy's request (mig_source_opts.start_postcopy), set by
 * SIGUSR2; taken only by a migration given --postcopy, which
 * mig_postcopy_allowed says to the handler.
 */
static volatile sig_atomic_t mig_start_postcopy;
static volatile sig_atomic_t mig_postcopy_allowed;

static void mig_on_start_postcopy(int sig)
{
	static const char refused[] =
		"kvmmig: migrate-start-postcopy ignored: this migration was started without --postcopy\n";
	ssize_t n;

	if (kvmmig_cancelled(&mig_postcopy_allowed)) {
		kvmmig_cancel_set(&mig_start_postcopy, sig);
		return;
	}
	/* write(), unlike stdio, may be called in a handler; nothing to do if it fails. */
	n = write(STDERR_FILENO, refused, sizeof(refused) - 1);
	(void)n;
}

/* Sleep @ms, or less when SIGINT/SIGTERM arrives; false if it did. */
static bool mig_sleep(uint64_t ms)
{
	return kvmmig_sleep_ms(ms, &mig_cancel);
}

static void human_bytes(char *buf, size_t len, double b)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned int u = 0;

	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f %s", b, units[u]);
}

static bool mig_in_postcopy(enum mig_state state)
{
	return state == MIG_POSTCOPY_ACTIVE || state == MIG_POSTCOPY_PAUSED ||
	       state == MIG_POSTCOPY_RECOVER;
}

/* In postcopy what is left is the pages the destination still misses. */
static uint64_t mig_pages_left(const struct mig_sample *s)
{
	return s->remaining_bytes / GUEST_PAGE_SIZE;
}

static void mig_progress_json(enum mig_state state, const struct mig_sample *s,
			      const struct mig_report *r)
{
	struct json_writer w;

	json_event_begin(&w, stdout, "progress");
	json_key_str(&w, "state", mig_state_name(state));
	json_key_double(&w, "t", s->t, 3);
	json_key_u64(&w, "pass", s->pass);
	json_key_u64(&w, "remaining_bytes", s->remaining_bytes);
	json_key_double(&w, "dirty_rate", s->dirty_rate, 0);
	json_key_double(&w, "throughput", s->throughput, 0);
	json_key_u64(&w, "throttle_pct", s->throttle_pct);
	json_key_bool(&w, "sync", s->sync);
	if (mig_in_postcopy(state)) {
		json_key_u64(&w, "postcopy_pages_left", mig_pages_left(s));
		json_key_u64(&w, "postcopy_requests", r->postcopy_requests);
	}
	json_line_end(&w);
}

static void mig_progress_postcopy(const struct mig_env *env, enum mig_state state,
				  const struct mig_sample *s, const struct mig_report *r)
{
	printf("%s%6.1fs %-16s pages left %9llu  requests %8llu  sent %7.1f MB/s%s",
	       env->live ? "\r" : "", s->t, mig_state_name(state),
	       (unsigned long long)mig_pages_left(s), (unsigned long long)r->postcopy_requests,
	       s->throughput / 1e6, env->live ? "\033[K" : "\n");
	fflush(stdout);
}

static void mig_progress(void *opaque, enum mig_state state, const struct mig_sample *s,
			 const struct mig_report *r)
{
	const struct mig_env *env = opaque;
	double eta = s->throughput > 0 ? s->remaining_bytes / s->throughput : 0;
	char rem[32];

	if (env->json) {
		mig_progress_json(state, s, r);
		return;
	}
	/* Without a terminal: every sync, and every tick of postcopy (it has no syncs). */
	if (mig_in_postcopy(state)) {
		mig_progress_postcopy(env, state, s, r);
		return;
	}
	if (!env->live && !s->sync)
		return;
	human_bytes(rem, sizeof(rem), s->remaining_bytes);
	printf("%s%6.1fs %-10s pass %-3llu remaining %10s  dirty %7.1f MB/s  throttle %2u%%  "
	       "sent %7.1f MB/s  ETA %5.1fs%s", env->live ? "\r" : "", s->t,
	       mig_state_name(state), (unsigned long long)s->pass, rem, s->dirty_rate / 1e6,
	       s->throttle_pct, s->throughput / 1e6, eta, env->live ? "\033[K" : "\n");
	fflush(stdout);
}

/* The report, and the timeline files; -1 if one could not be written (said). */
static int mig_outputs(const struct mig_env *env, const struct mig_report *r)
{
	int ret = 0;

	if (env->live)
		printf("\n");
	if (!env->json)
		mig_report_print(r, stdout);
	else if (mig_report_print_json(r, stdout))
		ret = -1;
	fflush(stdout);
	if (env->csv && mig_report_write_csv(r, env->csv))
		ret = -1;
	if (env->svg && mig_report_write_svg(r, env->svg, "kvmmig live migration"))
		ret = -1;
	return ret;
}

/* Why @rep failed: its own words, else the errno. */
static const char *mig_why(const struct mig_report *rep, int ret)
{
	return rep->error[0] ? rep->error : strerror(ret < 0 ? -ret : EIO);
}

/*
 * After a failure the source guest must be alive and well: see its first
 * vCPU move, which a busy one does within milliseconds.  Watched in short
 * steps and no longer than needed; after SIGINT or SIGTERM only briefly, so
 * that the command still ends within a second of the signal.
 */
static const char *guest_progress(struct vm *vm)
{
	unsigned int waited, limit = kvmmig_cancelled(&mig_cancel) ? 50 : 200;
	uint64_t before = vm->vcpus[0].area->loops;

	if (vm->shared->workload == WORKLOAD_IDLE)
		return "idle workload";
	for (waited = 0; waited < limit; waited += 5) {
		if (vm->vcpus[0].area->loops != before)
			return "making progress";
		usleep(5000);
	}
	return limit == 50 ? "no progress seen in 50 ms" : "no progress seen in 200 ms";
}

static int mig_run_source(struct mig_env *env)
{
	struct mig_report rep;
	struct vm *vm = NULL;
	int backend, ret, out;

	backend = dirty_prepare_config(env->src.params.dirty_backend, &env->guest.cfg);
	if (backend < 0)
		return 1;
	env->src.params.dirty_backend = backend;
	if (vm_create(&env->guest.cfg, &vm))
		return 1;
	if (vm_start(vm)) {
		vm_destroy(vm);
		return 1;
	}
	/* Let the workload get going: a busy guest, not a quiet one. */
	if (!mig_sleep(env->warmup_ms)) {
		fprintf(stderr, "kvmmig: interrupted before the migration started\n");
		vm_destroy(vm);
		return 1;
	}
	env->src.cancel = &mig_cancel;
	env->src.start_postcopy = &mig_start_postcopy;
	env->src.progress = mig_progress;
	env->src.opaque = env;
	ret = mig_source_run(vm->kv, &env->src, &rep);
	out = mig_outputs(env, &rep);
	if (ret && rep.source_stopped) {
		fprintf(stderr, "kvmmig: migration %s: %s; the source guest is stopped: it was committed to the destination\n",
			mig_state_name(rep.state), rep.error);
	} else if (ret) {
		fprintf(stderr, "kvmmig: migration %s: %s; the source guest is still running (%s)\n",
			mig_state_name(rep.state), mig_why(&rep, ret), guest_progress(vm));
	} else if (out) {
		fprintf(stderr, "kvmmig: the migration completed, but its timeline could not be written (above)\n");
	}
	mig_report_free(&rep);
	vm_destroy(vm);
	return ret || out ? 1 : 0;
}

static const struct option migrate_options[] = {
	GUEST_OPTS_LONG,
	MIG_OPTS_LONG,
	TLS_OPTS_LONG,
	{ "to", required_argument, NULL, 't' },
	{ "warmup", required_argument, NULL, 'u' },
	{ "json", no_argument, NULL, 'j' },
	{ "csv", required_argument, NULL, 'C' },
	{ "svg", required_argument, NULL, 'G' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "handover-timeout", required_argument, NULL, OPT_HANDOVER_TIMEOUT },
	{ "settle", required_argument, NULL, OPT_SETTLE },
	{ "resume-source", no_argument, NULL, OPT_RESUME_SOURCE },
	{ "discard", no_argument, NULL, OPT_DISCARD },
	{ "resume", required_argument, NULL, OPT_RESUME_AT },
	{ NULL, 0, NULL, 0 },
};

static void migrate_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig migrate --to tcp:HOST:PORT [OPTIONS]\n\n"
		"Run a built-in guest and live-migrate it to `kvmmig receive`.\n\n"
		GUEST_OPTS_HELP MIG_OPTS_HELP TLS_OPTS_HELP
		"  --warmup MS                let the guest run before migrating (default 1000)\n"
		"  --json                     JSON events and report\n"
		"  --csv FILE, --svg FILE     the timeline as CSV, as an SVG chart\n"
		"  -v, --verbose              say which backends were chosen\n"
		SETTLE_HELP("--resume-source|--discard", "--resume") "\n"
		"examples:\n"
		"  kvmmig receive --listen tcp:127.0.0.1:4444 &\n"
		"  kvmmig migrate --to tcp:127.0.0.1:4444 --ram 4G --vcpus 2 --workload incr \\\n"
		"      --max-bandwidth 200M --policy auto-converge --sync background\n"
		"  kvmmig migrate --to tcp:10.0.0.2:4444 --multifd-channels 4 --policy dirty-limit \\\n"
		"      --vcpu-dirty-limit 50 --dirty ring --svg timeline.svg\n"
		"  kvmmig migrate --settle 00001234abcd5678 --resume-source\n"
		"  kvmmig receive --listen tcp:0.0.0.0:4444 &\n"
		"  kvmmig migrate --to tcp:10.0.0.2:4444 --postcopy --postcopy-preempt \\\n"
		"      --multifd-channels 4 --x-postcopy-start manual &\n"
		"  kvmmig migrate-start-postcopy           # switch it to postcopy now\n"
		"  kvmmig migrate --settle 00001234abcd5678 --resume tcp:10.0.0.3:4444\n"
		"  kvmmig migrate --to tcp:dst.example:4444 --tls-creds /etc/pki/kvmmig\n"
		"  kvmmig migrate --to tcp:10.0.0.2:4444 --tls-psk keys.psk --multifd-channels 4\n");
}

/* tcp:HOST:PORT as the library will read it; a source needs a real port. */
static int addr_opt(const char *opt, const char *arg, bool any_port)
{
	char host[256], port[32];
	int ret;

	kvmmig_log_quiet(true);
	ret = net_parse_addr(arg, host, sizeof(host), port, sizeof(port));
	kvmmig_log_quiet(false);
	if (ret) {
		opt_bad(opt, arg, "%s", kvmmig_last_error());
		return -1;
	}
	if (!any_port && !port[strspn(port, "0")]) {
		opt_bad(opt, arg, "expected tcp:HOST:PORT with a port from 1 to 65535");
		return -1;
	}
	return 0;
}

/*
 * --settle SESSION with one of --start, --resume-source, --discard, or with
 * --resume / --recover tcp:HOST:PORT.
 */
static int settle_parse(struct mig_env *env, int c, const char *arg)
{
	char *end;

	switch (c) {
	case OPT_SETTLE:
		errno = 0;
		env->settle_session = strtoull(arg, &end, 16);
		if (errno || !*arg || *end || !env->settle_session) {
			fprintf(stderr, "kvmmig: --settle takes the session printed with the undecided handover (16 hex digits), not '%s'\n",
				arg);
			return -1;
		}
		return 1;
	case OPT_START:
	case OPT_RESUME_SOURCE:
	case OPT_DISCARD:
		env->settle_cmd = c == OPT_START ? MIG_SETTLE_START :
				  c == OPT_RESUME_SOURCE ? MIG_SETTLE_RESUME : MIG_SETTLE_DISCARD;
		return 1;
	case OPT_RESUME_AT:
	case OPT_RECOVER_AT:
		if (addr_opt(c == OPT_RESUME_AT ? "--resume" : "--recover", arg, false))
			return -1;
		env->settle_cmd = c == OPT_RESUME_AT ? MIG_SETTLE_RESUME_AT : MIG_SETTLE_RECOVER_AT;
		env->settle_addr = arg;
		return 1;
	}
	return 0;
}

static int settle_run(const struct mig_env *env, bool source, const char *what)
{
	char answer[256] = "";
	int ret;

	if (!env->settle_session || env->settle_cmd < 0) {
		fprintf(stderr, "kvmmig %s: --settle SESSION needs %s, and they go together\n",
			source ? "migrate" : "receive", what);
		return 2;
	}
	if (env->settle_addr)
		ret = mig_settle_at(source, env->settle_session, env->settle_cmd, env->settle_addr,
				    answer, sizeof(answer));
	else
		ret = mig_settle(source, env->settle_session, env->settle_cmd, answer,
				 sizeof(answer));
	if (ret)
		return 1;
	printf("%s\n", answer);
	return 0;
}

/* A timeline file: refused now if its folder cannot take it, not after the migration. */
static int out_file_opt(const char *opt, const char *path)
{
	char dir[PATH_MAX];

	snprintf(dir, sizeof(dir), "%s", path);
	if (!path[0] || access(dirname(dir), W_OK)) {
		opt_bad(opt, path, "cannot create a file there: %s",
			path[0] ? strerror(errno) : "empty name");
		return -1;
	}
	return 0;
}

/* Options both migrate and demo take; returns 1 handled, 0 not, -1 bad. */
static int mig_env_parse(struct mig_env *env, int c, const char *arg)
{
	int r = guest_opts_parse(&env->guest, c, arg);
	uint64_t v;

	if (r)
		return r;
	r = mig_opts_parse(&env->src.params, c, arg);
	if (r > 0) {
		env->postcopy_given |= mig_opts_postcopy_bit(c);
		env->policy_given |= c == 0x106;	/* --policy */
	}
	if (r)
		return r;
	r = tls_opts_parse(&env->src.tls, c, arg);
	if (r)
		return r;
	switch (c) {
	case 'u':
		return parse_uint("--warmup", arg, 0, 3600000, &env->warmup_ms) ? -1 : 1;
	case 'j':
		env->json = true;
		return 1;
	case 'C':
		env->csv = arg;
		return out_file_opt("--csv", arg) ? -1 : 1;
	case 'G':
		env->svg = arg;
		return out_file_opt("--svg", arg) ? -1 : 1;
	case 'v':
		kvmmig_set_log_level(KVMMIG_LOG_INFO);
		return 1;
	case OPT_HANDOVER_TIMEOUT:
		if (parse_uint("--handover-timeout", arg, 1, 3600, &v))
			return -1;
		env->src.handover_timeout_ms = v * 1000;
		return 1;
	}
	return 0;
}

static void mig_env_init(struct mig_env *env)
{
	memset(env, 0, sizeof(*env));
	guest_opts_init(&env->guest);
	mig_params_init(&env->src.params);
	env->warmup_ms = 1000;
	env->run_seconds = 2;
	env->port_fd = -1;
	env->settle_cmd = -1;
}

/* After the options: no stray argument, and the ranges that depend on others. */
static int mig_env_check(const struct mig_env *env, int argc, char **argv)
{
	if (optind < argc) {
		fprintf(stderr, "kvmmig %s: unexpected argument '%s' (kvmmig %s -h for help)\n",
			argv[0], argv[optind], argv[0]);
		return -1;
	}
	if (env->src.params.converge_within_s && env->src.params.policy != MIG_POLICY_CONVERGE) {
		fprintf(stderr, "kvmmig %s: --converge-within is the converge policy's deadline: add --policy converge\n",
			argv[0]);
		return -1;
	}
	if (mig_opts_postcopy_check(&env->src.params, env->postcopy_given, argv[0]))
		return -1;
	return guest_opts_check(&env->guest);
}

static void mig_env_finish(struct mig_env *env)
{
	/* --dirty lands in the guest options; the engine takes it from there. */
	env->src.params.dirty_backend = env->guest.backend;
	env->live = !env->json && isatty(STDOUT_FILENO);
	signal(SIGINT, mig_on_signal);
	signal(SIGTERM, mig_on_signal);
	kvmmig_cancel_set(&mig_postcopy_allowed, env->src.params.postcopy_ram);
	signal(KVMMIG_START_POSTCOPY_SIGNAL, mig_on_start_postcopy);
}

int cmd_migrate(int argc, char **argv)
{
	struct mig_env env;
	int c, r;

	mig_env_init(&env);
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", migrate_options, NULL)) != -1) {
		if (c == 't') {
			env.src.to = optarg;
			if (addr_opt("--to", optarg, false))
				return 2;
			continue;
		}
		if (c == 'h') {
			migrate_usage(stdout);
			return 0;
		}
		r = settle_parse(&env, c, optarg);
		if (!r)
			r = mig_env_parse(&env, c, optarg);
		if (r < 0)
			return 2;
		if (!r) {
			migrate_usage(stderr);
			return 2;
		}
	}
	if (env.settle_session || env.settle_cmd >= 0)
		return settle_run(&env, true, "--resume-source, --discard or --resume tcp:HOST:PORT");
	if (!env.src.to) {
		fprintf(stderr, "kvmmig migrate: --to tcp:HOST:PORT is required (kvmmig migrate -h)\n");
		return 2;
	}
	if (env.src.tls.authz) {
		fprintf(stderr, "kvmmig migrate: --tls-authz is the receiver's check: give it to kvmmig receive\n");
		return 2;
	}
	if (mig_env_check(&env, argc, argv) ||
	    tls_opts_check(&env.src.tls, "migrate"))
		return 2;
	mig_env_finish(&env);
	return mig_run_source(&env);
}

/* ---- destination ---- */

static void receive_listening(void *opaque, int port)
{
	struct mig_env *env = opaque;

	if (env->port_fd >= 0 && write(env->port_fd, &port, sizeof(port)) != sizeof(port))
		fprintf(stderr, "kvmmig: cannot pass the port on\n");
	if (env->json) {
		struct json_writer w;

		json_event_begin(&w, stdout, "listening");
		json_key_i64(&w, "port", port);
		json_line_end(&w);
		return;
	}
	printf("%slistening on port %d\n", env->who ? env->who : "", port);
	fflush(stdout);
}

/* The guest runs here now: let it, then pause it and check its memory. */
static int receive_resumed(void *opaque, struct kvmmig_vm *kv)
{
	struct mig_env *env = opaque;
	struct guest_check_opts o = {
		.run_seconds = env->run_seconds,
		.json = env->json,
		.who = env->who ? env->who : "",
		.where = "on the destination",
		.cancel = &mig_cancel,
	};

	return guest_run_and_check(env->received, &o);
}

/* The guest runs here already; its missing pages are fetched as it touches them. */
static void receive_postcopy_started(void *opaque, struct kvmmig_vm *kv)
{
	const struct mig_env *env = opaque;
	struct json_writer w;

	if (env->json) {
		json_event_begin(&w, stdout, "postcopy_started");
		json_line_end(&w);
	} else {
		printf("%sthe guest runs here in postcopy: its missing pages come on demand\n",
		       env->who ? env->who : "");
	}
	fflush(stdout);
}

static int mig_run_dest(struct mig_env *env)
{
	struct mig_dest_opts o = {
		.listen = env->listen,
		.tls = env->src.tls,
		.cancel = &mig_cancel,
		.io_timeout_ms = env->src.params.io_timeout_ms,
		.hello_timeout_ms = (int)env->hello_timeout_s * 1000,
		.listening = receive_listening,
		.create_vm = vm_create_for_stream,
		.resumed = receive_resumed,
		.release_vm = vm_release_for_stream,
		.vmm_opaque = &env->received,
		.opaque = env,
		.handover_timeout_ms = env->src.handover_timeout_ms,
		.postcopy_recover_timeout_ms = env->src.params.postcopy_recover_timeout_ms,
		.postcopy_started = receive_postcopy_started,
	};
	struct mig_report rep;
	int ret, sig;

	ret = mig_dest_run(&o, &rep);
	sig = kvmmig_cancelled(&mig_cancel);
	if (rep.state == MIG_FAILED && sig) {
		fprintf(stderr, "kvmmig: %sstopped by SIG%s before the guest was received (%s); nothing was kept\n",
			env->who ? env->who : "", sigabbrev_np(sig), mig_why(&rep, ret));
	} else if (rep.state == MIG_FAILED) {
		fprintf(stderr, "kvmmig: %sreceiving the guest failed: %s; nothing was kept\n",
			env->who ? env->who : "", mig_why(&rep, ret));
	} else if (env->json) {
		mig_report_print_json(&rep, stdout);
	}
	mig_report_free(&rep);
	return ret ? 1 : 0;
}

static const struct option receive_options[] = {
	TLS_OPTS_LONG,
	{ "listen", required_argument, NULL, 'l' },
	{ "run-seconds", required_argument, NULL, 'r' },
	{ "io-timeout", required_argument, NULL, 0x111 },
	{ "hello-timeout", required_argument, NULL, 't' },
	{ "backing", required_argument, NULL, 'b' },
	{ "json", no_argument, NULL, 'j' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "handover-timeout", required_argument, NULL, OPT_HANDOVER_TIMEOUT },
	{ "settle", required_argument, NULL, OPT_SETTLE },
	{ "start", no_argument, NULL, OPT_START },
	{ "discard", no_argument, NULL, OPT_DISCARD },
	{ "recover", required_argument, NULL, OPT_RECOVER_AT },
	{ "postcopy-recover-timeout", required_argument, NULL, MIG_OPT_POSTCOPY_RECOVER },
	{ NULL, 0, NULL, 0 },
};

static void receive_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig receive --listen tcp:HOST:PORT [OPTIONS]\n\n"
		"Receive a live-migrated guest, resume it, let it run, then check its memory.\n\n"
		"  --listen tcp:HOST:PORT   where to listen (PORT 0: any free port, printed)\n"
		"  --run-seconds N          how long the guest runs here before the check, 0-86400\n"
		"                           (default 2)\n"
		"  --io-timeout S           give up when a record stops arriving for S seconds\n"
		"                           (default 30; also the TCP user timeout)\n"
		"  --hello-timeout S        a connection without a valid hello within S seconds is\n"
		"                           ignored; a source whose CONFIG does not follow in S\n"
		"                           seconds fails (default %d)\n"
		"  --backing anon|thp|memfd|hugetlb  the received guest's memory (default anon)\n"
		"  --json                   JSON events\n"
		"  --tls-creds DIR, --tls-psk FILE  demand TLS on every channel (x509 or PSK)\n"
		"  --tls-authz DN           accept only the client certificate with this DN\n"
		"  --postcopy-recover-timeout S  in postcopy-paused, give up after S seconds\n"
		"                           without the source, 0-86400 (default 0: wait for ever)\n"
		SETTLE_HELP("--start|--discard", "--recover") "\n"
		"examples:\n"
		"  kvmmig receive --listen tcp:0.0.0.0:4444\n"
		"  kvmmig receive --listen tcp:127.0.0.1:0 --json\n"
		"  kvmmig receive --settle 00001234abcd5678 --start\n"
		"  kvmmig receive --listen tcp:0.0.0.0:4444 --postcopy-recover-timeout 600\n"
		"  kvmmig receive --settle 00001234abcd5678 --recover tcp:0.0.0.0:4445\n"
		"  kvmmig receive --listen tcp:0.0.0.0:4444 --tls-creds /etc/pki/kvmmig \\\n"
		"      --tls-authz 'CN=src.example,O=Example'\n"
		"  kvmmig receive --listen tcp:0.0.0.0:4444 --tls-psk keys.psk\n",
		MIG_HELLO_TIMEOUT_MS / 1000);
}

int cmd_receive(int argc, char **argv)
{
	enum vm_backing backing;
	struct mig_env env;
	int c, r;

	mig_env_init(&env);
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", receive_options, NULL)) != -1) {
		r = tls_opts_parse(&env.src.tls, c, optarg);
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (c) {
		case 'l':
			env.listen = optarg;
			if (addr_opt("--listen", optarg, true))
				return 2;
			break;
		case 'r':
			if (parse_uint("--run-seconds", optarg, 0, 86400, &env.run_seconds))
				return 2;
			break;
		case 't':
			if (parse_uint("--hello-timeout", optarg, 1, 600, &env.hello_timeout_s))
				return 2;
			break;
		case 'b':
			if (parse_backing(optarg, &backing))
				return 2;
			vm_set_stream_backing(backing);
			break;
		case 'j':
			env.json = true;
			break;
		case 0x111:
		case MIG_OPT_POSTCOPY_RECOVER:
			if (mig_opts_parse(&env.src.params, c, optarg) < 0)
				return 2;
			break;
		case 'v':
			kvmmig_set_log_level(KVMMIG_LOG_INFO);
			break;
		case 'h':
			receive_usage(stdout);
			return 0;
		case OPT_HANDOVER_TIMEOUT:
			if (mig_env_parse(&env, c, optarg) < 0)
				return 2;
			break;
		case OPT_SETTLE:
		case OPT_START:
		case OPT_DISCARD:
		case OPT_RECOVER_AT:
			if (settle_parse(&env, c, optarg) < 0)
				return 2;
			break;
		default:
			receive_usage(stderr);
			return 2;
		}
	}
	if (env.settle_session || env.settle_cmd >= 0)
		return settle_run(&env, false, "--start, --discard or --recover tcp:HOST:PORT");
	if (!env.listen) {
		fprintf(stderr, "kvmmig receive: --listen tcp:HOST:PORT is required (kvmmig receive -h)\n");
		return 2;
	}
	if (env.src.tls.hostname || env.src.tls.psk_user) {
		fprintf(stderr, "kvmmig receive: --tls-hostname and --tls-psk-user are the source's: a receiver accepts any identity in its --tls-psk file\n");
		return 2;
	}
	if (mig_env_check(&env, argc, argv) ||
	    tls_opts_check(&env.src.tls, "receive"))
		return 2;
	mig_env_finish(&env);
	return mig_run_dest(&env);
}

/* ---- demo: both sides on loopback, two processes ---- */

static void demo_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig demo [OPTIONS]\n\n"
		"Live-migrate a busy built-in guest over loopback TCP to a second kvmmig\n"
		"process, which resumes it and checks its memory.  Defaults: 1 GiB, 2 vCPUs\n"
		"running incr (every page written ~80 times a second), max-bandwidth 300M,\n"
		"auto-converge with background syncs every second.  Takes migrate's options.\n"
		"With --postcopy: no policy (the guest does not converge at that bandwidth) and\n"
		"--x-postcopy-start passes:2, so it switches to postcopy after two passes.\n\n"
		"examples:\n"
		"  kvmmig demo\n"
		"  kvmmig demo --postcopy --postcopy-preempt\n"
		"  kvmmig demo --policy dirty-limit --vcpu-dirty-limit 20 --dirty ring\n"
		"  kvmmig demo --ram 4G --multifd-channels 4 --svg demo.svg\n"
		"  kvmmig demo --tls-creds DIR --multifd-channels 4   (both sides use DIR)\n");
}

/*
 * A demo of postcopy must switch: without throttling, its busy guest does
 * not converge at the demo's bandwidth, and after two passes it switches
 * whatever this host's speed; options given say otherwise.
 */
static void demo_postcopy_defaults(struct mig_env *env)
{
	struct mig_params *p = &env->src.params;

	if (!p->postcopy_ram)
		return;
	if (!env->policy_given)
		p->policy = MIG_POLICY_NONE;
	if (!(env->postcopy_given & mig_opts_postcopy_bit(MIG_OPT_POSTCOPY_START))) {
		p->postcopy_start = MIG_POSTCOPY_START_PASSES;
		p->postcopy_after_passes = 2;
	}
}

int cmd_demo(int argc, char **argv)
{
	struct mig_env env;
	int c, r, pipefd[2], port = 0, status;
	char addr[64];
	pid_t child;

	mig_env_init(&env);
	env.guest.cfg.ram_bytes = 1ULL << 30;
	env.src.params.max_bandwidth = 300ULL << 20;
	env.src.params.policy = MIG_POLICY_AUTO_CONVERGE;
	env.src.params.sync_mode = MIG_SYNC_BACKGROUND;
	env.src.params.sync_interval_ms = 1000;
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", migrate_options, NULL)) != -1) {
		if (c == 'h') {
			demo_usage(stdout);
			return 0;
		}
		r = c == 't' ? 0 : mig_env_parse(&env, c, optarg);
		if (r <= 0) {
			if (!r)
				demo_usage(stderr);
			return 2;
		}
	}
	demo_postcopy_defaults(&env);
	if (mig_env_check(&env, argc, argv) ||
	    tls_opts_check(&env.src.tls, "demo"))
		return 2;
	mig_env_finish(&env);
	if (pipe(pipefd))
		return 1;
	fflush(stdout);
	child = fork();
	if (child == 0) {
		close(pipefd[0]);
		env.listen = "tcp:127.0.0.1:0";
		env.who = "[destination] ";
		env.live = false;
		env.port_fd = pipefd[1];
		exit(mig_run_dest(&env));
	}
	close(pipefd[1]);
	if (read(pipefd[0], &port, sizeof(port)) != sizeof(port) || port <= 0) {
		fprintf(stderr, "kvmmig demo: the destination process did not start\n");
		waitpid(child, NULL, 0);
		return 1;
	}
	close(pipefd[0]);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
	env.src.to = addr;
	if (!env.json)
		printf("[source] guest: %u vCPUs, %llu MiB, workload %s; migrating to %s\n",
		       env.guest.cfg.nr_vcpus, (unsigned long long)(env.guest.cfg.ram_bytes >> 20),
		       workload_name(env.guest.cfg.guest.workload), addr);
	r = mig_run_source(&env);
	if (r)
		kill(child, SIGTERM);
	waitpid(child, &status, 0);
	if (!r && (!WIFEXITED(status) || WEXITSTATUS(status))) {
		fprintf(stderr, "kvmmig demo: the destination failed\n");
		r = 1;
	}
	return r;
}
