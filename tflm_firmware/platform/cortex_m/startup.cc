// Start-up code for the Cortex-M targets (M4 on mps2-an386, M55 on
// mps3-an547, or a board with the same core): vector table, reset handler
// (enable the FPU -- on the M55 that also enables MVE/Helium --, copy .data,
// zero .bss, run constructors, main).
//
// Nothing here is I/O: the console is the platform implementation's
// (platform/semihosting or platform/board), set up by platform::InitConsole()
// before any constructor runs, so a constructor may print.
#include <cstdint>
#include <cstdlib>

#include "platform.h"

extern "C" {
extern uint32_t __data_start__, __data_end__, __data_load__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __stack_top__, __stack_limit__;
void __libc_init_array(void);
int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void);
}

namespace {
volatile uint32_t& Reg(uintptr_t address) { return *reinterpret_cast<volatile uint32_t*>(address); }
constexpr uintptr_t kCpacr = 0xE000ED88u;
// The reserved stack is painted at reset; the first word that lost the paint
// marks the deepest the stack has been (platform::StackHighWater).
constexpr uint32_t kStackPaint = 0x5AC3A55Cu;
}  // namespace

namespace platform {
size_t StackReserved() {
  return reinterpret_cast<uintptr_t>(&__stack_top__) - reinterpret_cast<uintptr_t>(&__stack_limit__);
}
size_t StackHighWater() {
  const uint32_t* word = &__stack_limit__;
  while (word < &__stack_top__ && *word == kStackPaint) ++word;
  return reinterpret_cast<uintptr_t>(&__stack_top__) - reinterpret_cast<uintptr_t>(word);
}
}  // namespace platform

// With -nostartfiles there is no crti/crtbegin: newlib's __libc_init_array
// still calls _init/_fini, and static destructors register with __dso_handle.
// Constructors run from .init_array, so the legacy hooks are empty.
extern "C" {
void _init(void) {}
void _fini(void) {}
void* __dso_handle = nullptr;
}

// A fault: report through the platform (QEMU: exit status 3; board: reset).
extern "C" void Default_Handler(void) { platform::Halt(3); }

extern "C" void SysTick_Handler(void) { platform::OnSysTick(); }

extern "C" void Reset_Handler(void) {
  {  // paint the stack below this frame (256 bytes of headroom for it)
    uint32_t* sp = nullptr;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t* word = &__stack_limit__; word < sp - 64;) *word++ = kStackPaint;
  }
  // CP10/CP11 full access before any float (or, on the M55, MVE) instruction.
  Reg(kCpacr) |= (0xFu << 20);
  __asm volatile("dsb\n isb" ::: "memory");
  const uint32_t* src = &__data_load__;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  platform::InitConsole();
  __libc_init_array();
  std::exit(main());
}

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
    Default_Handler,  // SecureFault (v8-M; reserved on the M4)
    nullptr, nullptr, nullptr,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMon
    nullptr,
    Default_Handler,  // PendSV
    SysTick_Handler,
};
