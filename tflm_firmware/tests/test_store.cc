// Enrollment store: persistence, averaging, limits, corruption and torn saves.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "crc32.h"
#include "file_medium.h"
#include "harness.h"
#include "store.h"

namespace {

constexpr int kDim = 16;
constexpr uint32_t kModelId = 0xA1B2C3D4u;
constexpr size_t kMediumBytes = sv::kStoreMediumBytes;

// A medium that loses power after `budget` bytes of a write (the write then
// fails), the way a flash save can be cut short.
class TornMedium : public sv::RamMedium {
 public:
  TornMedium(uint8_t* bytes, size_t size) : RamMedium(bytes, size) {}
  size_t budget = static_cast<size_t>(-1);
  sv::Status Write(size_t offset, const uint8_t* data, size_t size) override {
    const size_t n = size < budget ? size : budget;
    budget -= n;
    sv::RamMedium::Write(offset, data, n);
    return n == size ? sv::Status::kOk : sv::Status::kIoError;
  }
};

void Embedding(float seed, float* out) {
  for (int d = 0; d < kDim; ++d) out[d] = seed + static_cast<float>(d % 5) - 2.0f * (d % 3);
}

void Erase(uint8_t* bytes) { std::memset(bytes, 0xFF, kMediumBytes); }

}  // namespace

TEST(crc32_known_vector) {
  const uint8_t text[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  CHECK_EQ(sv::Crc32(text, sizeof(text)), 0xCBF43926u);
  // Incremental use gives the same CRC.
  CHECK_EQ(sv::Crc32(text + 4, 5, sv::Crc32(text, 4)), 0xCBF43926u);
}

TEST(store_blank_medium_is_empty_and_persists_enrollments) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  sv::RamMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  CHECK_EQ(store.count(), 0);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  Embedding(-3.0f, e);
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);

  static sv::EnrollmentStore reloaded(&medium, kModelId, kDim);
  CHECK_STATUS(reloaded.Load(), sv::Status::kOk);
  CHECK_EQ(reloaded.count(), 2);
  const float* mean = nullptr;
  uint32_t utterances = 0;
  CHECK_STATUS(reloaded.Find("alice", &mean, &utterances), sv::Status::kOk);
  CHECK_EQ(utterances, 2u);
  // Mean of the two unit vectors.
  float a[kDim];
  float b[kDim];
  Embedding(1.0f, a);
  Embedding(-3.0f, b);
  float na = 0.0f;
  float nb = 0.0f;
  for (int d = 0; d < kDim; ++d) {
    na += a[d] * a[d];
    nb += b[d] * b[d];
  }
  for (int d = 0; d < kDim; ++d) {
    CHECK_NEAR(mean[d], 0.5 * (a[d] / std::sqrt(na) + b[d] / std::sqrt(nb)), 1e-6);
  }
  CHECK_STATUS(reloaded.Find("carol", &mean, &utterances), sv::Status::kUnknownSpeaker);
}

TEST(store_full_bad_names_and_delete) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  sv::RamMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(2.0f, e);
  char name[8] = "spk0";
  for (int i = 0; i < sv::kMaxSpeakers; ++i) {
    name[3] = static_cast<char>('0' + i);
    CHECK_STATUS(store.Enroll(name, e), sv::Status::kOk);
  }
  CHECK_STATUS(store.Enroll("onemore", e), sv::Status::kStoreFull);
  CHECK_STATUS(store.Enroll("spk0", e), sv::Status::kOk);  // existing speaker still fine
  CHECK_STATUS(store.Enroll("", e), sv::Status::kBadName);
  CHECK_STATUS(store.Enroll("has space", e), sv::Status::kBadName);
  CHECK_STATUS(store.Enroll("sixteen_chars_xx", e), sv::Status::kBadName);
  CHECK_STATUS(store.Delete("nobody"), sv::Status::kUnknownSpeaker);
  CHECK_STATUS(store.Delete("spk3"), sv::Status::kOk);
  CHECK_EQ(store.count(), sv::kMaxSpeakers - 1);
  CHECK_STATUS(store.Enroll("onemore", e), sv::Status::kOk);
  static sv::EnrollmentStore reloaded(&medium, kModelId, kDim);
  CHECK_STATUS(reloaded.Load(), sv::Status::kOk);
  const float* mean = nullptr;
  uint32_t utterances = 0;
  CHECK_STATUS(reloaded.Find("spk3", &mean, &utterances), sv::Status::kUnknownSpeaker);
  CHECK_STATUS(reloaded.Find("onemore", &mean, &utterances), sv::Status::kOk);
  CHECK_STATUS(reloaded.Find("spk0", &mean, &utterances), sv::Status::kOk);
  CHECK_EQ(utterances, 2u);
}

TEST(store_corruption_is_detected_and_never_used) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  sv::RamMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);  // seq 1 in both slots
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);    // seq 2 in slot 1
  // Flip one bit of the newest table (slot 1): load falls back to slot 0.
  const size_t slot = sv::kStoreSlotBytes;
  bytes[slot + 30] ^= 0x04;
  static sv::EnrollmentStore a(&medium, kModelId, kDim);
  CHECK_STATUS(a.Load(), sv::Status::kOk);
  CHECK_EQ(a.count(), 1);
  // Damage the other slot too: nothing valid is left, so nothing is used.
  bytes[25] ^= 0x80;
  static sv::EnrollmentStore b(&medium, kModelId, kDim);
  CHECK_STATUS(b.Load(), sv::Status::kStoreCorrupt);
  CHECK_EQ(b.count(), 0);
  const float* mean = nullptr;
  uint32_t utterances = 0;
  CHECK_STATUS(b.Find("alice", &mean, &utterances), sv::Status::kStoreCorrupt);
  CHECK_STATUS(b.Enroll("carol", e), sv::Status::kStoreCorrupt);
  CHECK_STATUS(b.Delete("alice"), sv::Status::kStoreCorrupt);
  // Format is the way out.
  CHECK_STATUS(b.Format(), sv::Status::kOk);
  CHECK_STATUS(b.Enroll("carol", e), sv::Status::kOk);
  static sv::EnrollmentStore c(&medium, kModelId, kDim);
  CHECK_STATUS(c.Load(), sv::Status::kOk);
  CHECK_EQ(c.count(), 1);
}

TEST(store_torn_save_keeps_previous_table) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  TornMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  // Cut every later save at a different byte: the store must always reload
  // as the last table that was fully committed.
  const size_t image_bytes = 20 + 3 * (sv::kNameBytes + 4 + 4 * kDim) + 4;  // with carol
  for (size_t cut = 0; cut < image_bytes; cut += 23) {
    medium.budget = cut;
    CHECK_STATUS(store.Enroll("carol", e), sv::Status::kIoError);
    CHECK_EQ(store.count(), 2);  // RAM view rolled back too
    medium.budget = static_cast<size_t>(-1);
    static sv::EnrollmentStore check(&medium, kModelId, kDim);
    CHECK_STATUS(check.Load(), sv::Status::kOk);
    CHECK_EQ(check.count(), 2);
  }
  CHECK_STATUS(store.Enroll("carol", e), sv::Status::kOk);
  CHECK_EQ(store.count(), 3);
}

TEST(store_torn_first_save_leaves_an_empty_store) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  TornMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  medium.budget = 40;
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kIoError);
  medium.budget = static_cast<size_t>(-1);
  static sv::EnrollmentStore check(&medium, kModelId, kDim);
  CHECK_STATUS(check.Load(), sv::Status::kOk);
  CHECK_EQ(check.count(), 0);
}

TEST(store_of_another_model_is_refused) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  sv::RamMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  static sv::EnrollmentStore other(&medium, kModelId + 1, kDim);
  CHECK_STATUS(other.Load(), sv::Status::kStoreModelMismatch);
  CHECK_EQ(other.count(), 0);
  static sv::EnrollmentStore narrower(&medium, kModelId, kDim - 1);
  CHECK_STATUS(narrower.Load(), sv::Status::kStoreModelMismatch);
  static uint8_t tiny[16];
  sv::RamMedium small(tiny, sizeof(tiny));
  static sv::EnrollmentStore too_small(&small, kModelId, kDim);
  CHECK_STATUS(too_small.Load(), sv::Status::kBadArgument);
}

TEST(file_medium_persists_the_store) {
  const char* path = "sv_test_store.bin";
  std::remove(path);
  static uint8_t bytes[sv::kStoreMediumBytes];
  float e[kDim];
  Embedding(1.0f, e);
  {
    sv::FileMedium medium(path, bytes, sizeof(bytes));
    static sv::EnrollmentStore store(&medium, kModelId, kDim);
    CHECK_STATUS(store.Load(), sv::Status::kOk);  // no file yet: erased, empty
    CHECK_EQ(store.count(), 0);
    CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  }
  std::memset(bytes, 0, sizeof(bytes));  // forget the RAM copy
  sv::FileMedium reopened(path, bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&reopened, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  CHECK_EQ(store.count(), 1);
  std::remove(path);
}
