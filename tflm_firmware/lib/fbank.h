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

// Receives each fbank frame of a FbankStream as soon as its samples are in.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // Frame `index` (0, 1, ... in order): `row[kNumMelBins]` log mel energies,
  // not mean-normalised, valid during the call.  A status other than kOk stops
  // the stream's Push() with it.
  virtual Status OnFrame(int index, const float* row) = 0;
  // Whether frame `index` is needed at all: a frame no sink wants is neither
  // computed nor summed into the stream's Mean() (a second pass over audio
  // whose mean is known skips the frames it kept the first time).
  virtual bool Wants(int index) const {
    (void)index;
    return true;
  }
};

// A FrameSink keeping every frame in `rows[capacity][kNumMelBins]`: one frame
// is 320 bytes, as many as the 160 samples of audio it advances by, so keeping
// frames instead of samples costs the same RAM and spares recomputing them
// (Verifier::EmbedFrames).  A frame beyond `capacity` is kAudioTooLong, or
// with kKeepFirst not kept (the stream goes on: its mean still counts it).
class FrameStore : public FrameSink {
 public:
  enum Overflow { kRefuse, kKeepFirst };
  FrameStore(float* rows, int capacity, Overflow overflow = kRefuse)
      : rows_(rows), capacity_(capacity), overflow_(overflow) {}
  Status OnFrame(int index, const float* row) override;
  const float* rows() const { return rows_; }

 private:
  float* rows_;
  int capacity_;
  Overflow overflow_;
};

// The streaming front end: PCM arrives in chunks of any size (DMA
// half-buffers, file reads), frames come out to a FrameSink as soon as their
// 400 samples are in, and the per-bin sums for the utterance mean accumulate.
// It keeps one frame of samples, so its memory does not depend on the
// utterance length.  The frames are Fbank::ComputeFrame of the same samples
// and Mean() is the mean Fbank::Compute subtracts, bit for bit, whatever the
// chunking (Fbank::Compute is one Push of the whole utterance).
class FbankStream : public FbankConstants {
 public:
  explicit FbankStream(const Fbank* fbank) : fbank_(fbank) {}

  // Starts a new utterance.
  void Reset();
  // Appends `samples[n]` (n may be 0) and hands every frame they complete to
  // `sink` (may be null: only the mean is kept).  Returns the sink's first
  // error, after which the stream must be Reset(); kBadArgument for a null
  // `samples` with n > 0.
  Status Push(const int16_t* samples, size_t n, FrameSink* sink);

  int frames() const { return frames_; }
  size_t samples() const { return samples_; }
  // `mean[kNumMelBins]`: the per-bin mean of the frames so far (zeros before the first).
  void Mean(float* mean) const;

 private:
  Status Emit(const int16_t* frame, FrameSink* sink);

  const Fbank* fbank_;
  int16_t carry_[kFrameLength] = {};  // samples of the next frame, from its first
  int filled_ = 0;                    // how many of them have arrived
  int frames_ = 0;
  size_t samples_ = 0;
  float sum_[kNumMelBins] = {};
  float row_[kNumMelBins] = {};
};

}  // namespace sv

#endif  // TFADVQ_FBANK_H_
