// A StorageMedium kept in a host file: the "flash" of the host build and of
// QEMU (through semihosting), so enrollments survive between runs.  A board
// replaces it with its flash driver behind the same interface.
#ifndef TFADVQ_FILE_MEDIUM_H_
#define TFADVQ_FILE_MEDIUM_H_

#include "store.h"

namespace sv {

class FileMedium : public RamMedium {
 public:
  // Mirrors `path` in `bytes[size]`; a missing or short file reads as erased (0xFF).
  FileMedium(const char* path, uint8_t* bytes, size_t size);
  // Writes go to RAM, then the changed range to the file.  kIoError if the file
  // cannot be written (the store then treats the save as failed).
  Status Write(size_t offset, const uint8_t* data, size_t size) override;

 private:
  const char* path_;
};

}  // namespace sv

#endif  // TFADVQ_FILE_MEDIUM_H_
