// SPDX-License-Identifier: GPL-2.0-only
/*
 * TLS throughput on migration channels against plaintext, in the same run.
 * For 1 and 4 channels, each a loopback TCP connection with a sending and
 * a receiving thread moving 512 KiB writes (a batch of 128 pages) through
 * the channel transport the migration uses (mig_chan_write/mig_chan_read),
 * the cases take turns round after round: plaintext, TLS with GnuTLS
 * encrypting, and TLS with the kernel encrypting (kTLS) where the kernel
 * offers it.  Each case reports the median GB/s of its rounds, their range
 * and the ratio of the median to plaintext's; and the CPU time both ends
 * spent per byte, with plaintext's divided by it: the throughput ratio a
 * CPU-bound run would reach on an otherwise idle machine, which the wall
 * clock on a shared one cannot show.  The handshake (PSK, TLS 1.3,
 * AES-GCM; x509 costs the same per byte) is outside the timed part.  Every
 * byte received is counted, and the first page of each connection checked.
 *
 *   tls_perf [--quick] [--mib N] [--json FILE]
 *
 * --quick: 128 MiB per channel and 3 rounds instead of 512 MiB and 5;
 * --mib N: N MiB per channel (under QEMU TCG, where AES runs emulated).
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "net.h"
#include "perf_util.h"
#include "tls.h"

#define CHUNK		(512 << 10)
#define MAX_CHANNELS	4
#define MAX_ROUNDS	9

enum mode { MODE_PLAIN, MODE_GNUTLS, MODE_KTLS, NR_MODES };

static const char *const mode_names[] = { "plaintext", "tls-gnutls", "tls-ktls" };

struct conn {
	struct mig_chan tx, rx;
	uint64_t bytes;		/* per connection, each way */
	pthread_t sender, receiver;
	int ret;
	unsigned char *buf;
};

struct bench {
	uint64_t bytes;		/* per channel per round */
	unsigned int rounds;
	struct tls_creds *cli, *srv, *cli_ktls, *srv_ktls;
	bool ktls;
	struct perf_json json;
};

/* CPU seconds of all threads of this process, user and system. */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void *conn_send(void *arg)
{
	struct conn *c = arg;
	uint64_t left = c->bytes;
	int ret = 0;

	while (!ret && left) {
		size_t n = left < CHUNK ? left : CHUNK;

		ret = mig_chan_write(&c->tx, c->buf, n);
		left -= n;
	}
	if (ret)
		c->ret = ret;
	return NULL;
}

static void *conn_recv(void *arg)
{
	struct conn *c = arg;
	unsigned char *buf = malloc(CHUNK);
	uint64_t left = c->bytes;
	int ret = buf ? 0 : -ENOMEM;
	bool first = true;

	while (!ret && left) {
		size_t n = left < CHUNK ? left : CHUNK;

		ret = mig_chan_read(&c->rx, buf, n, &c->rx.wait);
		if (!ret && first && memcmp(buf, c->buf, 4096))
			ret = -EBADMSG;
		first = false;
		left -= n;
	}
	if (ret)
		c->ret = ret;
	free(buf);
	return NULL;
}

struct hs {
	struct mig_chan *ch;
	struct tls_creds *creds;
	int ret;
};

static void *server_handshake(void *arg)
{
	struct hs *h = arg;

	h->ret = mig_chan_start_tls(h->ch, h->creds, "tcp:127.0.0.1:bench-client", NULL, NULL);
	return NULL;
}

/* A loopback connection, TLS on both ends unless plaintext. */
static int conn_open(struct bench *b, struct conn *c, enum mode m, unsigned char *data)
{
	int port, lfd = net_listen("tcp:127.0.0.1:0", &port), fd;
	char addr[64];
	struct hs h;
	pthread_t t;
	int ret;

	memset(c, 0, sizeof(*c));
	c->bytes = b->bytes;
	c->buf = data;
	if (lfd < 0)
		return lfd;
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", port);
	fd = net_connect(addr, NULL);
	mig_chan_init(&c->tx, fd, 1);
	fd = fd < 0 ? fd : net_accept(lfd, NULL, 5000, -1);
	mig_chan_init(&c->rx, fd, 1);
	close(lfd);
	if (fd < 0)
		return fd;
	if (m == MODE_PLAIN)
		return 0;
	h = (struct hs){ .ch = &c->rx, .creds = m == MODE_KTLS ? b->srv_ktls : b->srv };
	pthread_create(&t, NULL, server_handshake, &h);
	ret = mig_chan_start_tls(&c->tx, m == MODE_KTLS ? b->cli_ktls : b->cli, addr, NULL, NULL);
	pthread_join(t, NULL);
	if (ret || h.ret)
		return ret ? ret : h.ret;
	if (strcmp(tls_sess_engine(c->tx.tls), m == MODE_KTLS ? "ktls" : "gnutls")) {
		fprintf(stderr, "tls_perf: %s asked, the channel has %s\n", mode_names[m],
			tls_sess_engine(c->tx.tls));
		return -EINVAL;
	}
	return 0;
}

/*
 * One round of one case: GB/s over all channels, or a negative errno; and
 * in @cpu_ns the CPU nanoseconds (both ends) per byte, which other work on
 * the machine does not change the way it changes the wall time.
 */
static double run_round(struct bench *b, enum mode m, unsigned int nr, unsigned char *data,
			double *cpu_ns)
{
	struct conn c[MAX_CHANNELS];
	unsigned int i;
	double t0, t, c0;
	int ret = 0;

	for (i = 0; i < nr && !ret; i++)
		ret = conn_open(b, &c[i], m, data);
	if (ret) {
		fprintf(stderr, "tls_perf: %s: %s\n", mode_names[m], kvmmig_last_error());
		for (; i > 0; i--)
			mig_chan_close(&c[i - 1].tx), mig_chan_close(&c[i - 1].rx);
		return ret;
	}
	t0 = now_s();
	c0 = cpu_s();
	for (i = 0; i < nr; i++) {
		pthread_create(&c[i].receiver, NULL, conn_recv, &c[i]);
		pthread_create(&c[i].sender, NULL, conn_send, &c[i]);
	}
	for (i = 0; i < nr; i++) {
		pthread_join(c[i].sender, NULL);
		pthread_join(c[i].receiver, NULL);
	}
	t = now_s() - t0;
	*cpu_ns = (cpu_s() - c0) * 1e9 / (nr * b->bytes);
	for (i = 0; i < nr; i++) {
		if (c[i].ret && !ret)
			ret = c[i].ret;
		mig_chan_close(&c[i].tx);
		mig_chan_close(&c[i].rx);
	}
	if (ret) {
		fprintf(stderr, "tls_perf: %s: %s\n", mode_names[m], kvmmig_last_error());
		return ret;
	}
	return nr * b->bytes / t / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int bench_channels(struct bench *b, unsigned int nr, unsigned char *data)
{
	double gbps[NR_MODES][MAX_ROUNDS], cpu[NR_MODES][MAX_ROUNDS], med[NR_MODES], mcpu[NR_MODES];
	unsigned int r, m, nr_modes = b->ktls ? NR_MODES : MODE_KTLS;
	double v;

	/* The cases take turns: a noisy moment hurts one round of each. */
	for (r = 0; r < b->rounds; r++) {
		for (m = 0; m < nr_modes; m++) {
			v = run_round(b, m, nr, data, &cpu[m][r]);
			if (v < 0)
				return -1;
			gbps[m][r] = v;
		}
	}
	for (m = 0; m < nr_modes; m++) {
		qsort(gbps[m], b->rounds, sizeof(double), cmp_double);
		qsort(cpu[m], b->rounds, sizeof(double), cmp_double);
		med[m] = gbps[m][b->rounds / 2];
		mcpu[m] = cpu[m][b->rounds / 2];
		printf("%8u  %-11s %9.3f  %6.3f-%-6.3f %8.2fx %9.3f %8.2fx\n", nr, mode_names[m],
		       med[m], gbps[m][0], gbps[m][b->rounds - 1], med[m] / med[MODE_PLAIN],
		       mcpu[m], mcpu[MODE_PLAIN] / mcpu[m]);
		perf_json_begin(&b->json);
		perf_json_str(&b->json, "mode", mode_names[m]);
		perf_json_num(&b->json, "channels", nr);
		perf_json_num(&b->json, "gbps_median", med[m]);
		perf_json_num(&b->json, "gbps_min", gbps[m][0]);
		perf_json_num(&b->json, "gbps_max", gbps[m][b->rounds - 1]);
		perf_json_num(&b->json, "ratio_to_plaintext", med[m] / med[MODE_PLAIN]);
		perf_json_num(&b->json, "cpu_ns_per_byte", mcpu[m]);
		perf_json_num(&b->json, "cpu_ratio_to_plaintext", mcpu[MODE_PLAIN] / mcpu[m]);
		perf_json_end(&b->json);
	}
	fflush(stdout);
	return 0;
}

/* A PSK file with a random key, loaded for both sides, with and without kTLS. */
static int bench_creds(struct bench *b)
{
	char path[] = "/tmp/kvmmig-tls-perf-XXXXXX";
	unsigned char key[32];
	int fd = mkstemp(path), ret;
	struct tls_opts o = { .psk_file = path };
	FILE *f;
	size_t i;

	if (fd < 0)
		return -errno;
	f = fdopen(fd, "w");
	for (i = 0; i < sizeof(key); i++)
		key[i] = random();
	fputs("qemu:", f);
	for (i = 0; i < sizeof(key); i++)
		fprintf(f, "%02x", key[i]);
	fputs("\n", f);
	fclose(f);
	ret = tls_creds_load(&o, false, &b->cli_ktls);
	if (!ret)
		ret = tls_creds_load(&o, true, &b->srv_ktls);
	o.no_ktls = true;
	if (!ret)
		ret = tls_creds_load(&o, false, &b->cli);
	if (!ret)
		ret = tls_creds_load(&o, true, &b->srv);
	unlink(path);
	return ret;
}

static void log_to_stderr(int level, const char *msg)
{
	fprintf(stderr, "tls_perf: %s\n", msg);
}

/* kTLS is measured only where a channel really gets it. */
static bool bench_has_ktls(struct bench *b, unsigned char *data)
{
	struct conn c;
	bool ok;

	/* Say why not, if not. */
	kvmmig_set_log(log_to_stderr, KVMMIG_LOG_DEBUG);
	ok = !conn_open(b, &c, MODE_KTLS, data);
	kvmmig_set_log(log_to_stderr, KVMMIG_LOG_ERR);
	mig_chan_close(&c.tx);
	mig_chan_close(&c.rx);
	return ok;
}

int main(int argc, char **argv)
{
	struct bench b = { .bytes = 512ULL << 20, .rounds = 5 };
	static const unsigned int channels[] = { 1, 4 };
	unsigned char *data;
	unsigned int i;
	int ret = 0;

	for (i = 1; i < (unsigned int)argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			printf("usage: tls_perf [--quick] [--mib N] [--json FILE]\n\n"
			       "TLS (GnuTLS, and kTLS where the kernel offers it) against plaintext\n"
			       "over loopback, 1 and 4 channels, alternating rounds, medians.\n\n"
			       "examples:\n"
			       "  build/selftests/tls_perf --json build/bench/tls_perf.json\n"
			       "  selftests/vm/run.sh -k 6.1 -x build/selftests/tls_perf \\\n"
			       "      -c 'build/selftests/tls_perf --quick --mib 32'\n");
			return 0;
		}
		if (!strcmp(argv[i], "--quick")) {
			b.bytes = 128ULL << 20;
			b.rounds = 3;
		}
	}
	/* After --quick, whatever the order. */
	for (i = 1; i + 1 < (unsigned int)argc; i++) {
		if (!strcmp(argv[i], "--mib")) {
			b.bytes = strtoull(argv[i + 1], NULL, 0) << 20;
			if (!b.bytes || b.bytes > (64ULL << 30)) {
				fprintf(stderr, "tls_perf: --mib '%s': expected 1-65536\n", argv[i + 1]);
				return 2;
			}
		}
	}
	if (perf_json_open(&b.json, argc, argv, "tls"))
		return 2;
	data = malloc(CHUNK);
	if (!data || bench_creds(&b))
		return 1;
	/* Pages of a guest: not all zero, not compressible by anyone. */
	for (i = 0; i < CHUNK; i++)
		data[i] = random();
	b.ktls = bench_has_ktls(&b, data);
	printf("TLS against plaintext over loopback: %llu MiB per channel per round, median of %u rounds; kTLS %s\n",
	       (unsigned long long)(b.bytes >> 20), b.rounds,
	       b.ktls ? "in use" : "not available (above: why)");
	printf("channels  case            GB/s  range          vs plain  CPU ns/B  vs plain\n");
	for (i = 0; !ret && i < 2; i++)
		ret = bench_channels(&b, channels[i], data);
	perf_json_close(&b.json);
	tls_creds_free(b.cli);
	tls_creds_free(b.srv);
	tls_creds_free(b.cli_ktls);
	tls_creds_free(b.srv_ktls);
	free(data);
	return ret ? 1 : 0;
}
