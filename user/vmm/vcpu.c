// SPDX-License-Identifier: GPL-2.0-only
/*
 * vCPU threads of the built-in VMM: one thread per vCPU loops on KVM_RUN and
 * handles what the guest asks for (ucalls over port I/O), dirty-ring-full
 * exits (handed to the dirty source) and everything unexpected (reported
 * with the exit reason, the vCPU marked failed).  Pause and resume kick a
 * vCPU out of KVM_RUN with kvm_run->immediate_exit plus a signal, the
 * race-free pair: the flag covers a thread about to enter, the signal one
 * already inside.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "vm.h"
#include "vm_internal.h"

#define VCPU_KICK_SIGNAL	SIGUSR1

static void vcpu_kick_handler(int sig)
{
}

static void vcpu_set_state(struct vcpu *vcpu, enum vcpu_state st)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->lock);
	store_release(&vcpu->state, st);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static void vcpu_fail(struct vcpu *vcpu, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void vcpu_fail(struct vcpu *vcpu, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vcpu->error, sizeof(vcpu->error), fmt, ap);
	va_end(ap);
	kvmmig_err("vCPU %u: %s", vcpu->id, vcpu->error);
	vcpu_set_state(vcpu, VCPU_FAILED);
}

#define VCPU_IDLE_TICK_NS	10000000L	/* a 100 Hz guest timer */

/*
 * The guest is idle: park the thread for a tick, as a halted vCPU would
 * sleep until its next interrupt, but wake at once for a pause, a stop or
 * the end of the run (the requests broadcast vm->cond).
 */
static void vcpu_idle_wait(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	struct timespec deadline = deadline_in_ns(CLOCK_REALTIME, VCPU_IDLE_TICK_NS);

	pthread_mutex_lock(&vm->lock);
	while (!load_acquire(&vcpu->pause_req) && !load_acquire(&vcpu->exit_req) &&
	       !vm->shared->stop)
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&vm->lock);
}

/* Returns 1 when the vCPU is finished, 0 to go on. */
static int vcpu_handle_ucall(struct vcpu *vcpu)
{
	struct ucall uc = vcpu->area->uc;
	struct vm *vm = vcpu->vm;

	uc.file[UCALL_FILE_LEN - 1] = '\0';
	uc.msg[UCALL_MSG_LEN - 1] = '\0';
	switch (uc.cmd) {
	case UCALL_SYNC:
		if (vm->on_sync && vm->on_sync(vm->cb_opaque, vcpu->id, &uc)) {
			vcpu_fail(vcpu, "stopped by the sync handler at stage %llu",
				  (unsigned long long)uc.args[0]);
			return 1;
		}
		return 0;
	case UCALL_IDLE:
		vcpu_idle_wait(vcpu);
		return 0;
	case UCALL_DONE:
		vcpu_set_state(vcpu, VCPU_DONE);
		return 1;
	case UCALL_ABORT:
		vcpu_fail(vcpu, "guest assert failed at %s:%llu: %s (0x%llx, 0x%llx)",
			  uc.file, (unsigned long long)uc.line, uc.msg,
			  (unsigned long long)uc.args[0], (unsigned long long)uc.args[1]);
		return 1;
	default:
		vcpu_fail(vcpu, "unknown ucall %llu", (unsigned long long)uc.cmd);
		return 1;
	}
}

/*
 * KVM finishes a port I/O (the ucall's OUT) only at the next KVM_RUN, and
 * until then RIP still points at it.  Before the vCPU is paused, and its
 * state perhaps saved for a migration, let KVM complete it: with
 * immediate_exit set, KVM_RUN completes the I/O and returns -EINTR without
 * entering the guest.
 */
static void vcpu_complete_io(struct vcpu *vcpu)
{
	if (vcpu->run->exit_reason != KVM_EXIT_IO)
		return;
	vcpu->run->immediate_exit = 1;
	ioctl(vcpu->fd, KVM_RUN, 0);
	vcpu->run->exit_reason = KVM_EXIT_INTR;
}

static void vcpu_wait_resume(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	vcpu_complete_io(vcpu);
	pthread_mutex_lock(&vm->lock);
	store_release(&vcpu->state, VCPU_PAUSED);
	vm->nr_paused++;
	pthread_cond_broadcast(&vm->cond);
	while (load_acquire(&vcpu->pause_req))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->nr_paused--;
	/* A pause is no run time to throttle; published by the state's store. */
	vcpu->run_since_ns = now_ns();
	store_release(&vcpu->state, VCPU_RUNNING);
	vcpu->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
}

int vcpu_ring_full(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	int ret;

	pthread_mutex_lock(&vm->cb_lock);
	if (vm->ring_full)
		ret = vm->ring_full(vm->ring_opaque, vcpu->id);
	else
		ret = kvmmig_vm_ring_full(vm->kv, vcpu->id);
	pthread_mutex_unlock(&vm->cb_lock);
	return ret;
}

void vm_set_ring_full_handler(struct vm *vm, vcpu_ring_full_fn fn, void *opaque)
{
	pthread_mutex_lock(&vm->cb_lock);
	vm->ring_full = fn;
	vm->ring_opaque = opaque;
	pthread_mutex_unlock(&vm->cb_lock);
}

/* Returns 1 when the vCPU is finished, 0 to go on. */
static int vcpu_handle_exit(struct vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		if (run->io.port == UCALL_PORT)
			return vcpu_handle_ucall(vcpu);
		vcpu_fail(vcpu, "unexpected port I/O: port 0x%x, direction %u, size %u",
			  run->io.port, run->io.direction, run->io.size);
		return 1;
	case KVM_EXIT_DIRTY_RING_FULL:
		if (vcpu_ring_full(vcpu)) {
			vcpu_fail(vcpu, "dirty ring full and the harvest failed");
			return 1;
		}
		return 0;
	case KVM_EXIT_HLT:
		vcpu_set_state(vcpu, VCPU_DONE);
		return 1;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fail(vcpu, "guest triple fault (KVM_EXIT_SHUTDOWN)");
		return 1;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_fail(vcpu, "KVM_EXIT_INTERNAL_ERROR, suberror %u%s", run->internal.suberror,
			  run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION ?
			  " (instruction emulation failed: SSE/AVX in guest code?)" : "");
		return 1;
	case KVM_EXIT_MMIO:
		vcpu_fail(vcpu, "guest access outside its memory: MMIO at 0x%llx",
			  (unsigned long long)run->mmio.phys_addr);
		return 1;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_fail(vcpu, "KVM_EXIT_FAIL_ENTRY, reason 0x%llx",
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return 1;
	default:
		vcpu_fail(vcpu, "unexpected exit reason %u", run->exit_reason);
		return 1;
	}
}

/* The throttle's sleep, in the vCPU's own thread, out of KVM_RUN. */
static void vcpu_throttle_sleep(struct vcpu *vcpu)
{
	uint64_t t0 = now_ns();
	struct timespec ts = {
		.tv_sec = vcpu->sleep_ns / 1000000000ULL,
		.tv_nsec = vcpu->sleep_ns % 1000000000ULL,
	};

	/* A pause or stop request (a signal) cuts the sleep short. */
	nanosleep(&ts, NULL);
	vcpu->run_since_ns = now_ns();
	vcpu->throttled_ns += vcpu->run_since_ns - t0;
	store_release(&vcpu->sleep_req, false);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;

	vcpu->run_since_ns = now_ns();
	vcpu_set_state(vcpu, VCPU_RUNNING);
	for (;;) {
		if (load_acquire(&vcpu->pause_req))
			vcpu_wait_resume(vcpu);
		if (load_acquire(&vcpu->exit_req))
			break;
		if (load_acquire(&vcpu->sleep_req))
			vcpu_throttle_sleep(vcpu);
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (!load_acquire(&vcpu->pause_req) && !load_acquire(&vcpu->exit_req))
					vcpu->run->immediate_exit = 0;
				if (load_acquire(&vcpu->sleep_req))
					vcpu_throttle_sleep(vcpu);
				continue;
			}
			vcpu_fail(vcpu, "KVM_RUN failed: %s (errno %d)", strerror(errno), errno);
			break;
		}
		vcpu->exits++;
		if (vcpu_handle_exit(vcpu))
			break;
	}
	if (load_acquire(&vcpu->state) == VCPU_RUNNING)
		vcpu_set_state(vcpu, VCPU_DONE);
	return NULL;
}

static void vcpu_kick(struct vcpu *vcpu)
{
	vcpu->run->immediate_exit = 1;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

#define THROTTLE_SLICE_NS	10000000ULL	/* QEMU's CPU_THROTTLE_TIMESLICE_NS */
#define THROTTLE_MAX_RUN_NS	(10 * THROTTLE_SLICE_NS)
#define THROTTLE_TICK_NS	1000000L

static void *vm_throttle_thread(void *arg)
{
	struct timespec tick = { .tv_nsec = THROTTLE_TICK_NS };
	struct vm *vm = arg;
	unsigned int i;

	while (!load_acquire(&vm->throttle_stop)) {
		uint64_t now = now_ns();

		for (i = 0; i < vm->cfg.nr_vcpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			unsigned int pct = load_acquire(&v->throttle_pct);
			uint64_t ran;

			if (!pct || load_acquire(&v->sleep_req) ||
			    load_acquire(&v->state) != VCPU_RUNNING ||
			    now - v->run_since_ns < THROTTLE_SLICE_NS)
				continue;
			/*
			 * In proportion to what it really ran: on a loaded
			 * host this thread wakes late and the slice overruns,
			 * and a fixed sleep would then throttle too little.
			 * Capped, so that no stray gap becomes a long sleep.
			 */
			ran = now - v->run_since_ns;
			if (ran > THROTTLE_MAX_RUN_NS)
				ran = THROTTLE_MAX_RUN_NS;
			v->sleep_ns = ran * pct / (100 - pct);
			store_release(&v->sleep_req, true);
			vcpu_kick(v);
		}
		nanosleep(&tick, NULL);
	}
	return NULL;
}

int vm_set_throttle(struct vm *vm, int idx, unsigned int pct)
{
	unsigned int i;
	int ret;

	if (pct > 99 || idx >= (int)vm->cfg.nr_vcpus || idx < -1) {
		kvmmig_err("throttle of %u%% on vCPU %d: expected 0-99%% on vCPU -1 (all) to %u",
			   pct, idx, vm->cfg.nr_vcpus - 1);
		return -EINVAL;
	}
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (idx < 0 || (unsigned int)idx == i)
			store_release(&vm->vcpus[i].throttle_pct, pct);
	if (pct && !vm->throttle_running) {
		store_release(&vm->throttle_stop, false);
		ret = pthread_create(&vm->throttle_thread, NULL, vm_throttle_thread, vm);
		if (ret) {
			kvmmig_err("cannot start the throttle thread: %s", strerror(ret));
			return -ret;
		}
		vm->throttle_running = true;
	}
	return 0;
}

unsigned int vm_max_throttle(struct vm *vm)
{
	unsigned int i, max = 0;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (load_acquire(&vm->vcpus[i].throttle_pct) > max)
			max = load_acquire(&vm->vcpus[i].throttle_pct);
	return max;
}

void vm_throttle_stop(struct vm *vm)
{
	if (!vm->throttle_running)
		return;
	store_release(&vm->throttle_stop, true);
	pthread_join(vm->throttle_thread, NULL);
	vm->throttle_running = false;
}

int vcpu_map(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	int size;

	size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (size < 0)
		return kvmmig_ioctl_err("KVM_GET_VCPU_MMAP_SIZE", errno);
	vcpu->run_size = size;
	vcpu->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		vcpu->run = NULL;
		return kvmmig_ioctl_err("mmap of kvm_run", errno);
	}
	return 0;
}

int vcpu_create(struct vm *vm, unsigned int id)
{
	struct vcpu *vcpu = &vm->vcpus[id];
	uint64_t area_gpa = vm_vcpu_area_gpa(vm, id);
	int ret;

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	if (vcpu->fd < 0)
		return kvmmig_ioctl_err("KVM_CREATE_VCPU", errno);
	ret = vcpu_map(vcpu);
	if (ret)
		return ret;
	vcpu->area = vm_gpa_to_hva(vm, area_gpa, sizeof(*vcpu->area));
	vcpu->area->seed = 0x9e3779b97f4a7c15ULL * (id + 1);
	return vcpu_x86_setup(vcpu);
}

void vcpu_destroy(struct vcpu *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, vcpu->run_size);
	if (vcpu->fd > 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

static int vm_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	/* No SA_RESTART: KVM_RUN must return -EINTR. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0) {
		kvmmig_err("sigaction(SIGUSR1) failed: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int vm_start(struct vm *vm)
{
	unsigned int i;
	int ret;

	ret = vm_install_kick_handler();
	if (ret)
		return ret;
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		ret = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
		if (ret) {
			kvmmig_err("cannot start the thread of vCPU %u: %s", i, strerror(ret));
			vm_stop(vm);
			return -ret;
		}
		vcpu->thread_started = true;
	}
	return 0;
}

static bool vcpu_stopped(const struct vcpu *vcpu)
{
	int st = load_acquire(&vcpu->state);

	return st == VCPU_DONE || st == VCPU_FAILED;
}

int vm_pause(struct vm *vm)
{
	unsigned int i, parked;

	pthread_mutex_lock(&vm->lock);
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		store_release(&vm->vcpus[i].pause_req, true);
	pthread_cond_broadcast(&vm->cond);	/* idle vCPUs wait on it */
	pthread_mutex_unlock(&vm->lock);
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		vcpu_kick(&vm->vcpus[i]);

	pthread_mutex_lock(&vm->lock);
	for (;;) {
		parked = 0;
		for (i = 0; i < vm->cfg.nr_vcpus; i++) {
			const struct vcpu *v = &vm->vcpus[i];

			parked += load_acquire(&v->state) == VCPU_PAUSED || vcpu_stopped(v) ||
				  !v->thread_started;
		}
		if (parked == vm->cfg.nr_vcpus)
			break;
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_resume(struct vm *vm)
{
	unsigned int i;

	pthread_mutex_lock(&vm->lock);
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		store_release(&vm->vcpus[i].pause_req, false);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vm_wait_done(struct vm *vm, unsigned int timeout_ms)
{
	struct timespec deadline;
	unsigned int i, stopped;
	int ret = 0;

	deadline = deadline_in_ns(CLOCK_REALTIME, timeout_ms * NSEC_PER_MSEC);
	pthread_mutex_lock(&vm->lock);
	for (;;) {
		stopped = 0;
		for (i = 0; i < vm->cfg.nr_vcpus; i++)
			stopped += vcpu_stopped(&vm->vcpus[i]);
		if (stopped == vm->cfg.nr_vcpus || ret == ETIMEDOUT)
			break;
		ret = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	}
	pthread_mutex_unlock(&vm->lock);
	return stopped == vm->cfg.nr_vcpus ? 0 : -ETIMEDOUT;
}

int vm_stop(struct vm *vm)
{
	unsigned int i;
	int ret;

	/* Without a stop callback a migrated guest stays paused: the VMM decides. */
	vm_throttle_stop(vm);
	/*
	 * A paused guest stays stopped: after a migration it runs elsewhere and
	 * must not execute here again, not even to see the stop flag.
	 */
	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (load_acquire(&vm->vcpus[i].pause_req))
			store_release(&vm->vcpus[i].exit_req, true);
	vm->shared->stop = 1;
	vm_resume(vm);
	ret = vm_wait_done(vm, 10000);
	for (i = 0; i < vm->cfg.nr_vcpus; i++) {
		struct vcpu *vcpu = &vm->vcpus[i];

		if (!vcpu->thread_started)
			continue;
		/* A guest that ignored the stop flag is taken out of KVM_RUN. */
		store_release(&vcpu->exit_req, true);
		vcpu_kick(vcpu);
		pthread_join(vcpu->thread, NULL);
		vcpu->thread_started = false;
	}
	return ret;
}

const char *vm_failure(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		if (load_acquire(&vm->vcpus[i].state) == VCPU_FAILED)
			return vm->vcpus[i].error;
	return NULL;
}

uint64_t vm_loops(const struct vm *vm)
{
	uint64_t n = 0;
	unsigned int i;

	for (i = 0; i < vm->cfg.nr_vcpus; i++)
		n += vm->vcpus[i].area->loops;
	return n;
}
