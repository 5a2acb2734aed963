// Arm MPS2+ AN386 (Cortex-M4F), as QEMU's `mps2-an386` models it.
#ifndef TFADVQ_MACHINE_H_
#define TFADVQ_MACHINE_H_

#include <cstdint>

namespace machine {
constexpr const char* kName = "mps2-an386";
// SysTick counts SYSCLK.  Under QEMU -icount shift=0 one instruction is 1 ns,
// so a tick is 1e9 / 25e6 = 40 instructions.
constexpr uint32_t kSysClockHz = 25000000;
// CMSDK APB UART0 (the board's USB serial port; QEMU's -serial).
constexpr uintptr_t kUart0Base = 0x40004000u;
}  // namespace machine

#endif  // TFADVQ_MACHINE_H_
