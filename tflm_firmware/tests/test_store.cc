// Enrollment store: persistence, averaging, limits, corruption, torn saves and
// hostile contents.  The exhaustive fault sweep is in test_store_faults.cc.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "crc32.h"
#include "fault_medium.h"
#include "file_medium.h"
#include "harness.h"
#include "store.h"

namespace {

constexpr int kDim = 16;
constexpr uint32_t kModelId = 0xA1B2C3D4u;
constexpr size_t kMediumBytes = sv::kStoreMediumBytes;

using storetest::FaultMedium;

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
  // Both slots hold the newest table: flip one bit of slot B and its twin in
  // slot A still has everything.
  const size_t slot = sv::kStoreSlotBytes;
  bytes[slot + 30] ^= 0x04;
  static sv::EnrollmentStore a(&medium, kModelId, kDim);
  CHECK_STATUS(a.Load(), sv::Status::kOk);
  CHECK_EQ(a.count(), 2);
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
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  // Cut the first copy of a later save at a different byte each time: the
  // save reports IO_ERROR and the store reloads as the last committed table.
  const size_t image_bytes = storetest::TableBytes(3, kDim);  // with carol
  for (size_t cut = 0; cut < image_bytes; cut += 23) {
    medium.write_budget = cut;
    CHECK_STATUS(store.Enroll("carol", e), sv::Status::kIoError);
    CHECK_STATUS(store.state(), sv::Status::kOk);
    CHECK_EQ(store.count(), 2);  // RAM view rolled back too
    medium.Heal();
    static sv::EnrollmentStore check(&medium, kModelId, kDim);
    CHECK_STATUS(check.Load(), sv::Status::kOk);
    CHECK_EQ(check.count(), 2);
  }
  CHECK_STATUS(store.Enroll("carol", e), sv::Status::kOk);
  CHECK_EQ(store.count(), 3);
}

// Issue 25: reads failing from the read-back on made Enroll say IO_ERROR ("not
// persisted") although the table was written and a restart loaded it.  Unseen,
// the save is SAVE_UNVERIFIED; with the first copy read back it is OK; a write
// that failed is still IO_ERROR -- each what a restart then finds.
TEST(store_status_tells_the_truth_when_reads_die_after_a_write) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  static sv::EnrollmentStore restart(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);

  medium.fail_reads_from = medium.reads;  // the read-back of the first copy fails, and every read after
  const size_t writes = medium.writes;
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kSaveUnverified);
  CHECK(std::strcmp(sv::StatusName(sv::Status::kSaveUnverified), "SAVE_UNVERIFIED") == 0);
  CHECK_EQ(medium.writes, writes + 1);  // the second copy is not written unseen
  CHECK_STATUS(store.state(), sv::Status::kIoError);  // locked: it cannot see what it holds
  CHECK_STATUS(store.Enroll("carol", e), sv::Status::kIoError);
  CHECK_EQ(medium.writes, writes + 1);
  medium.Heal();
  CHECK_STATUS(restart.Load(), sv::Status::kOk);
  CHECK_EQ(restart.count(), 2);  // bob was persisted: the status did not claim otherwise

  // The first copy read back, reads die before the second copy's read-back: persisted, OK.
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  medium.fail_reads_from = medium.reads + 1;
  CHECK_STATUS(store.Enroll("carol", e), sv::Status::kOk);
  medium.Heal();
  CHECK_STATUS(restart.Load(), sv::Status::kOk);
  CHECK_EQ(restart.count(), 3);

  // The first copy's write fails and reads die: not persisted, IO_ERROR.
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  medium.write_budget = 10;
  medium.fail_reads_from = medium.reads;
  CHECK_STATUS(store.Enroll("dave", e), sv::Status::kIoError);
  medium.Heal();
  CHECK_STATUS(restart.Load(), sv::Status::kOk);
  CHECK_EQ(restart.count(), 3);
}

// The reported bug: the first save's second copy cut short returned IO_ERROR
// although the speaker was stored, so a retry counted the utterance twice.
TEST(store_first_save_persisted_in_one_copy_reports_ok) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  medium.write_budget = storetest::TableBytes(1, kDim) + 7;  // first copy whole, second cut
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  medium.Heal();
  const float* mean = nullptr;
  uint32_t utterances = 0;
  CHECK_STATUS(store.Find("alice", &mean, &utterances), sv::Status::kOk);
  CHECK_EQ(utterances, 1u);
  static sv::EnrollmentStore check(&medium, kModelId, kDim);
  CHECK_STATUS(check.Load(), sv::Status::kOk);
  CHECK_STATUS(check.Find("alice", &mean, &utterances), sv::Status::kOk);
  CHECK_EQ(utterances, 1u);
}

// A first save cut short after some bytes leaves one slot damaged and the
// other blank -- which could equally be a table whose twin was erased, so it
// is STORE_CORRUPT, never an empty store.  Nothing was lost (the store was
// empty); the store is locked until format.
TEST(store_torn_first_save_is_corrupt_until_format) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  medium.write_budget = 40;
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kIoError);  // not persisted
  medium.Heal();
  CHECK_STATUS(store.state(), sv::Status::kStoreCorrupt);  // what a restart sees
  const size_t writes = medium.writes;
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kStoreCorrupt);
  CHECK_EQ(medium.writes, writes);
  static sv::EnrollmentStore check(&medium, kModelId, kDim);
  CHECK_STATUS(check.Load(), sv::Status::kStoreCorrupt);
  CHECK_STATUS(check.Format(), sv::Status::kOk);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  CHECK_EQ(store.count(), 0);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
}

// The reported bug: one damaged slot plus an erased or zeroed header in the
// other loaded as an empty valid store, and the next enroll overwrote the
// surviving speakers.
TEST(store_damaged_slot_with_blank_twin_is_corrupt_and_written_never) {
  static uint8_t bytes[kMediumBytes];
  static uint8_t saved[kMediumBytes];
  Erase(bytes);
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  std::memcpy(saved, bytes, sizeof(bytes));
  uint8_t* a = bytes;
  uint8_t* b = bytes + sv::kStoreSlotBytes;
  for (int variant = 0; variant < 4; ++variant) {
    std::memcpy(bytes, saved, sizeof(bytes));
    a[33] ^= 0x10;                                                // A: damaged
    if (variant == 0) std::memset(b, 0xFF, sv::kStoreSlotBytes);  // B: erased
    if (variant == 1) std::memset(b, 0x00, sv::kStoreSlotBytes);  // B: zeroed
    if (variant == 2) std::memset(b, 0xFF, 20);                   // B: header erased
    if (variant == 3) std::memset(b, 0x00, 20);                   // B: header zeroed
    static sv::EnrollmentStore reboot(&medium, kModelId, kDim);
    CHECK_STATUS(reboot.Load(), sv::Status::kStoreCorrupt);
    const size_t writes = medium.writes;
    CHECK_STATUS(reboot.Enroll("carol", e), sv::Status::kStoreCorrupt);
    CHECK_STATUS(reboot.Delete("alice"), sv::Status::kStoreCorrupt);
    CHECK_STATUS(reboot.Load(), sv::Status::kStoreCorrupt);
    CHECK_EQ(medium.writes, writes);
  }
  // A genuinely fresh medium, erased or zeroed (or one of each), is empty.
  for (int variant = 0; variant < 3; ++variant) {
    std::memset(a, variant == 1 ? 0x00 : 0xFF, sv::kStoreSlotBytes);
    std::memset(b, variant == 0 ? 0xFF : 0x00, sv::kStoreSlotBytes);
    static sv::EnrollmentStore fresh(&medium, kModelId, kDim);
    CHECK_STATUS(fresh.Load(), sv::Status::kOk);
    CHECK_EQ(fresh.count(), 0);
  }
}

TEST(store_refuses_non_finite_and_zero_embeddings_before_writing) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  const size_t writes = medium.writes;
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(),
                       std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (float v : bad) {
    const int positions[] = {0, kDim / 2, kDim - 1};
    for (int d : positions) {
      Embedding(1.0f, e);
      e[d] = v;
      CHECK_STATUS(store.Enroll("alice", e), sv::Status::kEmbeddingInvalid);  // existing
      CHECK_STATUS(store.Enroll("bob", e), sv::Status::kEmbeddingInvalid);    // new
    }
  }
  std::memset(e, 0, sizeof(e));
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kEmbeddingInvalid);
  CHECK_EQ(medium.writes, writes);
  CHECK_EQ(store.count(), 1);
  const float* mean = nullptr;
  uint32_t utterances = 0;
  CHECK_STATUS(store.Find("alice", &mean, &utterances), sv::Status::kOk);
  CHECK_EQ(utterances, 1u);
  // Finite extremes are fine: scaled to a unit vector, never to inf or 0.
  const float scales[] = {1e30f, 1e-30f, 1e-44f};
  for (float scale : scales) {
    static uint8_t other[kMediumBytes];
    Erase(other);
    sv::RamMedium m(other, sizeof(other));
    static sv::EnrollmentStore s(&m, kModelId, kDim);
    CHECK_STATUS(s.Load(), sv::Status::kOk);
    for (int d = 0; d < kDim; ++d) e[d] = scale * static_cast<float>(d % 3 - 1);
    e[1] = scale;
    CHECK_STATUS(s.Enroll("alice", e), sv::Status::kOk);
    CHECK_STATUS(s.Find("alice", &mean, &utterances), sv::Status::kOk);
    double norm = 0.0;
    for (int d = 0; d < kDim; ++d) norm += static_cast<double>(mean[d]) * mean[d];
    CHECK_NEAR(norm, 1.0, 1e-5);
  }
  // The protocol text of the refusal.
  Embedding(1.0f, e);
  e[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::strcmp(sv::StatusName(store.Enroll("carol", e)), "EMBEDDING_INVALID") == 0);
}

TEST(store_utterance_count_saturates) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  sv::RamMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  // Pretend alice has UINT32_MAX - 1 utterances (both slots, CRCs resealed).
  for (int slot = 0; slot < 2; ++slot) {
    storetest::Put32(bytes + slot * sv::kStoreSlotBytes + storetest::EntryOffset(0, kDim, 16),
                     sv::kMaxUtterances - 1);
    storetest::Reseal(bytes, slot);
  }
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  const float* mean = nullptr;
  uint32_t utterances = 0;
  float before[kDim];
  CHECK_STATUS(store.Find("alice", &mean, &utterances), sv::Status::kOk);
  std::memcpy(before, mean, sizeof(before));
  Embedding(-7.0f, e);
  for (int i = 0; i < 3; ++i) {
    CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
    CHECK_STATUS(store.Find("alice", &mean, &utterances), sv::Status::kOk);
    CHECK_EQ(utterances, sv::kMaxUtterances);  // never wraps to 0 (division by zero)
    for (int d = 0; d < kDim; ++d) {
      CHECK(std::isfinite(mean[d]));
      CHECK_NEAR(mean[d], before[d], 1e-6);
    }
  }
  static sv::EnrollmentStore check(&medium, kModelId, kDim);
  CHECK_STATUS(check.Load(), sv::Status::kOk);
  CHECK_EQ(check.utterances_at(0), sv::kMaxUtterances);
}

TEST(store_sequence_wraps_and_the_newer_table_still_wins) {
  static uint8_t bytes[kMediumBytes];
  Erase(bytes);
  FaultMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  for (int slot = 0; slot < 2; ++slot) {
    storetest::Put32(bytes + slot * sv::kStoreSlotBytes + 8, 0xFFFFFFFFu);
    storetest::Reseal(bytes, slot);
  }
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  // Next save has sequence 0: cut its second copy so the slots differ across
  // the wrap, and the table with sequence 0 must be the one that loads.
  medium.write_budget = storetest::TableBytes(2, kDim) + 3;
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  medium.Heal();
  static sv::EnrollmentStore check(&medium, kModelId, kDim);
  CHECK_STATUS(check.Load(), sv::Status::kOk);
  CHECK_EQ(check.count(), 2);
  CHECK_STATUS(check.Enroll("carol", e), sv::Status::kOk);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  CHECK_EQ(store.count(), 3);
}

// A CRC-valid table with contents this code never writes is damaged: its twin
// is used, and with both such slots the store is corrupt.
TEST(store_crc_valid_but_insane_table_is_damaged) {
  static uint8_t bytes[kMediumBytes];
  static uint8_t good[kMediumBytes];
  Erase(bytes);
  sv::RamMedium medium(bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&medium, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kOk);
  float e[kDim];
  Embedding(1.0f, e);
  CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
  CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  std::memcpy(good, bytes, sizeof(bytes));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int edit = 0; edit < 6; ++edit) {
    for (int slots = 1; slots <= 2; ++slots) {
      std::memcpy(bytes, good, sizeof(bytes));
      for (int slot = 0; slot < slots; ++slot) {
        uint8_t* s = bytes + slot * sv::kStoreSlotBytes;
        if (edit == 0) s[storetest::EntryOffset(1, kDim, 0)] = ' ';         // bad name
        if (edit == 1) std::memcpy(s + storetest::EntryOffset(1, kDim, 0), "alice", 6);  // duplicate
        if (edit == 2) std::memset(s + storetest::EntryOffset(0, kDim, 0), 'x', 16);  // no NUL
        if (edit == 3) storetest::Put32(s + storetest::EntryOffset(0, kDim, 16), 0);  // 0 utterances
        if (edit == 4) std::memcpy(s + storetest::EntryOffset(1, kDim, 20 + 8), &nan, 4);
        if (edit == 5) s[storetest::EntryOffset(0, kDim, 0)] = '\0';          // empty name
        storetest::Reseal(bytes, slot);
      }
      static sv::EnrollmentStore check(&medium, kModelId, kDim);
      CHECK_STATUS(check.Load(), slots == 1 ? sv::Status::kOk : sv::Status::kStoreCorrupt);
      CHECK_EQ(check.count(), slots == 1 ? 2 : 0);
    }
  }
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

namespace {

size_t ReadFile(const char* path, uint8_t* out, size_t size) {
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return 0;
  const size_t n = std::fread(out, 1, size, f);
  std::fclose(f);
  return n;
}

bool WriteFile(const char* path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path, "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(data, 1, size, f) == size;
  return std::fclose(f) == 0 && ok;
}

}  // namespace

// Saves change only the range they write, in place: a crash in the middle of
// one can tear that range, never truncate the file (which would lose both
// slots).  A short file is damage, not a fresh medium.
TEST(file_medium_writes_in_place_and_a_short_file_is_damage) {
  const char* path = "sv_test_store_inplace.bin";
  std::remove(path);
  static uint8_t bytes[sv::kStoreMediumBytes];
  static uint8_t file[sv::kStoreMediumBytes];
  float e[kDim];
  Embedding(1.0f, e);
  {
    sv::FileMedium medium(path, bytes, sizeof(bytes));
    static sv::EnrollmentStore store(&medium, kModelId, kDim);
    CHECK_STATUS(store.Load(), sv::Status::kOk);
    CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
    CHECK_EQ(ReadFile(path, file, sizeof(file)), sizeof(file));  // the whole image
    // Mark an unused byte of slot B in the file behind the medium's back: a
    // save that rewrote the whole image from RAM would erase the mark.
    file[2 * sv::kStoreSlotBytes - 1] = 0x42;
    CHECK(WriteFile(path, file, sizeof(file)));
    CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
  }
  CHECK_EQ(ReadFile(path, file, sizeof(file)), sizeof(file));
  CHECK_EQ(file[2 * sv::kStoreSlotBytes - 1], 0x42);
  {
    sv::FileMedium medium(path, bytes, sizeof(bytes));
    static sv::EnrollmentStore store(&medium, kModelId, kDim);
    CHECK_STATUS(store.Load(), sv::Status::kOk);
    CHECK_EQ(store.count(), 2);
  }
  // Truncated inside slot B: A is intact, so nothing is lost.
  CHECK(WriteFile(path, file, sv::kStoreSlotBytes + 50));
  {
    sv::FileMedium medium(path, bytes, sizeof(bytes));
    static sv::EnrollmentStore store(&medium, kModelId, kDim);
    CHECK_STATUS(store.Load(), sv::Status::kOk);
    CHECK_EQ(store.count(), 2);
    CHECK_STATUS(store.Enroll("carol", e), sv::Status::kOk);  // rewrites the whole image once
  }
  CHECK_EQ(ReadFile(path, file, sizeof(file)), sizeof(file));
  // Truncated inside slot A: damaged + erased, STORE_CORRUPT, not an empty store.
  CHECK(WriteFile(path, file, 50));
  {
    sv::FileMedium medium(path, bytes, sizeof(bytes));
    static sv::EnrollmentStore store(&medium, kModelId, kDim);
    CHECK_STATUS(store.Load(), sv::Status::kStoreCorrupt);
    CHECK_STATUS(store.Enroll("dave", e), sv::Status::kStoreCorrupt);
  }
  CHECK_EQ(ReadFile(path, file, sizeof(file)), 50u);  // nothing was written
  std::remove(path);
#if !defined(__arm__)
  // A path that exists but cannot be read as a file (a directory) must not
  // look like a fresh medium, and is never written.
  sv::FileMedium dir(".", bytes, sizeof(bytes));
  static sv::EnrollmentStore store(&dir, kModelId, kDim);
  CHECK_STATUS(store.Load(), sv::Status::kIoError);
  CHECK_STATUS(store.Format(), sv::Status::kIoError);
#endif
}
