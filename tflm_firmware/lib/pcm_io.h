// PCM audio input: 16 kHz mono 16-bit WAV or raw little-endian int16.
//
// On the device, files come from the host through semihosting (newlib's stdio
// over rdimon), so the same code reads audio on the host build and on QEMU.
// Both targets are little-endian; samples are read straight into the buffer.
#ifndef TFADVQ_PCM_IO_H_
#define TFADVQ_PCM_IO_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "sv_status.h"

namespace sv {

// Where the samples of a WAV image are (for audio compiled in as a byte array).
struct WavView {
  const int16_t* samples;
  size_t num_samples;
};

// Parses a RIFF/WAVE image in memory.  Anything other than PCM, 16-bit, mono,
// 16 kHz, or a header/data chunk running past `size`, is kBadWav.
Status ParseWav(const uint8_t* data, size_t size, WavView* view);

// A PCM file (WAV, or raw int16 for ".raw"/".pcm") read in chunks, so audio of
// any length streams through a small buffer, and can be read again (Rewind):
// the two passes of Verifier::EmbedFile.
class PcmFileReader {
 public:
  PcmFileReader() = default;
  ~PcmFileReader();
  PcmFileReader(const PcmFileReader&) = delete;
  PcmFileReader& operator=(const PcmFileReader&) = delete;

  // kIoError if it cannot be opened or sized, kBadWav for a WAV that is not
  // 16 kHz mono 16-bit PCM; then positioned at the first sample.
  Status Open(const char* path);
  size_t num_samples() const { return num_samples_; }
  // Reads the next `n` samples (n <= what is left) into `buffer`; kIoError on a short read.
  Status Read(int16_t* buffer, size_t n);
  // Back to the first sample.
  Status Rewind();

 private:
  std::FILE* file_ = nullptr;
  size_t data_offset_ = 0;
  size_t num_samples_ = 0;
  size_t position_ = 0;
};

// Reads `path` into `buffer[capacity]`: a WAV file, or raw int16 if the name ends
// in ".raw" or ".pcm".  kIoError if it cannot be opened/read.  Audio longer than
// `capacity`: kAudioTooLong, or with `keep_first` its first `capacity` samples
// (as a recording that stops when the buffer is full).
Status LoadPcmFile(const char* path, int16_t* buffer, size_t capacity, size_t* num_samples,
                   bool keep_first = false);

}  // namespace sv

#endif  // TFADVQ_PCM_IO_H_
