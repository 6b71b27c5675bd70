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
#include <stdbool.h>
#include <stdint.h>

#include "dirty.h"
#include "vm.h"

int parse_size(const char *opt, const char *arg, uint64_t *out);
int parse_uint(const char *opt, const char *arg, uint64_t min, uint64_t max, uint64_t *out);

/* The built-in guest: --vcpus, --ram, --slots, --workload, ... */
struct guest_opts {
	struct vm_config cfg;
	enum dirty_backend backend;
	unsigned int reap_us;
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
	"  --ram SIZE           guest RAM, e.g. 512M, 4G (default 1G)\n"	\
	"  --slots N            RAM memslots (default 1)\n"			\
	"  --workload W         incr, random, rate, compute, seq, rand, idle (default incr)\n" \
	"  --backing B          anon, memfd, hugetlb (default anon)\n"	\
	"  --dirty B            auto, bitmap, bitmap-manual, ring, module (default auto)\n" \
	"  --ring-entries N     dirty ring entries per vCPU (default 65536)\n" \
	"  --pages-per-sec N    rate workload: pages per second per vCPU\n"	\
	"  --wss SIZE           seq/rand/rate workloads: working set per vCPU\n"	\
	"  --compute-vcpus MASK these vCPUs only compute (bit mask, e.g. 0x2)\n"

void guest_opts_init(struct guest_opts *g);
/* Returns 1 if @c was a guest option, 0 if not, -1 on a bad value. */
int guest_opts_parse(struct guest_opts *g, int c, const char *arg);

#endif /* KVMMIG_OPTS_H */
