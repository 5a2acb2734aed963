// A StorageMedium kept in a host file: the "flash" of the host build and of
// QEMU (through semihosting), so enrollments survive between runs.  A board
// replaces it with its flash driver behind the same interface.
#ifndef TFADVQ_FILE_MEDIUM_H_
#define TFADVQ_FILE_MEDIUM_H_

#include "store.h"

namespace sv {

class FileMedium : public RamMedium {
 public:
  // Mirrors `path` in `bytes[size]`.  A missing file reads as erased (0xFF); a
  // short file's missing tail too (the store then sees damage, not a blank
  // medium).  A file that exists but cannot be read makes every Read and
  // Write fail (kIoError): the store must not take it for a fresh medium and
  // overwrite it.
  FileMedium(const char* path, uint8_t* bytes, size_t size);
  Status Read(size_t offset, uint8_t* out, size_t size) override;
  // Writes go to RAM, then only the written range to the file, in place (as
  // in flash): the file is never truncated or rewritten whole, so a crash
  // mid-write can only tear the range being written.  The first write to a
  // missing or short file writes the whole image.  kIoError if the file
  // cannot be written (the store then treats the save as failed).
  Status Write(size_t offset, const uint8_t* data, size_t size) override;

 private:
  const char* path_;
  size_t file_bytes_ = 0;  // bytes the file is known to hold
  bool readable_ = true;
};

}  // namespace sv

#endif  // TFADVQ_FILE_MEDIUM_H_
