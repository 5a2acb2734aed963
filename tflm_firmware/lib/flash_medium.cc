#include "flash_medium.h"

#include <cstring>

namespace sv {

namespace {
bool Inside(size_t address, size_t size, size_t total) {
  return address <= total && size <= total - address;
}
}  // namespace

Status MemoryFlash::Read(size_t address, uint8_t* out, size_t size) {
  if (out == nullptr || !Inside(address, size, size_)) return Status::kBadArgument;
  std::memcpy(out, bytes_ + address, size);
  return Status::kOk;
}

Status MemoryFlash::Erase(size_t address) {
  if (sector_bytes_ == 0 || address % sector_bytes_ != 0 || !Inside(address, sector_bytes_, size_)) {
    return Status::kBadArgument;
  }
  std::memset(bytes_ + address, 0xFF, sector_bytes_);
  return Status::kOk;
}

Status MemoryFlash::Program(size_t address, const uint8_t* data, size_t size) {
  if (data == nullptr || !Inside(address, size, size_)) return Status::kBadArgument;
  for (size_t i = 0; i < size; ++i) bytes_[address + i] &= data[i];
  return Status::kOk;
}

Status FlashMedium::Map(size_t offset, size_t size, size_t* address) const {
  const size_t sector = flash_ == nullptr ? 0 : flash_->sector_bytes();
  if (sector == 0 || base_ % sector != 0 || !Inside(base_, FlashBytes(sector), flash_->size())) {
    return Status::kBadArgument;
  }
  const size_t slot = offset / kStoreSlotBytes;
  const size_t within = offset % kStoreSlotBytes;
  if (slot > 1 || size > kStoreSlotBytes - within) return Status::kBadArgument;
  *address = base_ + slot * SlotStride(sector) + within;
  return Status::kOk;
}

Status FlashMedium::Read(size_t offset, uint8_t* out, size_t size) {
  size_t address = 0;
  const Status status = Map(offset, size, &address);
  return status == Status::kOk ? flash_->Read(address, out, size) : status;
}

Status FlashMedium::Write(size_t offset, const uint8_t* data, size_t size) {
  size_t address = 0;
  Status status = Map(offset, size, &address);
  if (status != Status::kOk) return status;
  const size_t sector = flash_->sector_bytes();
  if ((address - base_) % sector != 0) return Status::kBadArgument;
  for (size_t done = 0; done < size; done += sector) {
    status = flash_->Erase(address + done);
    if (status != Status::kOk) return status;
  }
  return flash_->Program(address, data, size);
}

}  // namespace sv
