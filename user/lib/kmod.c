// SPDX-License-Identifier: GPL-2.0-only
/*
 * libkvmmig's side of kvmmig.ko: session ioctls, finding a running VMM's VM
 * fd, the generic netlink family (libmnl) and the "module" dirty source.
 * The dirty source harvests every vCPU's ring with one KVMMIG_HARVEST into
 * an accumulated bitmap and then calls KVM_RESET_DIRTY_RINGS, like the ring
 * source does entry by entry: from a reaper thread while the vCPUs run, on
 * KVM_EXIT_DIRTY_RING_FULL and at each collection.  Its per-vCPU counts come
 * from the module's tracepoint accounting, with no harvest at all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "dirty_internal.h"
#include "kmod.h"
#include "log.h"

static int kmod_dev_open(void)
{
	int fd = open(KVMMIG_DEVICE, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, KVMMIG_GET_API_VERSION, 0) != KVMMIG_API_VERSION) {
		close(fd);
		return -EPROTO;
	}
	return fd;
}

bool kmod_present(const char **why)
{
	int fd = kmod_dev_open();

	if (fd >= 0) {
		close(fd);
		return true;
	}
	if (why)
		*why = fd == -ENOENT ? "kvmmig.ko is not loaded (no " KVMMIG_DEVICE ")" :
		       fd == -EACCES ? KVMMIG_DEVICE " needs root" :
		       fd == -EPROTO ? "kvmmig.ko speaks another API version" :
		       "cannot open " KVMMIG_DEVICE;
	return false;
}

int kmod_check_extension(unsigned int cap)
{
	int fd = kmod_dev_open(), ret;

	if (fd < 0)
		return fd;
	ret = ioctl(fd, KVMMIG_CHECK_EXTENSION, cap);
	close(fd);
	return ret < 0 ? -errno : ret;
}

int kmod_refresh(struct kmod_session *ks)
{
	struct kvmmig_memslot *slots = NULL;
	struct kvmmig_info info;
	uint32_t cap = 0;

	/* A call with too small an array learns the number of memslots. */
	for (;;) {
		memset(&info, 0, sizeof(info));
		info.slots = (uintptr_t)slots;
		info.nr_slots = cap;
		if (!ioctl(ks->fd, KVMMIG_INFO, &info))
			break;
		free(slots);
		if (errno != ENOSPC)
			return kvmmig_ioctl_err("KVMMIG_INFO", errno);
		cap = info.nr_slots;
		slots = calloc(cap, sizeof(*slots));
		if (!slots)
			return -ENOMEM;
	}
	free(ks->slots);
	ks->slots = slots;
	ks->info = info;
	ks->id = info.session_id;
	return 0;
}

int kmod_attach(int vm_fd, struct kmod_session **out)
{
	struct kvmmig_attach a = { .vm_fd = vm_fd };
	struct kmod_session *ks;
	int dev, ret;

	dev = kmod_dev_open();
	if (dev < 0) {
		kvmmig_err("cannot use %s: %s", KVMMIG_DEVICE, strerror(-dev));
		return dev;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		close(dev);
		return -ENOMEM;
	}
	ks->fd = ioctl(dev, KVMMIG_ATTACH, &a);
	ret = ks->fd < 0 ? kvmmig_ioctl_err("KVMMIG_ATTACH", errno) : 0;
	close(dev);
	if (!ret)
		ret = kmod_refresh(ks);
	if (ret) {
		kmod_close(ks);
		return ret;
	}
	*out = ks;
	return 0;
}

void kmod_close(struct kmod_session *ks)
{
	if (!ks)
		return;
	if (ks->fd >= 0)
		close(ks->fd);
	free(ks->slots);
	free(ks);
}

int kmod_harvest(struct kmod_session *ks, struct kvmmig_harvest *h)
{
	return ioctl(ks->fd, KVMMIG_HARVEST, h) ? kvmmig_ioctl_err("KVMMIG_HARVEST", errno) : 0;
}

int kmod_vcpu_stats(struct kmod_session *ks, struct kvmmig_vcpu_stats **st, uint32_t *nr)
{
	struct kvmmig_stats s = {};
	struct kvmmig_vcpu_stats *buf = NULL;
	uint32_t cap = ks->info.nr_vcpus;

	for (;;) {
		buf = calloc(cap ?: 1, sizeof(*buf));
		if (!buf)
			return -ENOMEM;
		memset(&s, 0, sizeof(s));
		s.vcpus = (uintptr_t)buf;
		s.nr_vcpus = cap;
		if (!ioctl(ks->fd, KVMMIG_VCPU_STATS, &s))
			break;
		free(buf);
		if (errno != ENOSPC)
			return kvmmig_ioctl_err("KVMMIG_VCPU_STATS", errno);
		cap = s.nr_vcpus;	/* vCPUs came online meanwhile */
	}
	*st = buf;
	*nr = s.nr_vcpus;
	return 0;
}

int kmod_set_throttle(struct kmod_session *ks, const struct kvmmig_throttle *t)
{
	return ioctl(ks->fd, KVMMIG_SET_THROTTLE, t) ?
	       kvmmig_ioctl_err("KVMMIG_SET_THROTTLE", errno) : 0;
}

int kmod_get_throttle(struct kmod_session *ks, uint32_t vcpu, struct kvmmig_throttle *t)
{
	memset(t, 0, sizeof(*t));
	t->vcpu = vcpu;
	return ioctl(ks->fd, KVMMIG_GET_THROTTLE, t) ?
	       kvmmig_ioctl_err("KVMMIG_GET_THROTTLE", errno) : 0;
}

/* ---- a running VMM's VM fd ---- */

static int kmod_find_vm_fdnum(pid_t pid)
{
	char dir[64], path[320], link[64];
	struct dirent *de;
	int found = -ENOENT;
	ssize_t n;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = 0;
		if (!strcmp(link, "anon_inode:kvm-vm")) {
			if (found >= 0) {
				found = -EEXIST;	/* several VMs: ambiguous */
				break;
			}
			found = atoi(de->d_name);
		}
	}
	closedir(d);
	return found;
}

int kmod_take_vm_fd(pid_t pid, int *vm_fd)
{
	int num = kmod_find_vm_fdnum(pid), pidfd, fd;

	if (num == -ENOENT) {
		kvmmig_err("process %d has no KVM VM open (no anon_inode:kvm-vm in /proc/%d/fd)",
			   (int)pid, (int)pid);
		return num;
	}
	if (num == -EEXIST) {
		kvmmig_err("process %d has several KVM VMs open; expected one", (int)pid);
		return num;
	}
	if (num < 0) {
		kvmmig_err("cannot read /proc/%d/fd: %s", (int)pid, strerror(-num));
		return num;
	}
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return kvmmig_ioctl_err("pidfd_open", errno);
	fd = syscall(SYS_pidfd_getfd, pidfd, num, 0);
	close(pidfd);
	if (fd < 0)
		return kvmmig_ioctl_err("pidfd_getfd", errno);
	*vm_fd = fd;
	return 0;
}

/* ---- generic netlink ---- */

struct kmod_nl {
	struct mnl_socket *sock;
	uint16_t family;
	uint32_t mcgrp;
	uint32_t portid;
	uint32_t seq;
	char *buf;
};

static int kmod_nl_ctrl_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);

	if (mnl_attr_type_valid(a, CTRL_ATTR_MAX) < 0)
		return MNL_CB_OK;
	if (type == CTRL_ATTR_FAMILY_ID && mnl_attr_validate(a, MNL_TYPE_U16) < 0)
		return MNL_CB_ERROR;
	tb[type] = a;
	return MNL_CB_OK;
}

static int kmod_nl_grp_attr(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);

	if (mnl_attr_type_valid(a, CTRL_ATTR_MCAST_GRP_MAX) < 0)
		return MNL_CB_OK;
	if (type == CTRL_ATTR_MCAST_GRP_ID && mnl_attr_validate(a, MNL_TYPE_U32) < 0)
		return MNL_CB_ERROR;
	if (type == CTRL_ATTR_MCAST_GRP_NAME && mnl_attr_validate(a, MNL_TYPE_STRING) < 0)
		return MNL_CB_ERROR;
	tb[type] = a;
	return MNL_CB_OK;
}

static int kmod_nl_family_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[CTRL_ATTR_MAX + 1] = {}, *g;
	struct kmod_nl *n = data;

	mnl_attr_parse(nlh, sizeof(struct genlmsghdr), kmod_nl_ctrl_attr, tb);
	if (!tb[CTRL_ATTR_FAMILY_ID])
		return MNL_CB_ERROR;
	n->family = mnl_attr_get_u16(tb[CTRL_ATTR_FAMILY_ID]);
	if (!tb[CTRL_ATTR_MCAST_GROUPS])
		return MNL_CB_OK;
	mnl_attr_for_each_nested(g, tb[CTRL_ATTR_MCAST_GROUPS]) {
		const struct nlattr *gt[CTRL_ATTR_MCAST_GRP_MAX + 1] = {};

		mnl_attr_parse_nested(g, kmod_nl_grp_attr, gt);
		if (gt[CTRL_ATTR_MCAST_GRP_ID] && gt[CTRL_ATTR_MCAST_GRP_NAME] &&
		    !strcmp(mnl_attr_get_str(gt[CTRL_ATTR_MCAST_GRP_NAME]),
			    KVMMIG_GENL_MCGRP_EVENTS))
			n->mcgrp = mnl_attr_get_u32(gt[CTRL_ATTR_MCAST_GRP_ID]);
	}
	return MNL_CB_OK;
}

/* NLMSG_ERROR: keep the errno and report the kernel's extended ack. */
static int kmod_nl_error_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *a;
	unsigned int off;

	if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(*err)))
		return MNL_CB_ERROR;
	if (!err->error)
		return MNL_CB_STOP;
	errno = -err->error;
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return MNL_CB_ERROR;
	off = sizeof(*err);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += mnl_nlmsg_get_payload_len(&err->msg);
	mnl_attr_for_each(a, nlh, off) {
		if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
		    !mnl_attr_validate(a, MNL_TYPE_NUL_STRING))
			kvmmig_err("netlink: %s", mnl_attr_get_str(a));
	}
	return MNL_CB_ERROR;
}

static struct nlmsghdr *kmod_nl_msg(struct kmod_nl *n, uint16_t type, uint8_t cmd,
				    uint16_t flags, uint8_t version)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(n->buf);
	struct genlmsghdr *g;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	nlh->nlmsg_seq = ++n->seq;
	g = mnl_nlmsg_put_extra_header(nlh, sizeof(*g));
	g->cmd = cmd;
	g->version = version;
	return nlh;
}

/* Send a request and run cb on each reply until the ack or the dump's end. */
static int kmod_nl_talk(struct kmod_nl *n, struct nlmsghdr *nlh, mnl_cb_t cb, void *arg)
{
	/* Only NLMSG_ERROR is ours: libmnl's defaults handle NOOP, DONE, OVERRUN. */
	static mnl_cb_t ctl[NLMSG_ERROR + 1] = { [NLMSG_ERROR] = kmod_nl_error_cb };
	ssize_t len;
	int ret;

	if (mnl_socket_sendto(n->sock, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	do {
		len = mnl_socket_recvfrom(n->sock, n->buf, MNL_SOCKET_BUFFER_SIZE);
		if (len < 0)
			return -errno;
		ret = mnl_cb_run2(n->buf, len, nlh->nlmsg_seq, n->portid, cb, arg,
				  ctl, NLMSG_ERROR + 1);
	} while (ret > MNL_CB_STOP);
	return ret < 0 ? -errno : 0;
}

static void kmod_nl_close(struct kmod_nl *n)
{
	if (n->sock)
		mnl_socket_close(n->sock);
	free(n->buf);
}

static int kmod_nl_open(struct kmod_nl *n)
{
	struct nlmsghdr *nlh;
	int one = 1, ret;

	memset(n, 0, sizeof(*n));
	n->buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	n->sock = mnl_socket_open(NETLINK_GENERIC);
	if (!n->buf || !n->sock || mnl_socket_bind(n->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = n->buf ? -errno : -ENOMEM;
		kmod_nl_close(n);
		return ret;
	}
	mnl_socket_setsockopt(n->sock, NETLINK_EXT_ACK, &one, sizeof(one));
	n->portid = mnl_socket_get_portid(n->sock);
	n->seq = time(NULL);
	nlh = kmod_nl_msg(n, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0, 1);
	mnl_attr_put_strz(nlh, CTRL_ATTR_FAMILY_NAME, KVMMIG_GENL_NAME);
	ret = kmod_nl_talk(n, nlh, kmod_nl_family_cb, n);
	if (ret) {
		kvmmig_err("generic netlink family %s not found (is kvmmig.ko loaded?)",
			   KVMMIG_GENL_NAME);
		kmod_nl_close(n);
		return ret == -ENOENT ? -ENODEV : ret;
	}
	return 0;
}

static int kmod_attr_cb(const struct nlattr *a, void *data)
{
	const struct nlattr **tb = data;
	int type = mnl_attr_get_type(a);

	/* Skip what a newer module may add; check the size of what we know. */
	if (mnl_attr_type_valid(a, KVMMIG_NL_A_MAX) < 0 || type == KVMMIG_NL_A_PAD)
		return MNL_CB_OK;
	switch (type) {
	case KVMMIG_NL_A_WINDOW_NS:
	case KVMMIG_NL_A_DIRTY_PAGES:
	case KVMMIG_NL_A_DIRTY_RATE:
	case KVMMIG_NL_A_RUN_NS:
	case KVMMIG_NL_A_THROTTLE_NS:
	case KVMMIG_NL_A_THROTTLE_SLEEPS:
	case KVMMIG_NL_A_RING_FULL_EXITS:
	case KVMMIG_NL_A_EXITS:
	case KVMMIG_NL_A_DIRTY_LIMIT:
		if (mnl_attr_validate(a, MNL_TYPE_U64) < 0)
			return MNL_CB_ERROR;
		break;
	default:
		if (mnl_attr_validate(a, MNL_TYPE_U32) < 0)
			return MNL_CB_ERROR;
	}
	tb[type] = a;
	return MNL_CB_OK;
}

static uint32_t kmod_u32(const struct nlattr **tb, int type)
{
	return tb[type] ? mnl_attr_get_u32(tb[type]) : 0;
}

static uint64_t kmod_u64(const struct nlattr **tb, int type)
{
	return tb[type] ? mnl_attr_get_u64(tb[type]) : 0;
}

static int kmod_nl_parse(const struct nlmsghdr *nlh, const struct nlattr **tb)
{
	memset(tb, 0, sizeof(*tb) * (KVMMIG_NL_A_MAX + 1));
	return mnl_attr_parse(nlh, sizeof(struct genlmsghdr), kmod_attr_cb, tb) < 0 ?
	       MNL_CB_ERROR : MNL_CB_OK;
}

struct kmod_nl_cb {
	kmod_session_fn session_fn;
	kmod_stats_fn stats_fn;
	void *arg;
};

static int kmod_session_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[KVMMIG_NL_A_MAX + 1];
	struct kmod_nl_cb *c = data;
	struct kmod_nl_session s;

	if (kmod_nl_parse(nlh, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	s = (struct kmod_nl_session){
		.id = kmod_u32(tb, KVMMIG_NL_A_SESSION_ID),
		.state = kmod_u32(tb, KVMMIG_NL_A_STATE),
		.pid = kmod_u32(tb, KVMMIG_NL_A_PID),
		.vm_pid = kmod_u32(tb, KVMMIG_NL_A_VM_PID),
		.nr_vcpus = kmod_u32(tb, KVMMIG_NL_A_NR_VCPUS),
		.ring_entries = kmod_u32(tb, KVMMIG_NL_A_RING_ENTRIES),
		.window_ns = kmod_u64(tb, KVMMIG_NL_A_WINDOW_NS),
	};
	return c->session_fn(&s, c->arg) ? MNL_CB_STOP : MNL_CB_OK;
}

static int kmod_stats_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct nlattr *tb[KVMMIG_NL_A_MAX + 1];
	struct kmod_nl_cb *c = data;
	struct kvmmig_vcpu_stats st = {};

	if (kmod_nl_parse(nlh, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	st.vcpu = kmod_u32(tb, KVMMIG_NL_A_VCPU);
	st.vcpu_id = kmod_u32(tb, KVMMIG_NL_A_VCPU_ID);
	st.dirty_pages = kmod_u64(tb, KVMMIG_NL_A_DIRTY_PAGES);
	st.dirty_rate = kmod_u64(tb, KVMMIG_NL_A_DIRTY_RATE);
	st.run_ns = kmod_u64(tb, KVMMIG_NL_A_RUN_NS);
	st.throttle_ns = kmod_u64(tb, KVMMIG_NL_A_THROTTLE_NS);
	st.throttle_sleeps = kmod_u64(tb, KVMMIG_NL_A_THROTTLE_SLEEPS);
	st.ring_full_exits = kmod_u64(tb, KVMMIG_NL_A_RING_FULL_EXITS);
	st.exits = kmod_u64(tb, KVMMIG_NL_A_EXITS);
	st.dirty_limit = kmod_u64(tb, KVMMIG_NL_A_DIRTY_LIMIT);
	st.cpu_throttle = kmod_u32(tb, KVMMIG_NL_A_CPU_THROTTLE);
	st.ring_quota = kmod_u32(tb, KVMMIG_NL_A_RING_QUOTA);
	st.flags = kmod_u32(tb, KVMMIG_NL_A_VCPU_FLAGS);
	return c->stats_fn(kmod_u32(tb, KVMMIG_NL_A_SESSION_ID), &st, c->arg) ?
	       MNL_CB_STOP : MNL_CB_OK;
}

int kmod_nl_sessions(kmod_session_fn fn, void *arg)
{
	struct kmod_nl_cb c = { .session_fn = fn, .arg = arg };
	struct nlmsghdr *nlh;
	struct kmod_nl n;
	int ret;

	ret = kmod_nl_open(&n);
	if (ret)
		return ret;
	nlh = kmod_nl_msg(&n, n.family, KVMMIG_NL_CMD_GET_SESSION, NLM_F_DUMP,
			  KVMMIG_GENL_VERSION);
	ret = kmod_nl_talk(&n, nlh, kmod_session_cb, &c);
	kmod_nl_close(&n);
	return ret;
}

int kmod_nl_stats(uint32_t session, kmod_stats_fn fn, void *arg)
{
	struct kmod_nl_cb c = { .stats_fn = fn, .arg = arg };
	struct nlmsghdr *nlh;
	struct kmod_nl n;
	int ret;

	ret = kmod_nl_open(&n);
	if (ret)
		return ret;
	nlh = kmod_nl_msg(&n, n.family, KVMMIG_NL_CMD_GET_STATS, NLM_F_DUMP,
			  KVMMIG_GENL_VERSION);
	if (session)
		mnl_attr_put_u32(nlh, KVMMIG_NL_A_SESSION_ID, session);
	ret = kmod_nl_talk(&n, nlh, kmod_stats_cb, &c);
	kmod_nl_close(&n);
	return ret;
}

int kmod_nl_set_throttle(uint32_t session, const struct kvmmig_throttle *t)
{
	struct nlmsghdr *nlh;
	struct kmod_nl n;
	int ret;

	ret = kmod_nl_open(&n);
	if (ret)
		return ret;
	nlh = kmod_nl_msg(&n, n.family, KVMMIG_NL_CMD_SET_THROTTLE, 0, KVMMIG_GENL_VERSION);
	mnl_attr_put_u32(nlh, KVMMIG_NL_A_SESSION_ID, session);
	mnl_attr_put_u32(nlh, KVMMIG_NL_A_VCPU, t->vcpu);
	mnl_attr_put_u32(nlh, KVMMIG_NL_A_THROTTLE_SET, t->set);
	if (t->set & KVMMIG_THROTTLE_DIRTY_LIMIT)
		mnl_attr_put_u64(nlh, KVMMIG_NL_A_DIRTY_LIMIT, t->dirty_limit);
	if (t->set & KVMMIG_THROTTLE_CPU)
		mnl_attr_put_u32(nlh, KVMMIG_NL_A_CPU_THROTTLE, t->cpu_throttle);
	if (t->set & KVMMIG_THROTTLE_RING_QUOTA)
		mnl_attr_put_u32(nlh, KVMMIG_NL_A_RING_QUOTA, t->ring_quota);
	ret = kmod_nl_talk(&n, nlh, NULL, NULL);
	if (ret)
		kvmmig_err("KVMMIG_NL_CMD_SET_THROTTLE on session %u: %s", session, strerror(-ret));
	kmod_nl_close(&n);
	return ret;
}

struct kmod_events {
	struct kmod_nl n;
};

int kmod_events_open(struct kmod_events **out)
{
	struct kmod_events *ev = calloc(1, sizeof(*ev));
	int ret;

	if (!ev)
		return -ENOMEM;
	ret = kmod_nl_open(&ev->n);
	if (ret) {
		free(ev);
		return ret;
	}
	if (mnl_socket_setsockopt(ev->n.sock, NETLINK_ADD_MEMBERSHIP, &ev->n.mcgrp,
				  sizeof(ev->n.mcgrp)) < 0) {
		ret = -errno;
		kvmmig_err("cannot join the %s events group: %s", KVMMIG_GENL_NAME,
			   strerror(errno));
		kmod_events_close(ev);
		return ret;
	}
	*out = ev;
	return 0;
}

static int kmod_event_cb(const struct nlmsghdr *nlh, void *data)
{
	const struct genlmsghdr *g = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *tb[KVMMIG_NL_A_MAX + 1];
	struct kmod_event *e = data;

	if (kmod_nl_parse(nlh, tb) != MNL_CB_OK)
		return MNL_CB_ERROR;
	*e = (struct kmod_event){
		.cmd = g->cmd,
		.session = kmod_u32(tb, KVMMIG_NL_A_SESSION_ID),
		.state = kmod_u32(tb, KVMMIG_NL_A_STATE),
		.vcpu = kmod_u32(tb, KVMMIG_NL_A_VCPU),
		.set = kmod_u32(tb, KVMMIG_NL_A_THROTTLE_SET),
		.cpu_throttle = kmod_u32(tb, KVMMIG_NL_A_CPU_THROTTLE),
		.ring_quota = kmod_u32(tb, KVMMIG_NL_A_RING_QUOTA),
		.dirty_limit = kmod_u64(tb, KVMMIG_NL_A_DIRTY_LIMIT),
		.dirty_rate = kmod_u64(tb, KVMMIG_NL_A_DIRTY_RATE),
	};
	return MNL_CB_STOP;
}

int kmod_events_read(struct kmod_events *ev, struct kmod_event *out, int timeout_ms)
{
	struct pollfd pfd = { .fd = mnl_socket_get_fd(ev->n.sock), .events = POLLIN };
	ssize_t len;
	int ret;

	ret = poll(&pfd, 1, timeout_ms);
	if (ret < 0)
		return -errno;
	if (!ret)
		return -ETIMEDOUT;
	len = mnl_socket_recvfrom(ev->n.sock, ev->n.buf, MNL_SOCKET_BUFFER_SIZE);
	if (len < 0)
		return -errno;
	memset(out, 0, sizeof(*out));
	ret = mnl_cb_run(ev->n.buf, len, 0, 0, kmod_event_cb, out);
	return ret < 0 ? -errno : 0;
}

void kmod_events_close(struct kmod_events *ev)
{
	if (!ev)
		return;
	kmod_nl_close(&ev->n);
	free(ev);
}

const char *kmod_event_name(uint8_t cmd)
{
	switch (cmd) {
	case KVMMIG_NL_EVENT_ATTACHED:
		return "attached";
	case KVMMIG_NL_EVENT_THROTTLE:
		return "throttle";
	case KVMMIG_NL_EVENT_OVER_LIMIT:
		return "over-limit";
	case KVMMIG_NL_EVENT_VM_GONE:
		return "vm-gone";
	case KVMMIG_NL_EVENT_DETACHED:
		return "detached";
	default:
		return "?";
	}
}

/* ---- the "module" dirty source ---- */

struct kmod_priv {
	struct kmod_session *ks;
	pthread_mutex_t lock;		/* everything below, KVM_RESET_DIRTY_RINGS */
	struct kvmmig_slot_bitmap sb[VM_MAX_SLOTS];
	unsigned long *acc[VM_MAX_SLOTS];	/* harvested, not yet collected */
	struct kvmmig_harvest_vcpu hv[VM_MAX_VCPUS];
	uint64_t vcpu_pages[VM_MAX_VCPUS];	/* since the last collection */
	bool all_dirty;
	pthread_t reaper;
	bool reaper_running;
	volatile bool reaper_stop;
};

struct kmod_session *dirty_module_session(struct dirty_source *ds)
{
	return ds->priv ? ((struct kmod_priv *)ds->priv)->ks : NULL;
}

/* One KVMMIG_HARVEST of every ring into acc[], then KVM's reset. */
static int kmod_reap_locked(struct dirty_source *ds)
{
	struct kmod_priv *p = ds->priv;
	struct vm *vm = ds->vm;
	struct kvmmig_harvest h = {
		.slots = (uintptr_t)p->sb,
		.nr_slots = vm->nr_slots,
		.vcpus = (uintptr_t)p->hv,
		.nr_vcpus = VM_MAX_VCPUS,
	};
	uint64_t t0 = dirty_now_ns();
	unsigned int i;
	int ret;

	ret = kmod_harvest(p->ks, &h);
	if (ret)
		return ret;
	for (i = 0; i < h.nr_vcpus && i < VM_MAX_VCPUS; i++)
		p->vcpu_pages[i] += p->hv[i].entries;
	ds->stats.harvested += h.harvested;
	ds->stats.reaps++;
	if (h.overflows) {
		ds->stats.overflows += h.overflows;
		p->all_dirty = true;
		kvmmig_info("a dirty ring overflowed: reporting all memory dirty");
	}
	if (h.harvested) {
		ret = ioctl(vm->fd, KVM_RESET_DIRTY_RINGS, 0);
		if (ret < 0)
			return kvmmig_ioctl_err("KVM_RESET_DIRTY_RINGS", errno);
		ds->stats.reset += ret;
	}
	ds->stats.harvest_ns += dirty_now_ns() - t0;
	return 0;
}

static void *kmod_reaper(void *arg)
{
	struct dirty_source *ds = arg;
	struct kmod_priv *p = ds->priv;
	struct timespec ts = { .tv_nsec = ds->opts.reap_interval_us * 1000L };

	while (!p->reaper_stop) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&p->lock);
		kmod_reap_locked(ds);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

static int dirty_module_ring_full(struct dirty_source *ds, unsigned int vcpu)
{
	struct kmod_priv *p = ds->priv;
	int ret;

	pthread_mutex_lock(&p->lock);
	ds->stats.ring_full_exits++;
	ret = kmod_reap_locked(ds);
	pthread_mutex_unlock(&p->lock);
	return ret;
}

static int kmod_vm_full_cb(void *opaque, unsigned int vcpu)
{
	return dirty_module_ring_full(opaque, vcpu);
}

static int dirty_module_collect(struct dirty_source *ds, struct dirty_set *out)
{
	struct kmod_priv *p = ds->priv;
	uint64_t added = 0, npages;
	unsigned int i;
	int ret;

	pthread_mutex_lock(&p->lock);
	ret = kmod_reap_locked(ds);
	if (ret)
		goto out;
	for (i = 0; i < ds->vm->nr_slots; i++) {
		npages = p->sb[i].npages;
		if (p->all_dirty)
			bitmap_fill(p->acc[i], npages);
		added += bitmap_or_count(out->bitmaps[i], p->acc[i], npages);
		bitmap_zero(p->acc[i], npages);
	}
	out->all_dirty |= p->all_dirty;
	p->all_dirty = false;
	for (i = 0; i < ds->vm->cfg.nr_vcpus && i < out->nr_vcpus; i++) {
		out->vcpu_pages[i] += p->vcpu_pages[i];
		p->vcpu_pages[i] = 0;
	}
	ret = added > INT32_MAX ? INT32_MAX : (int)added;
out:
	pthread_mutex_unlock(&p->lock);
	return ret;
}

/* The module counts every ring push in the vCPU's thread: no harvest needed. */
static int dirty_module_vcpu_counts(struct dirty_source *ds, uint64_t *counts)
{
	struct kmod_priv *p = ds->priv;
	struct kvmmig_vcpu_stats *st;
	uint32_t nr, i;
	int ret;

	ret = kmod_vcpu_stats(p->ks, &st, &nr);
	if (ret)
		return ret;
	for (i = 0; i < ds->vm->cfg.nr_vcpus; i++)
		counts[i] = i < nr ? st[i].dirty_pages : 0;
	free(st);
	return 0;
}

static void dirty_module_stop(struct dirty_source *ds)
{
	struct kmod_priv *p = ds->priv;
	unsigned int i;

	if (!p)
		return;
	if (p->reaper_running) {
		p->reaper_stop = true;
		pthread_join(p->reaper, NULL);
	}
	vm_set_ring_full_handler(ds->vm, NULL, NULL);
	pthread_mutex_lock(&p->lock);
	if (p->ks)
		kmod_reap_locked(ds);
	pthread_mutex_unlock(&p->lock);
	kmod_close(p->ks);
	for (i = 0; i < VM_MAX_SLOTS; i++)
		free(p->acc[i]);
	pthread_mutex_destroy(&p->lock);
	free(p);
	ds->priv = NULL;
}

static int dirty_module_start(struct dirty_source *ds)
{
	struct vm *vm = ds->vm;
	struct kmod_priv *p;
	unsigned int i;
	int ret;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	ds->priv = p;
	ret = kmod_attach(vm->fd, &p->ks);
	if (ret)
		goto err;
	for (i = 0; i < vm->nr_slots; i++) {
		p->sb[i].slot = vm->slots[i].id;
		p->sb[i].npages = vm->slots[i].size / GUEST_PAGE_SIZE;
		p->acc[i] = bitmap_alloc(p->sb[i].npages);
		if (!p->acc[i]) {
			ret = -ENOMEM;
			goto err;
		}
		p->sb[i].bitmap = (uintptr_t)p->acc[i];
	}
	vm_set_ring_full_handler(vm, kmod_vm_full_cb, ds);
	if (!ds->opts.no_reaper) {
		ret = pthread_create(&p->reaper, NULL, kmod_reaper, ds);
		if (ret) {
			kvmmig_err("cannot start the dirty-ring reaper: %s", strerror(ret));
			ret = -ret;
			goto err;
		}
		p->reaper_running = true;
	}
	kvmmig_info("kvmmig.ko session %u harvests the dirty rings", p->ks->id);
	return 0;
err:
	dirty_module_stop(ds);
	return ret;
}

const struct dirty_source_ops dirty_module_ops = {
	.name = "module",
	.start = dirty_module_start,
	.collect = dirty_module_collect,
	.vcpu_counts = dirty_module_vcpu_counts,
	.ring_full = dirty_module_ring_full,
	.stop = dirty_module_stop,
};
