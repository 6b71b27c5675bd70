// SPDX-License-Identifier: GPL-2.0-only
/*
 * The sending half of the source: the queue of page batches between the
 * migration thread and the multifd senders, one sender thread per page
 * channel (zero-page detection, a private copy of each page, the record on
 * the wire), the max-bandwidth token bucket the senders share, and the
 * walk of a pass's bitmap that fills the queue.  With postcopy-preempt the
 * last sender takes requested batches only, from a queue of its own.  The migration thread
 * (mig_source.c) owns the rest of the migration; qlock guards the queue,
 * s->stop and s->error, bwlock the bucket.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include "bitmap.h"
#include "clock.h"
#include "dirty_internal.h"
#include "log.h"
#include "mig_internal.h"
#include "thread_nice.h"
#include "zero.h"

/* ---- the queue of batches between the migration thread and the senders ---- */

static int mig_queue_push(struct mig_src *s, const struct mig_job *job)
{
	pthread_mutex_lock(&s->qlock);
	while (s->qcount == MIG_QUEUE_DEPTH && !s->error)
		pthread_cond_wait(&s->qspace, &s->qlock);
	if (s->error) {
		pthread_mutex_unlock(&s->qlock);
		return s->error;
	}
	s->queue[(s->qhead + s->qcount) % MIG_QUEUE_DEPTH] = *job;
	s->qcount++;
	pthread_cond_signal(&s->qwork);
	pthread_mutex_unlock(&s->qlock);
	return 0;
}

int mig_queue_job(struct mig_src *s, const struct mig_job *job)
{
	return mig_queue_push(s, job);
}

/*
 * A requested batch: the preempt channel's own queue, never behind a
 * background batch; without preempt the head of the shared queue, behind
 * only the batches the channels are sending already.
 */
int mig_queue_urgent(struct mig_src *s, const struct mig_job *job)
{
	unsigned int *count = s->preempt ? &s->uqcount : &s->qcount;

	pthread_mutex_lock(&s->qlock);
	while (*count == MIG_QUEUE_DEPTH && !s->error)
		pthread_cond_wait(&s->qspace, &s->qlock);
	if (s->error) {
		pthread_mutex_unlock(&s->qlock);
		return s->error;
	}
	if (s->preempt) {
		s->uqueue[(s->uqhead + s->uqcount) % MIG_QUEUE_DEPTH] = *job;
		s->uqcount++;
		pthread_cond_signal(&s->uqwork);
	} else {
		s->qhead = (s->qhead + MIG_QUEUE_DEPTH - 1) % MIG_QUEUE_DEPTH;
		s->queue[s->qhead] = *job;
		s->qcount++;
		pthread_cond_signal(&s->qwork);
	}
	pthread_mutex_unlock(&s->qlock);
	return 0;
}

/* Wait until every queued batch has been sent (or a sender failed). */
int mig_queue_drain(struct mig_src *s)
{
	pthread_mutex_lock(&s->qlock);
	while ((s->qcount || s->uqcount || s->qbusy) && !s->error)
		pthread_cond_wait(&s->qidle, &s->qlock);
	pthread_mutex_unlock(&s->qlock);
	return s->error;
}

/*
 * max-bandwidth: a token bucket shared by the senders, 100 ms deep.  A
 * sender waits for the bucket to be out of debt before it takes a paced
 * batch, and takes the batch's most bytes from it as it does; what the
 * record turned out not to need (zero pages) goes back once it is built.
 * So no batch is held while its sender sleeps on the bucket: a requested
 * page put at the head of the shared queue (postcopy without preempt) is
 * taken by the first sender free, not after a background batch's wait,
 * which at a low rate is a whole batch's time on the wire.
 */
static void bandwidth_refill(struct mig_src *s, uint64_t rate)
{
	double now = now_s();

	s->bw_tokens += (now - s->bw_last) * rate;
	if (s->bw_tokens > rate / 10.0)
		s->bw_tokens = rate / 10.0;
	s->bw_last = now;
}

/* Seconds until the bucket is out of debt (0: a batch may be taken now). */
static double bandwidth_wait(struct mig_src *s)
{
	uint64_t rate = s->p.max_bandwidth;
	double wait;

	if (!rate)
		return 0;
	pthread_mutex_lock(&s->bwlock);
	bandwidth_refill(s, rate);
	wait = s->bw_tokens < 0 ? -s->bw_tokens / rate : 0;
	pthread_mutex_unlock(&s->bwlock);
	return wait;
}

/* Take @bytes from the bucket (negative: give them back). */
static void bandwidth_charge(struct mig_src *s, int64_t bytes)
{
	uint64_t rate = s->p.max_bandwidth;

	if (!rate)
		return;
	pthread_mutex_lock(&s->bwlock);
	bandwidth_refill(s, rate);
	s->bw_tokens -= bytes;
	pthread_mutex_unlock(&s->bwlock);
}

/* The most bytes @job's record can take on the wire: every page data. */
static uint64_t job_max_bytes(const struct mig_job *job)
{
	return sizeof(struct mig_rec) + sizeof(struct mig_pages) +
	       job->count * (sizeof(uint64_t) + MIG_PAGE_SIZE);
}

static int sender_send_job(struct mig_src *s, struct mig_sender *snd, const struct mig_job *job)
{
	struct mig_pages *mp = snd->hdr;
	const uint8_t *base = s->vm->slots[job->slot].hva;
	uint32_t i, nr_data = 0, zero = 0;
	struct iovec iov[2];
	uint64_t bytes;
	int ret;

	mp->slot = job->slot;
	mp->count = job->count;
	mp->gen = job->gen;
	for (i = 0; i < job->count; i++) {
		const uint8_t *src = base + job->idx[i] * MIG_PAGE_SIZE;

		if (s->p.zero_page_detection && buffer_is_zero(src, MIG_PAGE_SIZE)) {
			mp->entries[i] = job->idx[i] | MIG_PAGE_ZERO;
			zero++;
			continue;
		}
		mp->entries[i] = job->idx[i];
		/* A private copy: the guest may write the page while we send it. */
		memcpy(snd->data + nr_data * MIG_PAGE_SIZE, src, MIG_PAGE_SIZE);
		nr_data++;
	}
	iov[0].iov_base = mp;
	iov[0].iov_len = sizeof(*mp) + job->count * sizeof(uint64_t);
	iov[1].iov_base = snd->data;
	iov[1].iov_len = nr_data * MIG_PAGE_SIZE;
	bytes = sizeof(struct mig_rec) + iov[0].iov_len + iov[1].iov_len;
	/* sender_take() charged the most; a requested page is never paced. */
	if (job->kind != MIG_JOB_URGENT)
		bandwidth_charge(s, (int64_t)bytes - (int64_t)job_max_bytes(job));
	if (mig_cancelled(s))
		return mig_check_cancel(s);
	ret = mig_send_tallied(&snd->chan, &snd->tally, MIG_REC_PAGES, iov, nr_data ? 2 : 1);
	if (ret)
		return ret;
	__atomic_add_fetch(&s->bytes_sent, bytes, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->pages_sent, nr_data, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->zero_pages, zero, __ATOMIC_RELAXED);
	if (job->kind == MIG_JOB_URGENT)
		__atomic_add_fetch(&s->pc_urgent, job->count, __ATOMIC_RELAXED);
	else if (job->kind == MIG_JOB_BACKGROUND)
		__atomic_add_fetch(&s->pc_background, job->count, __ATOMIC_RELAXED);
	if (job->kind != MIG_JOB_PRECOPY)
		__atomic_store_n(&s->pc_progress_ms, now_ms(), __ATOMIC_RELAXED);
	return 0;
}

/* The next batch for @snd, with qlock held: false when it is to stop. */
static bool sender_take(struct mig_src *s, struct mig_sender *snd, struct mig_job *job)
{
	pthread_cond_t *work = snd->preempt ? &s->uqwork : &s->qwork;
	unsigned int *head = snd->preempt ? &s->uqhead : &s->qhead;
	unsigned int *count = snd->preempt ? &s->uqcount : &s->qcount;
	struct mig_job *queue = snd->preempt ? s->uqueue : s->queue;
	struct timespec until;

	for (;;) {
		double wait;

		if (s->error || (s->stop && !*count))
			return false;
		if (!*count) {
			pthread_cond_wait(work, &s->qlock);
			continue;
		}
		/* A requested page goes at once; the rest when the bucket allows. */
		if (queue[*head].kind == MIG_JOB_URGENT)
			break;
		wait = bandwidth_wait(s);
		if (wait <= 0 || mig_cancelled(s)) {
			bandwidth_charge(s, job_max_bytes(&queue[*head]));
			break;
		}
		/* Woken by new work (a requested page at the head), or a tick later for a cancel. */
		if (wait > NET_TICK_MS / 1000.0)
			wait = NET_TICK_MS / 1000.0;
		until = deadline_in_ns(CLOCK_MONOTONIC, (uint64_t)(wait * NSEC_PER_SEC));
		pthread_cond_timedwait(work, &s->qlock, &until);
	}
	*job = queue[*head];
	*head = (*head + 1) % MIG_QUEUE_DEPTH;
	(*count)--;
	s->qbusy++;
	/*
	 * The walk waits on a full queue: wake it when half is free, not at
	 * each batch taken, so it runs once per half queue instead of
	 * trading a wake-up with the senders per batch.  A requested page
	 * (postcopy) waits for no more than one slot.
	 */
	if (snd->preempt || s->postcopy || *count <= MIG_QUEUE_DEPTH / 2)
		pthread_cond_broadcast(&s->qspace);
	return true;
}

/*
 * A channel's first background batch of postcopy.  From here on a vCPU on
 * the destination may wait for a page that queues behind what this channel
 * has in flight, and the hint moves the walk only for batches not yet in a
 * socket: so the channel keeps little unsent (its 4 MiB buffer is 32 ms at
 * 1 Gbit/s).  Measured on loopback and on the 1 Gbit/s link
 * (Documentation/benchmarks.rst): without it the hint did not help.
 */
static void sender_postcopy_background(struct mig_sender *snd)
{
	int unsent = MIG_PC_UNSENT_BYTES;

	if (setsockopt(snd->chan.fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent, sizeof(unsent)))
		kvmmig_info("%s keeps its send buffer: TCP_NOTSENT_LOWAT: %s", snd->chan.name,
			    strerror(errno));
	snd->background = true;
}

static void *sender_thread(void *arg)
{
	struct mig_sender *snd = arg;
	struct mig_src *s = snd->src;
	struct mig_job job;
	int ret;

	/* Failures reach the report through mig_src_fail(), once. */
	kvmmig_log_quiet(true);
	/* A vCPU on the destination waits for every page the preempt channel sends. */
	if (snd->preempt)
		kvmmig_thread_urgent(snd->chan.name);
	for (;;) {
		pthread_mutex_lock(&s->qlock);
		if (!sender_take(s, snd, &job)) {
			pthread_mutex_unlock(&s->qlock);
			break;
		}
		pthread_mutex_unlock(&s->qlock);

		if (job.kind == MIG_JOB_BACKGROUND && !snd->background)
			sender_postcopy_background(snd);
		ret = sender_send_job(s, snd, &job);

		pthread_mutex_lock(&s->qlock);
		s->qbusy--;
		if (!s->qcount && !s->uqcount && !s->qbusy)
			pthread_cond_broadcast(&s->qidle);
		pthread_mutex_unlock(&s->qlock);
		if (ret) {
			/* A deadline or cancel already names the channel. */
			if (ret != -ETIMEDOUT && ret != -ECANCELED)
				kvmmig_err("%s: %s", snd->chan.name, kvmmig_last_error());
			mig_src_fail(s, ret);
			break;
		}
	}
	return NULL;
}

/* ---- connection set-up ---- */

int mig_connect_channel(struct mig_src *s, struct mig_chan *c, unsigned int index)
{
	struct mig_hello h = {
		.channel = index,
		.session = s->session,
		.nr_channels = s->nr_senders + 1,
		.flags = s->hello_flags,
	};
	/* In postcopy a cancel is refused: it must not cut a channel short. */
	const volatile sig_atomic_t *cancel = s->postcopy ? NULL : s->opts->cancel;
	struct net_wait cw = {
		.timeout_ms = s->p.connect_timeout_ms,
		.cancel = cancel,
	};
	int fd, ret;

	fd = net_connect(s->to, &cw);
	if (fd < 0)
		return fd;
	mig_chan_init(c, fd, index);
	mig_chan_limit(c, s->p.io_timeout_ms, cancel);
	ret = s->tls ? mig_chan_start_tls(c, s->tls, s->to, s->tls_host, NULL) : 0;
	if (!ret && s->tls && !index)
		s->rep->tls = tls_sess_engine(c->tls);
	mig_hello_seal(&h);
	if (!ret)
		ret = mig_chan_write(c, &h, sizeof(h));
	if (ret)
		mig_chan_close(c);
	return ret;
}

/* The senders' buffers, once: a postcopy recovery starts them again on new channels. */
static int mig_alloc_senders(struct mig_src *s)
{
	struct mig_sender *senders;
	unsigned int i;

	senders = calloc(s->nr_senders, sizeof(*senders));
	if (!senders)
		return -ENOMEM;
	for (i = 0; i < s->nr_senders; i++) {
		senders[i].chan.fd = -1;
		senders[i].src = s;
		senders[i].preempt = s->preempt && i == s->nr_senders - 1;
	}
	/* The return path may shut the channels down from now on. */
	pthread_mutex_lock(&s->qlock);
	s->senders = senders;
	pthread_mutex_unlock(&s->qlock);
	for (i = 0; i < s->nr_senders; i++) {
		senders[i].hdr = malloc(sizeof(struct mig_pages) + MIG_MAX_BATCH * sizeof(uint64_t));
		senders[i].data = aligned_alloc(64, MIG_MAX_BATCH * MIG_PAGE_SIZE);
		if (!senders[i].hdr || !senders[i].data)
			return -ENOMEM;
	}
	return 0;
}

int mig_start_senders(struct mig_src *s)
{
	unsigned int i;
	int ret;

	if (!s->senders) {
		ret = mig_alloc_senders(s);
		if (ret)
			return ret;
	}
	for (i = 0; i < s->nr_senders; i++) {
		struct mig_chan *c = &s->senders[i].chan;

		ret = mig_connect_channel(s, c, i + 1);
		if (ret)
			return ret;
		if (s->senders[i].preempt)
			snprintf(c->name, sizeof(c->name), "preempt channel %u", i + 1);
	}
	for (i = 0; i < s->nr_senders; i++) {
		ret = pthread_create(&s->senders[i].thread, NULL, sender_thread, &s->senders[i]);
		if (ret) {
			kvmmig_err("cannot start sender thread %u: %s", i, strerror(ret));
			return -ret;
		}
		s->senders[i].started = true;
	}
	return 0;
}

void mig_stop_senders(struct mig_src *s)
{
	unsigned int i;

	pthread_mutex_lock(&s->qlock);
	s->stop = true;
	pthread_cond_broadcast(&s->qwork);
	pthread_cond_broadcast(&s->uqwork);
	pthread_mutex_unlock(&s->qlock);
	for (i = 0; s->senders && i < s->nr_senders; i++) {
		struct mig_sender *snd = &s->senders[i];

		/* A sender stuck in send() to a dead peer is woken by the shutdown. */
		if (s->error && snd->chan.fd >= 0)
			shutdown(snd->chan.fd, SHUT_RDWR);
		if (snd->started)
			pthread_join(snd->thread, NULL);
		snd->started = false;
	}
}

int mig_queue_pages(struct mig_src *s, unsigned int slot, unsigned long *map, uint64_t npages,
		    uint64_t *sent)
{
	struct mig_job job = { .slot = slot, .gen = s->sync.gen };
	uint64_t w, nwords = BITMAP_WORDS(npages);
	int ret;

	for (w = 0; w < nwords; w++) {
		unsigned long bits;

		/* bitmap-manual re-protects each 4096-page chunk just before sending it. */
		if ((w & 63) == 0) {
			uint64_t first = w * BITS_PER_LONG, left = npages - first;
			uint64_t chunk = 64 * BITS_PER_LONG;

			ret = dirty_source_clear(s->ds, slot, first, left < chunk ? left : chunk,
						 &map[w]);
			if (ret)
				return ret;
		}
		bits = map[w];
		/* Taken out of bmap before it is sent: a later sync may set it again. */
		map[w] = 0;
		while (bits) {
			job.idx[job.count++] = w * BITS_PER_LONG + __builtin_ctzl(bits);
			bits &= bits - 1;
			if (job.count == MIG_MAX_BATCH) {
				ret = mig_queue_push(s, &job);
				if (ret)
					return ret;
				*sent += job.count;
				job.count = 0;
			}
		}
		if ((w & 63) == 63) {
			/* A sync may bump the generation: close this batch first. */
			if (job.count) {
				ret = mig_queue_push(s, &job);
				if (ret)
					return ret;
				*sent += job.count;
				job.count = 0;
			}
			ret = mig_between_batches(s);
			if (ret)
				return ret;
			job.gen = s->sync.gen;
		}
	}
	if (job.count) {
		ret = mig_queue_push(s, &job);
		if (ret)
			return ret;
		*sent += job.count;
	}
	return 0;
}
