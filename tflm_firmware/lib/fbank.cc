#include "fbank.h"

#include <cmath>
#include <cstring>

namespace sv {

namespace {

constexpr double kPi = 3.14159265358979323846;

double Mel(double hz) { return 1127.0 * std::log1p(hz / 700.0); }

}  // namespace

int16_t KeepLogMel(float value) {
  // Clamped first (NaN too), so the conversion to int is defined; |q| + 0.5f
  // is >= 0, so the conversion's truncation is its floor.
  float q = value * Fbank::kKeptScale;
  constexpr float kLow = -32768.0f + Fbank::kKeptOffset - 1.0f;
  constexpr float kHigh = 32767.0f + Fbank::kKeptOffset + 1.0f;
  if (!(q < kHigh)) q = kHigh;
  if (q < kLow) q = kLow;
  const int32_t magnitude = static_cast<int32_t>(std::fabs(q) + 0.5f);
  const int32_t code = (q < 0.0f ? -magnitude : magnitude) - Fbank::kKeptOffset;
  return static_cast<int16_t>(code < -32768 ? -32768 : (code > 32767 ? 32767 : code));
}

void KeptMean(const int64_t* sums, int frames, float* mean) {
  for (int m = 0; m < Fbank::kNumMelBins; ++m) {
    mean[m] = frames > 0 ? static_cast<float>(sums[m]) / static_cast<float>(frames) : 0.0f;
  }
}

int FbankNumFrames(size_t num_samples) {
  if (num_samples < static_cast<size_t>(Fbank::kFrameLength)) return 0;
  return 1 + static_cast<int>((num_samples - Fbank::kFrameLength) / Fbank::kFrameShift);
}

Fbank::Fbank() {
  // Tables are computed in double and rounded to float, as tfadvq.features does.
  for (int i = 0; i < kFrameLength; ++i) {
    const double a = 2 * kPi * i / (kFrameLength - 1);
    window_[i] = static_cast<float>(std::pow(0.5 - 0.5 * std::cos(a), 0.85));
  }
  const double low = Mel(kLowFreq);
  const double high = Mel(kSampleRate / 2.0);
  const double delta = (high - low) / (kNumMelBins + 1);
  // Mel value of each FFT bin, once: double-precision libm is software on the M4.
  double bin_mel[kFftLength / 2];
  for (int k = 0; k < kFftLength / 2; ++k) {
    bin_mel[k] = Mel(static_cast<double>(k) * kSampleRate / kFftLength);
  }
  int used = 0;
  for (int m = 0; m < kNumMelBins; ++m) {
    const double left = low + m * delta;
    const double center = left + delta;
    const double right = left + 2 * delta;
    mel_first_[m] = 0;
    mel_count_[m] = 0;
    mel_offset_[m] = static_cast<short>(used);
    // The Nyquist bin always has weight 0, so only bins 0..K/2-1 are scanned.
    for (int k = 0; k < kFftLength / 2; ++k) {
      const double z = bin_mel[k];
      double w = 0.0;
      if (z > left && z <= center) {
        w = (z - left) / (center - left);
      } else if (z > center && z < right) {
        w = (right - z) / (right - center);
      }
      if (w <= 0.0) continue;
      if (mel_count_[m] == 0) mel_first_[m] = static_cast<short>(k);
      // Triangles are contiguous, so bins between first and k are all inside.
      mel_count_[m] = static_cast<short>(k - mel_first_[m] + 1);
      mel_weights_[used++] = static_cast<float>(w);
    }
  }
}

void Fbank::ComputeFrame(const int16_t* samples, float* out) const { LogMel(samples, out, nullptr); }

void Fbank::ComputeKeptFrame(const int16_t* samples, int16_t* codes) const {
  LogMel(samples, nullptr, codes);
}

void Fbank::LogMel(const int16_t* samples, float* out, int16_t* codes) const {
  // Steps 4-6 in one backward pass, each value rounded as the steps one by one
  // would round it: the sum of 400 int16 is exact in int32 and in float (below
  // 2^24), so the DC mean is the float mean; pre-emphasis runs backwards so
  // each step still sees the unmodified f[i-1].
  int32_t sum = 0;
  for (int i = 0; i < kFrameLength; ++i) sum += samples[i];
  const float mean = static_cast<float>(sum) / kFrameLength;
  float frame[kFftLength];
  float next = static_cast<float>(samples[kFrameLength - 1]) - mean;
  for (int i = kFrameLength - 1; i > 0; --i) {
    const float prev = static_cast<float>(samples[i - 1]) - mean;
    frame[i] = (next - kPreemph * prev) * window_[i];
    next = prev;
  }
  frame[0] = (next - kPreemph * next) * window_[0];
  for (int i = kFrameLength; i < kFftLength; ++i) frame[i] = 0.0f;

  float power[kFftLength / 2 + 1];
  fft_.PowerSpectrum(frame, power);
  for (int m = 0; m < kNumMelBins; ++m) {
    const float* w = mel_weights_ + mel_offset_[m];
    const float* p = power + mel_first_[m];
    float energy = 0.0f;
    for (int j = 0; j < mel_count_[m]; ++j) energy += p[j] * w[j];
    const float value = std::log(energy > kLogFloor ? energy : kLogFloor);
    if (codes != nullptr) {
      codes[m] = KeepLogMel(value);
    } else {
      out[m] = value;
    }
  }
}

void SubtractMean(float* features, int frames, int dim) {
  if (frames <= 0) return;
  for (int d = 0; d < dim; ++d) {
    float sum = 0.0f;
    for (int t = 0; t < frames; ++t) sum += features[t * dim + d];
    const float mean = sum / frames;
    for (int t = 0; t < frames; ++t) features[t * dim + d] -= mean;
  }
}

Status FrameStore::OnFrame(int index, const int16_t* row) {
  if (index < 0 || index >= capacity_) {
    return overflow_ == kKeepFirst && index >= 0 ? Status::kOk : Status::kAudioTooLong;
  }
  std::memcpy(rows_ + index * Fbank::kNumMelBins, row, sizeof(int16_t) * Fbank::kNumMelBins);
  return Status::kOk;
}

Status Fbank::Compute(const int16_t* pcm, size_t num_samples, float* out, int max_frames,
                      int* frames, Features features) const {
  if (pcm == nullptr || out == nullptr || frames == nullptr || max_frames <= 0) {
    return Status::kBadArgument;
  }
  const int n = FbankNumFrames(num_samples);
  *frames = 0;
  if (n == 0) return Status::kAudioTooShort;
  if (n > max_frames) return Status::kAudioTooLong;
  for (int t = 0; t < n; ++t) ComputeFrame(pcm + t * kFrameShift, out + t * kNumMelBins);
  if (features == Features::kMeanNorm) SubtractMean(out, n, kNumMelBins);
  if (features == Features::kKept) {
    // As FbankStream and the Verifier's windows: codes, their exact sums, then (code - mean) * step.
    int64_t sums[kNumMelBins] = {};
    for (int i = 0; i < n * kNumMelBins; ++i) {
      const int16_t code = KeepLogMel(out[i]);
      sums[i % kNumMelBins] += code;
      out[i] = static_cast<float>(code);
    }
    float mean[kNumMelBins];
    KeptMean(sums, n, mean);
    for (int i = 0; i < n * kNumMelBins; ++i) out[i] = (out[i] - mean[i % kNumMelBins]) * kKeptStep;
  }
  *frames = n;
  return Status::kOk;
}

void FbankStream::Reset() {
  filled_ = 0;
  frames_ = 0;
  samples_ = 0;
  for (int64_t& s : sum_) s = 0;
}

Status FbankStream::Emit(const int16_t* frame, FrameSink* sink) {
  if (sink != nullptr && !sink->Wants(frames_)) {
    ++frames_;
    return Status::kOk;
  }
  fbank_->ComputeKeptFrame(frame, codes_);
  for (int m = 0; m < kNumMelBins; ++m) sum_[m] += codes_[m];  // exact: in any order
  const int index = frames_++;
  return sink != nullptr ? sink->OnFrame(index, codes_) : Status::kOk;
}

Status FbankStream::Push(const int16_t* samples, size_t n, FrameSink* sink) {
  if (n > 0 && samples == nullptr) return Status::kBadArgument;
  samples_ += n;
  while (n > 0) {
    if (filled_ == 0 && n >= static_cast<size_t>(kFrameLength)) {
      // A whole frame in the input: computed in place, no copy.
      const Status status = Emit(samples, sink);
      if (status != Status::kOk) return status;
      samples += kFrameShift;
      n -= kFrameShift;
      continue;
    }
    const size_t room = static_cast<size_t>(kFrameLength - filled_);
    const size_t take = n < room ? n : room;
    std::memcpy(carry_ + filled_, samples, sizeof(int16_t) * take);
    filled_ += static_cast<int>(take);
    samples += take;
    n -= take;
    if (filled_ == kFrameLength) {
      const Status status = Emit(carry_, sink);
      if (status != Status::kOk) return status;
      // The next frame starts kFrameShift samples later: keep its first samples.
      std::memmove(carry_, carry_ + kFrameShift, sizeof(int16_t) * (kFrameLength - kFrameShift));
      filled_ = kFrameLength - kFrameShift;
    }
  }
  return Status::kOk;
}

void FbankStream::Mean(float* mean) const { KeptMean(sum_, frames_, mean); }

}  // namespace sv
