// The board platform's pieces that need no board: the store on NOR flash
// (FlashMedium over the MemoryFlash model); the DMA capture is tested with
// the Verifier (test_verifier.cc).
#include <cstring>

#include "flash_medium.h"
#include "harness.h"
#include "store.h"

namespace {

constexpr size_t kSector = 4096;
constexpr size_t kStride = sv::FlashMedium::SlotStride(kSector);
// One sector of slack before the medium, to see that nothing outside it changes.
uint8_t g_flash[kSector + sv::FlashMedium::FlashBytes(kSector) + kSector];

bool AllBytes(const uint8_t* p, size_t n, uint8_t v) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != v) return false;
  }
  return true;
}

}  // namespace

TEST(memory_flash_behaves_as_nor) {
  sv::MemoryFlash flash(g_flash, sizeof(g_flash), kSector);
  CHECK_STATUS(flash.Erase(kSector), sv::Status::kOk);
  CHECK(AllBytes(g_flash + kSector, kSector, 0xFF));
  const uint8_t a[2] = {0xF0, 0x3C};
  const uint8_t b[2] = {0x0F, 0xFF};
  CHECK_STATUS(flash.Program(kSector, a, 2), sv::Status::kOk);
  CHECK_STATUS(flash.Program(kSector, b, 2), sv::Status::kOk);  // bits only clear
  CHECK_EQ(g_flash[kSector], 0x00);
  CHECK_EQ(g_flash[kSector + 1], 0x3C);
  CHECK_STATUS(flash.Erase(kSector + 1), sv::Status::kBadArgument);  // not a sector start
  CHECK_STATUS(flash.Erase(sizeof(g_flash)), sv::Status::kBadArgument);
  CHECK_STATUS(flash.Program(sizeof(g_flash) - 1, a, 2), sv::Status::kBadArgument);
}

TEST(store_on_flash_survives_a_restart_and_slots_keep_their_sectors) {
  CHECK(kStride >= sv::kStoreSlotBytes && kStride % kSector == 0 && kStride - kSector < sv::kStoreSlotBytes);
  sv::MemoryFlash flash(g_flash, sizeof(g_flash), kSector);
  std::memset(g_flash, 0x5A, sizeof(g_flash));  // not erased: the medium must erase what it writes
  for (size_t s = kSector; s < kSector + sv::FlashMedium::FlashBytes(kSector); s += kSector) {
    flash.Erase(s);
  }
  sv::FlashMedium medium(&flash, kSector);
  float e[16];
  for (int d = 0; d < 16; ++d) e[d] = 0.1f * (d + 1);
  {
    sv::EnrollmentStore store(&medium, 7u, 16);
    CHECK_STATUS(store.Load(), sv::Status::kOk);  // erased flash: an empty store
    CHECK_STATUS(store.Enroll("alice", e), sv::Status::kOk);
    e[0] = -1.0f;
    CHECK_STATUS(store.Enroll("bob", e), sv::Status::kOk);
    CHECK_STATUS(store.Delete("alice"), sv::Status::kOk);
  }
  sv::EnrollmentStore again(&medium, 7u, 16);  // the restart
  CHECK_STATUS(again.Load(), sv::Status::kOk);
  CHECK_EQ(again.count(), 1);
  CHECK(std::strcmp(again.name_at(0), "bob") == 0);
  // Only the medium's sectors changed; each slot's tail past its table is erased.
  CHECK(AllBytes(g_flash, kSector, 0x5A));
  CHECK(AllBytes(g_flash + kSector + 2 * kStride, kSector, 0x5A));
  CHECK(AllBytes(g_flash + kSector + sv::kStoreSlotBytes, kStride - sv::kStoreSlotBytes, 0xFF));
  // Erasing slot A's sectors leaves slot B's copy: the store still loads.
  for (size_t s = 0; s < kStride; s += kSector) flash.Erase(kSector + s);
  sv::EnrollmentStore after(&medium, 7u, 16);
  CHECK_STATUS(after.Load(), sv::Status::kOk);
  CHECK_EQ(after.count(), 1);
}

TEST(flash_medium_refuses_what_flash_cannot_do) {
  sv::MemoryFlash flash(g_flash, sizeof(g_flash), kSector);
  uint8_t byte = 0;
  sv::FlashMedium unaligned(&flash, 100);
  CHECK_STATUS(unaligned.Read(0, &byte, 1), sv::Status::kBadArgument);
  sv::FlashMedium too_far(&flash, 3 * kSector);  // two strides do not fit past here
  CHECK_STATUS(too_far.Read(0, &byte, 1), sv::Status::kBadArgument);
  sv::FlashMedium medium(&flash, kSector);
  CHECK_STATUS(medium.Write(100, &byte, 1), sv::Status::kBadArgument);  // not a sector start
  CHECK_STATUS(medium.Read(sv::kStoreSlotBytes - 1, g_flash, 2), sv::Status::kBadArgument);  // across slots
  CHECK_STATUS(medium.Read(sv::kStoreMediumBytes, &byte, 1), sv::Status::kBadArgument);
  CHECK_STATUS(medium.Write(sv::kStoreSlotBytes, &byte, 1), sv::Status::kOk);  // slot B's start
  CHECK_EQ(g_flash[kSector + kStride], byte);
}
