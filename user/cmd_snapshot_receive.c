// SPDX-License-Identifier: GPL-2.0-only
/*
 * `kvmmig snapshot-receive`: listen for one `kvmmig snapshot --to tcp:`
 * and write the snapshot it sends to a file (Documentation/snapshot.rst,
 * "Over TCP"), byte for byte the file a local snapshot would have made.
 * The file appears only when it is complete, checked and durable; any
 * failure, a cancel (SIGINT or SIGTERM, within a tick) or a sender that
 * goes away leaves none.
 */
#include <stdio.h>
#include <unistd.h>

#include "commands.h"
#include "json.h"
#include "log.h"
#include "mig_opts.h"
#include "net.h"
#include "opts.h"
#include "snapshot.h"
#include "snapshot_sink.h"

struct recv_env {
	struct snap_recv_opts o;
	uint64_t accept_s, io_ms;
	bool json;
};

static void recv_listening(void *opaque, int port)
{
	const struct recv_env *env = opaque;

	if (!env->json)
		printf("listening on %s (port %d), writing %s\n", env->o.listen, port, env->o.path);
	fflush(stdout);
}

static void recv_print(const struct recv_env *env, const struct snap_recv_report *r)
{
	struct json_writer w;

	if (!env->json) {
		printf("snapshot %s received: %llu bytes of data in %llu records, %.2f s%s\n",
		       env->o.path, (unsigned long long)r->bytes, (unsigned long long)r->records,
		       r->seconds, r->direct ? ", written with O_DIRECT" : "");
		return;
	}
	json_event_begin(&w, stdout, "snapshot_received");
	json_key_str(&w, "file", env->o.path);
	json_key_u64(&w, "file_size", r->file_size);
	json_key_u64(&w, "bytes", r->bytes);
	json_key_u64(&w, "records", r->records);
	json_key_double(&w, "seconds", r->seconds, 3);
	json_key(&w, "direct");
	json_bool(&w, r->direct);
	json_line_end(&w);
}

static const struct option recv_options[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "to", required_argument, NULL, 'o' },
	{ "direct", no_argument, NULL, 'D' },
	{ "max-size", required_argument, NULL, 'M' },
	{ "accept-timeout", required_argument, NULL, 'a' },
	{ "io-timeout", required_argument, NULL, 'i' },
	{ "json", no_argument, NULL, 'j' },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	TLS_OPTS_LONG,
	{ NULL, 0, NULL, 0 },
};

static void recv_usage(FILE *f)
{
	fprintf(f, "usage: kvmmig snapshot-receive --listen tcp:HOST:PORT --to FILE [OPTIONS]\n\n"
		"Receive one snapshot sent by `kvmmig snapshot --to tcp:HOST:PORT` and write it to\n"
		"FILE (FILE.partial until it is complete, checked and durable; nothing on failure).\n\n"
		"  --listen tcp:HOST:PORT  where to wait for the sender\n"
		"  --to FILE               the snapshot file to write\n"
		"  --direct                write with O_DIRECT where the filesystem allows it\n"
		"  --max-size SIZE         refuse snapshots bigger than this (default 16T)\n"
		"  --accept-timeout S      give up if no sender comes in S seconds, 0-86400 (0: wait)\n"
		"  --io-timeout MS         give up when the sender stalls this long (default %d)\n"
		"  --json                  one JSON event with the report\n"
		"  --tls-creds DIR, --tls-psk FILE  demand TLS (x509 or PSK), as kvmmig receive does\n"
		"  --tls-authz DN          accept only the client certificate with this DN\n\n"
		"examples:\n"
		"  kvmmig snapshot-receive --listen tcp:0.0.0.0:4500 --to /srv/guest.snap\n"
		"  kvmmig snapshot --to tcp:backup.example:4500 --ram 1G\n"
		"  kvmmig snapshot-receive --listen tcp:0.0.0.0:4500 --to g.snap --tls-psk keys.psk\n",
		NET_IO_TIMEOUT_MS);
}

static int recv_parse(struct recv_env *env, int c, const char *arg)
{
	int r = tls_opts_parse(&env->o.tls, c, arg);

	if (r)
		return r < 0 ? 2 : 0;
	switch (c) {
	case 'l':
		env->o.listen = arg;
		return 0;
	case 'o':
		env->o.path = arg;
		return 0;
	case 'D':
		env->o.direct = true;
		return 0;
	case 'M':
		return parse_size("--max-size", arg, SNAP_HEADER_SIZE, SNAP_NET_MAX_FILE,
				  &env->o.max_file) ? 2 : 0;
	case 'a':
		return parse_uint("--accept-timeout", arg, 0, 86400, &env->accept_s) ? 2 : 0;
	case 'i':
		return parse_uint("--io-timeout", arg, 100, 3600000, &env->io_ms) ? 2 : 0;
	case 'j':
		env->json = true;
		return 0;
	case 'v':
		kvmmig_set_log_level(KVMMIG_LOG_INFO);
		return 0;
	case 'h':
		recv_usage(stdout);
		return 1;
	}
	recv_usage(stderr);
	return 2;
}

int cmd_snapshot_receive(int argc, char **argv)
{
	struct recv_env env = { .io_ms = NET_IO_TIMEOUT_MS };
	struct snap_recv_report r;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", recv_options, NULL)) != -1) {
		ret = recv_parse(&env, c, optarg);
		if (ret)
			return ret == 1 ? 0 : ret;
	}
	if (optind < argc) {
		opt_bad("snapshot-receive", argv[optind], "an unexpected argument; options only");
		return 2;
	}
	if (env.o.tls.hostname || env.o.tls.psk_user) {
		fprintf(stderr, "kvmmig snapshot-receive: --tls-hostname and --tls-psk-user are the sender's: a receiver accepts any identity in its --tls-psk file\n");
		return 2;
	}
	if (tls_opts_check(&env.o.tls, "snapshot-receive"))
		return 2;
	if (!env.o.listen || !env.o.path) {
		fprintf(stderr, "kvmmig snapshot-receive: --listen tcp:HOST:PORT and --to FILE are required\n");
		return 2;
	}
	env.o.accept_timeout_ms = env.accept_s ? (int)(env.accept_s * 1000) : -1;
	env.o.io_timeout_ms = env.io_ms;
	env.o.cancel = &cmd_cancel_flag;
	env.o.listening = recv_listening;
	env.o.opaque = &env;
	cmd_catch_cancel_signals();
	ret = snapshot_receive(&env.o, &r);
	if (ret) {
		/* The library said why. */
		fprintf(stderr, "kvmmig: no snapshot was received; %s was not written\n",
			env.o.path);
		return 1;
	}
	recv_print(&env, &r);
	return 0;
}
