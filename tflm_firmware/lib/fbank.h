// Kaldi-style log mel filterbank, the C++ twin of tfadvq/features.py.
//
// The model was trained on features from tfadvq.features.fbank; any drift here
// shifts every embedding, so this file follows that module's docstring step by
// step (int16-range samples, snip_edges framing 400/160, DC removal,
// pre-emphasis 0.97, Povey window, 512-point power spectrum, 80 Kaldi mel bins
// from 20 Hz to Nyquist, log with a FLT_EPSILON floor, per-utterance mean
// normalisation).  All buffers are members or caller-provided: no allocation.
#ifndef TFADVQ_FBANK_H_
#define TFADVQ_FBANK_H_

#include <cstddef>
#include <cstdint>

#include "fft.h"
#include "sv_status.h"

namespace sv {

struct FbankConstants {
  static constexpr int kSampleRate = 16000;
  static constexpr int kFrameLength = 400;  // 25 ms
  static constexpr int kFrameShift = 160;   // 10 ms
  static constexpr int kFftLength = 512;
  static constexpr int kNumMelBins = 80;
  static constexpr float kLowFreq = 20.0f;
  static constexpr float kPreemph = 0.97f;
  static constexpr float kLogFloor = 1.1920929e-07f;  // FLT_EPSILON
  // Each FFT bin lies in at most two neighbouring triangles.
  static constexpr int kMaxMelWeights = 2 * (kFftLength / 2);
};

// Frames the front end yields for `num_samples` samples (Kaldi snip_edges).
int FbankNumFrames(size_t num_samples);

class Fbank : public FbankConstants {
 public:
  // Builds the window, mel and FFT tables (uses libm once, at start-up).
  Fbank();

  // Log mel energies of one frame of kFrameLength samples, without mean
  // normalisation: steps 2-9 of tfadvq.features.
  void ComputeFrame(const int16_t* samples, float* out) const;

  // Features of a whole utterance into `out[max_frames][kNumMelBins]`;
  // `*frames` receives the frame count.  kAudioTooShort when not even one frame
  // fits, kAudioTooLong when more than `max_frames` would.
  Status Compute(const int16_t* pcm, size_t num_samples, float* out, int max_frames,
                 int* frames, bool mean_norm = true) const;

 private:
  RealFft<kFftLength> fft_;
  float window_[kFrameLength];
  // Sparse mel matrix: bin m uses FFT bins mel_first_[m] .. + mel_count_[m] - 1,
  // weights stored consecutively from mel_offset_[m].
  short mel_first_[kNumMelBins];
  short mel_count_[kNumMelBins];
  short mel_offset_[kNumMelBins];
  float mel_weights_[kMaxMelWeights];
};

// Subtracts from every column of `features[frames][dim]` its mean over frames.
void SubtractMean(float* features, int frames, int dim);

}  // namespace sv

#endif  // TFADVQ_FBANK_H_
