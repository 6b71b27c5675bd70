/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * libkvmmig's side of kvmmig.ko (Documentation/kvmmig-api.rst): attach a
 * session to a VM fd, or to a running VMM's VM found by pid; read the VM's
 * description and per-vCPU statistics; harvest every dirty ring in one call;
 * set throttles.  The generic netlink family reaches sessions that other
 * processes hold (list, statistics, throttle, events).  The ioctls are in
 * module_session.c, netlink in module_netlink.c, and the "module" dirty
 * source (dirty_module_ops) in dirty_module.c.  Functions return 0 or a
 * negative errno and describe failures with kvmmig_err().
 */
#ifndef KVMMIG_MODULE_CLIENT_H
#define KVMMIG_MODULE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/kvmmig.h>

struct dirty_source;

struct kmod_session {
	int fd;				/* the session fd */
	uint32_t id;
	struct kvmmig_info info;	/* as of the last kmod_refresh() */
	struct kvmmig_memslot *slots;	/* info.nr_slots entries */
};

/* /dev/kvmmig is there and speaks KVMMIG_API_VERSION; else why not. */
bool kmod_present(const char **why);
/* KVMMIG_CHECK_EXTENSION: >= 0, or a negative errno without the module. */
int kmod_check_extension(unsigned int cap);
/* Does the module keep a dirty limit on @ks's VM (from its ring, or its bitmap without one)? */
bool kmod_session_has_dirty_limit(const struct kmod_session *ks);

int kmod_attach(int vm_fd, struct kmod_session **out);
/* KVMMIG_INFO again (vCPUs and memslots change). */
int kmod_refresh(struct kmod_session *ks);
/* Close the session (detaches it) and free it. */
void kmod_close(struct kmod_session *ks);

int kmod_harvest(struct kmod_session *ks, struct kvmmig_harvest *h);
/* Statistics of every vCPU; *st is malloc'ed, *nr its entries. */
int kmod_vcpu_stats(struct kmod_session *ks, struct kvmmig_vcpu_stats **st,
		    uint32_t *nr);
int kmod_set_throttle(struct kmod_session *ks, const struct kvmmig_throttle *t);
int kmod_get_throttle(struct kmod_session *ks, uint32_t vcpu,
		      struct kvmmig_throttle *t);

/*
 * A running VMM's VM: the fd of /proc/PID/fd that is anon_inode:kvm-vm
 * (several fds of one VM count as one; of two VMs, -EEXIST), duplicated
 * into this process with pidfd_getfd() (needs ptrace rights).
 */
int kmod_take_vm_fd(pid_t pid, int *vm_fd);

/* Generic netlink: sessions held by any process. */
struct kmod_nl_session {
	uint32_t id;
	uint32_t state;			/* KVMMIG_STATE_* */
	uint32_t pid;
	uint32_t vm_pid;
	uint32_t nr_vcpus;
	uint32_t ring_entries;
	uint64_t window_ns;
};

typedef int (*kmod_session_fn)(const struct kmod_nl_session *s, void *arg);
typedef int (*kmod_stats_fn)(uint32_t session, const struct kvmmig_vcpu_stats *st,
			     void *arg);

int kmod_nl_sessions(kmod_session_fn fn, void *arg);
/* Per-vCPU statistics of one session, or of all with session 0. */
int kmod_nl_stats(uint32_t session, kmod_stats_fn fn, void *arg);
int kmod_nl_set_throttle(uint32_t session, const struct kvmmig_throttle *t);

struct kmod_event {
	uint8_t cmd;			/* KVMMIG_NL_EVENT_* */
	uint32_t session;
	uint32_t state;
	uint32_t vcpu;
	uint32_t set;
	uint32_t cpu_throttle;
	uint32_t ring_quota;
	uint64_t dirty_limit;
	uint64_t dirty_rate;
};

struct kmod_events;

int kmod_events_open(struct kmod_events **out);
/* Next event; -ETIMEDOUT after timeout_ms (-1: wait forever). */
int kmod_events_read(struct kmod_events *ev, struct kmod_event *out, int timeout_ms);
void kmod_events_close(struct kmod_events *ev);
const char *kmod_event_name(uint8_t cmd);

/* The session behind a "module" dirty source (its throttle backend). */
struct kmod_session *dirty_module_session(struct dirty_source *ds);

#endif /* KVMMIG_MODULE_CLIENT_H */
