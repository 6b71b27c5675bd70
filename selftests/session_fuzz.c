// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the receiver's connection and session handling
 * (user/lib/mig_listen.c): what anyone who reaches the listening port can
 * drive.  Each input opens up to 12 loopback connections to one listener,
 * writes the input's bytes on them (raw, or made into a hello with a valid
 * checksum so the session checks are reached) and half-closes them, then
 * asks the listener for the connection it waits for (the main channel of a
 * new session, or a page channel of a session the input names) until it
 * has judged them all.  The harness checks what the listener promises:
 * every connection it hands over carries a valid hello of that session and
 * a channel not yet taken, every other one is set aside (and counted) or,
 * while no session runs, kept as a valid page channel for the session to
 * come, and nothing waits past its deadline.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "csum.h"
#define FUZZ_NAME "session_fuzz"
#include "fuzz_util.h"
#include "log.h"
#include "mig_listen.h"
#include "migrate.h"
#include "net.h"

#define MAX_CONNS	12
#define MAX_BYTES	255	/* per connection: always fits the socket buffers */

static struct mig_listener lis;
static char lis_addr[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	int port;

	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	signal(SIGPIPE, SIG_IGN);
	/* Every connection half-closes: only a broken listener meets this. */
	FUZZ_BUG_ON(mig_listener_open(&lis, "tcp:127.0.0.1:0", &port, 5000));
	snprintf(lis_addr, sizeof(lis_addr), "tcp:127.0.0.1:%d", port);
	return 0;
}

/*
 * Flags of a connection: the byte after its length.  SEAL turns its bytes
 * into a checksummed hello of version 1, OURS puts the wanted session in
 * it, MAIN makes it channel 0.
 */
enum { CONN_SEAL = 1, CONN_OURS = 2, CONN_MAIN = 4 };

static void conn_bytes(struct fuzz_in *in, const struct mig_want *w, uint8_t *buf, size_t *len)
{
	uint8_t flags = in_byte(in);
	struct mig_hello *h = (struct mig_hello *)buf;

	*len = in_byte(in);
	in_fill(in, buf, *len);
	if (!(flags & CONN_SEAL))
		return;
	if (*len < sizeof(*h))
		*len = sizeof(*h);
	h->magic = MIG_MAGIC;
	h->version = MIG_VERSION;
	if (flags & CONN_OURS) {
		h->session = w->session;
		h->nr_channels = w->nr_channels;
		h->flags = h->reserved[0] = h->reserved[1] = h->pad = 0;
		h->channel = flags & CONN_MAIN ? 0 : h->channel % (w->nr_channels ? w->nr_channels : 1);
	}
	h->crc = crc32c(0, h, offsetof(struct mig_hello, crc));
}

/* What the listener handed over must be exactly what was asked for. */
static void check_wanted(const struct mig_want *w, bool *taken, const struct mig_hello *h)
{
	FUZZ_BUG_ON(mig_hello_check(h));
	if (w->new_session) {
		FUZZ_BUG_ON(h->channel != 0);
		return;
	}
	FUZZ_BUG_ON(h->session != w->session || h->nr_channels != w->nr_channels);
	FUZZ_BUG_ON(!h->channel || h->channel >= w->nr_channels || taken[h->channel]);
	taken[h->channel] = true;
}

/*
 * What is still pending once all was judged: only page channels with a
 * valid hello kept for a session yet to start.  Dropped here, so the next
 * input starts afresh; how many.
 */
static unsigned int forget_parked(const struct mig_want *w)
{
	unsigned int i, n = 0;

	for (i = 0; i < MIG_LISTEN_MAX_PENDING; i++) {
		struct mig_pending *p = &lis.pend[i];

		if (p->fd < 0)
			continue;
		FUZZ_BUG_ON(!w->new_session || p->got != sizeof(p->h));
		FUZZ_BUG_ON(mig_hello_check(&p->h) || !p->h.channel);
		close(p->fd);
		p->fd = -1;
		n++;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	bool taken[MIG_MAX_CHANNELS] = { true };
	struct mig_want w = { .taken = taken };
	unsigned int nr, i, handed = 0, parked, ignored0 = lis.nr_ignored;
	int cfd[MAX_CONNS], stop[2], fd;
	uint8_t buf[MAX_BYTES + sizeof(struct mig_hello)];
	struct mig_hello h;
	size_t len;

	w.new_session = in_byte(&in) & 1;
	w.session = in_byte(&in) | (uint64_t)in_u16(&in) << 8;
	w.nr_channels = in_byte(&in) % MIG_MAX_CHANNELS + 1;
	nr = in_byte(&in) % (MAX_CONNS + 1);
	FUZZ_BUG_ON(pipe(stop));
	for (i = 0; i < nr; i++) {
		cfd[i] = net_connect(lis_addr, NULL);
		FUZZ_BUG_ON(cfd[i] < 0);
		conn_bytes(&in, &w, buf, &len);
		if (len)
			FUZZ_BUG_ON(send(cfd[i], buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len);
		shutdown(cfd[i], SHUT_WR);
	}
	/*
	 * Every connection is queued and half-closed: once the listener
	 * reports the hang-up (it does only when nothing else is ready) it
	 * has judged them all.
	 */
	close(stop[1]);
	for (;;) {
		fd = mig_listener_next(&lis, &w, &h, 10000, NULL, stop[0]);
		if (fd < 0)
			break;
		check_wanted(&w, taken, &h);
		handed++;
		close(fd);
	}
	FUZZ_BUG_ON(fd != -ECONNRESET);
	parked = forget_parked(&w);
	FUZZ_BUG_ON(handed + parked + lis.nr_ignored - ignored0 != nr);
	for (i = 0; i < nr; i++) {
		/* A reset, not TIME_WAIT: a long run would use up the ports. */
		setsockopt(cfd[i], SOL_SOCKET, SO_LINGER, &(struct linger){ 1, 0 },
			   sizeof(struct linger));
		close(cfd[i]);
	}
	close(stop[0]);
	return 0;
}
