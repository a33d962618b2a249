#ifndef TIDEMARK_CRC32C_H
#define TIDEMARK_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has the CRC-32C instruction (x86-64 SSE4.2).
int tidemark_crc32c_hardware(void);

/// CRC-32C of `count` bytes continuing `crc` (inverted state, as the instruction keeps it):
/// call only when `tidemark_crc32c_hardware()` says so.
uint32_t tidemark_crc32c_update(uint32_t crc, const void *bytes, size_t count);

#endif
