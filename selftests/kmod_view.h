/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What kvmmig.ko itself holds for the VM of one process, read over its
 * netlink family: the sessions attached to that VM, and the dirty limit
 * and CPU throttle per vCPU of the session a given process (a kvmmig
 * command) holds.  For the tests that check that a command set its limits
 * where it should and left nothing behind when it ended
 * (converge_module_test, qemu_converge_test).
 */
#ifndef KVMMIG_KMOD_VIEW_H
#define KVMMIG_KMOD_VIEW_H

#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "module_client.h"

#define KV_MAX_VCPUS	8

/* What kvmmig.ko holds for the VM of one process, as kv_module_view() saw it. */
struct kv_seen {
	pid_t vm_pid;			/* the VMM */
	pid_t holder;			/* a kvmmig command: its session and limits */
	uint32_t session;		/* @holder's session on the VM, 0: none */
	unsigned int sessions;		/* every session on the VM */
	uint64_t limit[KV_MAX_VCPUS];	/* @holder's dirty limit per vCPU, pages/s */
	uint32_t cpu_throttle[KV_MAX_VCPUS];	/* and CPU throttle, percent */
};

static int kv_seen_session(const struct kmod_nl_session *s, void *arg)
{
	struct kv_seen *w = arg;

	if (s->vm_pid != (uint32_t)w->vm_pid)
		return 0;
	w->sessions++;
	if (s->pid == (uint32_t)w->holder)
		w->session = s->id;
	return 0;
}

static int kv_seen_stats(uint32_t session, const struct kvmmig_vcpu_stats *st, void *arg)
{
	struct kv_seen *w = arg;

	if (session == w->session && st->vcpu < KV_MAX_VCPUS) {
		w->limit[st->vcpu] = st->dirty_limit;
		w->cpu_throttle[st->vcpu] = st->cpu_throttle;
	}
	return 0;
}

/* The module's sessions on the VM of @vm_pid, and the limits of @holder's. */
static inline int kv_module_view(pid_t vm_pid, pid_t holder, struct kv_seen *w)
{
	int ret;

	memset(w, 0, sizeof(*w));
	w->vm_pid = vm_pid;
	w->holder = holder;
	ret = kmod_nl_sessions(kv_seen_session, w);
	if (!ret && w->session)
		ret = kmod_nl_stats(w->session, kv_seen_stats, w);
	return ret;
}

#endif /* KVMMIG_KMOD_VIEW_H */
