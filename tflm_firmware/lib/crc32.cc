#include "crc32.h"

namespace sv {

uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc) {
  // Bitwise form: the store is checked once per load/save, so a 1 KB table
  // would cost more flash than the cycles it saves.
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

}  // namespace sv
