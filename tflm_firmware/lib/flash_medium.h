// The enrollment store on NOR flash: sv::StorageMedium over a FlashDriver.
//
// Flash is erased a sector at a time (to 0xFF) and programmed by clearing
// bits, so a store slot cannot be rewritten in place.  FlashMedium gives each
// of the store's two slots its own whole sectors -- slot k at
// `base + k * SlotStride(sector)` -- and a save of a slot erases that slot's
// sectors, then programs it.  Neither slot ever shares a sector with the other,
// so erasing one never touches the other (the store's A/B rule needs that).
#ifndef TFADVQ_FLASH_MEDIUM_H_
#define TFADVQ_FLASH_MEDIUM_H_

#include <cstddef>
#include <cstdint>

#include "store.h"

namespace sv {

// The board's flash, by byte address inside the region it manages.  Implement
// it with the vendor's flash driver; MemoryFlash below is the RAM model.
class FlashDriver {
 public:
  virtual ~FlashDriver() = default;
  virtual size_t size() const = 0;
  virtual size_t sector_bytes() const = 0;
  virtual Status Read(size_t address, uint8_t* out, size_t size) = 0;
  // Erases the sector starting at `address` (sector-aligned) to 0xFF.
  virtual Status Erase(size_t address) = 0;
  // Programs `data` at `address`; flash can only clear bits (an AND).
  virtual Status Program(size_t address, const uint8_t* data, size_t size) = 0;
};

// A FlashDriver over memory (QEMU's MPS2/MPS3 "flash" is RAM; also the tests'
// model): erase writes 0xFF, program ANDs, as NOR does.
class MemoryFlash : public FlashDriver {
 public:
  MemoryFlash(uint8_t* bytes, size_t size, size_t sector_bytes)
      : bytes_(bytes), size_(size), sector_bytes_(sector_bytes) {}
  size_t size() const override { return size_; }
  size_t sector_bytes() const override { return sector_bytes_; }
  Status Read(size_t address, uint8_t* out, size_t size) override;
  Status Erase(size_t address) override;
  Status Program(size_t address, const uint8_t* data, size_t size) override;

 private:
  uint8_t* bytes_;
  size_t size_;
  size_t sector_bytes_;
};

class FlashMedium : public StorageMedium {
 public:
  // Bytes between the two slots' starts: kStoreSlotBytes rounded up to whole sectors.
  static constexpr size_t SlotStride(size_t sector_bytes) {
    return sector_bytes == 0 ? 0 : (kStoreSlotBytes + sector_bytes - 1) / sector_bytes * sector_bytes;
  }
  // Flash the medium needs from `base` (sector-aligned): two strides.
  static constexpr size_t FlashBytes(size_t sector_bytes) { return 2 * SlotStride(sector_bytes); }

  FlashMedium(FlashDriver* flash, size_t base) : flash_(flash), base_(base) {}
  size_t Size() const override { return kStoreMediumBytes; }
  // kBadArgument if the layout does not fit the driver (base not aligned,
  // region too small) or a range crosses from one slot into the other.
  Status Read(size_t offset, uint8_t* out, size_t size) override;
  // A write must start at a sector boundary of its slot (the store writes a
  // whole slot from its start): erases the sectors it covers, then programs.
  // The slot's bytes past the write read as 0xFF afterwards.
  Status Write(size_t offset, const uint8_t* data, size_t size) override;

 private:
  // Flash address of medium `offset` for a range of `size` bytes inside one slot.
  Status Map(size_t offset, size_t size, size_t* address) const;

  FlashDriver* flash_;
  size_t base_;
};

}  // namespace sv

#endif  // TFADVQ_FLASH_MEDIUM_H_
