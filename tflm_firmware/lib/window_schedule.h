// Where the network windows of one utterance start: the device scoring
// schedule, shared with the Python side (tfadvq/windows.py) through the table
// in tests/data/window_schedule.txt.
//
// T = fbank frames of the utterance, W = network input frames, H = hop frames.
//   T >= W: n = ceil((T - W) / H) + 1 windows, start s_k = min(k*H, T - W);
//           the last window ends at the last frame (H = W: ceil(T/W) windows).
//   T <  W: one window, start 0.
// Row t (0 <= t < W) of window k is frame (s_k + t) mod T: a short utterance
// is wrapped cyclically to fill its window; otherwise it is frame s_k + t.
#ifndef TFADVQ_WINDOW_SCHEDULE_H_
#define TFADVQ_WINDOW_SCHEDULE_H_

namespace sv {

// Negative results of the functions below.
constexpr int kWindowScheduleBadArgument = -1;  // frames, window or hop < 1; k out of range
constexpr int kWindowScheduleOverflow = -2;     // more windows than max_starts

// n (>= 1), or kWindowScheduleBadArgument.
int WindowCount(int frames, int window, int hop);

// s_k for 0 <= k < WindowCount(...), or kWindowScheduleBadArgument.
int WindowStart(int frames, int window, int hop, int k);

// Writes s_0 .. s_{n-1} to starts[0 .. n-1] and returns n; returns
// kWindowScheduleBadArgument (also for starts == nullptr or max_starts < 0) or
// kWindowScheduleOverflow (n > max_starts) without writing anything.
int WindowStarts(int frames, int window, int hop, int* starts, int max_starts);

}  // namespace sv

#endif  // TFADVQ_WINDOW_SCHEDULE_H_
