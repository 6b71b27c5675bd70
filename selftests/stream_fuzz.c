// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer target for the migration stream parser (user/lib/stream.c and the RAM writer,
 * ram_writer.c), the
 * code a corrupted or hostile stream reaches first.  The first input byte
 * picks the entry point: a hello block, a record header, a CONFIG payload,
 * a PAGES payload applied to a fixed two-slot guest, a handover payload
 * (END, PREPARED, COMMIT, ABORT, STARTED) checked and matched against
 * another, or a whole stream parsed record by record as mig_dest.c does,
 * with every record counted into the tally the handover compares, or one
 * of postcopy's records (DISCARD and RECV_MAP bitmaps, REQ, a PAGES record
 * only checked, as a postcopy receiver does before page_fill places it)
 * against the fixed guest.  Raw bytes rarely get past a
 * CRC32C, so "sealed" modes let the harness compute the checksums (and
 * build plausible configurations and page batches) from the input, which
 * drives the deeper checks.  Guest RAM is malloc'd slot by slot at its
 * exact size, so AddressSanitizer reports any access outside it, and the
 * harness checks what the parser promises: a refused batch writes nothing,
 * an accepted one writes exactly its pages.  Built with
 * -DSTREAM_FUZZ_SEEDS, this file is instead a program that writes a seed
 * corpus of valid inputs for every mode (selftests/fuzz.mk).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csum.h"
#define FUZZ_NAME "stream_fuzz"
#include "fuzz_util.h"
#include "log.h"
#include "stream.h"

enum fuzz_mode {
	FUZZ_HELLO,		/* a hello block as is */
	FUZZ_HELLO_SEALED,	/* ... with magic, version and CRC made valid */
	FUZZ_HEADER,		/* a record header as is, the expected seq from the input */
	FUZZ_HEADER_SEALED,	/* ... sealed for the payload that follows it */
	FUZZ_CONFIG,		/* a CONFIG payload */
	FUZZ_PAGES,		/* a PAGES payload applied to the fixed guest */
	FUZZ_STREAM,		/* a whole stream as is */
	FUZZ_STREAM_SEALED,	/* a whole stream framed and sealed by the harness */
	FUZZ_HANDOVER,		/* two handover payloads: the one sent, the answer */
	FUZZ_POSTCOPY,		/* a DISCARD/RECV_MAP, REQ or checked-only PAGES payload */
	NR_FUZZ_MODES,
};

/* The fixed guest of FUZZ_PAGES: two small slots with a hole between. */
#define FIXED_SLOT0_PAGES	4
#define FIXED_SLOT1_PAGES	8
#define FIXED_SLOT1_GPA		0x100000ULL
#define FIXED_MAX_PAGES		8	/* pages of the bigger slot */

/* Guests a stream may describe, small enough to allocate for every input. */
#define STREAM_MAX_SLOTS	4
#define STREAM_MAX_PAGES	64	/* per slot */
#define SEALED_MAX_BYTES	(1 << 20)

/* ---- input ---- */

/* A private copy of exactly @len bytes: ASan sees any read past the end. */
static void *dup_exact(const void *src, size_t len)
{
	void *p = malloc(len ? len : 1);

	FUZZ_BUG_ON(!p);
	memcpy(p, src, len);
	return p;
}

/* ---- a guest to write into ---- */

struct fuzz_guest {
	struct mig_config *cfg;
	void *hva[MIG_MAX_SLOTS];
	struct mig_target t;
	bool ready;
};

/* RAM for @cfg (already valid and small), each slot its own exact block. */
static int guest_init(struct fuzz_guest *g, const struct mig_config *cfg, unsigned int fresh_from)
{
	size_t len = mig_config_size(cfg->nr_slots);
	uint32_t i;

	memset(g, 0, sizeof(*g));
	g->cfg = dup_exact(cfg, len);
	for (i = 0; i < cfg->nr_slots; i++) {
		g->hva[i] = malloc(cfg->slots[i].size);
		FUZZ_BUG_ON(!g->hva[i]);
		/*
		 * Slots from @fresh_from on start zeroed, as the target
		 * assumes; the others hold old data a zero page must clear.
		 */
		memset(g->hva[i], i < fresh_from ? 0xa5 : 0, cfg->slots[i].size);
	}
	if (mig_target_init(&g->t, g->cfg, g->hva, fresh_from))
		return -ENOMEM;
	g->ready = true;
	return 0;
}

static void guest_free(struct fuzz_guest *g)
{
	uint32_t i;

	if (g->ready)
		mig_target_destroy(&g->t);
	for (i = 0; g->cfg && i < g->cfg->nr_slots; i++)
		free(g->hva[i]);
	free(g->cfg);
	memset(g, 0, sizeof(*g));
}

static struct mig_config *fixed_config(void)
{
	static uint64_t buf[(sizeof(struct mig_config) + 2 * sizeof(struct mig_slot_desc)) / 8];
	struct mig_config *c = (struct mig_config *)buf;

	c->nr_slots = 2;
	c->nr_vcpus = 1;
	c->page_size = MIG_PAGE_SIZE;
	c->vcpu_state_size = 64;
	c->ram_bytes = (FIXED_SLOT0_PAGES + FIXED_SLOT1_PAGES) * MIG_PAGE_SIZE;
	c->slots[0] = (struct mig_slot_desc){ .size = FIXED_SLOT0_PAGES * MIG_PAGE_SIZE };
	c->slots[1] = (struct mig_slot_desc){
		.gpa = FIXED_SLOT1_GPA, .size = FIXED_SLOT1_PAGES * MIG_PAGE_SIZE, .id = 1,
	};
	return c;
}

/* ---- what each parser promises ---- */

static void check_hello(const struct mig_hello *h)
{
	/* A re-delivered decision comes alone; a postcopy's new link has all its channels. */
	if (!mig_hello_check_recover(h)) {
		FUZZ_BUG_ON(h->flags != MIG_HELLO_RECOVER &&
			    h->flags != (MIG_HELLO_RECOVER | MIG_HELLO_POSTCOPY));
		FUZZ_BUG_ON(h->flags == MIG_HELLO_RECOVER && h->nr_channels != 1);
		FUZZ_BUG_ON(h->version != MIG_VERSION || h->channel >= h->nr_channels);
	}
	if (mig_hello_check(h))
		return;
	FUZZ_BUG_ON(h->magic != MIG_MAGIC || h->version != MIG_VERSION);
	FUZZ_BUG_ON(h->crc != crc32c(0, h, offsetof(struct mig_hello, crc)));
	FUZZ_BUG_ON(h->flags || h->reserved[0] || h->reserved[1] || h->pad);
	FUZZ_BUG_ON(h->channel >= h->nr_channels);
}

static int check_header(const struct mig_rec *r, uint64_t seq)
{
	int ret = mig_rec_check_header(r, seq);

	if (!ret) {
		FUZZ_BUG_ON(!r->type || r->type >= MIG_REC_MAX || r->seq != seq);
		FUZZ_BUG_ON(r->len > MIG_MAX_PAYLOAD);
		FUZZ_BUG_ON(r->hcrc != crc32c(0, r, offsetof(struct mig_rec, hcrc)));
	}
	mig_rec_name(r->type);
	return ret;
}

static int check_config(const struct mig_config *cfg, uint32_t len)
{
	uint64_t total = 0, end = 0;
	uint32_t i;
	int ret = mig_config_check(cfg, len);

	if (ret)
		return ret;
	FUZZ_BUG_ON(len != mig_config_size(cfg->nr_slots) || !cfg->nr_slots ||
		    cfg->nr_slots > MIG_MAX_SLOTS);
	FUZZ_BUG_ON(!cfg->vcpu_state_size || cfg->vcpu_state_size > MIG_MAX_VCPU_STATE);
	/* Postcopy's flags only; a preempt channel only with postcopy. */
	FUZZ_BUG_ON(cfg->flags & ~MIG_CONFIG_FLAGS);
	FUZZ_BUG_ON(cfg->flags & MIG_CONFIG_PREEMPT && !(cfg->flags & MIG_CONFIG_POSTCOPY));
	for (i = 0; i < cfg->nr_slots; i++) {
		const struct mig_slot_desc *s = &cfg->slots[i];

		FUZZ_BUG_ON(!s->size || s->size % MIG_PAGE_SIZE || s->gpa % MIG_PAGE_SIZE);
		FUZZ_BUG_ON(i && s->gpa < end);
		end = s->gpa + s->size;
		total += s->size;
	}
	FUZZ_BUG_ON(total != cfg->ram_bytes);
	return 0;
}

#define PAGE_ZEROED	((const uint8_t *)1)

/*
 * What each page of @slot must hold after @mp was accepted: NULL for
 * unchanged (not in the batch, or a copy older than the one there),
 * PAGE_ZEROED, or the batch's data for it (the last entry wins).
 */
static void pages_expect(const struct mig_pages *mp, const uint32_t *old_gen, uint32_t slot,
			 const uint8_t **expect)
{
	const uint8_t *data = (const uint8_t *)&mp->entries[mp->count];
	uint32_t i;

	for (i = 0; i < mp->count; i++) {
		uint64_t idx = mp->entries[i] & MIG_PAGE_INDEX_MASK;
		bool zero = mp->entries[i] & MIG_PAGE_ZERO;

		if (mp->slot == slot && mp->gen >= old_gen[idx])
			expect[idx] = zero ? PAGE_ZEROED : data;
		if (!zero)
			data += MIG_PAGE_SIZE;
	}
}

static bool page_is_zero(const uint8_t *p)
{
	return !p[0] && !memcmp(p, p + 1, MIG_PAGE_SIZE - 1);
}

/*
 * Apply one batch.  A refused one must leave every byte of RAM as it was;
 * with @snapshot, an accepted one must have written exactly its pages.
 */
static int check_pages(struct fuzz_guest *g, const void *payload, uint32_t len, bool snapshot)
{
	const struct mig_config *cfg = g->cfg;
	void *before[MIG_MAX_SLOTS] = { NULL };
	uint32_t *old_gen[MIG_MAX_SLOTS] = { NULL };
	uint64_t pages = g->t.pages, n, k;
	uint32_t i;
	int ret;

	for (i = 0; snapshot && i < cfg->nr_slots; i++) {
		n = cfg->slots[i].size / MIG_PAGE_SIZE;
		before[i] = dup_exact(g->hva[i], cfg->slots[i].size);
		old_gen[i] = dup_exact(g->t.gen[i], n * sizeof(uint32_t));
	}
	ret = mig_pages_apply(&g->t, payload, len);
	if (ret >= 0) {
		const struct mig_pages *mp = payload;

		FUZZ_BUG_ON(ret != (int)mp->count || !ret || ret > MIG_MAX_BATCH);
		FUZZ_BUG_ON(g->t.pages != pages + ret);
	} else {
		FUZZ_BUG_ON(ret != -EBADMSG);
		FUZZ_BUG_ON(g->t.pages != pages);
	}
	for (i = 0; snapshot && i < cfg->nr_slots; i++) {
		const uint8_t *expect[FIXED_MAX_PAGES] = { NULL };
		const uint8_t *now = g->hva[i], *was = before[i];

		n = cfg->slots[i].size / MIG_PAGE_SIZE;
		FUZZ_BUG_ON(n > FIXED_MAX_PAGES);
		if (ret >= 0)
			pages_expect(payload, old_gen[i], i, expect);
		for (k = 0; k < n; k++) {
			const uint8_t *p = now + k * MIG_PAGE_SIZE;

			if (!expect[k])
				FUZZ_BUG_ON(memcmp(p, was + k * MIG_PAGE_SIZE, MIG_PAGE_SIZE));
			else if (expect[k] == PAGE_ZEROED)
				FUZZ_BUG_ON(!page_is_zero(p));
			else
				FUZZ_BUG_ON(memcmp(p, expect[k], MIG_PAGE_SIZE));
		}
		free(before[i]);
		free(old_gen[i]);
	}
	return ret;
}

/*
 * A DISCARD or RECV_MAP payload: accepted, its words lie in the payload
 * (ASan sees a read past it) and every bit set names a page of the slot.
 */
static void check_bitmap_rec(const struct mig_config *cfg, const void *payload, uint32_t len)
{
	const struct mig_bitmap_rec *b = payload;
	uint64_t npages, j;

	if (mig_bitmap_rec_check(cfg, payload, len, "DISCARD"))
		return;
	FUZZ_BUG_ON(b->slot >= cfg->nr_slots || !b->nr_words ||
		    b->nr_words > MIG_MAX_BITMAP_WORDS || b->first % 64);
	FUZZ_BUG_ON(len != sizeof(*b) + b->nr_words * sizeof(uint64_t));
	npages = cfg->slots[b->slot].size / MIG_PAGE_SIZE;
	/* A destination ORs the words into a bitmap of the slot's size. */
	FUZZ_BUG_ON(b->first / 64 + b->nr_words > (npages + 63) / 64);
	for (j = 0; j < b->nr_words; j++) {
		uint64_t w = b->words[j];

		while (w) {
			FUZZ_BUG_ON(b->first + 64 * j + __builtin_ctzll(w) >= npages);
			w &= w - 1;
		}
	}
}

/* A REQ payload: accepted, its pages lie in the slot. */
static void check_req(const struct mig_config *cfg, const void *payload, uint32_t len)
{
	const struct mig_req *r = payload;

	if (mig_req_check(cfg, payload, len))
		return;
	FUZZ_BUG_ON(len != sizeof(*r) || r->slot >= cfg->nr_slots || !r->count ||
		    r->count > MIG_MAX_BATCH);
	FUZZ_BUG_ON(r->page >= cfg->slots[r->slot].size / MIG_PAGE_SIZE ||
		    r->count > cfg->slots[r->slot].size / MIG_PAGE_SIZE - r->page);
}

/*
 * A PAGES payload only checked (a postcopy receiver checks, then page_fill
 * places): the same verdict as applying it, and nothing written.
 */
static void check_pages_only(const void *payload, uint32_t len)
{
	struct fuzz_guest g;
	int checked, applied;

	FUZZ_BUG_ON(guest_init(&g, fixed_config(), 0));
	checked = mig_pages_check(g.cfg, payload, len);
	FUZZ_BUG_ON(checked && checked != -EBADMSG);
	FUZZ_BUG_ON(g.t.pages);
	applied = check_pages(&g, payload, len, true);
	FUZZ_BUG_ON(!checked != (applied >= 0));
	guest_free(&g);
}

/* ---- the single entry points ---- */

static void fuzz_hello(struct fuzz_in *in, bool sealed)
{
	struct mig_hello h;

	in_fill(in, &h, sizeof(h));
	if (sealed)
		mig_hello_seal(&h);
	check_hello(&h);
}

static void fuzz_header(struct fuzz_in *in, bool sealed)
{
	struct mig_rec r;
	uint64_t seq;
	uint8_t *payload;

	in_fill(in, &seq, sizeof(seq));
	in_fill(in, &r, sizeof(r));
	if (sealed) {
		uint32_t len = in->n;

		payload = dup_exact(in_take(in, len), len);
		mig_rec_seal(&r, r.type, r.seq, payload, len);
		if (!check_header(&r, seq))
			FUZZ_BUG_ON(mig_rec_check_payload(&r, payload));
		free(payload);
		return;
	}
	check_header(&r, seq);
	payload = dup_exact(in->p, in->n);
	if (r.len <= in->n)
		mig_rec_check_payload(&r, payload);
	free(payload);
}

static void fuzz_config(struct fuzz_in *in)
{
	void *cfg = dup_exact(in->p, in->n);

	check_config(cfg, in->n);
	free(cfg);
}

static void fuzz_pages(struct fuzz_in *in)
{
	struct fuzz_guest g;
	unsigned int fresh_from = in_byte(in) % 3;
	void *payload;

	FUZZ_BUG_ON(guest_init(&g, fixed_config(), fresh_from));
	/* Several batches: the generations of pages written before matter. */
	while (in->n) {
		uint32_t len = in_u16(in);

		if (len > in->n)
			len = in->n;
		payload = dup_exact(in_take(in, len), len);
		check_pages(&g, payload, len, true);
		free(payload);
	}
	guest_free(&g);
}

static void fuzz_postcopy(struct fuzz_in *in)
{
	uint8_t which = in_byte(in) % 3;
	uint32_t len = in->n;
	void *payload = dup_exact(in_take(in, len), len);

	if (which == 0)
		check_bitmap_rec(fixed_config(), payload, len);
	else if (which == 1)
		check_req(fixed_config(), payload, len);
	else
		check_pages_only(payload, len);
	free(payload);
}

/* ---- whole streams, read the way mig_dest.c reads them ---- */

static bool config_small(const struct mig_config *cfg)
{
	uint32_t i;

	if (cfg->nr_slots > STREAM_MAX_SLOTS)
		return false;
	for (i = 0; i < cfg->nr_slots; i++)
		if (cfg->slots[i].size > STREAM_MAX_PAGES * MIG_PAGE_SIZE)
			return false;
	return true;
}

/* What mig_handover_check() and mig_handover_match() promise. */
static void check_handover(const struct mig_handover *want, const void *payload, uint32_t len)
{
	const struct mig_handover *got = payload;
	uint32_t i;

	if (mig_handover_check(got, len, "fuzz"))
		return;
	/* The one flag: END switching to postcopy. */
	FUZZ_BUG_ON(len != sizeof(*got) || got->flags & ~MIG_HANDOVER_POSTCOPY || !got->nr_channels ||
		    got->nr_channels > MIG_MAX_CHANNELS);
	for (i = 0; i < MIG_MAX_CHANNELS; i++)
		FUZZ_BUG_ON(got->ch[i].pad ||
			    (i >= got->nr_channels && (got->ch[i].records || got->ch[i].digest)));
	if (!want)
		return;
	if (!mig_handover_match(want, got, false, "fuzz"))
		FUZZ_BUG_ON(got->session != want->session || got->nonce != want->nonce);
	if (mig_handover_match(want, got, true, "fuzz"))
		return;
	FUZZ_BUG_ON(got->nr_channels != want->nr_channels || got->pages != want->pages);
	for (i = 0; i < want->nr_channels; i++)
		FUZZ_BUG_ON(got->ch[i].records != want->ch[i].records ||
			    got->ch[i].digest != want->ch[i].digest);
}

/* The sender's count of a record (from its payload) is the receiver's (from its header). */
static void check_tally(struct mig_tally *rx, struct mig_tally *tx, const struct mig_rec *r,
			const void *payload)
{
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = r->len };

	mig_tally_add(rx, r);
	mig_tally_sent(tx, r->type, r->seq, &iov, r->len ? 1 : 0);
	FUZZ_BUG_ON(rx->records != tx->records || rx->digest != tx->digest);
}

/* One record's payload on the main or a multifd channel; false ends the stream. */
static bool stream_record(struct fuzz_guest *g, const struct mig_rec *r, const void *payload,
			  uint64_t seq)
{
	const struct mig_vcpu *v = payload;

	if (!seq) {
		/* The destination takes nothing before the configuration. */
		if (r->type != MIG_REC_CONFIG || check_config(payload, r->len))
			return false;
		return config_small(payload) && !guest_init(g, payload, 1);
	}
	switch (r->type) {
	case MIG_REC_PAGES:
		return check_pages(g, payload, r->len, false) >= 0;
	case MIG_REC_VCPU:
		return r->len >= sizeof(*v) && v->size == g->cfg->vcpu_state_size &&
		       r->len == sizeof(*v) + v->size && v->index < g->cfg->nr_vcpus;
	case MIG_REC_SYNC:
		return r->len == sizeof(struct mig_sync_rec);
	case MIG_REC_DISCARD:
		/* Only in a stream that may switch to postcopy. */
		if (!(g->cfg->flags & MIG_CONFIG_POSTCOPY))
			return false;
		check_bitmap_rec(g->cfg, payload, r->len);
		return !mig_bitmap_rec_check(g->cfg, payload, r->len, "DISCARD");
	case MIG_REC_END:
	case MIG_REC_PREPARED:
	case MIG_REC_COMMIT:
	case MIG_REC_ABORT:
	case MIG_REC_STARTED:
		check_handover(NULL, payload, r->len);
		return false;
	default:
		/* CANCEL, or what only the destination may send. */
		return false;
	}
}

/* What a source sent in END, then an answer to it of any length. */
static void fuzz_handover(struct fuzz_in *in)
{
	struct mig_handover want;
	uint32_t len;
	void *got;

	in_fill(in, &want, sizeof(want));
	len = in->n;
	got = dup_exact(in_take(in, len), len);
	check_handover(&want, got, len);
	free(got);
}

static void fuzz_stream(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct fuzz_guest g = { 0 };
	struct mig_tally rx = { 0 }, tx = { 0 };
	struct mig_hello h;
	struct mig_rec r;
	const uint8_t *p;
	uint64_t seq;
	bool more = true;

	p = in_take(&in, sizeof(h));
	if (!p)
		return;
	memcpy(&h, p, sizeof(h));
	if (mig_hello_check(&h))
		return;
	for (seq = 0; more; seq++) {
		void *payload;

		p = in_take(&in, sizeof(r));
		if (!p)
			break;
		memcpy(&r, p, sizeof(r));
		if (check_header(&r, seq))
			break;
		p = in_take(&in, r.len);
		if (!p)
			break;
		payload = dup_exact(p, r.len);
		more = !mig_rec_check_payload(&r, payload);
		if (more)
			check_tally(&rx, &tx, &r, payload);
		more = more && stream_record(&g, &r, payload, seq);
		free(payload);
	}
	guest_free(&g);
}

/* ---- sealed streams: the harness frames what the input describes ---- */

struct sealed {
	uint8_t *buf;
	size_t len, cap;
	uint32_t nr_slots;		/* of the last CONFIG built, for PAGES */
	uint64_t slot_pages[MIG_MAX_SLOTS];
};

static void *sealed_grow(struct sealed *s, size_t len)
{
	if (s->len + len > s->cap) {
		s->cap = (s->len + len) * 2;
		s->buf = realloc(s->buf, s->cap);
		FUZZ_BUG_ON(!s->buf);
	}
	s->len += len;
	return s->buf + s->len - len;
}

/* A CONFIG of 1-4 small slots that is valid unless the input says otherwise. */
static uint32_t sealed_config(struct sealed *s, struct fuzz_in *in, uint8_t *out)
{
	struct mig_config *c = (struct mig_config *)out;
	uint8_t ctl = in_byte(in);
	uint64_t gpa = 0;
	uint32_t i, len;

	memset(c, 0, mig_config_size(STREAM_MAX_SLOTS));
	c->nr_slots = 1 + ctl % STREAM_MAX_SLOTS;
	c->nr_vcpus = 1 + (ctl >> 2) % 4;
	c->page_size = MIG_PAGE_SIZE;
	c->vcpu_state_size = in_byte(in);
	s->nr_slots = c->nr_slots;
	for (i = 0; i < c->nr_slots; i++) {
		uint8_t b = in_byte(in);

		gpa += (b >> 6) * MIG_PAGE_SIZE;
		c->slots[i].gpa = gpa;
		c->slots[i].size = (1 + b % STREAM_MAX_PAGES) * MIG_PAGE_SIZE;
		c->slots[i].id = i;
		s->slot_pages[i] = c->slots[i].size / MIG_PAGE_SIZE;
		gpa += c->slots[i].size;
		c->ram_bytes += c->slots[i].size;
	}
	len = mig_config_size(c->nr_slots);
	/* Now and then one byte off: the checks must catch it. */
	if (ctl & 0x80)
		out[in_byte(in) % len] ^= 1 + in_byte(in) % 255;
	return len;
}

/* A PAGES batch for the last CONFIG, mostly in range, data mostly right. */
static uint32_t sealed_pages(struct sealed *s, struct fuzz_in *in, uint8_t *out)
{
	struct mig_pages *mp = (struct mig_pages *)out;
	uint8_t ctl = in_byte(in);
	uint32_t i, nr_data = 0, nr_slots = s->nr_slots + (ctl & 1);
	uint32_t slot = in_byte(in) % (nr_slots ? nr_slots : 1);
	uint64_t pages = slot < s->nr_slots ? s->slot_pages[slot] : 1;
	uint8_t *data;

	mp->slot = slot;
	mp->count = ctl & 2 ? in_byte(in) : 1 + in_byte(in) % 16;
	mp->gen = ctl & 4 ? 0 : 1 + in_byte(in) % 4;
	if (mp->count > MIG_MAX_BATCH)
		mp->count = MIG_MAX_BATCH + 1;
	for (i = 0; i < mp->count; i++) {
		uint8_t b = in_byte(in);

		mp->entries[i] = b % (pages + (ctl & 8 ? 1 : 0)) | (b & 0x80 ? MIG_PAGE_ZERO : 0);
		nr_data += !(b & 0x80);
	}
	data = (uint8_t *)&mp->entries[mp->count];
	if (ctl & 0x10)
		nr_data += ctl & 0x20 ? 1 : -1;
	for (i = 0; i < nr_data && i < MIG_MAX_BATCH + 1; i++)
		memset(data + i * MIG_PAGE_SIZE, in_byte(in), MIG_PAGE_SIZE);
	return (uint32_t)(data - out) + i * MIG_PAGE_SIZE;
}

static void fuzz_stream_sealed(struct fuzz_in *in)
{
	/* Room for a batch one page and one entry too big. */
	static uint8_t payload[2 * MIG_MAX_PAYLOAD] __attribute__((aligned(8)));
	struct sealed s = { 0 };
	struct mig_hello *h;
	uint8_t ctl = in_byte(in);
	uint64_t seq = 0;

	h = sealed_grow(&s, sizeof(*h));
	in_fill(in, h, sizeof(*h));
	if (!(ctl & 1)) {
		h->flags = h->pad = 0;
		h->reserved[0] = h->reserved[1] = 0;
		h->nr_channels = 1 + h->nr_channels % 8;
		h->channel %= h->nr_channels;
	}
	mig_hello_seal(h);
	while (in->n && s.len < SEALED_MAX_BYTES) {
		/* Low bits: the type (invalid ones too); 0x10: built; 0x20: bad seq. */
		uint8_t rctl = in_byte(in);
		uint32_t type = rctl & 0x0f, len;
		struct mig_rec r;

		if (type == MIG_REC_CONFIG && (rctl & 0x10)) {
			len = sealed_config(&s, in, payload);
		} else if (type == MIG_REC_PAGES && (rctl & 0x10)) {
			len = sealed_pages(&s, in, payload);
		} else {
			len = in_u16(in);
			if (len > in->n)
				len = in->n;
			memcpy(payload, in_take(in, len), len);
		}
		/* Records follow each other unaligned: seal a copy. */
		mig_rec_seal(&r, type, rctl & 0x20 ? seq + 1 : seq, payload, len);
		memcpy(sealed_grow(&s, sizeof(r)), &r, sizeof(r));
		memcpy(sealed_grow(&s, len), payload, len);
		seq++;
	}
	fuzz_stream(s.buf, s.len);
	free(s.buf);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* The parser explains every refusal; millions of them are noise here. */
	kvmmig_set_log(NULL, KVMMIG_LOG_ERR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	if (!size)
		return 0;
	switch (in_byte(&in) % NR_FUZZ_MODES) {
	case FUZZ_HELLO:
		fuzz_hello(&in, false);
		break;
	case FUZZ_HELLO_SEALED:
		fuzz_hello(&in, true);
		break;
	case FUZZ_HEADER:
		fuzz_header(&in, false);
		break;
	case FUZZ_HEADER_SEALED:
		fuzz_header(&in, true);
		break;
	case FUZZ_CONFIG:
		fuzz_config(&in);
		break;
	case FUZZ_PAGES:
		fuzz_pages(&in);
		break;
	case FUZZ_STREAM:
		fuzz_stream(in.p, in.n);
		break;
	case FUZZ_STREAM_SEALED:
		fuzz_stream_sealed(&in);
		break;
	case FUZZ_HANDOVER:
		fuzz_handover(&in);
		break;
	case FUZZ_POSTCOPY:
		fuzz_postcopy(&in);
		break;
	}
	return 0;
}

#ifdef STREAM_FUZZ_SEEDS
/* ---- the seed corpus: one valid input per mode ---- */

struct seed {
	uint8_t buf[64 << 10];
	size_t len;
};

static void seed_put(struct seed *s, const void *p, size_t len)
{
	FUZZ_BUG_ON(s->len + len > sizeof(s->buf));
	memcpy(s->buf + s->len, p, len);
	s->len += len;
}

static void seed_rec(struct seed *s, uint32_t type, uint64_t seq, const void *payload,
		     uint32_t len)
{
	struct mig_rec r;

	mig_rec_seal(&r, type, seq, payload, len);
	seed_put(s, &r, sizeof(r));
	seed_put(s, payload, len);
}

static int seed_write(const char *dir, const char *name, const struct seed *s)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(s->buf, 1, s->len, f) != s->len) {
		fprintf(stderr, "stream_seeds: cannot write %s\n", path);
		if (f)
			fclose(f);
		return 1;
	}
	return fclose(f) != 0;
}

/* Two pages of slot 1 of the fixed guest: one with data, one zero. */
static uint32_t seed_pages(uint8_t *out, uint64_t gen)
{
	struct mig_pages *mp = (struct mig_pages *)out;

	mp->slot = 1;
	mp->count = 2;
	mp->gen = gen;
	mp->entries[0] = 3;
	mp->entries[1] = 5 | MIG_PAGE_ZERO;
	memset(&mp->entries[2], 0x42, MIG_PAGE_SIZE);
	return sizeof(*mp) + 2 * sizeof(uint64_t) + MIG_PAGE_SIZE;
}

int main(int argc, char **argv)
{
	static uint8_t payload[MIG_MAX_PAYLOAD];
	struct mig_hello h = { .nr_channels = 1 };
	const struct mig_config *cfg = fixed_config();
	uint32_t cfg_len = mig_config_size(cfg->nr_slots), len;
	uint64_t vbuf[(sizeof(struct mig_vcpu) + 64) / 8] = { 0 };
	struct mig_vcpu *vcpu = (struct mig_vcpu *)vbuf;
	struct mig_sync_rec sync = { .pass = 1 };
	struct mig_handover end = { .session = 1, .nonce = 2, .passes = 1, .pages = 2,
				    .nr_channels = 1, .ch[0] = { .records = 5 } };
	uint64_t dbuf[(sizeof(struct mig_bitmap_rec) + 8) / 8] = { 0 };
	struct mig_bitmap_rec *disc = (struct mig_bitmap_rec *)dbuf;
	static uint64_t pc_cfg[64];
	struct mig_rec r;
	static struct seed s;
	int err = 0;

	vcpu->size = 64;
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	mig_hello_seal(&h);

	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_HELLO }, 1);
	seed_put(&s, &h, sizeof(h));
	err |= seed_write(argv[1], "hello", &s);

	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_HEADER }, 1);
	seed_put(&s, &(uint64_t){ 0 }, sizeof(uint64_t));
	mig_rec_seal(&r, MIG_REC_SYNC, 0, &sync, sizeof(sync));
	seed_put(&s, &r, sizeof(r));
	seed_put(&s, &sync, sizeof(sync));
	err |= seed_write(argv[1], "header", &s);

	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_CONFIG }, 1);
	seed_put(&s, cfg, cfg_len);
	err |= seed_write(argv[1], "config", &s);

	s.len = 0;
	len = seed_pages(payload, 1);
	seed_put(&s, (uint8_t[]){ FUZZ_PAGES, 1, len & 0xff, len >> 8 }, 4);
	seed_put(&s, payload, len);
	err |= seed_write(argv[1], "pages", &s);

	/* What a one-vCPU guest's migration looks like on one channel. */
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_STREAM }, 1);
	seed_put(&s, &h, sizeof(h));
	seed_rec(&s, MIG_REC_CONFIG, 0, cfg, cfg_len);
	seed_rec(&s, MIG_REC_PAGES, 1, payload, seed_pages(payload, 1));
	seed_rec(&s, MIG_REC_PAGES, 2, payload, seed_pages(payload, 2));
	seed_rec(&s, MIG_REC_SYNC, 3, &sync, sizeof(sync));
	seed_rec(&s, MIG_REC_VCPU, 4, vcpu, sizeof(vbuf));
	seed_rec(&s, MIG_REC_END, 5, &end, sizeof(end));
	err |= seed_write(argv[1], "stream", &s);

	/* The same, allowed postcopy: a DISCARD of slot 1's page 3, END switching to it. */
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_STREAM }, 1);
	seed_put(&s, &h, sizeof(h));
	memcpy(pc_cfg, cfg, cfg_len);
	((struct mig_config *)pc_cfg)->flags = MIG_CONFIG_POSTCOPY;
	seed_rec(&s, MIG_REC_CONFIG, 0, pc_cfg, cfg_len);
	seed_rec(&s, MIG_REC_PAGES, 1, payload, seed_pages(payload, 1));
	seed_rec(&s, MIG_REC_SYNC, 2, &sync, sizeof(sync));
	seed_rec(&s, MIG_REC_VCPU, 3, vcpu, sizeof(vbuf));
	disc->slot = 1;
	disc->nr_words = 1;
	disc->words[0] = 1 << 3;
	seed_rec(&s, MIG_REC_DISCARD, 4, disc, sizeof(dbuf));
	end.flags = MIG_HANDOVER_POSTCOPY;
	seed_rec(&s, MIG_REC_END, 5, &end, sizeof(end));
	end.flags = 0;
	err |= seed_write(argv[1], "stream_postcopy", &s);

	/* CONFIG and two PAGES built by the harness, then END. */
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_STREAM_SEALED, 0 }, 2);
	seed_put(&s, &h, sizeof(h));
	/* 2 slots of 8 pages, 2 vCPUs with 64 bytes of state */
	seed_put(&s, (uint8_t[]){ 0x10 | MIG_REC_CONFIG, 0x05, 64, 0x07, 0x47 }, 5);
	/* slot 1, 3 pages (3, zero 5, 4) of generation 1; slot 0, page 2 of generation 2 */
	seed_put(&s, (uint8_t[]){ 0x10 | MIG_REC_PAGES, 0, 1, 2, 0, 3, 0x85, 4, 0x11, 0x22 }, 10);
	seed_put(&s, (uint8_t[]){ 0x10 | MIG_REC_PAGES, 0, 0, 0, 1, 2, 0x33 }, 7);
	seed_put(&s, (uint8_t[]){ MIG_REC_SYNC, sizeof(sync), 0 }, 3);
	seed_put(&s, &sync, sizeof(sync));
	vcpu->index = 1;
	seed_put(&s, (uint8_t[]){ MIG_REC_VCPU, sizeof(vbuf), 0 }, 3);
	seed_put(&s, vbuf, sizeof(vbuf));
	seed_put(&s, (uint8_t[]){ MIG_REC_END, sizeof(end) & 0xff, sizeof(end) >> 8 }, 3);
	seed_put(&s, &end, sizeof(end));
	err |= seed_write(argv[1], "stream_sealed", &s);

	/* Postcopy's records against the fixed guest: slot 1's pages 3 and 7, a REQ, a PAGES. */
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_POSTCOPY, 0 }, 2);
	seed_put(&s, &(struct mig_bitmap_rec){ .slot = 1, .nr_words = 1 }, sizeof(struct mig_bitmap_rec));
	seed_put(&s, &(uint64_t){ 0x88 }, sizeof(uint64_t));
	err |= seed_write(argv[1], "postcopy_bitmap", &s);
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_POSTCOPY, 1 }, 2);
	seed_put(&s, &(struct mig_req){ .slot = 1, .count = 2, .page = 6 }, sizeof(struct mig_req));
	err |= seed_write(argv[1], "postcopy_req", &s);
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_POSTCOPY, 2 }, 2);
	seed_put(&s, payload, seed_pages(payload, 3));
	err |= seed_write(argv[1], "postcopy_pages", &s);

	/* END, and a PREPARED that answers it. */
	s.len = 0;
	seed_put(&s, (uint8_t[]){ FUZZ_HANDOVER }, 1);
	seed_put(&s, &end, sizeof(end));
	seed_put(&s, &end, sizeof(end));
	err |= seed_write(argv[1], "handover", &s);
	return err;
}
#endif
