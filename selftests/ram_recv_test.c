// SPDX-License-Identifier: GPL-2.0-only
/*
 * Tests of the receiver's direct read of page data (user/lib/ram_recv.c)
 * and its interplay with the buffered writer (ram_writer.c), no KVM: a
 * "guest" of plain memory, records sealed by the test and written into one
 * end of a socket pair, mig_pages_recv() reading the other.  A record lands
 * in place and counts; a corrupted one fails and leaves its pages zero and
 * unwritten; and while a page is being read straight from a socket, a copy
 * of it from another channel through the buffer waits, then the
 * generations decide: the newer copy is what stays, whichever came last.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bitmap.h"
#include "kselftest_harness.h"
#include "net.h"
#include "stream.h"

#define PAGES	64
#define PAGE	MIG_PAGE_SIZE

struct rig {
	struct mig_config *cfg;
	uint8_t *guest;
	struct mig_target t;
	int sv[2];		/* [0]: the source writes, [1]: the receiver reads */
	struct mig_chan c;
	void *scratch;
	uint64_t seq;
};

static void rig_init(struct rig *r)
{
	void *hva[1];

	memset(r, 0, sizeof(*r));
	r->cfg = calloc(1, mig_config_size(1));
	r->cfg->nr_slots = 1;
	r->cfg->nr_vcpus = 1;
	r->cfg->page_size = PAGE;
	r->cfg->vcpu_state_size = 8;
	r->cfg->ram_bytes = PAGES * PAGE;
	r->cfg->slots[0].size = PAGES * PAGE;
	r->guest = aligned_alloc(PAGE, PAGES * PAGE);
	memset(r->guest, 0, PAGES * PAGE);
	hva[0] = r->guest;
	r->scratch = malloc(MIG_MAX_PAYLOAD);
	if (mig_target_init(&r->t, r->cfg, hva, 0) || socketpair(AF_UNIX, SOCK_STREAM, 0, r->sv))
		abort();
	mig_chan_init(&r->c, r->sv[1], 1);
}

static void rig_free(struct rig *r)
{
	mig_target_destroy(&r->t);
	close(r->sv[0]);
	close(r->sv[1]);
	free(r->scratch);
	free(r->guest);
	free(r->cfg);
}

/*
 * A PAGES record of @n entries (@idx; a page whose @fill is 0 goes as a
 * zero page) in generation @gen, sealed: header and payload in @out.
 */
static size_t make_record(uint8_t *out, uint64_t seq, uint64_t gen, const uint64_t *idx,
			  const uint8_t *fill, unsigned int n, bool corrupt)
{
	struct mig_rec *rec = (struct mig_rec *)out;
	struct mig_pages *mp = (struct mig_pages *)(rec + 1);
	uint8_t *data = (uint8_t *)&mp->entries[n];
	unsigned int i;
	uint32_t len;

	mp->slot = 0;
	mp->count = n;
	mp->gen = gen;
	for (i = 0; i < n; i++) {
		mp->entries[i] = idx[i] | (fill[i] ? 0 : MIG_PAGE_ZERO);
		if (fill[i]) {
			memset(data, fill[i], PAGE);
			data += PAGE;
		}
	}
	len = data - (uint8_t *)mp;
	mig_rec_seal(rec, MIG_REC_PAGES, seq, mp, len);
	if (corrupt)
		data[-1] ^= 1;
	return sizeof(*rec) + len;
}

static int recv_one(struct rig *r)
{
	struct mig_rec rec;
	int ret = mig_chan_recv_header(&r->c, &rec);

	return ret ? ret : mig_pages_recv(&r->t, &r->c, &rec, r->scratch);
}

static bool page_is(const struct rig *r, uint64_t idx, uint8_t v)
{
	unsigned int i;

	for (i = 0; i < PAGE; i++)
		if (r->guest[idx * PAGE + i] != v)
			return false;
	return true;
}

TEST(direct_read_lands_in_place)
{
	static uint8_t buf[sizeof(struct mig_rec) + MIG_MAX_PAYLOAD];
	const uint64_t idx[] = { 3, 4, 5, 9 };
	const uint8_t fill[] = { 0x11, 0x22, 0, 0x33 };
	struct rig r;
	size_t n;

	rig_init(&r);
	n = make_record(buf, 0, 1, idx, fill, 4, false);
	ASSERT_EQ(n, (size_t)write(r.sv[0], buf, n));
	ASSERT_EQ(4, recv_one(&r));
	EXPECT_TRUE(page_is(&r, 3, 0x11));
	EXPECT_TRUE(page_is(&r, 4, 0x22));
	EXPECT_TRUE(page_is(&r, 5, 0));
	EXPECT_TRUE(page_is(&r, 9, 0x33));
	EXPECT_TRUE(page_is(&r, 6, 0));
	EXPECT_EQ(1U, r.t.gen[0][3]);
	EXPECT_EQ(1U, r.t.gen[0][5]);
	EXPECT_EQ(0U, r.t.gen[0][6]);
	EXPECT_EQ(4U, r.t.pages);
	EXPECT_EQ(1U, r.t.zero_pages);
	EXPECT_EQ(1U, r.c.rx_seq);
	EXPECT_FALSE(bitmap_test_bit(r.t.inflight[0], 3));

	/* Page 3 is written now: a later copy goes through the buffer, and is applied. */
	n = make_record(buf, 1, 2, idx, (const uint8_t[]){ 0x44, 0x55, 0, 0x66 }, 4, false);
	ASSERT_EQ(n, (size_t)write(r.sv[0], buf, n));
	ASSERT_EQ(4, recv_one(&r));
	EXPECT_TRUE(page_is(&r, 3, 0x44));
	EXPECT_TRUE(page_is(&r, 9, 0x66));
	EXPECT_EQ(2U, r.t.gen[0][9]);
	rig_free(&r);
}

TEST(corrupted_record_leaves_nothing)
{
	static uint8_t buf[sizeof(struct mig_rec) + MIG_MAX_PAYLOAD];
	const uint64_t idx[] = { 10, 11 };
	const uint8_t fill[] = { 0x77, 0x78 };
	struct rig r;
	size_t n;

	rig_init(&r);
	n = make_record(buf, 0, 1, idx, fill, 2, true);
	ASSERT_EQ(n, (size_t)write(r.sv[0], buf, n));
	EXPECT_EQ(-EBADMSG, recv_one(&r));
	EXPECT_TRUE(page_is(&r, 10, 0));
	EXPECT_TRUE(page_is(&r, 11, 0));
	EXPECT_EQ(0U, r.t.gen[0][10]);
	EXPECT_EQ(0U, r.t.pages);
	EXPECT_FALSE(bitmap_test_bit(r.t.inflight[0], 11));
	rig_free(&r);
}

struct apply_arg {
	struct rig *r;
	const uint8_t *payload;
	uint32_t len;
	int ret;
};

static void *apply_thread(void *arg)
{
	struct apply_arg *a = arg;

	a->ret = mig_pages_apply(&a->r->t, a->payload, a->len);
	return NULL;
}

struct recv_arg {
	struct rig *r;
	int ret;
};

static void *recv_thread(void *arg)
{
	struct recv_arg *a = arg;

	a->ret = recv_one(a->r);
	return NULL;
}

/*
 * Page 7 is being read straight from the socket in generation @direct_gen
 * (its data held back half-way) while another channel's copy in
 * @buffered_gen is applied through the buffer; the newer must stay.
 */
static void race(struct __test_metadata *_metadata, uint64_t direct_gen, uint64_t buffered_gen)
{
	static uint8_t buf[sizeof(struct mig_rec) + MIG_MAX_PAYLOAD];
	static uint8_t other[sizeof(struct mig_rec) + MIG_MAX_PAYLOAD];
	const uint64_t idx[] = { 7 };
	struct recv_arg ra;
	struct apply_arg aa;
	pthread_t rt, at;
	struct rig r;
	size_t n, half;
	int spins;

	rig_init(&r);
	n = make_record(buf, 0, direct_gen, idx, (const uint8_t[]){ 0xd1 }, 1, false);
	make_record(other, 0, buffered_gen, idx, (const uint8_t[]){ 0xb2 }, 1, false);
	half = n - PAGE / 2;
	ASSERT_EQ(half, (size_t)write(r.sv[0], buf, half));
	ra.r = &r;
	ASSERT_EQ(0, pthread_create(&rt, NULL, recv_thread, &ra));
	/* Claimed: in flight once the header and entries are read. */
	for (spins = 0; spins < 5000; spins++) {
		pthread_mutex_lock(&r.t.locks[0]);
		if (bitmap_test_bit(r.t.inflight[0], 7))
			break;
		pthread_mutex_unlock(&r.t.locks[0]);
		usleep(1000);
	}
	ASSERT_LT(spins, 5000);
	pthread_mutex_unlock(&r.t.locks[0]);
	aa.r = &r;
	aa.payload = other + sizeof(struct mig_rec);
	aa.len = ((struct mig_rec *)other)->len;
	ASSERT_EQ(0, pthread_create(&at, NULL, apply_thread, &aa));
	/* Give the buffered copy every chance to go first if it would not wait. */
	usleep(100000);
	ASSERT_EQ(n - half, (size_t)write(r.sv[0], buf + half, n - half));
	pthread_join(rt, NULL);
	pthread_join(at, NULL);
	EXPECT_EQ(1, ra.ret);
	EXPECT_EQ(1, aa.ret);
	EXPECT_TRUE(page_is(&r, 7, direct_gen > buffered_gen ? 0xd1 : 0xb2));
	EXPECT_EQ(direct_gen > buffered_gen ? direct_gen : buffered_gen, (uint64_t)r.t.gen[0][7]);
	EXPECT_EQ(direct_gen > buffered_gen ? 1U : 0U, r.t.stale);
	rig_free(&r);
}

TEST(newer_copy_waits_for_direct_read)
{
	race(_metadata, 1, 2);
}

TEST(older_copy_dropped_after_direct_read)
{
	race(_metadata, 2, 1);
}

TEST_HARNESS_MAIN
