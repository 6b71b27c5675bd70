/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Option parsing shared by the kvmmig subcommands: sizes ("512M", "4G"),
 * counts with their allowed range, and the guest options every command
 * that runs a built-in guest takes.  Each parser prints what was wrong and
 * what was expected, and returns -1.
 */
#ifndef KVMMIG_OPTS_H
#define KVMMIG_OPTS_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dirty.h"
#include "vm.h"

/*
 * Options are refused with a message that names the option, the value and
 * what is accepted; the command then exits with status 2.
 */
void opt_bad(const char *opt, const char *arg, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* "4096", "512M", "4GiB" (powers of 1024) in bytes, saying nothing: 0 or -errno. */
int size_value(const char *arg, uint64_t *out);
/* A size such as 4096, 512M or 4G from @min to @max. */
int parse_size(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out);
/* A whole number, decimal or 0x hex, from @min to @max. */
int parse_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out);
/* --backing anon|memfd|hugetlb|thp. */
int parse_backing(const char *arg, enum vm_backing *b);
/* @v as "1M", "24093M" or "4097": the largest unit that divides it. */
void size_str(char *buf, size_t len, uint64_t v);

/*
 * The command's cancel flag (cancel.h): 0 until SIGINT or SIGTERM comes,
 * then the signal's number, once cmd_catch_cancel_signals() installed the
 * handler.  Library calls take &cmd_cancel_flag as their cancel flag.
 */
extern volatile sig_atomic_t cmd_cancel_flag;
void cmd_catch_cancel_signals(void);

/* The built-in guest: --vcpus, --ram, --slots, --workload, ... */
struct guest_opts {
	struct vm_config cfg;
	enum dirty_backend backend;
	unsigned int reap_us;
	const char *wss_arg, *mask_arg;	/* as given, for guest_opts_check() */
};

#define GUEST_OPTS_LONG							\
	{ "vcpus", required_argument, NULL, 'c' },			\
	{ "ram", required_argument, NULL, 'm' },			\
	{ "slots", required_argument, NULL, 'S' },			\
	{ "workload", required_argument, NULL, 'w' },			\
	{ "backing", required_argument, NULL, 'B' },			\
	{ "dirty", required_argument, NULL, 'd' },			\
	{ "ring-entries", required_argument, NULL, 'R' },		\
	{ "pages-per-sec", required_argument, NULL, 'p' },		\
	{ "wss", required_argument, NULL, 'W' },			\
	{ "compute-vcpus", required_argument, NULL, 'K' }

#define GUEST_OPTS_HELP							\
	"  --vcpus N            vCPUs (1-64, default 2)\n"			\
	"  --ram SIZE           guest RAM, e.g. 512M, 4G (1M up to the host's RAM, default 1G)\n" \
	"  --slots N            RAM memslots (1-31, default 1)\n"		\
	"  --workload W         incr, random, rate, compute, seq, rand, idle (default incr)\n" \
	"  --backing B          anon, memfd, hugetlb, thp (default anon)\n"	\
	"  --dirty B            auto, bitmap, bitmap-manual, ring, module (default auto)\n" \
	"  --ring-entries N     dirty ring entries per vCPU, a power of two from 256\n" \
	"                       to 1048576 (default 65536)\n"			\
	"  --pages-per-sec N    rate workload: pages per second per vCPU (1-100000000)\n" \
	"  --wss SIZE           seq/rand/rate workloads: working set per vCPU (4K to --ram)\n" \
	"  --compute-vcpus MASK these vCPUs only compute (bit mask, e.g. 0x2)\n"

void guest_opts_init(struct guest_opts *g);
/* Returns 1 if @c was a guest option, 0 if not, -1 on a bad value. */
int guest_opts_parse(struct guest_opts *g, int c, const char *arg);
/* Once all options are in: those whose range depends on another; 0 or -1. */
int guest_opts_check(const struct guest_opts *g);

#endif /* KVMMIG_OPTS_H */
