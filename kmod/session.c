// SPDX-License-Identifier: GPL-2.0-only
/*
 * Sessions: ATTACH binds a session fd to a VM, holding a reference on the
 * VM until the fd is closed, KVMMIG_DETACH is called or every other user of
 * the VM has let go ("VM gone": noticed when the last other reference goes,
 * by the release probes of vm_release.c, else by the next ioctl or window).
 * Attached sessions sit in an RCU hash table keyed by struct kvm, where the
 * probes find them; open sessions sit in an IDR by id, where netlink finds
 * them.  Lock order: kvmmig_lock, then a session's lock.  A session's
 * memory lives until its fd is closed and every throttle sleep and "VM
 * gone" check it queued has run (kref).
 */
#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/hashtable.h>
#include <linux/idr.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/task_work.h>
#include <linux/uaccess.h>

#include "kvmmig.h"

static DEFINE_MUTEX(kvmmig_lock);		/* kvmmig_table, kvmmig_idr */
static DEFINE_HASHTABLE(kvmmig_table, 6);	/* attached sessions, RCU */
static DEFINE_IDR(kvmmig_idr);			/* open sessions by id */
static atomic_t kvmmig_nr_attached = ATOMIC_INIT(0);

static const struct file_operations kvmmig_session_fops;

static void kvmmig_session_free(struct kref *ref)
{
	struct kvmmig_session *s = container_of(ref, struct kvmmig_session, ref);
	u32 i;

	for (i = 0; i < s->nr_vcpus; i++)
		kfree(s->vcpus[i]);
	kvfree(s->vcpus);
	kvmmig_harvest_scratch_free(s);
	kfree(s);
}

void kvmmig_session_put(struct kvmmig_session *s)
{
	kref_put(&s->ref, kvmmig_session_free);
}

/* Whether any session is attached: the probes' first, lock-free test. */
bool kvmmig_sessions_attached(void)
{
	return atomic_read(&kvmmig_nr_attached);
}

/* Called from the probes, inside an RCU read-side critical section. */
struct kvmmig_vcpu *kvmmig_vcpu_find(struct kvm_vcpu *vcpu)
{
	struct kvm *kvm = vcpu->kvm;
	struct kvmmig_session *s;
	int idx;

	if (!atomic_read(&kvmmig_nr_attached))
		return NULL;
	hash_for_each_possible_rcu(kvmmig_table, s, hnode, (unsigned long)kvm) {
		if (s->kvm != kvm)
			continue;
		idx = vcpu->vcpu_idx;
		if (idx < 0 || idx >= KVM_MAX_VCPUS)
			return NULL;
		/* Pairs with smp_store_release() in kvmmig_session_sync_vcpus(). */
		return smp_load_acquire(&s->vcpus[idx]);
	}
	return NULL;
}

/* Give every vCPU that came online since the last call its kvmmig_vcpu. */
static int kvmmig_session_sync_vcpus(struct kvmmig_session *s)
{
	u32 online = min_t(u32, atomic_read(&s->kvm->online_vcpus), KVM_MAX_VCPUS);
	struct kvmmig_vcpu *v;
	struct kvm_vcpu *vcpu;

	lockdep_assert_held(&s->lock);
	s->ring_entries = READ_ONCE(s->kvm->dirty_ring_size) / sizeof(struct kvm_dirty_gfn);
	while (s->nr_vcpus < online) {
		vcpu = kvm_get_vcpu(s->kvm, s->nr_vcpus);
		if (WARN_ON_ONCE(!vcpu))
			return -EIO;
		v = kzalloc(sizeof(*v), GFP_KERNEL_ACCOUNT);
		if (!v)
			return -ENOMEM;
		v->vcpu = vcpu;
		v->s = s;
		v->idx = s->nr_vcpus;
		v->vcpu_id = vcpu->vcpu_id;
		v->fetch_index = READ_ONCE(vcpu->dirty_ring.reset_index);
		v->win_start_ns = ktime_get_ns();
		kvmmig_throttle_init_vcpu(s, v);
		/* Pairs with smp_load_acquire() in kvmmig_vcpu_find(). */
		smp_store_release(&s->vcpus[s->nr_vcpus], v);
		s->nr_vcpus++;
	}
	return 0;
}

/* Only our reference is left: the VMM closed every fd of the VM. */
static bool kvmmig_vm_gone(struct kvmmig_session *s)
{
	return refcount_read(&s->kvm->users_count) == 1;
}

/*
 * Unbind a session from its VM.  Afterwards no probe can see it, quotas
 * are restored, sleeping vCPUs are woken and the VM reference is dropped.
 */
static void kvmmig_session_detach(struct kvmmig_session *s,
				  enum kvmmig_state why)
{
	struct kvm *kvm;

	mutex_lock(&kvmmig_lock);
	mutex_lock(&s->lock);
	if (s->state != KVMMIG_STATE_ATTACHED) {
		mutex_unlock(&s->lock);
		mutex_unlock(&kvmmig_lock);
		return;
	}
	s->state = why;
	hash_del_rcu(&s->hnode);
	atomic_dec(&kvmmig_nr_attached);
	mutex_unlock(&kvmmig_lock);

	/* Probes run under RCU: after this none holds a pointer into s. */
	synchronize_rcu();
	kvmmig_throttle_restore(s);
	kvm = s->kvm;
	WRITE_ONCE(s->kvm, NULL);
	mutex_unlock(&s->lock);

	wake_up_all(&s->wq);
	kvm_put_kvm(kvm);
	kvmmig_nl_session_event(s, why == KVMMIG_STATE_VM_GONE ?
				KVMMIG_NL_EVENT_VM_GONE : KVMMIG_NL_EVENT_DETACHED);
}

/*
 * Lock an attached session for an ioctl or a netlink request and bring its
 * vCPU table up to date; -ENODEV once it is detached or its VM is gone.
 */
int kvmmig_session_lock(struct kvmmig_session *s)
{
	bool gone;
	int r;

	if (mutex_lock_killable(&s->lock))
		return -EINTR;
	if (s->state == KVMMIG_STATE_ATTACHED && !kvmmig_vm_gone(s)) {
		r = kvmmig_session_sync_vcpus(s);
		if (!r)
			return 0;
		mutex_unlock(&s->lock);
		return r;
	}
	gone = s->state == KVMMIG_STATE_ATTACHED;
	mutex_unlock(&s->lock);
	if (gone)
		kvmmig_session_detach(s, KVMMIG_STATE_VM_GONE);
	return -ENODEV;
}

static unsigned long kvmmig_tick_period(void)
{
	return msecs_to_jiffies(kvmmig_window_ms);
}

/* task_work: "VM gone" in the task that dropped the last other reference. */
static void kvmmig_session_gone_work(struct callback_head *cb)
{
	struct kvmmig_session *s = container_of(cb, struct kvmmig_session, gone_twork);
	bool gone;

	clear_bit_unlock(0, &s->gone_pending);
	mutex_lock(&s->lock);
	gone = s->state == KVMMIG_STATE_ATTACHED && kvmmig_vm_gone(s);
	mutex_unlock(&s->lock);
	if (gone)
		kvmmig_session_detach(s, KVMMIG_STATE_VM_GONE);
	kvmmig_session_put(s);
	module_put(THIS_MODULE);
}

/*
 * Detach @s, whose VM only the session holds now, before the current task
 * returns to userspace: the VMM that closed its VM must find it destroyed
 * when it creates the next one (KVM names the VM's debugfs folder after
 * the VMM's pid and the VM fd's number, which the next VM reuses).  Called
 * in atomic context from a release probe, under RCU with @s in the table,
 * so the session's file still holds a reference on it.  A kernel thread
 * (a delayed fput) never returns to userspace: the tick runs at once.
 */
static void kvmmig_session_gone_soon(struct kvmmig_session *s)
{
	if (test_and_set_bit_lock(0, &s->gone_pending))
		return;
	if (!(current->flags & PF_KTHREAD) && try_module_get(THIS_MODULE)) {
		kref_get(&s->ref);
		init_task_work(&s->gone_twork, kvmmig_session_gone_work);
		if (!task_work_add(current, &s->gone_twork, TWA_RESUME))
			return;
		/* Past exit_task_work(): the file still holds the session. */
		kvmmig_session_put(s);
		module_put(THIS_MODULE);
	}
	clear_bit_unlock(0, &s->gone_pending);
	mod_delayed_work(system_unbound_wq, &s->tick, 0);
}

/* A reference on @kvm was just dropped (release probes, atomic context). */
void kvmmig_vm_put_seen(struct kvm *kvm)
{
	struct kvmmig_session *s;

	rcu_read_lock();
	hash_for_each_possible_rcu(kvmmig_table, s, hnode, (unsigned long)kvm) {
		/* Found under RCU: detach has not dropped the reference yet. */
		if (READ_ONCE(s->kvm) != kvm)
			continue;
		if (refcount_read(&kvm->users_count) == 1)
			kvmmig_session_gone_soon(s);
		break;
	}
	rcu_read_unlock();
}

/* Every window: rates, over-limit events, new vCPUs, and "VM gone". */
static void kvmmig_session_tick(struct work_struct *work)
{
	struct kvmmig_session *s = container_of(to_delayed_work(work),
						struct kvmmig_session, tick);
	bool gone;

	mutex_lock(&s->lock);
	if (s->state != KVMMIG_STATE_ATTACHED) {
		mutex_unlock(&s->lock);
		return;
	}
	gone = kvmmig_vm_gone(s);
	if (!gone) {
		kvmmig_session_sync_vcpus(s);
		kvmmig_window_update(s, ktime_get_ns());
		queue_delayed_work(system_unbound_wq, &s->tick,
				   kvmmig_tick_period());
	}
	mutex_unlock(&s->lock);
	if (gone)
		kvmmig_session_detach(s, KVMMIG_STATE_VM_GONE);
}

static struct kvmmig_session *kvmmig_session_alloc(struct kvm *kvm)
{
	struct kvmmig_session *s;

	s = kzalloc(sizeof(*s), GFP_KERNEL_ACCOUNT);
	if (!s)
		return NULL;
	s->vcpus = kvcalloc(KVM_MAX_VCPUS, sizeof(*s->vcpus), GFP_KERNEL_ACCOUNT);
	if (!s->vcpus) {
		kfree(s);
		return NULL;
	}
	kref_init(&s->ref);
	mutex_init(&s->lock);
	init_waitqueue_head(&s->wq);
	INIT_DELAYED_WORK(&s->tick, kvmmig_session_tick);
	INIT_HLIST_NODE(&s->hnode);
	s->state = KVMMIG_STATE_ATTACHED;
	s->kvm = kvm;
	s->pid = task_tgid_nr(current);
	s->vm_pid = kvm->userspace_pid;
	s->window_ns = (u64)kvmmig_window_ms * NSEC_PER_MSEC;
	return s;
}

/* Make the session visible to probes and netlink; one per VM. */
static int kvmmig_session_publish(struct kvmmig_session *s)
{
	unsigned long key = (unsigned long)s->kvm;
	struct kvmmig_session *other;
	int id, r = 0;

	mutex_lock(&kvmmig_lock);
	hash_for_each_possible(kvmmig_table, other, hnode, key) {
		if (other->kvm == s->kvm) {
			r = -EBUSY;
			goto out;
		}
	}
	id = idr_alloc(&kvmmig_idr, s, 1, KVMMIG_MAX_SESSIONS + 1, GFP_KERNEL);
	if (id < 0) {
		r = id;
		goto out;
	}
	s->id = id;
	hash_add_rcu(kvmmig_table, &s->hnode, key);
	atomic_inc(&kvmmig_nr_attached);
out:
	mutex_unlock(&kvmmig_lock);
	return r;
}

/* The end of a session that was published: its fd is gone (or never was). */
static void kvmmig_session_close(struct kvmmig_session *s)
{
	enum kvmmig_state old;

	kvmmig_session_detach(s, KVMMIG_STATE_DETACHED);
	cancel_delayed_work_sync(&s->tick);
	/* A session whose VM went still ends with one DETACHED event. */
	mutex_lock(&s->lock);
	old = s->state;
	s->state = KVMMIG_STATE_DETACHED;
	mutex_unlock(&s->lock);
	if (old == KVMMIG_STATE_VM_GONE)
		kvmmig_nl_session_event(s, KVMMIG_NL_EVENT_DETACHED);
	mutex_lock(&kvmmig_lock);
	idr_remove(&kvmmig_idr, s->id);
	mutex_unlock(&kvmmig_lock);
	kvmmig_session_put(s);
}

static int kvmmig_attach_check(const struct kvmmig_attach *a)
{
	if (a->flags || a->pad || memchr_inv(a->reserved, 0, sizeof(a->reserved)))
		return -EINVAL;
	return 0;
}

/* A new session on the VM, not yet published; takes a VM reference. */
static struct kvmmig_session *kvmmig_session_new(struct file *vm_file)
{
	struct kvm *kvm = vm_file->private_data;
	struct kvmmig_session *s;
	int r;

	s = kvmmig_session_alloc(kvm);
	if (!s)
		return ERR_PTR(-ENOMEM);
	/* The VM file we hold keeps users_count above zero. */
	kvm_get_kvm(kvm);
	mutex_lock(&s->lock);
	r = kvmmig_session_sync_vcpus(s);
	mutex_unlock(&s->lock);
	if (!r)
		r = kvmmig_session_publish(s);
	if (r) {
		kvm_put_kvm(kvm);
		kvmmig_session_put(s);
		return ERR_PTR(r);
	}
	return s;
}

long kvmmig_attach(struct kvmmig_attach __user *uattach)
{
	struct kvmmig_session *s;
	struct kvmmig_attach a;
	struct file *vm_file, *file;
	int fd, r;

	if (copy_from_user(&a, uattach, sizeof(a)))
		return -EFAULT;
	r = kvmmig_attach_check(&a);
	if (r)
		return r;
	vm_file = fget(a.vm_fd);
	if (!vm_file)
		return -EBADF;
	if (!file_is_kvm(vm_file)) {
		fput(vm_file);
		return -EINVAL;
	}
	s = kvmmig_session_new(vm_file);
	fput(vm_file);
	if (IS_ERR(s))
		return PTR_ERR(s);

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		r = fd;
		goto err_close;
	}
	file = anon_inode_getfile("kvmmig-session", &kvmmig_session_fops, s, O_RDWR);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		r = PTR_ERR(file);
		goto err_close;
	}
	a.session_id = s->id;
	if (copy_to_user(uattach, &a, sizeof(a))) {
		put_unused_fd(fd);
		fput(file);	/* release() closes the session */
		return -EFAULT;
	}
	queue_delayed_work(system_unbound_wq, &s->tick, kvmmig_tick_period());
	kvmmig_nl_session_event(s, KVMMIG_NL_EVENT_ATTACHED);
	fd_install(fd, file);
	return fd;

err_close:
	kvmmig_session_close(s);
	return r;
}

static int kvmmig_session_release(struct inode *inode, struct file *file)
{
	kvmmig_session_close(file->private_data);
	return 0;
}

/* Find an open session by id and take a reference on it. */
struct kvmmig_session *kvmmig_session_find(u32 id)
{
	struct kvmmig_session *s;

	mutex_lock(&kvmmig_lock);
	s = idr_find(&kvmmig_idr, id);
	if (s)
		kref_get(&s->ref);
	mutex_unlock(&kvmmig_lock);
	return s;
}

/* Call fn on each open session with id >= start, in id order, until it fails. */
int kvmmig_for_each_session(int (*fn)(struct kvmmig_session *s, void *arg),
			    u32 start, void *arg)
{
	struct kvmmig_session *s;
	int id = start, r = 0;

	mutex_lock(&kvmmig_lock);
	while (!r && (s = idr_get_next(&kvmmig_idr, &id))) {
		r = fn(s, arg);
		id++;
	}
	mutex_unlock(&kvmmig_lock);
	return r;
}

static int kvmmig_memslot_cmp(const void *a, const void *b)
{
	const struct kvmmig_memslot *x = a, *y = b;

	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* The VM's user memslots, sorted by slot; kvfree() the result. */
static int kvmmig_memslots_get(struct kvm *kvm, struct kvmmig_memslot **out,
			       u32 *nr)
{
	struct kvm_memory_slot *ms;
	struct kvmmig_memslot *arr;
	int as, bkt, idx;
	u32 n = 0;

	idx = srcu_read_lock(&kvm->srcu);
	for (as = 0; as < kvmmig_nr_as_ids(kvm); as++)
		kvm_for_each_memslot(ms, bkt, __kvm_memslots(kvm, as))
			n += ms->id < KVM_USER_MEM_SLOTS;
	arr = kvcalloc(max_t(u32, n, 1), sizeof(*arr), GFP_KERNEL_ACCOUNT);
	if (!arr) {
		srcu_read_unlock(&kvm->srcu, idx);
		return -ENOMEM;
	}
	n = 0;
	for (as = 0; as < kvmmig_nr_as_ids(kvm); as++) {
		kvm_for_each_memslot(ms, bkt, __kvm_memslots(kvm, as)) {
			if (ms->id >= KVM_USER_MEM_SLOTS)
				continue;
			arr[n].slot = (u32)as << 16 | ms->id;
			arr[n].kvm_flags = ms->flags;
			arr[n].base_gfn = ms->base_gfn;
			arr[n].npages = ms->npages;
			n++;
		}
	}
	srcu_read_unlock(&kvm->srcu, idx);
	sort(arr, n, sizeof(*arr), kvmmig_memslot_cmp, NULL);
	*out = arr;
	*nr = n;
	return 0;
}

static int kvmmig_info_check(const struct kvmmig_info *in)
{
	if (in->flags || memchr_inv(in->reserved, 0, sizeof(in->reserved)))
		return -EINVAL;
	if (in->nr_slots > KVMMIG_MAX_SLOTS)
		return -E2BIG;
	return 0;
}

static long kvmmig_info(struct kvmmig_session *s, struct kvmmig_info __user *ui)
{
	struct kvmmig_memslot *slots = NULL;
	struct kvmmig_info in, out;
	struct kvm *kvm;
	u32 n = 0;
	int r;

	if (copy_from_user(&in, ui, sizeof(in)))
		return -EFAULT;
	r = kvmmig_info_check(&in);
	if (r)
		return r;
	r = kvmmig_session_lock(s);
	if (r)
		return r;
	kvm = s->kvm;
	r = kvmmig_memslots_get(kvm, &slots, &n);
	if (r)
		goto out_unlock;

	memset(&out, 0, sizeof(out));
	out.slots = in.slots;
	out.nr_slots = n;
	out.nr_vcpus = s->nr_vcpus;
	out.max_vcpus = kvm->max_vcpus;
	out.ring_entries = s->ring_entries;
	if (s->nr_vcpus)
		out.ring_soft_limit = s->vcpus[0]->saved_soft_limit ?:
			READ_ONCE(s->vcpus[0]->vcpu->dirty_ring.soft_limit);
	out.session_id = s->id;
	out.window_ns = s->window_ns;
	out.vm_pid = s->vm_pid;

	if (n > in.nr_slots)
		r = -ENOSPC;
	else if (n && copy_to_user(u64_to_user_ptr(in.slots), slots,
				   n * sizeof(*slots)))
		r = -EFAULT;
out_unlock:
	mutex_unlock(&s->lock);
	kvfree(slots);
	if ((!r || r == -ENOSPC) && copy_to_user(ui, &out, sizeof(out)))
		r = -EFAULT;
	return r;
}

static long kvmmig_throttle_ioctl(struct kvmmig_session *s, unsigned int cmd,
				  struct kvmmig_throttle __user *ut)
{
	struct kvmmig_throttle t;
	int r;

	if (copy_from_user(&t, ut, sizeof(t)))
		return -EFAULT;
	if (cmd == KVMMIG_GET_THROTTLE) {
		if (t.set || t.dirty_limit || t.cpu_throttle || t.ring_quota ||
		    t.flags || t.pad || memchr_inv(t.reserved, 0, sizeof(t.reserved)) ||
		    t.vcpu == KVMMIG_VCPU_ALL)
			return -EINVAL;
	} else {
		r = kvmmig_throttle_check(NULL, &t);
		if (r)
			return r;
	}
	r = kvmmig_session_lock(s);
	if (r)
		return r;
	if (cmd == KVMMIG_SET_THROTTLE)
		r = kvmmig_throttle_set(s, &t);
	else if (t.vcpu >= s->nr_vcpus)
		r = -ENOENT;
	else
		kvmmig_throttle_get(s->vcpus[t.vcpu], &t);
	mutex_unlock(&s->lock);
	if (r)
		return r;
	if (cmd == KVMMIG_SET_THROTTLE) {
		kvmmig_nl_throttle_event(s, &t);
		return 0;
	}
	return copy_to_user(ut, &t, sizeof(t)) ? -EFAULT : 0;
}

static long kvmmig_detach_ioctl(struct kvmmig_session *s, unsigned long arg)
{
	if (arg)
		return -EINVAL;
	mutex_lock(&s->lock);
	if (s->state == KVMMIG_STATE_DETACHED) {
		mutex_unlock(&s->lock);
		return -ENODEV;
	}
	if (s->state == KVMMIG_STATE_VM_GONE) {
		s->state = KVMMIG_STATE_DETACHED;
		mutex_unlock(&s->lock);
		kvmmig_nl_session_event(s, KVMMIG_NL_EVENT_DETACHED);
		return 0;
	}
	mutex_unlock(&s->lock);
	kvmmig_session_detach(s, KVMMIG_STATE_DETACHED);
	return 0;
}

static long kvmmig_session_ioctl(struct file *file, unsigned int cmd,
				 unsigned long arg)
{
	struct kvmmig_session *s = file->private_data;
	void __user *argp = (void __user *)arg;

	switch (cmd) {
	case KVMMIG_INFO:
		return kvmmig_info(s, argp);
	case KVMMIG_HARVEST:
		return kvmmig_harvest(s, argp);
	case KVMMIG_VCPU_STATS:
		return kvmmig_vcpu_stats(s, argp);
	case KVMMIG_SET_THROTTLE:
	case KVMMIG_GET_THROTTLE:
		return kvmmig_throttle_ioctl(s, cmd, argp);
	case KVMMIG_DETACH:
		return kvmmig_detach_ioctl(s, arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations kvmmig_session_fops = {
	.owner		= THIS_MODULE,
	.release	= kvmmig_session_release,
	.unlocked_ioctl	= kvmmig_session_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};
