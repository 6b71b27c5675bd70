/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Command-line options for migration parameters, with QEMU's names
 * (downtime-limit, max-bandwidth, multifd-channels, cpu-throttle-initial,
 * ...), shared by `kvmmig migrate` and `kvmmig demo`.
 */
#ifndef KVMMIG_MIG_OPTS_H
#define KVMMIG_MIG_OPTS_H

#include "migrate.h"
#include "opts.h"

/*
 * The postcopy options (Documentation/postcopy.rst), numbered apart so that
 * a command can tell which of them it was given (mig_opts_postcopy_check()).
 */
enum {
	MIG_OPT_POSTCOPY = 0x113,
	MIG_OPT_POSTCOPY_PREEMPT,
	MIG_OPT_POSTCOPY_HINT,
	MIG_OPT_POSTCOPY_START,
	MIG_OPT_POSTCOPY_RECOVER,
	MIG_OPT_POSTCOPY_LAST = MIG_OPT_POSTCOPY_RECOVER,
};

#define MIG_OPTS_LONG								\
	{ "downtime-limit", required_argument, NULL, 0x100 },			\
	{ "max-bandwidth", required_argument, NULL, 0x101 },			\
	{ "multifd-channels", required_argument, NULL, 0x102 },		\
	{ "channels", required_argument, NULL, 0x102 },			\
	{ "zero-page-detection", required_argument, NULL, 0x103 },		\
	{ "sync", required_argument, NULL, 0x104 },				\
	{ "sync-interval", required_argument, NULL, 0x105 },			\
	{ "policy", required_argument, NULL, 0x106 },				\
	{ "cpu-throttle-initial", required_argument, NULL, 0x107 },		\
	{ "cpu-throttle-increment", required_argument, NULL, 0x108 },		\
	{ "max-cpu-throttle", required_argument, NULL, 0x109 },		\
	{ "throttle-trigger-threshold", required_argument, NULL, 0x10a },	\
	{ "cpu-throttle-tailslow", no_argument, NULL, 0x10b },			\
	{ "vcpu-dirty-limit", required_argument, NULL, 0x10c },		\
	{ "x-vcpu-dirty-limit-period", required_argument, NULL, 0x10d },	\
	{ "max-passes", required_argument, NULL, 0x10e },			\
	{ "x-rate-source", required_argument, NULL, 0x10f },			\
	{ "connect-timeout", required_argument, NULL, 0x110 },			\
	{ "io-timeout", required_argument, NULL, 0x111 },			\
	{ "converge-within", required_argument, NULL, 0x112 },			\
	{ "postcopy", no_argument, NULL, MIG_OPT_POSTCOPY },			\
	{ "postcopy-preempt", no_argument, NULL, MIG_OPT_POSTCOPY_PREEMPT },	\
	{ "x-postcopy-hint", required_argument, NULL, MIG_OPT_POSTCOPY_HINT },	\
	{ "x-postcopy-start", required_argument, NULL, MIG_OPT_POSTCOPY_START },	\
	{ "postcopy-recover-timeout", required_argument, NULL, MIG_OPT_POSTCOPY_RECOVER }

#define MIG_OPTS_HELP								\
	"  --downtime-limit MS        longest pause at switchover, 1-2000000 (default 300)\n" \
	"  --max-bandwidth SIZE       bytes per second on the wire, e.g. 200M, 1K-1P\n" \
	"                             (default 0: unlimited)\n"			\
	"  --multifd-channels N       TCP channels for pages, 1-64 (default 1; alias --channels)\n" \
	"  --zero-page-detection M    multifd (default) or none\n"		\
	"  --sync MODE                legacy (default), background or periodic\n" \
	"  --sync-interval MS         background/periodic sync interval, 100-600000\n" \
	"                             (default 5000)\n"				\
	"  --policy P                 none (default), auto-converge, dirty-limit, rate-driven,\n" \
	"                             converge (per-vCPU limits just enough: converge.rst)\n" \
	"  --converge-within S        converge: switch over within S seconds, 1-86400\n" \
	"                             (default: no deadline)\n"			\
	"  --cpu-throttle-initial N   auto-converge first step, percent, 1-99 (default 20)\n" \
	"  --cpu-throttle-increment N auto-converge step, percent, 1-99 (default 10)\n" \
	"  --max-cpu-throttle N       highest throttle, percent, 1-99 (default 99)\n" \
	"  --throttle-trigger-threshold N  dirty bytes as %% of sent bytes that trigger,\n" \
	"                             1-100 (default 50)\n"			\
	"  --cpu-throttle-tailslow    smaller steps near the target\n"		\
	"  --vcpu-dirty-limit MBPS    dirty-limit per vCPU, MB/s, 1-1000000 (default 1)\n" \
	"  --x-vcpu-dirty-limit-period MS  dirty-limit control period, 1-1000 (default 1000)\n" \
	"  --max-passes N             fail if not converged after N passes, 1-1000000\n" \
	"                             (default: never)\n"			\
	"  --x-rate-source S          per-vCPU rates for dirty-limit/rate-driven: dirty (the\n" \
	"                             dirty source's counts, default) or bpf (any backend)\n" \
	"  --connect-timeout S        give up connecting after S seconds (default 10)\n" \
	"  --io-timeout S             give up when a channel moves nothing for S seconds\n" \
	"                             (default 30; also the TCP user timeout)\n" \
	"  --postcopy                 may switch to postcopy: the guest runs on the destination,\n" \
	"                             which fetches missing pages on demand (postcopy-ram)\n" \
	"  --postcopy-preempt         requested pages on a channel of their own (needs --postcopy)\n" \
	"  --x-postcopy-hint on|off   after a requested page, the background scan goes on right\n" \
	"                             after it (default on)\n"			\
	"  --x-postcopy-start MODE    when to switch: auto (default: when a pass no longer\n" \
	"                             shrinks what is left), manual (only on kvmmig\n" \
	"                             migrate-start-postcopy) or passes:N (after N passes)\n" \
	"  --postcopy-recover-timeout S  in postcopy-paused, give up after S seconds without a\n" \
	"                             new link, 0-86400 (default 0: wait for ever)\n"

/* TLS on every channel, QEMU's model (Documentation/tls.rst). */
#define TLS_OPTS_LONG								\
	{ "tls-creds", required_argument, NULL, 0x120 },			\
	{ "tls-psk", required_argument, NULL, 0x121 },				\
	{ "tls-psk-user", required_argument, NULL, 0x122 },			\
	{ "tls-hostname", required_argument, NULL, 0x123 },			\
	{ "tls-authz", required_argument, NULL, 0x124 }

#define TLS_OPTS_HELP								\
	"  --tls-creds DIR            TLS with x509: ca-cert.pem, server-cert.pem, server-key.pem,\n" \
	"                             client-cert.pem, client-key.pem (QEMU's tls-creds-x509)\n" \
	"  --tls-psk FILE             TLS with a pre-shared key: username:hexkey lines\n" \
	"  --tls-psk-user NAME        the PSK identity a source presents (default qemu)\n" \
	"  --tls-hostname NAME        name the receiver's certificate must carry (default: HOST\n" \
	"                             of --to)\n"					\
	"  --tls-authz DN             the one client certificate DN a receiver accepts\n"

/* Returns 1 if @c was a TLS option, 0 if not, -1 on a bad value. */
int tls_opts_parse(struct tls_opts *t, int c, const char *arg);
/* The TLS options together make sense; -1 after saying why not. */
int tls_opts_check(const struct tls_opts *t, const char *cmd);

/* Returns 1 if @c was a migration option, 0 if not, -1 on a bad value. */
int mig_opts_parse(struct mig_params *p, int c, const char *arg);

/* Which postcopy options a command was given: a bit per MIG_OPT_POSTCOPY_*. */
static inline unsigned int mig_opts_postcopy_bit(int c)
{
	return c >= MIG_OPT_POSTCOPY && c <= MIG_OPT_POSTCOPY_LAST ?
	       1u << (c - MIG_OPT_POSTCOPY) : 0;
}

/*
 * The postcopy options given (@given, of mig_opts_postcopy_bit()) make
 * sense together and with @p; -1 after saying why not, as `kvmmig @cmd`.
 */
int mig_opts_postcopy_check(const struct mig_params *p, unsigned int given, const char *cmd);

#endif /* KVMMIG_MIG_OPTS_H */
