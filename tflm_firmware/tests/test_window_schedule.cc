// The device scoring schedule (lib/window_schedule.h) against the shared table
// tests/data/window_schedule.txt, which the Python scoring is tested on too.
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "harness.h"
#include "schedule_table.h"
#include "window_schedule.h"

namespace th {

namespace {

ScheduleCase g_cases[kMaxScheduleCases];
int g_num_cases = -1;  // -1: not loaded yet

// Reads one decimal int; false unless a number follows (after spaces).
bool ReadInt(char** p, int* out) {
  char* end = nullptr;
  const long v = std::strtol(*p, &end, 10);
  if (end == *p || v < INT_MIN || v > INT_MAX) return false;
  *out = static_cast<int>(v);
  *p = end;
  return true;
}

bool Blank(const char* p) {
  while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') ++p;
  return *p == '\0';
}

// "<T> <W> <H> : <s_0> ..." -> *c; false on anything else.
bool ParseCase(char* text, ScheduleCase* c) {
  char* p = text;
  if (!ReadInt(&p, &c->frames) || !ReadInt(&p, &c->window) || !ReadInt(&p, &c->hop)) return false;
  while (*p == ' ' || *p == '\t') ++p;
  if (*p++ != ':') return false;
  c->count = 0;
  while (!Blank(p)) {
    if (c->count == kMaxScheduleStarts || !ReadInt(&p, &c->starts[c->count])) return false;
    ++c->count;
  }
  return c->count > 0;
}

int Load() {
  const char* path = SV_TEST_DATA_DIR "/window_schedule.txt";
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    std::printf("  cannot open %s\n", path);
    return 0;
  }
  static char text[2048];
  int n = 0;
  int line = 0;
  bool ok = true;
  while (ok && std::fgets(text, sizeof(text), f) != nullptr) {
    ++line;
    const size_t len = std::strlen(text);
    if (len + 1 == sizeof(text) && text[len - 1] != '\n') {
      std::printf("  %s:%d: line too long\n", path, line);
      ok = false;
      break;
    }
    char* comment = std::strchr(text, '#');
    if (comment != nullptr) *comment = '\0';
    if (Blank(text)) continue;
    if (n == kMaxScheduleCases || !ParseCase(text, &g_cases[n])) {
      std::printf("  %s:%d: not \"<frames> <window> <hop> : <starts>\" (or too many)\n", path, line);
      ok = false;
      break;
    }
    g_cases[n++].line = line;
  }
  std::fclose(f);
  return ok ? n : 0;
}

}  // namespace

const ScheduleCase* ScheduleCases(int* count) {
  if (g_num_cases < 0) g_num_cases = Load();
  *count = g_num_cases;
  return g_num_cases > 0 ? g_cases : nullptr;
}

const ScheduleCase* FindScheduleCase(int frames, int window, int hop) {
  int n = 0;
  const ScheduleCase* cases = ScheduleCases(&n);
  for (int i = 0; i < n; ++i) {
    if (cases[i].frames == frames && cases[i].window == window && cases[i].hop == hop) {
      return &cases[i];
    }
  }
  return nullptr;
}

}  // namespace th

TEST(window_starts_match_the_shared_table) {
  int n = 0;
  const th::ScheduleCase* cases = th::ScheduleCases(&n);
  CHECK(cases != nullptr);
  CHECK(n >= 20);
  // The table keeps covering the schedule's corners.
  bool equal = false, shorter = false, overlap = false, every = false, skip = false;
  bool unit = false, long_utt = false;
  for (int i = 0; i < n; ++i) {
    const th::ScheduleCase& c = cases[i];
    equal |= c.frames == c.window;
    shorter |= c.frames < c.window;
    overlap |= c.hop < c.window && c.count > 2;
    every |= c.hop == 1 && c.count > 2;
    skip |= c.hop > c.window && c.count > 2;
    unit |= c.window == 1;
    long_utt |= c.frames >= 3000;
    int starts[th::kMaxScheduleStarts];
    const int got = sv::WindowStarts(c.frames, c.window, c.hop, starts, th::kMaxScheduleStarts);
    bool same = got == c.count && sv::WindowCount(c.frames, c.window, c.hop) == c.count;
    for (int k = 0; same && k < c.count; ++k) {
      same = starts[k] == c.starts[k] && sv::WindowStart(c.frames, c.window, c.hop, k) == c.starts[k];
    }
    if (!same) {
      std::printf("  window_schedule.txt:%d: %d %d %d gives %d starts:", c.line, c.frames, c.window,
                  c.hop, got);
      for (int k = 0; k < got; ++k) std::printf(" %d", starts[k]);
      std::printf("\n");
    }
    CHECK(same);
    // Exactly as many starts fit; one fewer is an overflow.
    CHECK_EQ(sv::WindowStarts(c.frames, c.window, c.hop, starts, c.count), c.count);
    CHECK_EQ(sv::WindowStarts(c.frames, c.window, c.hop, starts, c.count - 1),
             sv::kWindowScheduleOverflow);
  }
  CHECK(equal && shorter && overlap && every && skip && unit && long_utt);
}

TEST(window_starts_reject_bad_arguments_and_overflow) {
  int starts[4] = {-7, -7, -7, -7};
  CHECK_EQ(sv::WindowStarts(0, 50, 50, starts, 4), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(100, 0, 50, starts, 4), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(100, 50, 0, starts, 4), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(100, 50, -1, starts, 4), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(-5, 50, 50, starts, 4), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(100, 50, 50, nullptr, 4), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(100, 50, 50, starts, -1), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStarts(400, 50, 50, starts, 4), sv::kWindowScheduleOverflow);  // 8 windows
  CHECK_EQ(starts[0], -7);  // nothing written on failure
  CHECK_EQ(sv::WindowCount(400, 50, 50), 8);
  CHECK_EQ(sv::WindowCount(0, 50, 50), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStart(400, 50, 50, 8), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStart(400, 50, 50, -1), sv::kWindowScheduleBadArgument);
  CHECK_EQ(sv::WindowStart(400, 50, 50, 7), 350);
  // No int overflow at the extremes (the host build runs under UBSan).
  CHECK_EQ(sv::WindowCount(INT_MAX, 1, INT_MAX), 2);
  CHECK_EQ(sv::WindowStart(INT_MAX, 1, INT_MAX, 1), INT_MAX - 1);
  CHECK_EQ(sv::WindowCount(INT_MAX, 1, 1), INT_MAX);
  CHECK_EQ(sv::WindowStart(INT_MAX, 1, 1, INT_MAX - 1), INT_MAX - 1);
  CHECK_EQ(sv::WindowCount(INT_MAX, INT_MAX, 1), 1);
  CHECK_EQ(sv::WindowCount(1, INT_MAX, INT_MAX), 1);
  CHECK_EQ(sv::WindowStart(INT_MAX, 2, INT_MAX / 2 + 1, 2), INT_MAX - 2);  // 2 * hop > INT_MAX
}
