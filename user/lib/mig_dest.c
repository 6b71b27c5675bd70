// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination side of live migration.  It listens, takes the main
 * channel and then every multifd channel of the same session, creates a
 * guest with the configuration the stream announces (and refuses one that
 * does not match what this build lays out), applies pages as they come on
 * every channel (each record checked before anything is written), and at
 * END loads the vCPU state, resumes the guest and tells the source over the
 * return path.  On any error it says why on the return path, discards the
 * partial guest and returns the error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mig_listen.h"
#include "mig_report.h"
#include "migrate.h"
#include "net.h"
#include "stream.h"

struct mig_dst;

enum { FAIL_NONE, FAIL_MAIN, FAIL_CHANNEL };

#define MIG_CHANNEL_TIMEOUT_MS	30000	/* for each page channel after the main one */

/* Record who failed first; true if it was @who. */
static bool mig_dst_first_failure(int *first, int who)
{
	int none = FAIL_NONE;

	return __atomic_compare_exchange_n(first, &none, who, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE) || __atomic_load_n(first, __ATOMIC_ACQUIRE) == who;
}

struct mig_receiver {
	struct mig_dst *dst;
	struct mig_chan chan;
	pthread_t thread;
	bool started;
	void *buf;
	int error;
	char msg[256];		/* why it failed, reported by the main thread */
	bool done;
};

struct mig_dst {
	const struct mig_dest_opts *opts;
	struct mig_report *rep;
	struct mig_listener lis;
	pthread_t gate;			/* sets others aside while this one runs */
	bool gate_started;
	int gate_stop[2];		/* closing [1] ends the gate thread */
	struct mig_chan main;
	struct mig_hello hello;
	void *buf;
	struct mig_config *cfg;
	struct vm *vm;
	struct mig_target target;
	bool target_ok;
	unsigned int nr_receivers;
	struct mig_receiver *receivers;
	struct vcpu_state_blob *states;
	unsigned long vcpus_seen;
	uint64_t end_pages;
	int first_failure;		/* FAIL_MAIN or FAIL_CHANNEL, whichever came first */
};

static void *receiver_thread(void *arg)
{
	struct mig_receiver *r = arg;
	struct mig_rec rec;
	int ret;

	/* Its failure is reported once, by the main thread (mig_join_receivers). */
	kvmmig_log_quiet(true);
	for (;;) {
		ret = mig_chan_recv(&r->chan, &rec, r->buf);
		if (ret)
			break;
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
	while ((fd = mig_listener_next(&d->lis, &w, &h, -1, NULL, d->gate_stop[0])) >= 0)
		close(fd);
	return NULL;
}

static int mig_gate_start(struct mig_dst *d)
{
	int ret;

	if (pipe2(d->gate_stop, O_CLOEXEC) < 0) {
		ret = -errno;
		kvmmig_err("cannot make the listener's stop pipe: %s", strerror(errno));
		return ret;
	}
	ret = -pthread_create(&d->gate, NULL, mig_gate_thread, d);
	if (ret) {
		kvmmig_err("cannot start the listener thread: %s", strerror(-ret));
		return ret;
	}
	d->gate_started = true;
	return 0;
}

/* Hands the listener back to this thread (mig_listener_next() is usable again). */
static void mig_gate_stop(struct mig_dst *d)
{
	if (d->gate_stop[1] >= 0)
		close(d->gate_stop[1]);
	d->gate_stop[1] = -1;
	if (d->gate_started)
		pthread_join(d->gate, NULL);
	d->gate_started = false;
	if (d->gate_stop[0] >= 0)
		close(d->gate_stop[0]);
	d->gate_stop[0] = -1;
}

/* A guest laid out exactly as the stream says, or a clear refusal. */
static int mig_create_guest(struct mig_dst *d)
{
	const struct mig_config *c = d->cfg;
	struct vm_config vc = {
		.nr_vcpus = c->nr_vcpus,
		.nr_slots = c->nr_slots - 1,
		.backing = VM_BACKING_ANON,
	};
	void *hva[MIG_MAX_SLOTS];
	unsigned int i;
	int ret;

	if (c->nr_slots < 2 || c->vcpu_state_size != sizeof(struct vcpu_state_blob)) {
		kvmmig_err("configuration mismatch: %u slots and %u-byte vCPU state in the stream, this build needs at least 2 and %zu",
			   c->nr_slots, c->vcpu_state_size, sizeof(struct vcpu_state_blob));
		return -EINVAL;
	}
	for (i = 1; i < c->nr_slots; i++)
		vc.ram_bytes += c->slots[i].size;
	ret = vm_create(&vc, &d->vm);
	if (ret)
		return ret;
	for (i = 0; i < c->nr_slots; i++) {
		const struct vm_slot *s = &d->vm->slots[i];

		if (i >= d->vm->nr_slots || s->gpa != c->slots[i].gpa || s->size != c->slots[i].size) {
			kvmmig_err("configuration mismatch: slot %u is at 0x%llx size 0x%llx in the stream, 0x%llx size 0x%llx here (a different kvmmig build?)",
				   i, (unsigned long long)c->slots[i].gpa,
				   (unsigned long long)c->slots[i].size,
				   (unsigned long long)s->gpa, (unsigned long long)s->size);
			return -EINVAL;
		}
		hva[i] = s->hva;
	}
	d->states = calloc(c->nr_vcpus, sizeof(*d->states));
	if (!d->states)
		return -ENOMEM;
	/* Slot 0 already holds this build's page tables and code: not fresh. */
	ret = mig_target_init(&d->target, c, hva, 1);
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

	if (rec->len != sizeof(*v) + sizeof(struct vcpu_state_blob) ||
	    v->size != sizeof(struct vcpu_state_blob) || v->index >= d->cfg->nr_vcpus ||
	    d->vcpus_seen >> v->index & 1) {
		kvmmig_err("bad VCPU record: vCPU %u of %u, %u bytes", v->index, d->cfg->nr_vcpus,
			   rec->len);
		return -EBADMSG;
	}
	memcpy(&d->states[v->index], v->state, sizeof(struct vcpu_state_blob));
	d->vcpus_seen |= 1UL << v->index;
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
			ret = mig_recv_vcpu(d, &rec);
			if (ret)
				return ret;
			break;
		case MIG_REC_END:
			if (rec.len != sizeof(struct mig_end)) {
				kvmmig_err("bad END record of %u bytes", rec.len);
				return -EBADMSG;
			}
			d->end_pages = ((struct mig_end *)d->buf)->pages;
			return 0;
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
	if (d->end_pages != d->target.pages) {
		kvmmig_err("the source sent %llu pages but %llu arrived",
			   (unsigned long long)d->end_pages, (unsigned long long)d->target.pages);
		return -EBADMSG;
	}
	for (i = 0; i < d->cfg->nr_vcpus; i++) {
		ret = vcpu_load_state(&d->vm->vcpus[i], &d->states[i]);
		if (ret)
			return ret;
	}
	return vm_start(d->vm);
}

static void mig_send_ack(struct mig_dst *d, int status)
{
	struct mig_ack ack = { .status = status };

	if (d->main.fd < 0)
		return;
	/* Said even after a cancel, briefly: the source waits for it. */
	d->main.wait.cancel = NULL;
	d->main.wait.timeout_ms = 1000;
	if (status)
		snprintf(ack.msg, sizeof(ack.msg), "%s", kvmmig_last_error());
	mig_chan_send(&d->main, MIG_REC_ACK, &ack, sizeof(ack));
}

static int mig_dest_receive(struct mig_dst *d)
{
	unsigned int i;
	int ret, port = 0;

	ret = mig_listener_open(&d->lis, d->opts->listen, &port, d->opts->hello_timeout_ms);
	if (ret)
		return ret;
	if (d->opts->listening)
		d->opts->listening(d->opts->opaque, port);
	ret = mig_accept_main(d);
	if (ret)
		return ret;
	ret = mig_recv_config(d);
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
	if (ret && !mig_dst_first_failure(&d->first_failure, FAIL_MAIN)) {
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
	struct mig_dst d = { .opts = opts, .rep = rep, .gate_stop = { -1, -1 } };
	double t0 = mig_now();
	unsigned int i;
	int ret;

	memset(rep, 0, sizeof(*rep));
	mig_listener_init(&d.lis);
	d.main.fd = -1;
	d.buf = malloc(MIG_MAX_PAYLOAD);
	ret = d.buf ? mig_dest_receive(&d) : -ENOMEM;
	mig_send_ack(&d, ret);
	mig_join_receivers(&d, ret != 0);
	rep->total_s = mig_now() - t0;
	rep->pages_sent = d.target.pages - d.target.zero_pages;
	rep->zero_pages = d.target.zero_pages;
	rep->bytes_sent = d.main.rx_bytes;
	for (i = 0; d.receivers && i < d.nr_receivers; i++)
		rep->bytes_sent += d.receivers[i].chan.rx_bytes;
	rep->state = ret ? MIG_FAILED : MIG_COMPLETED;
	if (ret)
		snprintf(rep->error, sizeof(rep->error), "%s", kvmmig_last_error());
	else if (opts->resumed)
		ret = opts->resumed(opts->opaque, d.vm);

	for (i = 0; d.receivers && i < d.nr_receivers; i++) {
		if (d.receivers[i].chan.fd >= 0)
			close(d.receivers[i].chan.fd);
		free(d.receivers[i].buf);
	}
	free(d.receivers);
	if (d.main.fd >= 0)
		close(d.main.fd);
	mig_gate_stop(&d);
	mig_listener_close(&d.lis);
	if (d.target_ok)
		mig_target_destroy(&d.target);
	/* A failed migration leaves nothing behind on this side. */
	vm_destroy(d.vm);
	free(d.states);
	free(d.cfg);
	free(d.buf);
	return ret;
}
