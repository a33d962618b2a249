// CRC-32C with the SSE4.2 instruction: eight bytes a step instead of a table lookup each.
#include "crc32c.h"
#include <string.h>

#if defined(__x86_64__)
int tidemark_crc32c_hardware(void) { return __builtin_cpu_supports("sse4.2"); }

__attribute__((target("sse4.2")))
uint32_t tidemark_crc32c_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint64_t state = crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        state = __builtin_ia32_crc32di(state, word);
        p += 8;
        count -= 8;
    }
    uint32_t small = (uint32_t)state;
    while (count > 0) {
        small = __builtin_ia32_crc32qi(small, *p);
        p++;
        count--;
    }
    return small;
}
#else
int tidemark_crc32c_hardware(void) { return 0; }
uint32_t tidemark_crc32c_update(uint32_t crc, const void *bytes, size_t count) { (void)bytes; (void)count; return crc; }
#endif
