// CRC-32 (IEEE 802.3, reflected 0xEDB88320), the checksum of the enrollment store.
#ifndef TFADVQ_CRC32_H_
#define TFADVQ_CRC32_H_

#include <cstddef>
#include <cstdint>

namespace sv {

// CRC of `size` bytes continuing from `crc` (start with 0); Crc32("123456789") = 0xCBF43926.
uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace sv

#endif  // TFADVQ_CRC32_H_
