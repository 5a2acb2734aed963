#include "audio_check.h"

namespace sv {

void AudioStats::Add(const int16_t* pcm, size_t n, const AudioLimits& limits) {
  for (size_t i = 0; i < n; ++i) {
    const int32_t x = pcm[i];
    sum += x;
    sum_sq += x * x;
    if (x >= limits.clip_level || x <= -limits.clip_level) ++clipped;
  }
  samples += n;
}

Status CheckAudioStats(const AudioStats& stats, const AudioLimits& limits) {
  const size_t n = stats.samples;
  if (n < limits.min_samples) return Status::kAudioTooShort;
  if (n > limits.max_samples) return Status::kAudioTooLong;
  if (n == 0) return Status::kAudioTooShort;  // min_samples 0: no audio is not a mean of 0/0
  const double mean = static_cast<double>(stats.sum) / n;
  const double var = static_cast<double>(stats.sum_sq) / n - mean * mean;
  if (var < static_cast<double>(limits.min_rms) * limits.min_rms) return Status::kAudioSilent;
  if (stats.clipped > limits.max_clipped_fraction * n) return Status::kAudioClipped;
  return Status::kOk;
}

Status CheckAudio(const int16_t* pcm, size_t num_samples, const AudioLimits& limits) {
  if (pcm == nullptr) return Status::kBadArgument;
  // Lengths first: an utterance of the wrong length is refused before it is scanned.
  if (num_samples < limits.min_samples) return Status::kAudioTooShort;
  if (num_samples > limits.max_samples) return Status::kAudioTooLong;
  AudioStats stats;
  stats.Add(pcm, num_samples, limits);
  return CheckAudioStats(stats, limits);
}

}  // namespace sv
