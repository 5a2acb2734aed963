// Audio captured on the device for the "@buffer" source: the streaming front end.
//
// A microphone driver's DMA callback (or an I2S/PDM ISR) hands each block it
// has filled to Push(), which runs the front end on it at once: the fbank
// frames the block completes go into the frame buffer (not mean-normalised),
// and the utterance mean and the audio checks' sums accumulate.  No PCM is
// kept (one frame of samples, 800 B), and one frame is 160 B per 10 ms of
// audio (int16 codes, fbank.h), half the PCM it replaces; and "@buffer" is scored in
// one front-end pass (Verifier::EmbedFrames), bit for bit as EmbedUtterance of
// the same samples.  A recording longer than the buffer keeps its start, as a
// recording that stops there (per-utterance mean normalisation needs every
// frame before the first window runs, so the frames of a whole utterance are
// kept).  One producer (the interrupt), one consumer (the command loop): the
// sample count is published after the frames are written.  Push costs about
// 46 k instructions per 10 ms frame on a Cortex-M4.  See
// platform/board/mic_example.cc.
#ifndef TFADVQ_CAPTURE_H_
#define TFADVQ_CAPTURE_H_

#include <cstddef>
#include <cstdint>

#include "audio_check.h"
#include "fbank.h"

namespace sv {

class AudioCapture {
 public:
  // `frames[capacity][Fbank::kNumMelBins]` (on the device the Verifier's
  // VerifierBuffers::frames); at most limits.max_samples are kept.
  AudioCapture(const Fbank* fbank, int16_t* frames, int capacity, const AudioLimits& limits);

  // Forgets what was captured (a new utterance starts).  Call it with the
  // producer stopped or between its blocks.
  void Restart();
  // Appends what fits of `samples[n]`; returns how many were kept.  The rest
  // is dropped and counted (an utterance longer than the buffer keeps its start).
  size_t Push(const int16_t* samples, size_t n);

  size_t samples() const { return count_; }
  size_t dropped() const { return dropped_; }
  // The samples whose frames fit in the buffer (and within limits.max_samples).
  size_t capacity() const { return capacity_; }
  // The frames so far, their per-bin mean, and the audio checks' sums.
  int frames() const { return stream_.frames(); }
  const int16_t* rows() const { return store_.rows(); }
  void Mean(float* mean) const { stream_.Mean(mean); }
  const AudioStats& stats() const { return stats_; }

 private:
  FbankStream stream_;
  FrameStore store_;
  AudioStats stats_;
  AudioLimits limits_;
  size_t capacity_;
  volatile size_t count_ = 0;
  volatile size_t dropped_ = 0;
};

}  // namespace sv

#endif  // TFADVQ_CAPTURE_H_
