// PCM audio input: 16 kHz mono 16-bit WAV or raw little-endian int16.
//
// On the device, files come from the host through semihosting (newlib's stdio
// over rdimon), so the same code reads audio on the host build and on QEMU.
// Both targets are little-endian; samples are read straight into the buffer.
#ifndef TFADVQ_PCM_IO_H_
#define TFADVQ_PCM_IO_H_

#include <cstddef>
#include <cstdint>

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

// Reads `path` into `buffer[capacity]`: a WAV file, or raw int16 if the name ends
// in ".raw" or ".pcm".  kIoError if it cannot be opened/read.  Audio longer than
// `capacity`: kAudioTooLong, or with `keep_first` its first `capacity` samples
// (as a recording that stops when the buffer is full).
Status LoadPcmFile(const char* path, int16_t* buffer, size_t capacity, size_t* num_samples,
                   bool keep_first = false);

}  // namespace sv

#endif  // TFADVQ_PCM_IO_H_
