#include "capture.h"

#include <cstring>

namespace sv {

void AudioCapture::Restart() {
  count_ = 0;
  dropped_ = 0;
}

size_t AudioCapture::Push(const int16_t* samples, size_t n) {
  if (buffer_ == nullptr || samples == nullptr) return 0;
  const size_t have = count_;
  const size_t keep = n < capacity_ - have ? n : capacity_ - have;
  std::memcpy(buffer_ + have, samples, keep * sizeof(int16_t));
  __atomic_thread_fence(__ATOMIC_RELEASE);  // samples before the count that publishes them
  count_ = have + keep;
  dropped_ = dropped_ + (n - keep);
  return keep;
}

}  // namespace sv
