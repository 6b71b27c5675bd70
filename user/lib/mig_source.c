// SPDX-License-Identifier: GPL-2.0-only
/*
 * The source side of live migration.  The migration thread (the caller of
 * mig_source_run()) walks `bmap`, the pages still to send in this pass,
 * and queues batches for the sender threads (mig_sender.c).  Between batches the
 * migration thread runs the sync engine (mig_sync.c), turns what its syncs
 * find into the dirty rate, feeds the convergence policies
 * (mig_throttle.c), and decides when the rest fits the downtime
 * limit; then it pauses the guest, sends the last pages and the vCPU state
 * and hands the guest over in two phases (mig_handover.c).  With
 * postcopy-ram it may switch before that, the pages still dirty left to
 * the postcopy phase (mig_postcopy.c).  A return-path
 * thread reads the destination's answers for the whole migration.  Any
 * failure or a cancel before COMMIT unwinds in one place,
 * mig_source_abort(), which leaves the source guest running with tracking
 * and throttles removed; after COMMIT the guest is never resumed here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "bpf_rates.h"
#include "clock.h"
#include "dirty_internal.h"
#include "module_client.h"
#include "log.h"
#include "mig_internal.h"
#include "mig_report.h"

#define MIG_PEER_WORD_MS	1000	/* after a failure: how long the destination may take to say why */
/* A cancel waits this long for the destination to take it: a signal ends us within 1 s. */
#define MIG_CANCEL_ACK_MS	300

static void mig_cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

void mig_src_fail(struct mig_src *s, int err)
{
	pthread_mutex_lock(&s->qlock);
	if (!s->error) {
		s->error = err;
		/* The first failure's message, whichever thread saw it. */
		snprintf(s->rep->error, sizeof(s->rep->error), "%s", kvmmig_last_error());
	}
	pthread_cond_broadcast(&s->qspace);
	pthread_cond_broadcast(&s->qwork);
	pthread_cond_broadcast(&s->uqwork);
	pthread_cond_broadcast(&s->qidle);
	pthread_mutex_unlock(&s->qlock);
}

/* A cancel counts until COMMIT of a postcopy END; from there it is refused (mig_postcopy.c). */
static bool mig_cancel_counts(const struct mig_src *s)
{
	return kvmmig_cancelled(s->opts->cancel) &&
	       !__atomic_load_n(&s->postcopy, __ATOMIC_RELAXED);
}

int mig_check_cancel(struct mig_src *s)
{
	if (mig_cancel_counts(s)) {
		kvmmig_err("migration cancelled");
		return -ECANCELED;
	}
	return s->error;
}

bool mig_cancelled(const struct mig_src *s)
{
	return mig_cancel_counts(s) || __atomic_load_n(&s->error, __ATOMIC_RELAXED);
}

static int mig_send_config(struct mig_src *s)
{
	size_t len;

	s->cfg = mig_config_of(s->vm, &len);
	if (!s->cfg)
		return -ENOMEM;
	if (s->p.postcopy_ram)
		s->cfg->flags |= MIG_CONFIG_POSTCOPY | (s->preempt ? MIG_CONFIG_PREEMPT : 0);
	/* Kept: postcopy checks the destination's requests against it. */
	return mig_send_main(s, MIG_REC_CONFIG, s->cfg, len);
}

static void mig_close_all(struct mig_src *s)
{
	unsigned int i;

	for (i = 0; s->senders && i < s->nr_senders; i++) {
		mig_chan_close(&s->senders[i].chan);
		free(s->senders[i].hdr);
		free(s->senders[i].data);
	}
	free(s->senders);
	s->senders = NULL;
	mig_chan_close(&s->main);
}

/* Credentials once for all channels; the server's name defaults to the host in "to". */
static int mig_tls_setup(struct mig_src *s)
{
	const struct tls_opts *o = &s->opts->tls;
	char port[16];
	int ret;

	if (!tls_opts_enabled(o))
		return 0;
	if (o->hostname)
		snprintf(s->tls_host, sizeof(s->tls_host), "%s", o->hostname);
	else if ((ret = net_parse_addr(s->opts->to, s->tls_host, sizeof(s->tls_host), port,
				       sizeof(port))))
		return ret;
	return tls_creds_load(o, false, &s->tls);
}

/* ---- passes ---- */

void mig_sample(struct mig_src *s, bool sync)
{
	/* In postcopy the return path clears bmap under us: its count is pc_left. */
	uint64_t pending = __atomic_load_n(&s->postcopy, __ATOMIC_RELAXED) ?
			   __atomic_load_n(&s->pc_left, __ATOMIC_RELAXED) :
			   mig_sync_pending(&s->sync);
	struct mig_sample smp = {
		.t = now_s() - s->t_start,
		.pass = s->pass,
		.remaining_bytes = pending * MIG_PAGE_SIZE,
		.dirty_rate = s->dirty_rate,
		.throughput = s->throughput,
		.throttle_pct = mig_throttle_max(&s->thr),
		.sync = sync,
	};

	/* The progress line shows the requests served so far. */
	if (__atomic_load_n(&s->postcopy, __ATOMIC_RELAXED))
		mig_postcopy_counts(s);
	mig_report_add_sample(s->rep, &smp);
	if (smp.throttle_pct > s->rep->max_throttle_pct)
		s->rep->max_throttle_pct = smp.throttle_pct;
	if (s->opts->progress)
		s->opts->progress(s->opts->opaque, s->state, &smp, s->rep);
	s->last_sample = now_s();
}

static void mig_measure(struct mig_src *s)
{
	double now = now_s(), dt = now - s->tp_last;
	uint64_t bytes = __atomic_load_n(&s->bytes_sent, __ATOMIC_RELAXED);

	if (dt < 0.2)
		return;
	s->throughput = (bytes - s->tp_bytes) / dt;
	s->tp_bytes = bytes;
	s->tp_last = now;
}

void mig_progress_tick(struct mig_src *s)
{
	mig_measure(s);
	if (now_s() - s->last_sample >= s->progress_interval)
		mig_sample(s, false);
}

/*
 * What a sync found: the dirty rate over the period, and the throttle's
 * trigger.  0, or the throttle backend's failure.
 */
static int mig_on_sync(struct mig_src *s, const struct mig_sync_result *r, double now)
{
	uint64_t sent = __atomic_load_n(&s->bytes_sent, __ATOMIC_RELAXED);
	double dt = now - s->period_t;
	int ret;

	if (!r->ran)
		return 0;
	s->dirty_pages += s->pass > 1 || s->state == MIG_SWITCHOVER ? r->found : 0;
	s->period_pages += r->found;
	if (dt < 0.05)
		return 0;
	s->dirty_rate = s->period_pages * (double)MIG_PAGE_SIZE / dt;
	ret = mig_throttle_on_sync(&s->thr, s->period_pages * MIG_PAGE_SIZE,
				   sent - s->period_bytes_sent);
	s->period_pages = 0;
	s->period_bytes_sent = sent;
	s->period_t = now;
	return ret;
}

/* End of a pass, and switchover: everything dirty goes into bmap. */
static int mig_iteration_sync(struct mig_src *s)
{
	struct mig_sync_result r;
	double now = now_s();
	int ret;

	ret = mig_sync_iteration(&s->sync, now, &r);
	s->t_iter_sync = now;
	return ret ? ret : mig_on_sync(s, &r, now);
}

/* The measured throughput, at most max-bandwidth; 0 before a measurement. */
static double mig_bandwidth(const struct mig_src *s)
{
	if (s->p.max_bandwidth && s->throughput > s->p.max_bandwidth)
		return s->p.max_bandwidth;
	return s->throughput;
}

/*
 * What is still to send: this pass's pages, and what the guest dirtied
 * since the latest iteration sync at its latest rate (an upper bound: a
 * page written twice counts twice), at most the whole guest.
 */
static uint64_t mig_backlog(const struct mig_src *s, double now)
{
	double bytes = mig_sync_pending(&s->sync) * (double)MIG_PAGE_SIZE +
		       mig_throttle_rate(&s->thr) * (now - s->t_iter_sync);
	double guest = 0;
	unsigned int i;

	for (i = 0; i < s->vm->nr_slots; i++)
		guest += s->vm->slots[i].size;
	return bytes < guest ? bytes : guest;
}

/* Called by the pass walk every 64 bitmap words: timers, policies, cancel. */
int mig_between_batches(struct mig_src *s)
{
	struct mig_sync_result r;
	double now = now_s();
	int ret;

	ret = mig_check_cancel(s);
	if (ret)
		return ret;
	if (s->p.postcopy_ram && s->state == MIG_ACTIVE &&
	    kvmmig_cancelled(s->opts->start_postcopy))
		return MIG_PC_SWITCH;
	mig_measure(s);
	if (s->rates_ok && now - s->last_rates >= s->p.dirty_limit_period_ms / 1000.0) {
		uint64_t pages[MIG_MAX_VCPUS];

		s->last_rates = now;
		if (s->br)
			ret = bpf_rates_vm_pages(s->br, getpid(), s->vm->named_fd, pages,
						 s->vm->nr_vcpus);
		else
			ret = dirty_source_vcpu_counts(s->ds, pages);
		mig_throttle_backlog(&s->thr, mig_backlog(s, now), mig_bandwidth(s));
		if (!ret)
			ret = mig_throttle_on_rates(&s->thr, pages, now, s->throughput);
		if (ret)
			return ret;
	}
	ret = mig_sync_timer(&s->sync, now, &r);
	if (!ret)
		ret = mig_on_sync(s, &r, now);
	if (ret)
		return ret;
	if (now - s->last_sample >= s->progress_interval)
		mig_sample(s, false);
	return 0;
}

static int mig_pass(struct mig_src *s)
{
	uint64_t sent = 0;
	unsigned int i;
	int ret;

	s->pass++;
	for (i = 0; i < s->vm->nr_slots; i++) {
		ret = mig_queue_pages(s, i, s->sync.bmap[i], s->sync.npages[i], &sent);
		if (ret)
			return ret;
	}
	s->rep->passes = s->pass;
	return 0;
}

/* Remaining bytes at the measured throughput fit the downtime limit? */
static bool mig_can_switch(struct mig_src *s)
{
	double bw = s->throughput > 0 ? s->throughput : 1e9;
	uint64_t pending = mig_sync_pending(&s->sync) * MIG_PAGE_SIZE;

	if (s->p.max_bandwidth && bw > s->p.max_bandwidth)
		bw = s->p.max_bandwidth;
	return pending / bw * 1000.0 <= s->p.downtime_limit_ms;
}

/* ---- switchover ---- */

/*
 * Pause, the last sync, then either the rest of the pages (precopy) or,
 * with @postcopy, the DISCARD records of what is still dirty; the vCPU
 * state, SYNC on every page channel, and the handover.
 */
static int mig_switchover(struct mig_src *s, bool postcopy)
{
	uint32_t size = s->vm->ops.state_size;
	struct mig_vcpu *v = s->vcpu_rec;
	struct mig_sync_rec sync;
	unsigned int i;
	int ret;

	s->state = MIG_SWITCHOVER;
	mig_sample(s, false);
	/*
	 * Batches still queued were counted as sent when the pass decided to
	 * switch over; send them while the guest still runs, so they do not
	 * count as downtime.
	 */
	ret = mig_queue_drain(s);
	if (ret)
		return ret;
	s->t_pause = now_s();
	ret = kvmmig_vm_pause(s->vm);
	if (ret)
		return ret;
	s->paused = true;
	ret = mig_iteration_sync(s);
	if (ret)
		return ret;
	if (!postcopy) {
		ret = mig_pass(s);
		if (!ret)
			ret = mig_queue_drain(s);
	}
	/* Until END is sent, a cancel still leaves the guest here. */
	if (!ret)
		ret = mig_check_cancel(s);
	for (i = 0; !ret && i < s->vm->nr_vcpus; i++) {
		memset(v, 0, sizeof(*v) + size);
		v->index = i;
		v->size = size;
		ret = kvmmig_vm_save_state(s->vm, i, v->state);
		if (!ret)
			ret = mig_send_main(s, MIG_REC_VCPU, v, sizeof(*v) + size);
	}
	if (ret)
		return ret;
	/* Every channel says it is done; the main channel says it last. */
	sync.pass = s->sync.gen;
	for (i = 0; i < s->nr_senders && !ret; i++) {
		struct iovec iov = { .iov_base = &sync, .iov_len = sizeof(sync) };

		ret = mig_send_tallied(&s->senders[i].chan, &s->senders[i].tally, MIG_REC_SYNC,
				       &iov, 1);
	}
	/* The discard set, after the vCPU state on the main channel. */
	if (!ret && postcopy)
		ret = mig_postcopy_send_discard(s);
	if (!ret)
		ret = mig_check_cancel(s);
	/* END, and the destination's answers: Documentation/handover.rst. */
	s->end_flags = postcopy ? MIG_HANDOVER_POSTCOPY : 0;
	if (!ret)
		ret = mig_handover(s);
	if (ret)
		return ret;
	s->t_started = now_s();
	s->rep->downtime_ms = (s->t_started - s->t_pause) * 1000.0;
	return 0;
}

/* ---- set-up and unwinding ---- */

/*
 * The continuous per-vCPU rates dirty-limit and rate-driven read: the
 * dirty source's own counts, or the BPF programs for any dirty backend.
 */
static int mig_rates_open(struct mig_src *s)
{
	struct bpf_rates_opts bo = {
		.pid = getpid(),
		.pin_dir = "",		/* private: `kvmmig top` may pin its own */
		.skip = 1 << BPF_RATES_RUN | 1 << BPF_RATES_GUEST,
	};
	enum bpf_rates_source need;
	const struct bpf_rates_source_info *si;
	int ret;

	if (!s->rates_ok)
		return 0;
	s->rep->rate_source = mig_rate_source_name(s->p.rate_source);
	if (s->p.rate_source == MIG_RATES_DIRTY) {
		if (s->ds->ops->vcpu_counts)
			return 0;
		kvmmig_err("the %s policy needs per-vCPU dirty rates, which the %s backend cannot give: use --dirty ring (or module), or --x-rate-source bpf",
			   mig_policy_name(s->p.policy), s->ds->ops->name);
		return -EINVAL;
	}
	need = s->vm->ring_entries ? BPF_RATES_RING : BPF_RATES_BITMAP;
	bo.skip |= 1 << (need == BPF_RATES_RING ? BPF_RATES_BITMAP : BPF_RATES_RING);
	ret = bpf_rates_open(&bo, &s->br);
	if (ret)
		return ret;
	si = bpf_rates_source(s->br, need);
	if (!si->attached) {
		kvmmig_err("--x-rate-source bpf: the BPF %s source is unavailable: %s",
			   si->name, si->why);
		return si->err ? si->err : -EOPNOTSUPP;
	}
	kvmmig_info("per-vCPU rates from BPF (%s)", si->attached);
	return 0;
}

/*
 * kvmmig.ko throttles any VMM's vCPUs from inside their run loop: use it
 * whenever it is loaded, through the dirty source's session or one of our
 * own; else the VMM's set_throttle op.
 */
static int mig_throttle_backend_open(struct mig_src *s)
{
	struct kmod_session *ks = NULL;
	const char *why = NULL;
	int ret;

	if (s->p.policy == MIG_POLICY_NONE) {
		s->rep->throttle_backend = "none";
		return 0;
	}
	if (s->ds->ops == &dirty_module_ops) {
		ks = dirty_module_session(s->ds);
	} else if (kmod_present(&why)) {
		ret = kmod_attach(s->vm->fd, &s->own_ks);
		if (ret)
			return ret;
		ks = s->own_ks;
	}
	if (!ks && !kvmmig_vm_can_throttle(s->vm)) {
		kvmmig_err("the %s policy needs a throttle: the VMM cannot slow its vCPUs (no set_throttle op), and %s",
			   mig_policy_name(s->p.policy), why);
		return -EOPNOTSUPP;
	}
	ret = mig_throttle_use_module(&s->thr, ks);
	if (ret)
		return ret;
	s->rep->throttle_backend = ks ? "module" : "vmm";
	if (ks)
		kvmmig_info("throttle backend: kvmmig.ko%s",
			    s->thr.bucket ? " (dirty-limit: its per-vCPU dirty limit)" : "");
	else
		kvmmig_info("throttle backend: the VMM's vCPU threads (%s)", why);
	return 0;
}

/* Every page to send; timer syncs only for a policy that reads what they measure. */
static int mig_sync_setup(struct mig_src *s)
{
	uint64_t npages[MIG_MAX_SLOTS];
	struct mig_sync_config cfg = {
		.nr_slots = s->vm->nr_slots,
		.npages = npages,
		.nr_vcpus = s->vm->nr_vcpus,
		.mode = mig_throttle_needs_syncs(&s->p) ? s->p.sync_mode : MIG_SYNC_LEGACY,
		.interval_ms = s->p.sync_interval_ms,
	};
	unsigned int i;

	for (i = 0; i < cfg.nr_slots; i++)
		npages[i] = kvmmig_slot_pages(&s->vm->slots[i]);
	s->period_t = now_s();
	s->t_iter_sync = s->period_t;
	return mig_sync_init(&s->sync, s->ds, &cfg, s->period_t);
}

/*
 * Throttles off, dirty tracking and rate sources gone: the guest as before.
 * What each vCPU was throttled with goes to the report first, while the
 * backend can still say how long it held them.  Closing the module's
 * session lifts whatever a failed _off left.
 */
static void mig_release_guest(struct mig_src *s)
{
	if (mig_throttle_report(&s->thr, s->rep))
		kvmmig_info("per-vCPU throttle times unknown: %s", kvmmig_last_error());
	if (mig_throttle_off(&s->thr))
		kvmmig_info("could not lift the throttles: %s", kvmmig_last_error());
	dirty_source_close(s->ds);
	s->ds = NULL;
	kmod_close(s->own_ks);
	s->own_ks = NULL;
	bpf_rates_close(s->br);
	s->br = NULL;
}

static int mig_source_setup(struct mig_src *s)
{
	struct dirty_options dopts = {
		.backend = s->p.dirty_backend,
		.clear_on_send = s->p.dirty_clear_on_send,
	};
	int ret;

	/* Cancelled before it began: nothing is touched, nobody contacted. */
	ret = mig_check_cancel(s);
	if (ret)
		return ret;
	s->rates_ok = mig_throttle_needs_rates(&s->p);
	ret = dirty_source_open(s->vm, &dopts, &s->ds);
	if (ret)
		return ret;
	s->rep->dirty_backend = s->ds->ops->name;
	ret = mig_rates_open(s);
	if (!ret)
		ret = mig_throttle_backend_open(s);
	if (!ret)
		ret = mig_sync_setup(s);
	if (ret)
		return ret;
	ret = mig_tls_setup(s);
	if (!ret)
		ret = mig_connect_channel(s, &s->main, 0);
	if (!ret)
		ret = mig_rp_start(s);
	if (!ret)
		ret = mig_send_config(s);
	if (!ret)
		ret = mig_start_senders(s);
	return ret;
}

/* After a failure the destination may have said why on the return path. */
static void mig_fetch_peer_error(struct mig_src *s, int err)
{
	/* Our own decision: the destination only saw the channels close. */
	if (err == -ECANCELED || s->gave_up)
		return;
	mig_rp_linger(s, MIG_PEER_WORD_MS);
	pthread_mutex_lock(&s->rplock);
	if (s->peer_failed)
		snprintf(s->rep->error, sizeof(s->rep->error), "%s", s->rp_msg);
	pthread_mutex_unlock(&s->rplock);
}

static void mig_source_abort(struct mig_src *s, int err)
{
	mig_src_fail(s, err);
	/* Telling the destination must not be cut short by the cancel itself. */
	s->main.wait.cancel = NULL;
	s->main.wait.timeout_ms = MIG_CANCEL_ACK_MS;
	/* Before END a cancel is a CANCEL; after it, an ABORT (below). */
	if (s->main.fd >= 0 && err == -ECANCELED && !s->end.session &&
	    !mig_send_main(s, MIG_REC_CANCEL, NULL, 0))
		/* Let the destination take the cancel before the channels close. */
		mig_rp_linger(s, MIG_CANCEL_ACK_MS);
	mig_stop_senders(s);
	mig_fetch_peer_error(s, err);
	/* The source guest carries on as if nothing happened. */
	mig_release_guest(s);
	if (s->paused)
		kvmmig_vm_resume(s->vm);
	s->paused = false;
	/* It never sent COMMIT: the destination cannot have started. */
	mig_handover_abort(s);
	s->state = err == -ECANCELED ? MIG_CANCELLED : MIG_FAILED;
	s->rep->state = s->state;
}

/*
 * COMMIT may have reached the destination and nothing settled whether it
 * runs the guest: this copy stays stopped, whatever happens.
 */
static void mig_source_given_up(struct mig_src *s, int err)
{
	mig_src_fail(s, err);
	mig_stop_senders(s);
	mig_release_guest(s);
	kvmmig_vm_stop(s->vm);
	s->paused = false;
	s->rep->source_stopped = true;
	s->state = s->rep->state = MIG_FAILED;
}

int mig_source_run(struct kvmmig_vm *vm, const struct mig_source_opts *opts, struct mig_report *rep)
{
	struct mig_src *s;
	int ret;

	memset(rep, 0, sizeof(*rep));
	rep->throttle_backend = "none";
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->opts = opts;
	s->p = opts->params;
	s->rep = rep;
	s->main.fd = -1;
	s->to = opts->to;
	s->nr_senders = s->p.multifd_channels ? s->p.multifd_channels : 1;
	/* postcopy-preempt: one more page channel, the last, for requested pages. */
	s->preempt = s->p.postcopy_ram && s->p.postcopy_preempt;
	s->nr_senders += s->preempt;
	s->progress_interval = opts->progress_interval_s > 0 ? opts->progress_interval_s : 0.5;
	s->session = ((uint64_t)getpid() << 32) ^ (uint64_t)(now_s() * 1e9);
	s->rp_buf = malloc(MIG_MAX_PAYLOAD);
	s->vcpu_rec = malloc(sizeof(struct mig_vcpu) + MIG_MAX_VCPU_STATE);
	pthread_mutex_init(&s->qlock, NULL);
	pthread_mutex_init(&s->rplock, NULL);
	mig_cond_init_monotonic(&s->rpcond);
	pthread_mutex_init(&s->bwlock, NULL);
	mig_cond_init_monotonic(&s->qwork);	/* senders wait on it for max-bandwidth too */
	pthread_cond_init(&s->uqwork, NULL);
	pthread_cond_init(&s->qspace, NULL);
	pthread_cond_init(&s->qidle, NULL);
	mig_throttle_init(&s->thr, vm, &s->p);
	s->t_start = s->tp_last = s->bw_last = now_s();
	s->state = MIG_SETUP;

	ret = s->rp_buf && s->vcpu_rec ? mig_source_setup(s) : -ENOMEM;
	rep->setup_ms = (now_s() - s->t_start) * 1000.0;
	s->state = MIG_ACTIVE;
	while (!ret) {
		ret = mig_pass(s);
		/* migrate-start-postcopy: at this batch boundary, the pass unfinished. */
		if (ret == MIG_PC_SWITCH) {
			rep->passes = s->pass;
			ret = mig_switchover(s, true);
			break;
		}
		/* A pass ends when its pages are on the wire, not merely queued. */
		if (!ret)
			ret = mig_queue_drain(s);
		if (!ret)
			ret = mig_iteration_sync(s);
		if (ret)
			break;
		mig_sample(s, true);
		if (mig_can_switch(s)) {
			ret = mig_switchover(s, false);
			break;
		}
		if (mig_postcopy_due(s)) {
			ret = mig_switchover(s, true);
			break;
		}
		if (s->p.max_passes && s->pass >= s->p.max_passes) {
			kvmmig_err("did not converge in %u passes: %llu bytes still dirty",
				   s->p.max_passes,
				   (unsigned long long)mig_sync_pending(&s->sync) * MIG_PAGE_SIZE);
			s->gave_up = true;
			ret = -ETIMEDOUT;
		}
	}
	if (!ret && s->postcopy)
		ret = mig_postcopy_run(s);
	rep->bytes_sent = s->bytes_sent + s->main.tx_bytes;
	rep->pages_sent = s->pages_sent;
	rep->zero_pages = s->zero_pages;
	rep->dirty_pages = s->dirty_pages;
	rep->syncs = s->sync.syncs;
	rep->ring_overflows = s->ds ? s->ds->stats.overflows : 0;
	rep->total_s = now_s() - s->t_start;
	rep->throughput = rep->total_s > 0 ? rep->bytes_sent / rep->total_s : 0;
	if (ret && s->committed) {
		mig_source_given_up(s, ret);
	} else if (ret) {
		mig_source_abort(s, ret);
	} else {
		s->state = rep->state = MIG_COMPLETED;
		mig_stop_senders(s);
		mig_release_guest(s);
		/* The guest runs on the destination now. */
		kvmmig_vm_stop(vm);
	}
	mig_sample(s, false);
	mig_rp_stop(s);
	mig_close_all(s);
	tls_creds_free(s->tls);
	mig_sync_free(&s->sync);
	free(s->cfg);
	free(s->rp_buf);
	free(s->vcpu_rec);
	free(s);
	return ret;
}
