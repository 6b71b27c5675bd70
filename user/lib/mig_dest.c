// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination side of live migration.  It listens, takes the main
 * channel and then every multifd channel of the same session, creates a
 * guest through the VMM's create_vm with the configuration the stream
 * announces (and refuses one that does not match it), applies pages as they come on
 * every channel (each record checked before anything is written), and at
 * END checks that it got exactly what the source sent and loads the vCPU
 * state; the handover (mig_dest_handover.c) then decides whether the guest
 * starts here.  On any error it says why on the return path, discards the
 * partial guest and returns the error.  A postcopy END (MIG_HANDOVER_POSTCOPY)
 * hands the rest to mig_dest_postcopy.c: the guest starts with pages
 * missing, and mig_dest_run() returns once the last one is placed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mig_dest_internal.h"
#include "mig_report.h"

#define MIG_CHANNEL_TIMEOUT_MS	30000	/* for each page channel after the main one */

/* Record who failed first; true if it was @who. */
static bool mig_dst_first_failure(int *first, int who)
{
	int none = FAIL_NONE;

	return __atomic_compare_exchange_n(first, &none, who, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE) || __atomic_load_n(first, __ATOMIC_ACQUIRE) == who;
}

static void *receiver_thread(void *arg)
{
	struct mig_receiver *r = arg;
	struct mig_rec rec;
	int ret;

	/* Its failure is reported once, by the main thread (mig_join_receivers). */
	kvmmig_log_quiet(true);
	for (;;) {
		ret = mig_chan_recv_header(&r->chan, &rec);
		if (ret)
			break;
		/* Page data straight into the guest where it can (not through TLS). */
		if (rec.type == MIG_REC_PAGES && !r->chan.tls) {
			ret = mig_pages_recv(&r->dst->target, &r->chan, &rec, r->buf);
			if (ret < 0)
				break;
			mig_tally_add(&r->tally, &rec);
			continue;
		}
		ret = mig_chan_read(&r->chan, r->buf, rec.len, &r->chan.wait);
		if (!ret)
			ret = mig_rec_check_payload(&rec, r->buf);
		if (ret)
			break;
		mig_chan_recv_done(&r->chan, &rec);
		mig_tally_add(&r->tally, &rec);
		if (rec.type == MIG_REC_SYNC) {
			r->done = true;
			break;
		}
		if (rec.type != MIG_REC_PAGES) {
			kvmmig_err("unexpected %s record on multifd channel %u",
				   mig_rec_name(rec.type), r->chan.index);
			ret = -EPROTO;
			break;
		}
		ret = mig_pages_apply(&r->dst->target, r->buf, rec.len);
		if (ret < 0)
			break;
	}
	r->error = r->done ? 0 : ret;
	if (r->error) {
		snprintf(r->msg, sizeof(r->msg), "%s", kvmmig_last_error());
		/* Failed first: wake the main thread, this migration is over. */
		if (mig_dst_first_failure(&r->dst->first_failure, FAIL_CHANNEL))
			shutdown(r->dst->main.fd, SHUT_RD);
	}
	return NULL;
}

/* A channel of the session: its record deadline and the receive's cancel flag. */
static void mig_dst_limit(struct mig_dst *d, struct mig_chan *c)
{
	mig_chan_limit(c, d->opts->io_timeout_ms ? d->opts->io_timeout_ms : NET_IO_TIMEOUT_MS,
		       d->opts->cancel);
}

/* The main channel of a new session; a refused source was told why. */
static int mig_accept_main(struct mig_dst *d)
{
	const struct mig_want w = { .new_session = true };
	int fd;

	fd = mig_listener_next(&d->lis, &w, &d->hello, -1, d->opts->cancel, -1);
	if (fd < 0)
		return fd;
	mig_chan_init(&d->main, fd, 0);
	d->main.tls = mig_listener_take_tls(&d->lis);
	if (d->main.tls)
		d->rep->tls = tls_sess_engine(d->main.tls);
	mig_dst_limit(d, &d->main);
	return 0;
}

/*
 * The multifd channels of this session, each exactly once; connections of
 * any other are set aside by the listener.  Give up at once if the source's
 * main channel dies.
 */
static int mig_accept_channels(struct mig_dst *d)
{
	struct mig_want w = {
		.session = d->hello.session,
		.nr_channels = d->hello.nr_channels,
	};
	bool taken[MIG_MAX_CHANNELS] = { true };	/* the main channel */
	unsigned int i;
	int fd;

	w.taken = taken;
	d->nr_receivers = d->hello.nr_channels - 1;
	d->receivers = calloc(d->nr_receivers, sizeof(*d->receivers));
	if (!d->receivers)
		return -ENOMEM;
	for (i = 0; i < d->nr_receivers; i++)
		d->receivers[i].chan.fd = -1;
	for (i = 0; i < d->nr_receivers; i++) {
		struct mig_receiver *r;
		struct mig_hello h;

		fd = mig_listener_next(&d->lis, &w, &h, MIG_CHANNEL_TIMEOUT_MS, d->opts->cancel,
				       d->main.fd);
		if (fd == -ECONNRESET) {
			kvmmig_err("the source closed its main channel while %u of its %u page channels were awaited%s%s",
				   d->nr_receivers - i, d->nr_receivers,
				   d->lis.nr_ignored ? "; the last connection ignored: " : "",
				   d->lis.last_ignored);
		}
		if (fd < 0)
			return fd;
		taken[h.channel] = true;
		r = &d->receivers[h.channel - 1];
		mig_chan_init(&r->chan, fd, h.channel);
		r->chan.tls = mig_listener_take_tls(&d->lis);
		mig_dst_limit(d, &r->chan);
		r->dst = d;
		r->buf = malloc(MIG_MAX_PAYLOAD);
		if (!r->buf)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Once this session has all its channels, whoever else connects is set
 * aside at once (a second source is told the destination is busy) rather
 * than left in the backlog until this migration ends.
 */
static void *mig_gate_thread(void *arg)
{
	struct mig_dst *d = arg;
	bool taken[MIG_MAX_CHANNELS];
	const struct mig_want w = {
		.session = d->hello.session,
		.nr_channels = d->hello.nr_channels,
		.taken = taken,
	};
	struct mig_hello h;
	int fd;

	memset(taken, true, sizeof(taken));
	/* Every channel is taken: this returns only when stopped or broken. */
	while ((fd = mig_listener_next(&d->lis, &w, &h, -1, NULL, d->gate.stop[0])) >= 0) {
		tls_sess_free(mig_listener_take_tls(&d->lis));
		close(fd);
	}
	return NULL;
}

static int mig_gate_start(struct mig_dst *d)
{
	return mig_listener_thread_start(&d->gate, mig_gate_thread, d, "listener thread");
}

/* The VMM's guest, laid out exactly as the stream says, or a clear refusal. */
static int mig_create_guest(struct mig_dst *d)
{
	const struct mig_config *c = d->cfg;
	void *hva[MIG_MAX_SLOTS];
	unsigned int i;
	int ret;

	ret = d->opts->create_vm(d->opts->vmm_opaque, c, &d->vm);
	if (ret) {
		if (ret > 0)
			ret = -EIO;
		kvmmig_err("the VMM could not make the guest the stream describes: %s",
			   kvmmig_last_error());
		return ret;
	}
	ret = kvmmig_vm_check_config(d->vm, c);
	if (!ret && c->flags & MIG_CONFIG_POSTCOPY)
		ret = mig_dest_postcopy_check(d);
	if (ret)
		return ret;
	for (i = 0; i < c->nr_slots; i++)
		hva[i] = d->vm->slots[i].hva;
	d->states = calloc(c->nr_vcpus, c->vcpu_state_size);
	if (!d->states)
		return -ENOMEM;
	ret = mig_target_init(&d->target, c, hva, kvmmig_vm_fresh_from(d->vm));
	if (ret)
		return ret;
	d->target_ok = true;
	return 0;
}

/*
 * A peer that sent a hello and then stalls must not hold the receiver: the
 * CONFIG record, all of it, is due within the hello deadline too.
 */
static int mig_recv_config_timed(struct mig_dst *d, struct mig_rec *rec)
{
	int ms = d->lis.hello_timeout_ms, io = d->main.wait.timeout_ms, idle = d->main.idle_timeout_ms;
	int ret;

	d->main.wait.timeout_ms = ms;
	d->main.idle_timeout_ms = ms;
	ret = mig_chan_recv(&d->main, rec, d->buf);
	d->main.wait.timeout_ms = io;
	d->main.idle_timeout_ms = idle;
	if (ret == -ETIMEDOUT)
		kvmmig_err("the source stalled: no complete CONFIG record within %d ms of its hello (--hello-timeout)",
			   ms);
	return ret;
}

static int mig_recv_config(struct mig_dst *d)
{
	struct mig_rec rec;
	int ret;

	ret = mig_recv_config_timed(d, &rec);
	if (ret)
		return ret;
	mig_tally_add(&d->main_tally, &rec);
	if (rec.type != MIG_REC_CONFIG) {
		kvmmig_err("the stream starts with a %s record, expected CONFIG",
			   mig_rec_name(rec.type));
		return -EPROTO;
	}
	ret = mig_config_check(d->buf, rec.len);
	if (ret)
		return ret;
	d->cfg = malloc(rec.len);
	if (!d->cfg)
		return -ENOMEM;
	memcpy(d->cfg, d->buf, rec.len);
	return 0;
}

static int mig_recv_vcpu(struct mig_dst *d, const struct mig_rec *rec)
{
	const struct mig_vcpu *v = d->buf;

	uint32_t size = d->cfg->vcpu_state_size;

	if (rec->len != sizeof(*v) + size || v->size != size || v->index >= d->cfg->nr_vcpus ||
	    d->vcpus_seen >> v->index & 1) {
		kvmmig_err("bad VCPU record: vCPU %u of %u, %u bytes", v->index, d->cfg->nr_vcpus,
			   rec->len);
		return -EBADMSG;
	}
	memcpy(d->states + (size_t)v->index * size, v->state, size);
	d->vcpus_seen |= 1UL << v->index;
	return 0;
}

static int mig_recv_end(struct mig_dst *d, const struct mig_rec *rec)
{
	const struct mig_handover *e = d->buf;
	int ret;

	ret = mig_handover_check(e, rec->len, "END");
	if (ret)
		return ret;
	if (e->flags & MIG_HANDOVER_POSTCOPY && !(d->cfg->flags & MIG_CONFIG_POSTCOPY)) {
		kvmmig_err("END switches to postcopy, but CONFIG did not allow postcopy (no MIG_CONFIG_POSTCOPY)");
		return -EPROTO;
	}
	if (e->session != d->hello.session || e->nr_channels != d->hello.nr_channels) {
		kvmmig_err("END is for session %016llx with %u channels, this is session %016llx with %u",
			   (unsigned long long)e->session, e->nr_channels,
			   (unsigned long long)d->hello.session, d->hello.nr_channels);
		return -EPROTO;
	}
	d->end = *e;
	return 0;
}

/* Main channel until END: vCPU state, or the source giving up. */
static int mig_recv_main(struct mig_dst *d)
{
	struct mig_rec rec;
	int ret;

	for (;;) {
		ret = mig_chan_recv(&d->main, &rec, d->buf);
		if (ret)
			return ret;
		switch (rec.type) {
		case MIG_REC_VCPU:
			mig_tally_add(&d->main_tally, &rec);
			ret = mig_recv_vcpu(d, &rec);
			if (ret)
				return ret;
			break;
		case MIG_REC_DISCARD:
			mig_tally_add(&d->main_tally, &rec);
			ret = mig_dest_postcopy_discard(d, &rec);
			if (ret)
				return ret;
			break;
		case MIG_REC_END:
			return mig_recv_end(d, &rec);
		case MIG_REC_CANCEL:
			kvmmig_err("the source cancelled the migration");
			return -ECANCELED;
		default:
			kvmmig_err("unexpected %s record on the main channel",
				   mig_rec_name(rec.type));
			return -EPROTO;
		}
	}
}

static int mig_join_receivers(struct mig_dst *d, bool abort)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; d->receivers && i < d->nr_receivers; i++) {
		struct mig_receiver *r = &d->receivers[i];

		if (abort && r->chan.fd >= 0)
			shutdown(r->chan.fd, SHUT_RDWR);
		if (r->started)
			pthread_join(r->thread, NULL);
		r->started = false;
		if (!ret && r->error) {
			ret = r->error;
			if (!abort || d->first_failure == FAIL_CHANNEL)
				kvmmig_err("multifd channel %u: %s", r->chan.index, r->msg);
		}
	}
	return ret;
}

static int mig_finish(struct mig_dst *d)
{
	unsigned int i;
	int ret;

	ret = mig_join_receivers(d, false);
	if (ret)
		return ret;
	if (d->vcpus_seen != (d->cfg->nr_vcpus == 64 ? ~0UL : (1UL << d->cfg->nr_vcpus) - 1)) {
		kvmmig_err("the stream ended without the state of every vCPU");
		return -EBADMSG;
	}
	if (d->end.pages != d->target.pages) {
		kvmmig_err("the source sent %llu pages but %llu arrived",
			   (unsigned long long)d->end.pages, (unsigned long long)d->target.pages);
		return -EBADMSG;
	}
	/* What PREPARED says: counted here, not copied from END. */
	d->own.session = d->hello.session;
	d->own.nonce = d->end.nonce;
	d->own.passes = d->end.passes;
	d->own.pages = d->target.pages;
	d->own.nr_channels = d->hello.nr_channels;
	d->own.ch[0] = d->main_tally;
	for (i = 0; i < d->nr_receivers; i++)
		d->own.ch[i + 1] = d->receivers[i].tally;
	ret = mig_handover_match(&d->end, &d->own, true, "the stream as received");
	if (ret)
		return -EBADMSG;
	/* Before the vCPU states go in: loading them may touch memory. */
	if (d->end.flags & MIG_HANDOVER_POSTCOPY) {
		ret = mig_dest_postcopy_prepare(d);
		if (ret)
			return ret;
	}
	/* Loaded but not started: that waits for COMMIT. */
	for (i = 0; i < d->cfg->nr_vcpus; i++) {
		ret = kvmmig_vm_load_state(d->vm, i,
					   d->states + (size_t)i * d->cfg->vcpu_state_size);
		if (ret)
			return ret;
	}
	return 0;
}

static int mig_dest_receive(struct mig_dst *d)
{
	unsigned int i;
	int ret, port = 0;

	/* Bad credentials fail before a source can connect. */
	if (tls_opts_enabled(&d->opts->tls)) {
		ret = tls_creds_load(&d->opts->tls, true, &d->tls);
		if (ret)
			return ret;
	}
	ret = mig_listener_open(&d->lis, d->opts->listen, &port, d->opts->hello_timeout_ms);
	if (ret)
		return ret;
	d->lis.tls = d->tls;
	if (d->opts->listening)
		d->opts->listening(d->opts->opaque, port);
	ret = mig_accept_main(d);
	if (ret)
		return ret;
	ret = mig_recv_config(d);
	if (!ret && d->opts->accepted)
		d->opts->accepted(d->opts->opaque, d->hello.session);
	if (!ret)
		ret = mig_create_guest(d);
	if (!ret)
		ret = mig_accept_channels(d);
	if (!ret)
		ret = mig_gate_start(d);
	for (i = 0; !ret && i < d->nr_receivers; i++) {
		ret = -pthread_create(&d->receivers[i].thread, NULL, receiver_thread,
				      &d->receivers[i]);
		d->receivers[i].started = !ret;
	}
	if (!ret)
		ret = mig_recv_main(d);
	if (ret == -ECANCELED) {
		/*
		 * The source said CANCEL, waited a little for our answer, then
		 * closed its channels: their end is its consequence, not the news.
		 */
		__atomic_store_n(&d->first_failure, FAIL_MAIN, __ATOMIC_RELEASE);
	} else if (ret && !mig_dst_first_failure(&d->first_failure, FAIL_MAIN)) {
		/* The main channel was only woken up: report the channel's error. */
		int err = mig_join_receivers(d, true);

		return err ? err : ret;
	}
	if (!ret)
		ret = mig_finish(d);
	return ret;
}

int mig_dest_run(const struct mig_dest_opts *opts, struct mig_report *rep)
{
	struct mig_dst d = {
		.opts = opts, .rep = rep, .gate = MIG_LISTENER_THREAD_INIT,
		.answer = MIG_LISTENER_THREAD_INIT, .recovered = { -1, -1 },
	};
	double t0 = now_s();
	unsigned int i;
	int ret;

	memset(rep, 0, sizeof(*rep));
	if (!opts->create_vm || !opts->release_vm) {
		kvmmig_err("no %s: the destination needs the VMM's create_vm and release_vm callbacks",
			   opts->create_vm ? "release_vm" : "create_vm");
		return -EINVAL;
	}
	mig_listener_init(&d.lis);
	d.main.fd = -1;
	d.buf = malloc(MIG_MAX_PAYLOAD);
	ret = d.buf ? mig_dest_receive(&d) : -ENOMEM;
	if (!ret)
		ret = mig_dest_handover(&d);
	if (!ret && d.end.flags & MIG_HANDOVER_POSTCOPY)
		ret = mig_dest_postcopy_run(&d);
	if (ret)
		mig_send_ack(&d, ret);
	mig_join_receivers(&d, ret != 0);
	rep->total_s = now_s() - t0;
	rep->pages_sent = d.target.pages - d.target.zero_pages;
	rep->zero_pages = d.target.zero_pages;
	rep->bytes_sent = d.main.rx_bytes;
	for (i = 0; d.receivers && i < d.nr_receivers; i++)
		rep->bytes_sent += d.receivers[i].chan.rx_bytes;
	if (d.pc)
		mig_dest_postcopy_report(&d);
	rep->state = ret ? MIG_FAILED : MIG_COMPLETED;
	if (ret)
		snprintf(rep->error, sizeof(rep->error), "%s", kvmmig_last_error());
	else if (opts->resumed)
		ret = opts->resumed(opts->opaque, d.vm);
	mig_dest_answer_stop(&d);
	mig_dest_postcopy_free(&d);

	for (i = 0; d.receivers && i < d.nr_receivers; i++) {
		mig_chan_close(&d.receivers[i].chan);
		free(d.receivers[i].buf);
	}
	free(d.receivers);
	mig_chan_close(&d.main);
	mig_listener_thread_stop(&d.gate);
	mig_listener_close(&d.lis);
	tls_creds_free(d.tls);
	if (d.target_ok)
		mig_target_destroy(&d.target);
	/* A failed migration leaves nothing behind on this side. */
	if (d.vm)
		opts->release_vm(opts->vmm_opaque, d.vm, __atomic_load_n(&d.started, __ATOMIC_ACQUIRE));
	free(d.states);
	free(d.cfg);
	free(d.buf);
	return ret;
}
