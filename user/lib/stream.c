// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migration stream's framing and validation (see stream.h and
 * Documentation/stream.rst): sealing and checking hello blocks and record
 * headers, checking a guest configuration.  With the RAM writer
 * (ram_writer.c) this is the code a hostile stream reaches first, so it is
 * also what the stream fuzzer (selftests/stream_fuzz.c) drives.
 */
#include <errno.h>
#include <string.h>

#include "csum.h"
#include "log.h"
#include "stream.h"

static const char *const rec_names[MIG_REC_MAX] = {
	[MIG_REC_CONFIG] = "CONFIG",
	[MIG_REC_PAGES] = "PAGES",
	[MIG_REC_SYNC] = "SYNC",
	[MIG_REC_VCPU] = "VCPU",
	[MIG_REC_END] = "END",
	[MIG_REC_ACK] = "ACK",
	[MIG_REC_CANCEL] = "CANCEL",
	[MIG_REC_PREPARED] = "PREPARED",
	[MIG_REC_COMMIT] = "COMMIT",
	[MIG_REC_ABORT] = "ABORT",
	[MIG_REC_STARTED] = "STARTED",
	[MIG_REC_DISCARD] = "DISCARD",
	[MIG_REC_REQ] = "REQ",
	[MIG_REC_POSTCOPY_DONE] = "POSTCOPY_DONE",
	[MIG_REC_RECV_MAP] = "RECV_MAP",
};

const char *mig_rec_name(uint32_t type)
{
	return type < MIG_REC_MAX && rec_names[type] ? rec_names[type] : "unknown";
}

void mig_hello_seal(struct mig_hello *h)
{
	h->magic = MIG_MAGIC;
	h->version = MIG_VERSION;
	h->crc = crc32c(0, h, offsetof(struct mig_hello, crc));
}

static int mig_hello_check_flags(const struct mig_hello *h, uint32_t flags)
{
	const unsigned char *b = (const unsigned char *)h;

	/* A TLS record header: handshake (22), version 3.x. */
	if (b[0] == 0x16 && b[1] == 3 && b[2] <= 4) {
		kvmmig_err("the peer speaks TLS (a ClientHello), this side was given no --tls-creds or --tls-psk");
		return -EPROTO;
	}
	if (h->magic != MIG_MAGIC) {
		kvmmig_err("not a kvmmig migration stream (magic 0x%016llx, expected 0x%016llx)",
			   (unsigned long long)h->magic, (unsigned long long)MIG_MAGIC);
		return -EPROTO;
	}
	if (h->version != MIG_VERSION) {
		kvmmig_err("migration stream version %u, this kvmmig speaks version %u",
			   h->version, MIG_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (h->crc != crc32c(0, h, offsetof(struct mig_hello, crc))) {
		kvmmig_err("migration stream hello block is corrupted (checksum mismatch)");
		return -EBADMSG;
	}
	if (h->flags != flags || h->reserved[0] || h->reserved[1] || h->pad) {
		kvmmig_err("migration stream hello has unknown flags or non-zero reserved fields");
		return -EPROTO;
	}
	if (!h->nr_channels || h->nr_channels > MIG_MAX_CHANNELS || h->channel >= h->nr_channels) {
		kvmmig_err("migration stream hello: channel %u of %u is out of range",
			   h->channel, h->nr_channels);
		return -EPROTO;
	}
	return 0;
}

int mig_hello_check(const struct mig_hello *h)
{
	return mig_hello_check_flags(h, 0);
}

int mig_hello_check_recover(const struct mig_hello *h)
{
	int ret;

	/* A channel of a postcopy's new link: as many channels as the first. */
	if (h->flags == (MIG_HELLO_RECOVER | MIG_HELLO_POSTCOPY))
		return mig_hello_check_flags(h, MIG_HELLO_RECOVER | MIG_HELLO_POSTCOPY);
	ret = mig_hello_check_flags(h, MIG_HELLO_RECOVER);
	if (!ret && h->nr_channels != 1) {
		kvmmig_err("a recovery connection announces %u channels, expected 1",
			   h->nr_channels);
		return -EPROTO;
	}
	return ret;
}

/* The header carries the payload's CRC: chaining headers covers payloads. */
void mig_tally_add(struct mig_tally *t, const struct mig_rec *r)
{
	t->digest = crc32c(t->digest, r, sizeof(*r));
	t->records++;
}

void mig_tally_sent(struct mig_tally *t, uint32_t type, uint64_t seq, const struct iovec *iov,
		    int iovcnt)
{
	struct mig_rec r = { .type = type, .seq = seq };
	int i;

	for (i = 0; i < iovcnt; i++) {
		r.crc = crc32c(r.crc, iov[i].iov_base, iov[i].iov_len);
		r.len += iov[i].iov_len;
	}
	r.hcrc = crc32c(0, &r, offsetof(struct mig_rec, hcrc));
	mig_tally_add(t, &r);
}

int mig_handover_check(const struct mig_handover *h, uint32_t len, const char *what)
{
	uint32_t i;

	if (len != sizeof(*h) || !h->nr_channels || h->nr_channels > MIG_MAX_CHANNELS ||
	    (h->flags & ~MIG_HANDOVER_POSTCOPY)) {
		kvmmig_err("bad %s record: %u bytes (%zu expected), %u channels (1 to %u), flags 0x%x",
			   what, len, sizeof(*h), len == sizeof(*h) ? h->nr_channels : 0,
			   MIG_MAX_CHANNELS, len == sizeof(*h) ? h->flags : 0);
		return -EBADMSG;
	}
	for (i = 0; i < MIG_MAX_CHANNELS; i++) {
		if (h->ch[i].pad || (i >= h->nr_channels && (h->ch[i].records ||
							      h->ch[i].digest))) {
			kvmmig_err("bad %s record: channel %u's tally has non-zero unused fields",
				   what, i);
			return -EBADMSG;
		}
	}
	return 0;
}

int mig_handover_match(const struct mig_handover *want, const struct mig_handover *got,
		       bool tallies, const char *what)
{
	uint32_t i;

	if (got->session != want->session || got->nonce != want->nonce) {
		kvmmig_err("%s is for session %016llx nonce %016llx, this handover is session %016llx nonce %016llx (a stale or forged answer)",
			   what, (unsigned long long)got->session, (unsigned long long)got->nonce,
			   (unsigned long long)want->session, (unsigned long long)want->nonce);
		return -EPROTO;
	}
	if (!tallies)
		return 0;
	if (got->nr_channels != want->nr_channels || got->pages != want->pages ||
	    got->passes != want->passes) {
		kvmmig_err("%s counts %u channels, %llu pages, %llu passes; %u, %llu, %llu were sent",
			   what, got->nr_channels, (unsigned long long)got->pages,
			   (unsigned long long)got->passes, want->nr_channels,
			   (unsigned long long)want->pages, (unsigned long long)want->passes);
		return -EPROTO;
	}
	for (i = 0; i < want->nr_channels; i++) {
		if (got->ch[i].records != want->ch[i].records ||
		    got->ch[i].digest != want->ch[i].digest) {
			kvmmig_err("%s: channel %u received %llu records, digest %08x; %llu records, digest %08x were sent",
				   what, i, (unsigned long long)got->ch[i].records,
				   got->ch[i].digest, (unsigned long long)want->ch[i].records,
				   want->ch[i].digest);
			return -EPROTO;
		}
	}
	return 0;
}

void mig_rec_seal(struct mig_rec *r, uint32_t type, uint64_t seq, const void *payload,
		  uint32_t len)
{
	r->type = type;
	r->len = len;
	r->seq = seq;
	r->crc = crc32c(0, payload, len);
	r->hcrc = crc32c(0, r, offsetof(struct mig_rec, hcrc));
}

int mig_rec_check_header(const struct mig_rec *r, uint64_t expect_seq)
{
	if (r->hcrc != crc32c(0, r, offsetof(struct mig_rec, hcrc))) {
		kvmmig_err("corrupted record header after record %llu (checksum mismatch)",
			   (unsigned long long)expect_seq);
		return -EBADMSG;
	}
	if (r->seq != expect_seq) {
		kvmmig_err("record %llu arrived where record %llu was expected",
			   (unsigned long long)r->seq, (unsigned long long)expect_seq);
		return -EBADMSG;
	}
	if (!r->type || r->type >= MIG_REC_MAX) {
		kvmmig_err("record %llu has unknown type %u", (unsigned long long)r->seq, r->type);
		return -EBADMSG;
	}
	if (r->len > MIG_MAX_PAYLOAD) {
		kvmmig_err("%s record %llu claims %u payload bytes, at most %u allowed",
			   mig_rec_name(r->type), (unsigned long long)r->seq, r->len,
			   (unsigned int)MIG_MAX_PAYLOAD);
		return -EBADMSG;
	}
	return 0;
}

int mig_rec_check_payload(const struct mig_rec *r, const void *payload)
{
	if (r->crc != crc32c(0, payload, r->len)) {
		kvmmig_err("%s record %llu is corrupted (payload checksum mismatch)",
			   mig_rec_name(r->type), (unsigned long long)r->seq);
		return -EBADMSG;
	}
	return 0;
}

size_t mig_config_size(uint32_t nr_slots)
{
	return sizeof(struct mig_config) + nr_slots * sizeof(struct mig_slot_desc);
}

int mig_config_check(const struct mig_config *cfg, uint32_t len)
{
	uint64_t total = 0;
	uint32_t i;

	if (len < sizeof(*cfg) || !cfg->nr_slots || cfg->nr_slots > MIG_MAX_SLOTS ||
	    len != mig_config_size(cfg->nr_slots)) {
		kvmmig_err("bad guest configuration record: %u bytes for %u slots (1 to %u)",
			   len, len >= sizeof(*cfg) ? cfg->nr_slots : 0, MIG_MAX_SLOTS);
		return -EBADMSG;
	}
	if (!cfg->nr_vcpus || cfg->nr_vcpus > MIG_MAX_VCPUS || cfg->page_size != MIG_PAGE_SIZE ||
	    !cfg->vcpu_state_size || cfg->vcpu_state_size > MIG_MAX_VCPU_STATE ||
	    (cfg->flags & ~MIG_CONFIG_FLAGS) ||
	    (cfg->flags & MIG_CONFIG_PREEMPT && !(cfg->flags & MIG_CONFIG_POSTCOPY))) {
		kvmmig_err("bad guest configuration: %u vCPUs (1 to %u), page size %u (%u), vCPU state of %u bytes (1 to %u), flags 0x%llx",
			   cfg->nr_vcpus, MIG_MAX_VCPUS, cfg->page_size, MIG_PAGE_SIZE,
			   cfg->vcpu_state_size, MIG_MAX_VCPU_STATE, (unsigned long long)cfg->flags);
		return -EBADMSG;
	}
	for (i = 0; i < cfg->nr_slots; i++) {
		const struct mig_slot_desc *s = &cfg->slots[i];

		if (!s->size || s->size % MIG_PAGE_SIZE || s->gpa % MIG_PAGE_SIZE || s->flags ||
		    s->gpa + s->size < s->gpa || (i && s->gpa < cfg->slots[i - 1].gpa +
						       cfg->slots[i - 1].size)) {
			kvmmig_err("bad guest configuration: slot %u at 0x%llx size 0x%llx (page-aligned, ascending, no overlap)",
				   i, (unsigned long long)s->gpa, (unsigned long long)s->size);
			return -EBADMSG;
		}
		total += s->size;
	}
	if (total != cfg->ram_bytes) {
		kvmmig_err("bad guest configuration: slots add up to %llu bytes, not %llu",
			   (unsigned long long)total, (unsigned long long)cfg->ram_bytes);
		return -EBADMSG;
	}
	return 0;
}

int mig_bitmap_rec_check(const struct mig_config *cfg, const void *payload, uint32_t len,
			 const char *what)
{
	const struct mig_bitmap_rec *b = payload;
	uint64_t npages, end;

	if (len < sizeof(*b) || !b->nr_words || b->nr_words > MIG_MAX_BITMAP_WORDS ||
	    len != sizeof(*b) + b->nr_words * sizeof(uint64_t)) {
		kvmmig_err("bad %s record: %u bytes, %u words (1 to %u)", what, len,
			   len >= sizeof(*b) ? b->nr_words : 0, MIG_MAX_BITMAP_WORDS);
		return -EBADMSG;
	}
	if (b->slot >= cfg->nr_slots || b->first % 64) {
		kvmmig_err("bad %s record: slot %u of %u, first page %llu (a multiple of 64)",
			   what, b->slot, cfg->nr_slots, (unsigned long long)b->first);
		return -EBADMSG;
	}
	npages = cfg->slots[b->slot].size / MIG_PAGE_SIZE;
	/* No bit may name a page past the slot's end. */
	end = b->first + 64ULL * b->nr_words;
	if (b->first >= npages || (end > npages &&
	    (end - npages >= 64 || b->words[b->nr_words - 1] >> (64 - (end - npages))))) {
		kvmmig_err("bad %s record: pages %llu to %llu of slot %u, which has %llu pages",
			   what, (unsigned long long)b->first, (unsigned long long)end - 1, b->slot,
			   (unsigned long long)npages);
		return -EBADMSG;
	}
	return 0;
}

int mig_req_check(const struct mig_config *cfg, const void *payload, uint32_t len)
{
	const struct mig_req *r = payload;

	if (len != sizeof(*r) || r->slot >= cfg->nr_slots || !r->count ||
	    r->count > MIG_MAX_BATCH ||
	    r->page + r->count > cfg->slots[r->slot].size / MIG_PAGE_SIZE ||
	    r->page + r->count < r->page) {
		kvmmig_err("bad REQ record: %u bytes (%zu), slot %u of %u, %u pages (1 to %u) from page %llu",
			   len, sizeof(*r), len == sizeof(*r) ? r->slot : 0, cfg->nr_slots,
			   len == sizeof(*r) ? r->count : 0, MIG_MAX_BATCH,
			   len == sizeof(*r) ? (unsigned long long)r->page : 0ULL);
		return -EBADMSG;
	}
	return 0;
}
