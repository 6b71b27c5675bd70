/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Two hosts on one machine: network namespaces "kvmmig-<pid>-src" and
 * "kvmmig-<pid>-dst" joined by a veth pair (kvm0 - kvm1, NETNS_SRC_ADDR and
 * NETNS_DST_ADDR on a /30) whose both ends are shaped with tc's token
 * bucket filter, as two machines on a gigabit link would be.  Shared by
 * migration_netns_test and postcopy_perf.  Namespaces left by a run that
 * was killed are deleted when the next one sets up; netns_hosts_remove()
 * deletes a run's own.
 */
#ifndef KVMMIG_NETNS_UTIL_H
#define KVMMIG_NETNS_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NETNS_PREFIX		"kvmmig-"
#define NETNS_SRC_ADDR		"10.213.7.1"
#define NETNS_DST_ADDR		"10.213.7.2"
#define NETNS_LINK_BITS		1000000000.0	/* the tbf rate below */
#define NETNS_LINK_SHAPE	"tbf rate 1gbit burst 256kb latency 20ms"

struct netns_hosts {
	char src[32], dst[32];
	bool src_made, dst_made;
};

/*
 * Run a shell command: 0 or its wait status, its output (stderr included)
 * in @out, and shown with the command when it fails.
 */
static int netns_shell_out(char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int netns_shell_out(char *out, size_t len, const char *fmt, ...)
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

#define netns_shell(...)	\
	({ char __out[256]; netns_shell_out(__out, sizeof(__out), __VA_ARGS__); })

/* Namespaces "kvmmig-<pid>-src/dst" of runs that no longer exist. */
static inline void netns_remove_stale(void)
{
	struct dirent *e;
	DIR *d = opendir("/run/netns");
	char role[8];
	int pid;

	while (d && (e = readdir(d))) {
		if (sscanf(e->d_name, NETNS_PREFIX "%d-%7s", &pid, role) != 2 || pid <= 0 ||
		    (strcmp(role, "src") && strcmp(role, "dst")))
			continue;
		if (kill(pid, 0) && errno == ESRCH)
			netns_shell("ip netns del %s", e->d_name);
	}
	if (d)
		closedir(d);
}

/* Bytes the qdisc on @dev in @ns has sent, or 0. */
static inline uint64_t netns_qdisc_sent_bytes(const char *ns, const char *dev)
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

/*
 * Make the two hosts.  0 when they are up; 1 when this machine cannot
 * make them (no root or iproute2, no tbf qdisc), with the reason in @skip;
 * -1 when a step that should work failed (said on stderr).  Whatever it
 * returns, netns_hosts_remove() deletes what was made.
 */
static inline int netns_hosts_setup(struct netns_hosts *h, char *skip, size_t len)
{
	int pid = getpid();
	char out[256];

	memset(h, 0, sizeof(*h));
	netns_remove_stale();
	snprintf(h->src, sizeof(h->src), NETNS_PREFIX "%d-src", pid);
	snprintf(h->dst, sizeof(h->dst), NETNS_PREFIX "%d-dst", pid);
	if (netns_shell_out(out, sizeof(out), "ip netns add %s", h->src)) {
		snprintf(skip, len, "`ip netns add` is impossible here (root and iproute2 needed): %s",
			 out);
		return 1;
	}
	h->src_made = true;
	if (netns_shell("ip netns add %s", h->dst))
		return -1;
	h->dst_made = true;

	/* The veth pair, one end in each, a /30 between them. */
	if (netns_shell("ip -n %s link add kvm0 type veth peer name kvm1 netns %s", h->src,
			h->dst) ||
	    netns_shell("ip -n %s addr add %s/30 dev kvm0", h->src, NETNS_SRC_ADDR) ||
	    netns_shell("ip -n %s addr add %s/30 dev kvm1", h->dst, NETNS_DST_ADDR) ||
	    netns_shell("ip -n %s link set kvm0 up", h->src) ||
	    netns_shell("ip -n %s link set kvm1 up", h->dst))
		return -1;
	/* Both directions: the stream one way, the acknowledgements the other. */
	if (netns_shell_out(out, sizeof(out), "tc -n %s qdisc add dev kvm0 root %s", h->src,
			    NETNS_LINK_SHAPE) && strstr(out, "qdisc kind is unknown")) {
		snprintf(skip, len, "this kernel has no tbf qdisc (CONFIG_NET_SCH_TBF)");
		return 1;
	}
	if (netns_shell("tc -n %s qdisc show dev kvm0 root | grep -q tbf", h->src) ||
	    netns_shell("tc -n %s qdisc add dev kvm1 root %s", h->dst, NETNS_LINK_SHAPE))
		return -1;
	return 0;
}

/* Deleting a namespace deletes its end of the veth pair, and so both. */
static inline void netns_hosts_remove(struct netns_hosts *h)
{
	if (h->src_made)
		netns_shell("ip netns del %s", h->src);
	if (h->dst_made)
		netns_shell("ip netns del %s", h->dst);
	h->src_made = h->dst_made = false;
}

#endif /* KVMMIG_NETNS_UTIL_H */
