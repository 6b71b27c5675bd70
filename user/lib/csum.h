/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * CRC32C (Castagnoli), the migration stream's record checksum: the SSE4.2
 * crc32 instruction when the CPU has it (several GB/s, so checksumming does
 * not slow a loopback migration), a table-driven fallback otherwise.
 */
#ifndef KVMMIG_CSUM_H
#define KVMMIG_CSUM_H

#include <stddef.h>
#include <stdint.h>

/*
 * crc32c(0, "123456789", 9) == 0xe3069283 (the standard check value), and
 * crc32c(crc32c(0, a, n), b, m) == crc32c(0, a || b, n + m).  Safe to call
 * from any thread, also the first time.
 */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* Which implementation crc32c() uses: "sse4.2-3way", "sse4.2", "table". */
const char *crc32c_impl(void);

/*
 * For tests and benchmarks only: the implementation called @impl (one of
 * the names above), or NULL if there is none by that name or this CPU
 * cannot run it.
 */
typedef uint32_t (*crc32c_fn)(uint32_t crc, const void *buf, size_t len);
crc32c_fn crc32c_lookup(const char *impl);

#endif /* KVMMIG_CSUM_H */
