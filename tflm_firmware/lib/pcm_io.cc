#include "pcm_io.h"

#include <cstdio>
#include <cstring>

namespace sv {

namespace {

constexpr size_t kMaxHeaderBytes = 256;

uint32_t Le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

bool HasSuffix(const char* s, const char* suffix) {
  const size_t n = std::strlen(s);
  const size_t m = std::strlen(suffix);
  return n >= m && std::strcmp(s + n - m, suffix) == 0;
}

// Finds the format and data chunks; `*data_offset`/`*data_bytes` locate the
// samples.  `size` may be just the header part of a file (`total` is the file
// size), so the data chunk only has to start inside `size`.
Status ParseWavHeader(const uint8_t* data, size_t size, size_t total, size_t* data_offset,
                      size_t* data_bytes) {
  if (size < 12 || std::memcmp(data, "RIFF", 4) != 0 || std::memcmp(data + 8, "WAVE", 4) != 0) {
    return Status::kBadWav;
  }
  bool format_ok = false;
  size_t pos = 12;
  while (pos + 8 <= size) {
    const uint32_t chunk = Le32(data + pos + 4);
    const size_t body = pos + 8;
    if (std::memcmp(data + pos, "fmt ", 4) == 0) {
      if (chunk < 16 || body + 16 > size) return Status::kBadWav;
      const bool pcm = Le16(data + body) == 1;
      const bool mono = Le16(data + body + 2) == 1;
      const bool rate = Le32(data + body + 4) == 16000;
      const bool bits = Le16(data + body + 14) == 16;
      if (!(pcm && mono && rate && bits)) return Status::kBadWav;
      format_ok = true;
    } else if (std::memcmp(data + pos, "data", 4) == 0) {
      if (!format_ok || body + chunk > total) return Status::kBadWav;
      *data_offset = body;
      *data_bytes = chunk & ~static_cast<size_t>(1);
      return Status::kOk;
    }
    pos = body + chunk + (chunk & 1);
  }
  return Status::kBadWav;
}

}  // namespace

Status ParseWav(const uint8_t* data, size_t size, WavView* view) {
  if (data == nullptr || view == nullptr) return Status::kBadArgument;
  size_t offset = 0;
  size_t bytes = 0;
  const Status status = ParseWavHeader(data, size, size, &offset, &bytes);
  if (status != Status::kOk) return status;
  if (offset % 2 != 0) return Status::kBadWav;  // samples must be int16-aligned
  view->samples = reinterpret_cast<const int16_t*>(data + offset);
  view->num_samples = bytes / 2;
  return Status::kOk;
}

PcmFileReader::~PcmFileReader() {
  if (file_ != nullptr) std::fclose(file_);
}

Status PcmFileReader::Open(const char* path) {
  if (path == nullptr || file_ != nullptr) return Status::kBadArgument;
  file_ = std::fopen(path, "rb");
  if (file_ == nullptr) return Status::kIoError;
  if (std::fseek(file_, 0, SEEK_END) != 0) return Status::kIoError;
  const long total = std::ftell(file_);
  if (total < 0 || std::fseek(file_, 0, SEEK_SET) != 0) return Status::kIoError;
  size_t bytes = static_cast<size_t>(total);
  size_t offset = 0;
  if (!HasSuffix(path, ".raw") && !HasSuffix(path, ".pcm")) {
    uint8_t header[kMaxHeaderBytes];
    const size_t got = std::fread(header, 1, sizeof(header), file_);
    const Status status = ParseWavHeader(header, got, static_cast<size_t>(total), &offset, &bytes);
    if (status != Status::kOk) return status;
  }
  data_offset_ = offset;
  num_samples_ = bytes / 2;
  return Rewind();
}

Status PcmFileReader::Read(int16_t* buffer, size_t n) {
  if (file_ == nullptr || buffer == nullptr || n > num_samples_ - position_) {
    return Status::kBadArgument;
  }
  if (std::fread(buffer, 2, n, file_) != n) return Status::kIoError;
  position_ += n;
  return Status::kOk;
}

Status PcmFileReader::Rewind() {
  if (file_ == nullptr) return Status::kBadArgument;
  position_ = 0;
  return std::fseek(file_, static_cast<long>(data_offset_), SEEK_SET) == 0 ? Status::kOk
                                                                             : Status::kIoError;
}

Status LoadPcmFile(const char* path, int16_t* buffer, size_t capacity, size_t* num_samples,
                   bool keep_first) {
  if (path == nullptr || buffer == nullptr || num_samples == nullptr) return Status::kBadArgument;
  *num_samples = 0;
  PcmFileReader file;
  Status status = file.Open(path);
  if (status != Status::kOk) return status;
  size_t want = file.num_samples();
  if (want > capacity) {
    if (!keep_first) return Status::kAudioTooLong;
    want = capacity;
  }
  status = file.Read(buffer, want);
  if (status == Status::kOk) *num_samples = want;
  return status;
}

}  // namespace sv
