// SPDX-License-Identifier: GPL-2.0-only
/*
 * The generic netlink family "kvmmig": list sessions, dump per-vCPU
 * statistics and set throttles by session id (for tools that do not hold
 * the session fd), and multicast events (attached, throttle changed, vCPU
 * over its dirty limit, VM gone, detached).  Everything needs CAP_NET_ADMIN
 * in the initial network namespace, like /dev/kvmmig needs root.  Events
 * are sent from process context only (ioctls, the session tick, detach):
 * never from a probe.
 */
#include <net/genetlink.h>

#include "kvmmig.h"

static const struct nla_policy kvmmig_nl_policy[KVMMIG_NL_A_MAX + 1] = {
	[KVMMIG_NL_A_SESSION_ID]	= { .type = NLA_U32 },
	[KVMMIG_NL_A_VCPU]		= { .type = NLA_U32 },
	[KVMMIG_NL_A_THROTTLE_SET]	= NLA_POLICY_MASK(NLA_U32, KVMMIG_THROTTLE_ALL),
	[KVMMIG_NL_A_DIRTY_LIMIT]	= { .type = NLA_U64 },
	[KVMMIG_NL_A_CPU_THROTTLE]	= NLA_POLICY_MAX(NLA_U32, KVMMIG_CPU_THROTTLE_MAX),
	[KVMMIG_NL_A_RING_QUOTA]	= { .type = NLA_U32 },
};

static struct genl_family kvmmig_nl_family;

static int kvmmig_nl_put_session(struct sk_buff *skb, struct kvmmig_session *s)
{
	if (nla_put_u32(skb, KVMMIG_NL_A_SESSION_ID, s->id) ||
	    nla_put_u32(skb, KVMMIG_NL_A_STATE, s->state) ||
	    nla_put_u32(skb, KVMMIG_NL_A_PID, s->pid) ||
	    nla_put_u32(skb, KVMMIG_NL_A_VM_PID, s->vm_pid) ||
	    nla_put_u32(skb, KVMMIG_NL_A_NR_VCPUS, s->nr_vcpus) ||
	    nla_put_u32(skb, KVMMIG_NL_A_RING_ENTRIES, s->ring_entries) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_WINDOW_NS, s->window_ns, KVMMIG_NL_A_PAD))
		return -EMSGSIZE;
	return 0;
}

static int kvmmig_nl_put_stats(struct sk_buff *skb, struct kvmmig_session *s,
			       struct kvmmig_vcpu *v)
{
	struct kvmmig_vcpu_stats st;

	kvmmig_vcpu_stats_fill(v, &st);
	if (nla_put_u32(skb, KVMMIG_NL_A_SESSION_ID, s->id) ||
	    nla_put_u32(skb, KVMMIG_NL_A_VCPU, st.vcpu) ||
	    nla_put_u32(skb, KVMMIG_NL_A_VCPU_ID, st.vcpu_id) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_DIRTY_PAGES, st.dirty_pages, KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_DIRTY_RATE, st.dirty_rate, KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_RUN_NS, st.run_ns, KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_THROTTLE_NS, st.throttle_ns, KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_THROTTLE_SLEEPS, st.throttle_sleeps,
			      KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_RING_FULL_EXITS, st.ring_full_exits,
			      KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_EXITS, st.exits, KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_DIRTY_LIMIT, st.dirty_limit, KVMMIG_NL_A_PAD) ||
	    nla_put_u32(skb, KVMMIG_NL_A_CPU_THROTTLE, st.cpu_throttle) ||
	    nla_put_u32(skb, KVMMIG_NL_A_RING_QUOTA, st.ring_quota) ||
	    nla_put_u32(skb, KVMMIG_NL_A_VCPU_FLAGS, st.flags) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_WINDOW_NS, s->window_ns, KVMMIG_NL_A_PAD))
		return -EMSGSIZE;
	return 0;
}

static int kvmmig_nl_put_throttle(struct sk_buff *skb, struct kvmmig_session *s,
				  const struct kvmmig_throttle *t)
{
	if (nla_put_u32(skb, KVMMIG_NL_A_SESSION_ID, s->id) ||
	    nla_put_u32(skb, KVMMIG_NL_A_VCPU, t->vcpu) ||
	    nla_put_u32(skb, KVMMIG_NL_A_THROTTLE_SET, t->set) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_DIRTY_LIMIT, t->dirty_limit, KVMMIG_NL_A_PAD) ||
	    nla_put_u32(skb, KVMMIG_NL_A_CPU_THROTTLE, t->cpu_throttle) ||
	    nla_put_u32(skb, KVMMIG_NL_A_RING_QUOTA, t->ring_quota))
		return -EMSGSIZE;
	return 0;
}

static int kvmmig_nl_put_over_limit(struct sk_buff *skb, struct kvmmig_session *s,
				    struct kvmmig_vcpu *v)
{
	if (nla_put_u32(skb, KVMMIG_NL_A_SESSION_ID, s->id) ||
	    nla_put_u32(skb, KVMMIG_NL_A_VCPU, v->idx) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_DIRTY_RATE, v->rate, KVMMIG_NL_A_PAD) ||
	    nla_put_u64_64bit(skb, KVMMIG_NL_A_DIRTY_LIMIT, v->dirty_limit, KVMMIG_NL_A_PAD))
		return -EMSGSIZE;
	return 0;
}

/* A new event message, or NULL when nobody listens (or no memory). */
static struct sk_buff *kvmmig_nl_event_new(u8 cmd, void **hdr)
{
	struct sk_buff *skb;

	if (!genl_has_listeners(&kvmmig_nl_family, &init_net, 0))
		return NULL;
	skb = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!skb)
		return NULL;
	*hdr = genlmsg_put(skb, 0, 0, &kvmmig_nl_family, 0, cmd);
	if (!*hdr) {
		nlmsg_free(skb);
		return NULL;
	}
	return skb;
}

static void kvmmig_nl_event_send(struct sk_buff *skb, void *hdr, int r)
{
	if (r) {
		nlmsg_free(skb);
		return;
	}
	genlmsg_end(skb, hdr);
	genlmsg_multicast(&kvmmig_nl_family, skb, 0, 0, GFP_KERNEL);
}

void kvmmig_nl_session_event(struct kvmmig_session *s, u8 cmd)
{
	struct sk_buff *skb;
	void *hdr;

	skb = kvmmig_nl_event_new(cmd, &hdr);
	if (skb)
		kvmmig_nl_event_send(skb, hdr, kvmmig_nl_put_session(skb, s));
}

void kvmmig_nl_throttle_event(struct kvmmig_session *s, const struct kvmmig_throttle *t)
{
	struct sk_buff *skb;
	void *hdr;

	skb = kvmmig_nl_event_new(KVMMIG_NL_EVENT_THROTTLE, &hdr);
	if (skb)
		kvmmig_nl_event_send(skb, hdr, kvmmig_nl_put_throttle(skb, s, t));
}

void kvmmig_nl_over_limit_event(struct kvmmig_session *s, struct kvmmig_vcpu *v)
{
	struct sk_buff *skb;
	void *hdr;

	skb = kvmmig_nl_event_new(KVMMIG_NL_EVENT_OVER_LIMIT, &hdr);
	if (skb)
		kvmmig_nl_event_send(skb, hdr, kvmmig_nl_put_over_limit(skb, s, v));
}

static int kvmmig_nl_get_session(struct sk_buff *skb, struct genl_info *info)
{
	struct kvmmig_session *s;
	struct sk_buff *msg;
	void *hdr;
	int r;

	if (GENL_REQ_ATTR_CHECK(info, KVMMIG_NL_A_SESSION_ID))
		return -EINVAL;
	s = kvmmig_session_find(nla_get_u32(info->attrs[KVMMIG_NL_A_SESSION_ID]));
	if (!s) {
		NL_SET_ERR_MSG_ATTR(info->extack, info->attrs[KVMMIG_NL_A_SESSION_ID],
				    "no such session");
		return -ENOENT;
	}
	r = -ENOMEM;
	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg)
		goto out;
	hdr = genlmsg_put_reply(msg, info, &kvmmig_nl_family, 0,
				KVMMIG_NL_CMD_GET_SESSION);
	mutex_lock(&s->lock);
	r = hdr ? kvmmig_nl_put_session(msg, s) : -EMSGSIZE;
	mutex_unlock(&s->lock);
	if (r) {
		nlmsg_free(msg);
		goto out;
	}
	genlmsg_end(msg, hdr);
	r = genlmsg_reply(msg, info);
out:
	kvmmig_session_put(s);
	return r;
}

struct kvmmig_nl_dump {
	struct sk_buff *skb;
	struct netlink_callback *cb;
	u32 filter;			/* session id, 0: all */
};

static void *kvmmig_nl_dump_hdr(struct kvmmig_nl_dump *d, u8 cmd)
{
	return genlmsg_put(d->skb, NETLINK_CB(d->cb->skb).portid,
			   d->cb->nlh->nlmsg_seq, &kvmmig_nl_family, NLM_F_MULTI, cmd);
}

/* cb->args[0]: next session id. */
static int kvmmig_nl_dump_session_one(struct kvmmig_session *s, void *arg)
{
	struct kvmmig_nl_dump *d = arg;
	void *hdr;
	int r;

	hdr = kvmmig_nl_dump_hdr(d, KVMMIG_NL_CMD_GET_SESSION);
	if (!hdr)
		return -EMSGSIZE;
	mutex_lock(&s->lock);
	r = kvmmig_nl_put_session(d->skb, s);
	mutex_unlock(&s->lock);
	if (r) {
		genlmsg_cancel(d->skb, hdr);
		return r;
	}
	genlmsg_end(d->skb, hdr);
	d->cb->args[0] = s->id + 1;
	return 0;
}

static int kvmmig_nl_dump_sessions(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct kvmmig_nl_dump d = { .skb = skb, .cb = cb };
	int r;

	r = kvmmig_for_each_session(kvmmig_nl_dump_session_one, cb->args[0], &d);
	if (r && r != -EMSGSIZE)
		return r;
	return skb->len;
}

/* cb->args[0]: session id, cb->args[1]: next vCPU in it. */
static int kvmmig_nl_dump_stats_one(struct kvmmig_session *s, void *arg)
{
	struct kvmmig_nl_dump *d = arg;
	struct netlink_callback *cb = d->cb;
	void *hdr;
	int r = 0;
	u32 i;

	if (d->filter && s->id != d->filter)
		return 0;
	if (cb->args[0] != s->id) {
		cb->args[0] = s->id;
		cb->args[1] = 0;
	}
	mutex_lock(&s->lock);
	for (i = cb->args[1]; i < s->nr_vcpus; i++) {
		hdr = kvmmig_nl_dump_hdr(d, KVMMIG_NL_CMD_GET_STATS);
		if (!hdr) {
			r = -EMSGSIZE;
			break;
		}
		r = kvmmig_nl_put_stats(d->skb, s, s->vcpus[i]);
		if (r) {
			genlmsg_cancel(d->skb, hdr);
			break;
		}
		genlmsg_end(d->skb, hdr);
		cb->args[1] = i + 1;
	}
	mutex_unlock(&s->lock);
	if (r)
		return r;
	cb->args[0] = s->id + 1;
	cb->args[1] = 0;
	return 0;
}

static int kvmmig_nl_dump_stats(struct sk_buff *skb, struct netlink_callback *cb)
{
	struct nlattr *id = kvmmig_dump_attrs(cb)[KVMMIG_NL_A_SESSION_ID];
	struct kvmmig_nl_dump d = {
		.skb = skb,
		.cb = cb,
		.filter = id ? nla_get_u32(id) : 0,
	};
	int r;

	r = kvmmig_for_each_session(kvmmig_nl_dump_stats_one, cb->args[0], &d);
	if (r && r != -EMSGSIZE)
		return r;
	return skb->len;
}

static int kvmmig_nl_set_throttle(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr **a = info->attrs;
	struct kvmmig_throttle t = {};
	struct kvmmig_session *s;
	int r;

	if (GENL_REQ_ATTR_CHECK(info, KVMMIG_NL_A_SESSION_ID) ||
	    GENL_REQ_ATTR_CHECK(info, KVMMIG_NL_A_VCPU) ||
	    GENL_REQ_ATTR_CHECK(info, KVMMIG_NL_A_THROTTLE_SET))
		return -EINVAL;
	t.vcpu = nla_get_u32(a[KVMMIG_NL_A_VCPU]);
	t.set = nla_get_u32(a[KVMMIG_NL_A_THROTTLE_SET]);
	if (a[KVMMIG_NL_A_DIRTY_LIMIT])
		t.dirty_limit = nla_get_u64(a[KVMMIG_NL_A_DIRTY_LIMIT]);
	if (a[KVMMIG_NL_A_CPU_THROTTLE])
		t.cpu_throttle = nla_get_u32(a[KVMMIG_NL_A_CPU_THROTTLE]);
	if (a[KVMMIG_NL_A_RING_QUOTA])
		t.ring_quota = nla_get_u32(a[KVMMIG_NL_A_RING_QUOTA]);
	r = kvmmig_throttle_check(NULL, &t);
	if (r) {
		NL_SET_ERR_MSG(info->extack,
			       "invalid throttle: a value not named by THROTTLE_SET, or out of range");
		return r;
	}
	s = kvmmig_session_find(nla_get_u32(a[KVMMIG_NL_A_SESSION_ID]));
	if (!s) {
		NL_SET_ERR_MSG_ATTR(info->extack, a[KVMMIG_NL_A_SESSION_ID], "no such session");
		return -ENOENT;
	}
	r = kvmmig_session_lock(s);
	if (!r) {
		r = kvmmig_throttle_set(s, &t);
		mutex_unlock(&s->lock);
	}
	if (!r)
		kvmmig_nl_throttle_event(s, &t);
	kvmmig_session_put(s);
	return r;
}

static const struct genl_small_ops kvmmig_nl_ops[] = {
	{
		.cmd	= KVMMIG_NL_CMD_GET_SESSION,
		.flags	= GENL_ADMIN_PERM,
		.doit	= kvmmig_nl_get_session,
		.dumpit	= kvmmig_nl_dump_sessions,
	},
	{
		.cmd	= KVMMIG_NL_CMD_GET_STATS,
		.flags	= GENL_ADMIN_PERM,
		.dumpit	= kvmmig_nl_dump_stats,
	},
	{
		.cmd	= KVMMIG_NL_CMD_SET_THROTTLE,
		.flags	= GENL_ADMIN_PERM,
		.doit	= kvmmig_nl_set_throttle,
	},
};

static const struct genl_multicast_group kvmmig_nl_mcgrps[] = {
	{ .name = KVMMIG_GENL_MCGRP_EVENTS, .flags = GENL_ADMIN_PERM },
};

static struct genl_family kvmmig_nl_family __ro_after_init = {
	.name		= KVMMIG_GENL_NAME,
	.version	= KVMMIG_GENL_VERSION,
	.maxattr	= KVMMIG_NL_A_MAX,
	.policy		= kvmmig_nl_policy,
	.module		= THIS_MODULE,
	.parallel_ops	= true,
	.small_ops	= kvmmig_nl_ops,
	.n_small_ops	= ARRAY_SIZE(kvmmig_nl_ops),
	.mcgrps		= kvmmig_nl_mcgrps,
	.n_mcgrps	= ARRAY_SIZE(kvmmig_nl_mcgrps),
};

int kvmmig_nl_register(void)
{
	return genl_register_family(&kvmmig_nl_family);
}

void kvmmig_nl_unregister(void)
{
	genl_unregister_family(&kvmmig_nl_family);
}
