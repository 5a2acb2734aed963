#include <cstdio>

#include "harness.h"

namespace th {

namespace {
constexpr int kMaxTests = 128;
struct Case {
  const char* name;
  TestFn fn;
};
Case g_cases[kMaxTests];
int g_count = 0;
int g_current_failures = 0;
}  // namespace

Registrar::Registrar(const char* name, TestFn fn) {
  if (g_count < kMaxTests) g_cases[g_count++] = Case{name, fn};
}

void Fail(const char* file, int line, const char* what, double a, double b) {
  ++g_current_failures;
  std::printf("  FAIL %s:%d: %s (%.9g vs %.9g)\n", file, line, what, a, b);
}

int RunAll() {
  int failed = 0;
  for (int i = 0; i < g_count; ++i) {
    g_current_failures = 0;
    g_cases[i].fn();
    std::printf("%s %s\n", g_current_failures == 0 ? "[ ok ]" : "[FAIL]", g_cases[i].name);
    if (g_current_failures != 0) ++failed;
  }
  std::printf("%d/%d tests passed\n", g_count - failed, g_count);
  if (failed == 0) std::printf("ALL TESTS PASSED\n");
  return failed;
}

}  // namespace th

int main() { return th::RunAll() == 0 ? 0 : 1; }
