// SPDX-License-Identifier: GPL-2.0-only
/*
 * libkvmmig's generic netlink client of kvmmig.ko (libmnl): resolve the
 * family and its event group, list the sessions other processes hold, read
 * a session's per-vCPU statistics, set a throttle in it, and follow the
 * module's events.  This reaches sessions by id from any process, where the
 * ioctls (module_session.c) need the session fd.
 */
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "module_client.h"
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
