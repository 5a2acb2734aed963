// Test doubles and helpers for the enrollment store's fault tests.
#ifndef TFADVQ_TESTS_FAULT_MEDIUM_H_
#define TFADVQ_TESTS_FAULT_MEDIUM_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "crc32.h"
#include "store.h"

namespace storetest {

constexpr size_t kUnlimited = static_cast<size_t>(-1);

// A medium over a byte array that can cut writes short, lie about them, fail
// reads, and counts every Write call (also those that store nothing).
//   write_budget  bytes that still reach the array; the write that exceeds it
//                 stores its first part and fails (a cut);
//   power_loss    after the cut every later write stores nothing and fails
//                 (the device is dead; the test then "reboots" with a new store);
//   lie           the cut write, and every later one, reports kOk anyway;
//   fail_read_number  the Read with this index (0 = the first ever) fails, once;
//   fail_reads_from   every Read from this index on fails (a medium whose reads
//                 die, e.g. right after a write that did reach it).
class FaultMedium : public sv::StorageMedium {
 public:
  FaultMedium(uint8_t* bytes, size_t size) : bytes_(bytes), size_(size) {}
  size_t Size() const override { return size_; }

  sv::Status Read(size_t offset, uint8_t* out, size_t size) override {
    const size_t index = reads++;
    if (index == fail_read_number || index >= fail_reads_from || offset > size_ || size > size_ - offset) {
      return sv::Status::kIoError;
    }
    std::memcpy(out, bytes_ + offset, size);
    return sv::Status::kOk;
  }

  sv::Status Write(size_t offset, const uint8_t* data, size_t size) override {
    ++writes;
    if (offset > size_ || size > size_ - offset) return sv::Status::kIoError;
    if (dead_) return lie ? sv::Status::kOk : sv::Status::kIoError;
    const size_t n = size < write_budget ? size : write_budget;
    std::memcpy(bytes_ + offset, data, n);
    bytes_written += n;
    if (write_budget != kUnlimited) write_budget -= n;
    if (n == size) return sv::Status::kOk;
    if (power_loss || lie) dead_ = true;
    return lie ? sv::Status::kOk : sv::Status::kIoError;
  }

  // Back to a healthy medium (keeps the counters).
  void Heal() {
    write_budget = kUnlimited;
    power_loss = false;
    lie = false;
    fail_read_number = kUnlimited;
    fail_reads_from = kUnlimited;
    dead_ = false;
  }

  size_t write_budget = kUnlimited;
  bool power_loss = false;
  bool lie = false;
  size_t fail_read_number = kUnlimited;
  size_t fail_reads_from = kUnlimited;
  size_t writes = 0;
  size_t reads = 0;
  size_t bytes_written = 0;

 private:
  uint8_t* bytes_;
  size_t size_;
  bool dead_ = false;
};

// A copy of a store's table, to compare what loads with what was acknowledged.
struct Table {
  int count = 0;
  char names[sv::kMaxSpeakers][sv::kNameBytes] = {};
  uint32_t utterances[sv::kMaxSpeakers] = {};
  float means[sv::kMaxSpeakers][sv::kMaxEmbedding] = {};
};

inline void Capture(const sv::EnrollmentStore& store, Table* t) {
  *t = Table{};
  t->count = store.count();
  for (int i = 0; i < store.count(); ++i) {
    std::strncpy(t->names[i], store.name_at(i), sv::kNameBytes - 1);
    t->utterances[i] = store.utterances_at(i);
    const float* mean = nullptr;
    uint32_t n = 0;
    if (store.Find(store.name_at(i), &mean, &n) == sv::Status::kOk) {
      std::memcpy(t->means[i], mean, sizeof(float) * store.embed_dim());
    }
  }
}

// True if `store` is usable and holds exactly `t` (order, counts, bits of the means).
inline bool Holds(const sv::EnrollmentStore& store, const Table& t) {
  if (store.state() != sv::Status::kOk || store.count() != t.count) return false;
  for (int i = 0; i < t.count; ++i) {
    if (std::strncmp(store.name_at(i), t.names[i], sv::kNameBytes) != 0) return false;
    if (store.utterances_at(i) != t.utterances[i]) return false;
    const float* mean = nullptr;
    uint32_t n = 0;
    if (store.Find(t.names[i], &mean, &n) != sv::Status::kOk) return false;
    if (std::memcmp(mean, t.means[i], sizeof(float) * store.embed_dim()) != 0) return false;
  }
  return true;
}

// Bytes of a table of `count` speakers of `dim` floats (header, entries, CRC).
constexpr size_t TableBytes(int count, int dim) {
  return 20 + static_cast<size_t>(count) * (sv::kNameBytes + 4 + 4 * static_cast<size_t>(dim)) + 4;
}

inline uint32_t Get32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Recomputes the CRC of the table in `slot` after a test edited it (the
// layout of store.h), so the edit passes the CRC and reaches the content checks.
inline void Reseal(uint8_t* medium, int slot) {
  uint8_t* s = medium + static_cast<size_t>(slot) * sv::kStoreSlotBytes;
  const int dim = s[6] | (s[7] << 8);
  const size_t body = TableBytes(static_cast<int>(Get32(s + 16)), dim) - 4;
  Put32(s + body, sv::Crc32(s, body));
}

// Offset in a slot of field `field_offset` of entry `i` (0: name, 16: utterances, 20: mean).
inline size_t EntryOffset(int i, int dim, size_t field_offset) {
  return 20 + static_cast<size_t>(i) * (sv::kNameBytes + 4 + 4 * static_cast<size_t>(dim)) +
         field_offset;
}

}  // namespace storetest

#endif  // TFADVQ_TESTS_FAULT_MEDIUM_H_
