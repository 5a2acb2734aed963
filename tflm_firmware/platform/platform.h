// The platform layer: what the firmware needs from the device around the core.
//
// Two implementations, chosen at build time (`make ... PLATFORM=...`):
//   semihosting  QEMU and tests: console, audio files and the store file on the
//                host through semihosting; counts instructions (QEMU -icount).
//   board        a real board: console on a UART, the store on a flash region
//                (sv::FlashMedium over a FlashDriver), audio from a microphone
//                DMA callback, its fbank frames computed as it arrives
//                (sv::AudioCapture); counts
//                cycles (DWT CYCCNT where the core has it, else SysTick).
// The start-up code (platform/cortex_m/startup.cc) and the linker script of the
// machine (platform/<machine>/) are shared by both.
#ifndef TFADVQ_PLATFORM_H_
#define TFADVQ_PLATFORM_H_

#include <cstddef>
#include <cstdint>

#include "capture.h"
#include "store.h"

namespace platform {

// What Count() measures.  QEMU has no cycle model: with `-icount shift=0` its
// clock follows executed instructions, so SysTick gives instructions there;
// on silicon the same code would count cycles, which is what `board` reports.
enum class CountUnit { kInstructions, kCycles };

// Console (stdin/stdout) ready; called by Reset_Handler before constructors.
void InitConsole();
// Ends the program with `status` (QEMU: exit status; board: after reporting
// the status on the console, a system reset).
[[noreturn]] void Halt(int status);
// SysTick interrupt (the counter's wrap, kept in 64 bits).
void OnSysTick();

// Starts (or restarts) the counter at 0; Count() is what has elapsed since.
void StartCounter();
uint64_t Count();
CountUnit count_unit();
// "instructions" or "cycles": the word every printed count carries.
const char* CountUnitName();

// Bytes of the linker script's stack reservation, and the most of it ever
// used since reset (the reservation is painted at reset; Cortex-M targets).
size_t StackReserved();
size_t StackHighWater();

// The medium of enrollment store `index` (0: the main model, 1: the second
// model of a two-model firmware).  Each holds sv::kStoreMediumBytes.
sv::StorageMedium* StoreMedium(int index);

// The capture behind "@buffer" (the board's microphone DMA pushes into it;
// set by main).  Null until set.
void SetCapture(sv::AudioCapture* capture);
sv::AudioCapture* capture();

}  // namespace platform

#endif  // TFADVQ_PLATFORM_H_
