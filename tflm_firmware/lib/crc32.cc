#include "crc32.h"

namespace sv {

namespace {

// CRC of the 4-bit value `n` (one nibble step of the reflected polynomial).
constexpr uint32_t NibbleCrc(uint32_t n) {
  for (int b = 0; b < 4; ++b) n = (n >> 1) ^ (0xEDB88320u & (0u - (n & 1u)));
  return n;
}

// A 16-entry (64-byte) table, two steps per byte: 4x fewer steps than the
// bitwise form for little flash (a 256-entry table would take 1 KB).  The
// store checks each table several times per load and save.
constexpr uint32_t kNibble[16] = {
    NibbleCrc(0),  NibbleCrc(1),  NibbleCrc(2),  NibbleCrc(3),  NibbleCrc(4),  NibbleCrc(5),
    NibbleCrc(6),  NibbleCrc(7),  NibbleCrc(8),  NibbleCrc(9),  NibbleCrc(10), NibbleCrc(11),
    NibbleCrc(12), NibbleCrc(13), NibbleCrc(14), NibbleCrc(15)};

}  // namespace

uint32_t Crc32(const uint8_t* data, size_t size, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ kNibble[crc & 15u];
    crc = (crc >> 4) ^ kNibble[crc & 15u];
  }
  return ~crc;
}

}  // namespace sv
