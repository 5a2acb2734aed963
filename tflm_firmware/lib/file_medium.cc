#include "file_medium.h"

#include <cstdio>
#include <cstring>

namespace sv {

FileMedium::FileMedium(const char* path, uint8_t* bytes, size_t size)
    : RamMedium(bytes, size), path_(path) {
  std::memset(bytes, 0xFF, size);
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return;
  const size_t got = std::fread(bytes, 1, size, f);
  static_cast<void>(got);  // a short file leaves the rest erased
  std::fclose(f);
}

Status FileMedium::Write(size_t offset, const uint8_t* data, size_t size) {
  const Status status = RamMedium::Write(offset, data, size);
  if (status != Status::kOk) return status;
  // The whole image is rewritten: "r+b" cannot create the file, and it is small.
  std::FILE* f = std::fopen(path_, "wb");
  if (f == nullptr) return Status::kIoError;
  const bool written = std::fwrite(bytes(), 1, Size(), f) == Size();
  const bool closed = std::fclose(f) == 0;
  return written && closed ? Status::kOk : Status::kIoError;
}

}  // namespace sv
