#include "fbank.h"

#include <cmath>

namespace sv {

namespace {

constexpr double kPi = 3.14159265358979323846;

double Mel(double hz) { return 1127.0 * std::log1p(hz / 700.0); }

}  // namespace

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

void Fbank::ComputeFrame(const int16_t* samples, float* out) const {
  float frame[kFftLength];
  float sum = 0.0f;
  for (int i = 0; i < kFrameLength; ++i) {
    frame[i] = static_cast<float>(samples[i]);
    sum += frame[i];
  }
  const float mean = sum / kFrameLength;
  for (int i = 0; i < kFrameLength; ++i) frame[i] -= mean;
  // Pre-emphasis runs backwards so each step still sees the unmodified f[i-1].
  for (int i = kFrameLength - 1; i > 0; --i) frame[i] -= kPreemph * frame[i - 1];
  frame[0] -= kPreemph * frame[0];
  for (int i = 0; i < kFrameLength; ++i) frame[i] *= window_[i];
  for (int i = kFrameLength; i < kFftLength; ++i) frame[i] = 0.0f;

  float power[kFftLength / 2 + 1];
  fft_.PowerSpectrum(frame, power);
  for (int m = 0; m < kNumMelBins; ++m) {
    const float* w = mel_weights_ + mel_offset_[m];
    const float* p = power + mel_first_[m];
    float energy = 0.0f;
    for (int j = 0; j < mel_count_[m]; ++j) energy += p[j] * w[j];
    out[m] = std::log(energy > kLogFloor ? energy : kLogFloor);
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

Status Fbank::Compute(const int16_t* pcm, size_t num_samples, float* out, int max_frames,
                      int* frames, bool mean_norm) const {
  if (pcm == nullptr || out == nullptr || frames == nullptr || max_frames <= 0) {
    return Status::kBadArgument;
  }
  const int n = FbankNumFrames(num_samples);
  *frames = 0;
  if (n == 0) return Status::kAudioTooShort;
  if (n > max_frames) return Status::kAudioTooLong;
  for (int t = 0; t < n; ++t) ComputeFrame(pcm + t * kFrameShift, out + t * kNumMelBins);
  if (mean_norm) SubtractMean(out, n, kNumMelBins);
  *frames = n;
  return Status::kOk;
}

}  // namespace sv
