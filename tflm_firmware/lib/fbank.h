// Kaldi-style log mel filterbank, the C++ twin of tfadvq/features.py.
//
// The model was trained on features from tfadvq.features.fbank; any drift here
// shifts every embedding, so this file follows that module's docstring step by
// step (int16-range samples, snip_edges framing 400/160, DC removal,
// pre-emphasis 0.97, Povey window, 512-point power spectrum, 80 Kaldi mel bins
// from 20 Hz to Nyquist, log with a FLT_EPSILON floor, per-utterance mean
// normalisation).  All buffers are members or caller-provided: no allocation.
//
// Frames the device keeps until the utterance mean is known (the one piece of
// RAM that grows with the utterance) are int16 codes (KeepLogMel): 2 bytes a
// value instead of 4, 160 B per 10 ms frame.  The mean is then that of the
// codes, summed exactly in int64, and a window row is (code - mean) * 2^-10
// (WindowRows).  tfadvq.features.fbank computes the same with
// FbankConfig.int16_frames, which converters.tflm's scorer sets, so device and
// Python TFLM feed the network the same int8 tensor.
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
  // Kept frames: code = round(log_mel * 2^10) - kKeptOffset, clamped to int16
// (KeepLogMel),
  // so codes span log mel energies [-16, 48): the floor log(FLT_EPSILON) =
  // -15.9 up to full-scale audio's ~38.5, in steps of 2^-10 (rounding error
  // <= 4.9e-4, about 1/200 of an int8 input step of the demo model).
  static constexpr float kKeptScale = 1024.0f;
  static constexpr float kKeptStep = 1.0f / kKeptScale;
  static constexpr int32_t kKeptOffset = 16384;
};

// `value` as a kept code (FbankConstants): q = value * 2^10 (exact), rounded
// as sign(q) * trunc(|q| + 0.5f) with the sum in float (half away from zero,
// up to that sum's rounding: the rule tfadvq.features follows; a few
// instructions on the M4), minus kKeptOffset, clamped to int16 (NaN to the
// highest).
int16_t KeepLogMel(float value);

// What Fbank::Compute writes per frame and value.
enum class Features {
  kLogMel,    // log mel energies, steps 2-9 of tfadvq.features (ComputeFrame)
  kMeanNorm,  // minus their per-utterance mean: tfadvq.features.fbank, its defaults
  kKept,      // what the device's windows read: (KeepLogMel - mean of the codes) * 2^-10,
              // tfadvq.features.fbank with FbankConfig.int16_frames
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
  // The same frame as kept codes, `codes[kNumMelBins]` (KeepLogMel of each value).
  void ComputeKeptFrame(const int16_t* samples, int16_t* codes) const;

  // Features of a whole utterance into `out[max_frames][kNumMelBins]`;
  // `*frames` receives the frame count.  kAudioTooShort when not even one frame
  // fits, kAudioTooLong when more than `max_frames` would.
  Status Compute(const int16_t* pcm, size_t num_samples, float* out, int max_frames,
                 int* frames, Features features = Features::kMeanNorm) const;

 private:
  // ComputeFrame (`codes` null) or ComputeKeptFrame (`out` null): each value
  // is written as it is computed, so the codes need no float row on the stack.
  void LogMel(const int16_t* samples, float* out, int16_t* codes) const;

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

// `mean[kNumMelBins]` of the kept codes `sums[kNumMelBins]` of `frames`
// frames, in code units: what FbankStream::Mean and the Verifier subtract.
void KeptMean(const int64_t* sums, int frames, float* mean);

// Receives each fbank frame of a FbankStream as soon as its samples are in.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // Frame `index` (0, 1, ... in order): `row[kNumMelBins]` its kept codes
  // (KeepLogMel of the log mel energies, not mean-normalised), valid during
  // the call.  A status other than kOk stops the stream's Push() with it.
  virtual Status OnFrame(int index, const int16_t* row) = 0;
  // Whether frame `index` is needed at all: a frame no sink wants is neither
  // computed nor summed into the stream's Mean() (a second pass over audio
  // whose mean is known skips the frames it kept the first time).
  virtual bool Wants(int index) const {
    (void)index;
    return true;
  }
};

// A FrameSink keeping every frame in `rows[capacity][kNumMelBins]`: one frame
// is 160 bytes, half the 320 of the 160 samples of audio it advances by, so
// keeping frames instead of samples halves the RAM and spares recomputing them
// (Verifier::EmbedFrames).  A frame beyond `capacity` is kAudioTooLong, or
// with kKeepFirst not kept (the stream goes on: its mean still counts it).
class FrameStore : public FrameSink {
 public:
  enum Overflow { kRefuse, kKeepFirst };
  FrameStore(int16_t* rows, int capacity, Overflow overflow = kRefuse)
      : rows_(rows), capacity_(capacity), overflow_(overflow) {}
  Status OnFrame(int index, const int16_t* row) override;
  const int16_t* rows() const { return rows_; }

 private:
  int16_t* rows_;
  int capacity_;
  Overflow overflow_;
};

// The streaming front end: PCM arrives in chunks of any size (DMA
// half-buffers, file reads), frames come out to a FrameSink as kept codes as
// soon as their 400 samples are in, and the per-bin sums of the codes for the
// utterance mean accumulate (exactly, in int64).  It keeps one frame of
// samples, so its memory does not depend on the utterance length.  The frames
// are KeepLogMel of Fbank::ComputeFrame of the same samples and Mean() is the
// mean Fbank::Compute(Features::kKept) subtracts, bit for bit, whatever the
// chunking.
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
  // `mean[kNumMelBins]`: the per-bin mean of the kept codes so far, in code
  // units (zeros before the first): float(sum) / frames.
  void Mean(float* mean) const;

 private:
  Status Emit(const int16_t* frame, FrameSink* sink);

  const Fbank* fbank_;
  int16_t carry_[kFrameLength] = {};  // samples of the next frame, from its first
  int filled_ = 0;                    // how many of them have arrived
  int frames_ = 0;
  size_t samples_ = 0;
  int64_t sum_[kNumMelBins] = {};  // exact for any utterance length
  int16_t codes_[kNumMelBins] = {};
};

}  // namespace sv

#endif  // TFADVQ_FBANK_H_
