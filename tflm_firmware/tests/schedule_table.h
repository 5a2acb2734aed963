// The scoring-schedule table tests/data/window_schedule.txt, read at run time
// (host: stdio; Cortex-M4 under QEMU: semihosting, same host path).
#ifndef TFADVQ_TESTS_SCHEDULE_TABLE_H_
#define TFADVQ_TESTS_SCHEDULE_TABLE_H_

// Absolute path of tests/data, set by the Makefile; the fallback is relative
// to the build directory the tests run in (build/host, build/cortex-m4).
#ifndef SV_TEST_DATA_DIR
#define SV_TEST_DATA_DIR "../../tests/data"
#endif

namespace th {

constexpr int kMaxScheduleCases = 128;
constexpr int kMaxScheduleStarts = 64;

// One line "<frames T> <window W> <hop H> : <start_0> <start_1> ...".
struct ScheduleCase {
  int frames;
  int window;
  int hop;
  int count;  // number of starts
  int starts[kMaxScheduleStarts];
  int line;   // in the file, for messages
};

// The table's cases (parsed once); nullptr with *count = 0 when the file is
// missing or any line is malformed (the reason is printed).
const ScheduleCase* ScheduleCases(int* count);

// The case (frames, window, hop), or nullptr.
const ScheduleCase* FindScheduleCase(int frames, int window, int hop);

}  // namespace th

#endif  // TFADVQ_TESTS_SCHEDULE_TABLE_H_
