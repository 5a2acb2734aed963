// Arm MPS3 AN547 (Cortex-M55, SSE-300), as QEMU's `mps3-an547` models it.
#ifndef TFADVQ_MACHINE_H_
#define TFADVQ_MACHINE_H_

#include <cstdint>

namespace machine {
constexpr const char* kName = "mps3-an547";
// SysTick counts SYSCLK (32 MHz on AN547).  Under QEMU -icount shift=0 one
// instruction is 1 ns, so a tick is 1e9 / 32e6 = 31.25 instructions.
constexpr uint32_t kSysClockHz = 32000000;
// CMSDK APB UART0, secure alias (the core boots in the secure state and the
// peripheral protection controllers leave UART0 secure).
constexpr uintptr_t kUart0Base = 0x59303000u;
}  // namespace machine

#endif  // TFADVQ_MACHINE_H_
