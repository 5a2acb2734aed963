// Start-up code for the Cortex-M4 on QEMU mps2-an386: vector table, reset
// handler (copy .data, zero .bss, enable the FPU, run constructors, main), and
// SysTick-based instruction counting for benchmarks.
//
// The program's stdio goes to the host through semihosting (newlib's rdimon);
// exit(status) ends QEMU with that status.
#include <cstdint>
#include <cstdlib>

#include "systick.h"

extern "C" {
extern uint32_t __data_start__, __data_end__, __data_load__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __stack_top__;
void initialise_monitor_handles(void);
void __libc_init_array(void);
int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
}

namespace {

// SysTick counts down from kReload at the core clock; each wrap adds one period.
constexpr uint32_t kReload = 0x00FFFFFFu;
volatile uint32_t g_wraps = 0;

volatile uint32_t& Reg(uintptr_t address) { return *reinterpret_cast<volatile uint32_t*>(address); }
constexpr uintptr_t kSysTickCtrl = 0xE000E010u;
constexpr uintptr_t kSysTickLoad = 0xE000E014u;
constexpr uintptr_t kSysTickVal = 0xE000E018u;
constexpr uintptr_t kCpacr = 0xE000ED88u;

}  // namespace

// With -nostartfiles there is no crti/crtbegin: newlib's __libc_init_array
// still calls _init/_fini, and static destructors register with __dso_handle.
// Constructors run from .init_array, so the legacy hooks are empty.
extern "C" {
void _init(void) {}
void _fini(void) {}
void* __dso_handle = nullptr;
}

extern "C" void Default_Handler(void) {
  // A fault on the device under test: leave QEMU with a failure status.
  std::_Exit(3);
}

extern "C" void SysTick_Handler(void) { g_wraps = g_wraps + 1; }

extern "C" void Reset_Handler(void) {
  // Enable CP10/CP11 (the FPU) before any float instruction runs.
  Reg(kCpacr) |= (0xFu << 20);
  __asm volatile("dsb\n isb" ::: "memory");
  const uint32_t* src = &__data_load__;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  std::exit(main());
}

namespace platform {

void StartTickCounter() {
  Reg(kSysTickCtrl) = 0;
  Reg(kSysTickLoad) = kReload;
  Reg(kSysTickVal) = 0;
  g_wraps = 0;
  Reg(kSysTickCtrl) = 0x7u;  // core clock, interrupt on wrap, enable
  // The counter loads kReload on its first tick; count from there.
  while (Reg(kSysTickVal) == 0) {
  }
  g_wraps = 0;
}

uint64_t TickCount() {
  // Re-read if a wrap happened between reading the two parts.
  uint32_t wraps = 0;
  uint32_t value = 0;
  do {
    wraps = g_wraps;
    value = Reg(kSysTickVal);
  } while (wraps != g_wraps);
  return static_cast<uint64_t>(wraps) * (kReload + 1) + (kReload - value);
}

}  // namespace platform

using Handler = void (*)(void);

// Cortex-M vector table: initial stack pointer, then exception handlers.
__attribute__((section(".isr_vector"), used)) const Handler g_vectors[16] = {
    reinterpret_cast<Handler>(&__stack_top__),
    Reset_Handler,
    Default_Handler,  // NMI
    Default_Handler,  // HardFault
    Default_Handler,  // MemManage
    Default_Handler,  // BusFault
    Default_Handler,  // UsageFault
    nullptr, nullptr, nullptr, nullptr,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMon
    nullptr,
    Default_Handler,  // PendSV
    SysTick_Handler,
};
