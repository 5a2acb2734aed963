// The platform counter: SysTick ticks kept in 64 bits by its wrap interrupt,
// and on the board build the DWT cycle counter where the core has one.
//
// semihosting (QEMU): instructions.  QEMU models no cycles; with
//   `-icount shift=0` its virtual clock advances 1 ns per executed
//   instruction, and SysTick counts the machine's SYSCLK, so
//   instructions = ticks * 1e9 / SYSCLK (40 per tick on mps2-an386, 31.25 on
//   mps3-an547; machine.h).  Without -icount the count follows host time.
// board (SV_COUNT_CYCLES): cycles.  DWT CYCCNT when DWT_CTRL.NOCYCCNT is clear
//   and the counter runs (Cortex-M4/M7/M33/M55 with the debug unit; not on
//   M0/M0+, and QEMU implements no DWT), extended past 32 bits at every
//   SysTick interrupt; otherwise SysTick itself, which runs on the core clock.
#include <cstdint>

#include "machine.h"
#include "platform.h"

namespace platform {

namespace {

volatile uint32_t& Reg(uintptr_t address) { return *reinterpret_cast<volatile uint32_t*>(address); }
constexpr uintptr_t kSysTickCtrl = 0xE000E010u;
constexpr uintptr_t kSysTickLoad = 0xE000E014u;
constexpr uintptr_t kSysTickVal = 0xE000E018u;
constexpr uint32_t kReload = 0x00FFFFFFu;  // SysTick counts down from here: 2^24 ticks a period
volatile uint32_t g_wraps = 0;

uint64_t Ticks() {
  // Re-read if a wrap happened between reading the two parts.
  uint32_t wraps = 0;
  uint32_t value = 0;
  do {
    wraps = g_wraps;
    value = Reg(kSysTickVal);
  } while (wraps != g_wraps);
  return static_cast<uint64_t>(wraps) * (kReload + 1) + (kReload - value);
}

#ifdef SV_COUNT_CYCLES
constexpr uintptr_t kDemcr = 0xE000EDFCu;
constexpr uintptr_t kDwtCtrl = 0xE0001000u;
constexpr uintptr_t kDwtCyccnt = 0xE0001004u;
constexpr uint32_t kDemcrTrcena = 1u << 24;
constexpr uint32_t kDwtNoCyccnt = 1u << 25;
bool g_dwt = false;
volatile uint64_t g_cycles = 0;  // CYCCNT extended to 64 bits, as of g_last
volatile uint32_t g_last = 0;

// Folds CYCCNT's progress since the last sample into g_cycles.  Called at
// least once per SysTick period (2^24 cycles < 2^32), so no wrap is missed.
void Sample() {
  const uint32_t now = Reg(kDwtCyccnt);
  g_cycles = g_cycles + static_cast<uint32_t>(now - g_last);
  g_last = now;
}

bool StartDwt() {
  Reg(kDemcr) |= kDemcrTrcena;
  if ((Reg(kDwtCtrl) & kDwtNoCyccnt) != 0) return false;
  Reg(kDwtCyccnt) = 0;
  Reg(kDwtCtrl) |= 1u;  // CYCCNTENA
  for (int i = 0; i < 16; ++i) __asm volatile("nop");
  return Reg(kDwtCyccnt) != 0;  // present but not counting (e.g. no debug clock): not used
}
#endif

}  // namespace

void OnSysTick() {
  g_wraps = g_wraps + 1;
#ifdef SV_COUNT_CYCLES
  if (g_dwt) Sample();
#endif
}

void StartCounter() {
  Reg(kSysTickCtrl) = 0;
  Reg(kSysTickLoad) = kReload;
  Reg(kSysTickVal) = 0;
  g_wraps = 0;
  Reg(kSysTickCtrl) = 0x7u;  // core clock, interrupt on wrap, enable
  // The counter loads kReload on its first tick; count from there.
  while (Reg(kSysTickVal) == 0) {
  }
  g_wraps = 0;
#ifdef SV_COUNT_CYCLES
  g_dwt = StartDwt();
  g_cycles = 0;
  g_last = g_dwt ? Reg(kDwtCyccnt) : 0;
#endif
}

uint64_t Count() {
#ifdef SV_COUNT_CYCLES
  if (!g_dwt) return Ticks();
  uint32_t primask = 0;
  __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
  Sample();
  const uint64_t cycles = g_cycles;
  __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
  return cycles;
#else
  return Ticks() * 1000000000ull / machine::kSysClockHz;
#endif
}

CountUnit count_unit() {
#ifdef SV_COUNT_CYCLES
  return CountUnit::kCycles;
#else
  return CountUnit::kInstructions;
#endif
}

const char* CountUnitName() { return count_unit() == CountUnit::kCycles ? "cycles" : "instructions"; }

}  // namespace platform
