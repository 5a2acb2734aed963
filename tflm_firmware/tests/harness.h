// A tiny self-registering unit-test harness that runs on the host and, over
// semihosting, on the Cortex-M4 (no exceptions, no allocation, no gtest).
#ifndef TFADVQ_TEST_HARNESS_H_
#define TFADVQ_TEST_HARNESS_H_

#include <cmath>

namespace th {

using TestFn = void (*)();

struct Registrar {
  Registrar(const char* name, TestFn fn);
};

// Records a failed check (file:line and the expression) for the current test.
void Fail(const char* file, int line, const char* what, double a, double b);

// Runs every registered test; returns the number of failed tests.
int RunAll();

}  // namespace th

#define TEST(name)                                        \
  static void name();                                     \
  static const th::Registrar registrar_##name(#name, name); \
  static void name()

#define CHECK(cond)                                                 \
  do {                                                              \
    if (!(cond)) th::Fail(__FILE__, __LINE__, #cond, 0.0, 0.0);     \
  } while (0)

#define CHECK_EQ(a, b)                                                                     \
  do {                                                                                     \
    if (!((a) == (b))) {                                                                   \
      th::Fail(__FILE__, __LINE__, #a " == " #b, static_cast<double>(a), static_cast<double>(b)); \
    }                                                                                      \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                              \
  do {                                                                                     \
    const double a_ = static_cast<double>(a);                                              \
    const double b_ = static_cast<double>(b);                                              \
    if (!(std::fabs(a_ - b_) <= (tol))) th::Fail(__FILE__, __LINE__, #a " ~ " #b, a_, b_); \
  } while (0)

// Status enums compare through their integer value.
#define CHECK_STATUS(expr, expected) CHECK_EQ(static_cast<int>(expr), static_cast<int>(expected))

#endif  // TFADVQ_TEST_HARNESS_H_
