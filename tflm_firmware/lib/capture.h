// Audio captured on the device into the PCM buffer, for the "@buffer" source.
//
// A microphone driver's DMA callback (or an I2S/PDM ISR) hands each block it
// has filled to Push(); the command loop reads samples() when a command names
// "@buffer" and the Verifier scores buffer[0, samples()).  One producer (the
// interrupt), one consumer (the loop): the count is published after the
// samples are written, so the loop never sees a count ahead of its samples.
// See platform/board/mic_example.cc.
#ifndef TFADVQ_CAPTURE_H_
#define TFADVQ_CAPTURE_H_

#include <cstddef>
#include <cstdint>

namespace sv {

class AudioCapture {
 public:
  // `buffer[capacity]`: the Verifier's PCM buffer (VerifierBuffers::pcm).
  AudioCapture(int16_t* buffer, size_t capacity) : buffer_(buffer), capacity_(capacity) {}

  // Forgets what was captured (a new utterance starts).  Call it with the
  // producer stopped or between its blocks.
  void Restart();
  // Appends what fits of `samples[n]`; returns how many were kept.  The rest
  // is dropped and counted (an utterance longer than the buffer keeps its start).
  size_t Push(const int16_t* samples, size_t n);

  size_t samples() const { return count_; }
  size_t dropped() const { return dropped_; }
  size_t capacity() const { return capacity_; }

 private:
  int16_t* buffer_;
  size_t capacity_;
  volatile size_t count_ = 0;
  volatile size_t dropped_ = 0;
};

}  // namespace sv

#endif  // TFADVQ_CAPTURE_H_
