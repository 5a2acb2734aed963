#include "capture.h"

namespace sv {

namespace {

// The most samples that give `frames` frames (snip-edges framing: a tail
// shorter than the shift completes no frame, but the audio checks count it).
size_t SamplesFor(int frames) {
  if (frames < 1) return 0;
  return static_cast<size_t>(Fbank::kFrameLength) + static_cast<size_t>(frames) * Fbank::kFrameShift - 1;
}

}  // namespace

AudioCapture::AudioCapture(const Fbank* fbank, int16_t* frames, int capacity, const AudioLimits& limits)
    : stream_(fbank),
      store_(frames, frames == nullptr ? 0 : capacity),
      limits_(limits),
      capacity_(frames == nullptr ? 0 : SamplesFor(capacity)) {
  if (capacity_ > limits.max_samples) capacity_ = limits.max_samples;
}

void AudioCapture::Restart() {
  stream_.Reset();
  stats_ = AudioStats{};
  count_ = 0;
  dropped_ = 0;
}

size_t AudioCapture::Push(const int16_t* samples, size_t n) {
  if (samples == nullptr) return 0;
  const size_t have = count_;
  const size_t keep = n < capacity_ - have ? n : capacity_ - have;
  stats_.Add(samples, keep, limits_);
  // Cannot fail: the store holds every frame of capacity_ samples.
  (void)stream_.Push(samples, keep, &store_);
  __atomic_thread_fence(__ATOMIC_RELEASE);  // frames before the count that publishes them
  count_ = have + keep;
  dropped_ = dropped_ + (n - keep);
  return keep;
}

}  // namespace sv
