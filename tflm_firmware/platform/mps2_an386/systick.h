// SysTick tick counting on the Cortex-M4.  Under QEMU with `-icount shift=0`
// the core clock is tied to executed instructions, and on mps2-an386 one
// SysTick tick is exactly 40 instructions: ticks * 40 = instructions.
#ifndef TFADVQ_SYSTICK_H_
#define TFADVQ_SYSTICK_H_

#include <cstdint>

namespace platform {

constexpr uint64_t kInstructionsPerTick = 40;

void StartTickCounter();
uint64_t TickCount();  // SysTick ticks since StartTickCounter()

}  // namespace platform

#endif  // TFADVQ_SYSTICK_H_
