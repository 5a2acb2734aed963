#include "window_schedule.h"

#include <cstdint>

namespace sv {

int WindowCount(int frames, int window, int hop) {
  if (frames < 1 || window < 1 || hop < 1) return kWindowScheduleBadArgument;
  if (frames <= window) return 1;
  const int span = frames - window;  // start of the last window
  return span / hop + (span % hop != 0 ? 1 : 0) + 1;  // ceil(span / hop) + 1, no overflow
}

int WindowStart(int frames, int window, int hop, int k) {
  const int n = WindowCount(frames, window, hop);
  if (n < 1 || k < 0 || k >= n) return kWindowScheduleBadArgument;
  const int64_t last = frames > window ? frames - window : 0;
  const int64_t start = static_cast<int64_t>(k) * hop;  // k*hop may exceed INT_MAX
  return static_cast<int>(start < last ? start : last);
}

int WindowStarts(int frames, int window, int hop, int* starts, int max_starts) {
  const int n = WindowCount(frames, window, hop);
  if (n < 1 || starts == nullptr || max_starts < 0) return kWindowScheduleBadArgument;
  if (n > max_starts) return kWindowScheduleOverflow;
  for (int k = 0; k < n; ++k) starts[k] = WindowStart(frames, window, hop, k);
  return n;
}

}  // namespace sv
