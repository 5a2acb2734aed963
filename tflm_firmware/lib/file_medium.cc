#include "file_medium.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sv {

FileMedium::FileMedium(const char* path, uint8_t* bytes, size_t size)
    : RamMedium(bytes, size), path_(path) {
  std::memset(bytes, 0xFF, size);
  errno = 0;
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    readable_ = errno == ENOENT;  // missing: a fresh medium; anything else: unknown contents
    return;
  }
  file_bytes_ = std::fread(bytes, 1, size, f);  // a short file leaves the rest erased
  if (std::ferror(f)) readable_ = false;
  std::fclose(f);
}

Status FileMedium::Read(size_t offset, uint8_t* out, size_t size) {
  return readable_ ? RamMedium::Read(offset, out, size) : Status::kIoError;
}

Status FileMedium::Write(size_t offset, const uint8_t* data, size_t size) {
  if (!readable_) return Status::kIoError;
  const Status status = RamMedium::Write(offset, data, size);
  if (status != Status::kOk) return status;
  // "r+b" updates in place; only a file that was missing or empty may be
  // created with "wb" (which truncates: there is nothing to lose).
  std::FILE* f = std::fopen(path_, "r+b");
  if (f == nullptr && file_bytes_ == 0) f = std::fopen(path_, "wb");
  if (f == nullptr) return Status::kIoError;
  bool ok = false;
  if (file_bytes_ < Size()) {  // missing or short: the whole image, from the start
    ok = std::fwrite(bytes(), 1, Size(), f) == Size();
  } else {
    ok = std::fseek(f, static_cast<long>(offset), SEEK_SET) == 0 &&
         std::fwrite(data, 1, size, f) == size;
  }
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return Status::kIoError;
  file_bytes_ = Size();
  return Status::kOk;
}

}  // namespace sv
