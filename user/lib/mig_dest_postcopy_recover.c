// SPDX-License-Identifier: GPL-2.0-only
/*
 * The destination's recovery of a broken postcopy link
 * (Documentation/postcopy.rst, "Recovery").  The guest runs on; a vCPU on
 * a missing page waits.  Listener threads (the original address, and an
 * operator's `kvmmig receive --recover ADDR --settle SESSION`) hand over
 * the channels of a new link of the same session through a pipe; once
 * every channel is there, RECV_MAP records and a SYNC tell the source which
 * pages are here, the receivers start again and every page a vCPU still
 * waits for is asked for again.  Without a new link within
 * postcopy_recover_timeout_ms the guest is beyond help.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "clock.h"
#include "log.h"
#include "mig_dest_postcopy.h"

/* Tell the source which pages are here (RECV_MAP, runs with bits only), then SYNC. */
static int pc_send_recv_map(struct mig_dst *d)
{
	struct mig_bitmap_rec *b = d->buf;
	const struct mig_sync_rec sync = { 0 };
	unsigned int i;
	int ret = 0;

	for (i = 0; !ret && i < d->vm->nr_slots; i++) {
		uint64_t words = BITMAP_WORDS(kvmmig_slot_pages(&d->vm->slots[i])), w, n, a, z;

		for (w = 0; !ret && w < words; w += MIG_MAX_BITMAP_WORDS) {
			n = words - w < MIG_MAX_BITMAP_WORDS ? words - w : MIG_MAX_BITMAP_WORDS;
			ret = page_fill_copy_claimed(d->pc->pf, i, w, n, b->words);
			for (a = 0; !ret && a < n && !b->words[a]; a++)
				;
			for (z = n; !ret && z > a && !b->words[z - 1]; z--)
				;
			if (ret || a == z)
				continue;
			memmove(b->words, b->words + a, (z - a) * sizeof(uint64_t));
			b->slot = i;
			b->nr_words = z - a;
			b->first = (w + a) * 64;
			ret = mig_chan_send(&d->main, MIG_REC_RECV_MAP, b,
					    sizeof(*b) + b->nr_words * sizeof(uint64_t));
		}
	}
	return ret ? ret : mig_chan_send(&d->main, MIG_REC_SYNC, &sync, sizeof(sync));
}

/* The channels of a new link are all here: take them, tell the source what is here, go on. */
static int pc_take_link(struct mig_dst *d, struct pc_conn *got)
{
	struct mig_dst_pc *pc = d->pc;
	unsigned int i;
	int ret;

	mig_chan_init(&d->main, got[0].fd, 0);
	d->main.tls = got[0].tls;
	mig_chan_limit(&d->main, d->opts->io_timeout_ms ? d->opts->io_timeout_ms :
			       NET_IO_TIMEOUT_MS, NULL);
	for (i = 0; i < d->nr_receivers; i++) {
		mig_chan_init(&d->receivers[i].chan, got[i + 1].fd, i + 1);
		d->receivers[i].chan.tls = got[i + 1].tls;
	}
	/* The link owns them now. */
	for (i = 0; i < d->hello.nr_channels; i++)
		got[i] = (struct pc_conn){ .fd = -1 };
	ret = pc_send_recv_map(d);
	if (!ret) {
		pthread_mutex_lock(&pc->send_lock);
		pc->link_up = true;
		pthread_mutex_unlock(&pc->send_lock);
		ret = mig_dest_pc_start_receivers(d);
	}
	if (!ret)
		ret = page_fill_rerequest(pc->pf) < 0 ? page_fill_error(pc->pf) : 0;
	if (ret)
		snprintf(pc->why, sizeof(pc->why), "the new link failed: %s", kvmmig_last_error());
	return ret;
}

void mig_dest_pc_conn_close(struct pc_conn *c)
{
	tls_sess_free(c->tls);
	c->tls = NULL;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

void mig_dest_postcopy_offer(struct mig_dst *d, int fd, struct tls_sess *tls,
			     const struct mig_hello *h)
{
	struct pc_conn c = { .fd = fd, .tls = tls, .h = *h };

	if (!d->pc || write(d->pc->conns[1], &c, sizeof(c)) != sizeof(c))
		mig_dest_pc_conn_close(&c);
}

/* A listener on a --recover address: it takes the channels of a new link. */
static void *pc_extra_listener(void *arg)
{
	struct mig_dst *d = arg;
	bool taken[MIG_MAX_CHANNELS];
	const struct mig_want w = {
		.recover = true, .postcopy = true, .session = d->hello.session,
		.nr_channels = d->hello.nr_channels, .taken = taken,
	};
	struct mig_hello h;
	int fd;

	memset(taken, true, sizeof(taken));
	while ((fd = mig_listener_next(&d->pc->extra, &w, &h, -1, NULL,
				       d->pc->extra_thread.stop[0])) >= 0) {
		struct tls_sess *tls = mig_listener_take_tls(&d->pc->extra);

		if (h.flags & MIG_HELLO_POSTCOPY) {
			mig_dest_postcopy_offer(d, fd, tls, &h);
		} else {
			tls_sess_free(tls);
			close(fd);
		}
	}
	return NULL;
}

/* `kvmmig receive --recover ADDR --settle SESSION`: listen there as well. */
static void pc_settle(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	enum mig_settle_cmd cmd;
	char addr[256], msg[320];
	int cfd, ret, port = 0;

	cfd = mig_settle_take_at(pc->settle_fd, d->hello.session, &cmd, addr, sizeof(addr));
	if (cfd < 0)
		return;
	if (cmd != MIG_SETTLE_RECOVER_AT) {
		mig_settle_reply(cfd, -EINVAL, "in postcopy-paused only `kvmmig receive --recover tcp:HOST:PORT --settle SESSION` applies");
		close(cfd);
		return;
	}
	/* One more address at a time: a new one replaces the last. */
	mig_listener_thread_stop(&pc->extra_thread);
	mig_listener_close(&pc->extra);
	ret = mig_listener_open(&pc->extra, addr, &port, d->opts->hello_timeout_ms);
	pc->extra.tls = d->tls;
	if (!ret)
		ret = mig_listener_thread_start(&pc->extra_thread, pc_extra_listener, d,
						"postcopy recovery listener");
	if (ret) {
		mig_settle_reply(cfd, ret, kvmmig_last_error());
	} else {
		snprintf(msg, sizeof(msg), "listening on %s (port %d) for the source as well", addr,
			 port);
		kvmmig_info("postcopy paused: %s", msg);
		mig_settle_reply(cfd, 0, msg);
	}
	close(cfd);
}

/* A channel of a new link arrived: kept (a later one of the same number replaces it). */
static void pc_got_conn(struct mig_dst *d, struct pc_conn *got, unsigned int *n)
{
	struct pc_conn c;

	while (read(d->pc->conns[0], &c, sizeof(c)) == sizeof(c)) {
		if (c.h.channel >= d->hello.nr_channels) {
			mig_dest_pc_conn_close(&c);
			continue;
		}
		if (got[c.h.channel].fd >= 0)
			mig_dest_pc_conn_close(&got[c.h.channel]);
		else
			(*n)++;
		got[c.h.channel] = c;
	}
}

static void pc_say_paused(struct mig_dst *d)
{
	unsigned long long id = d->hello.session;

	kvmmig_info("postcopy paused (session %016llx): %s. The guest runs on; a vCPU touching one of the %llu missing pages waits. "
		    "Waiting for the source to reconnect; to listen on another address as well: `kvmmig receive --recover tcp:HOST:PORT --settle %016llx`",
		    id, d->pc->why, (unsigned long long)page_fill_missing(d->pc->pf), id);
}

int mig_dest_pc_paused(struct mig_dst *d)
{
	struct mig_dst_pc *pc = d->pc;
	unsigned int ms = d->opts->postcopy_recover_timeout_ms, n = 0, i;
	double until = now_s() + ms / 1000.0;
	struct pc_conn got[MIG_MAX_CHANNELS];
	int ret = 0;

	mig_dest_pc_close_link(d);
	page_fill_suspend_deadline(pc->pf, true);
	d->rep->state = MIG_POSTCOPY_PAUSED;
	pc_say_paused(d);
	if (pc->settle_fd < 0)
		pc->settle_fd = mig_settle_listen(false, d->hello.session);
	for (i = 0; i < MIG_MAX_CHANNELS; i++)
		got[i] = (struct pc_conn){ .fd = -1 };
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = pc->conns[0], .events = POLLIN },
			{ .fd = pc->settle_fd, .events = POLLIN },
		};

		ret = page_fill_error(pc->pf);
		if (ret)
			break;
		if (ms && now_s() >= until) {
			kvmmig_err("the source did not come back within %u ms: %llu pages are still missing, the guest cannot run on",
				   ms, (unsigned long long)page_fill_missing(pc->pf));
			ret = -ETIMEDOUT;
			break;
		}
		mig_dest_pc_say_no_cancel(d);
		if (poll(p, 2, PC_TICK_MS) <= 0)
			continue;
		if (p[1].revents)
			pc_settle(d);
		if (!p[0].revents)
			continue;
		pc_got_conn(d, got, &n);
		if (n < d->hello.nr_channels)
			continue;
		d->rep->state = MIG_POSTCOPY_RECOVER;
		n = 0;
		ret = pc_take_link(d, got);
		if (!ret)
			break;
		mig_dest_pc_close_link(d);
		pc_say_paused(d);
		d->rep->state = MIG_POSTCOPY_PAUSED;
	}
	for (i = 0; i < MIG_MAX_CHANNELS; i++)
		mig_dest_pc_conn_close(&got[i]);
	if (ret)
		return ret;
	page_fill_suspend_deadline(pc->pf, false);
	d->rep->postcopy_recoveries++;
	d->rep->state = MIG_POSTCOPY_ACTIVE;
	kvmmig_info("postcopy recovered (session %016llx): %llu pages still missing",
		    (unsigned long long)d->hello.session,
		    (unsigned long long)page_fill_missing(pc->pf));
	return 0;
}
