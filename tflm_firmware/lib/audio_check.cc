#include "audio_check.h"

#include <cmath>

namespace sv {

Status CheckAudio(const int16_t* pcm, size_t num_samples, const AudioLimits& limits) {
  if (pcm == nullptr) return Status::kBadArgument;
  if (num_samples < limits.min_samples) return Status::kAudioTooShort;
  if (num_samples > limits.max_samples) return Status::kAudioTooLong;
  // Integer sums are exact for any length that fits the buffer (< 2^31 samples).
  int64_t sum = 0;
  int64_t sum_sq = 0;
  size_t clipped = 0;
  for (size_t i = 0; i < num_samples; ++i) {
    const int32_t x = pcm[i];
    sum += x;
    sum_sq += x * x;
    if (x >= limits.clip_level || x <= -limits.clip_level) ++clipped;
  }
  const double mean = static_cast<double>(sum) / num_samples;
  const double var = static_cast<double>(sum_sq) / num_samples - mean * mean;
  if (var < static_cast<double>(limits.min_rms) * limits.min_rms) return Status::kAudioSilent;
  if (clipped > limits.max_clipped_fraction * num_samples) return Status::kAudioClipped;
  return Status::kOk;
}

}  // namespace sv
