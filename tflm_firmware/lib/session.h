// The device's command loop: one protocol line in, one reply line out.
//
// On the board `in`/`out` are the UART (platform/board retargets newlib's
// stdio to it); under QEMU and on the host they are stdin/stdout or files
// reached through semihosting.
#ifndef TFADVQ_SESSION_H_
#define TFADVQ_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "protocol.h"

namespace sv {

// Instructions or cycles executed so far, for per-command cost on a device.
using InstructionClock = uint64_t (*)();

struct SessionHooks {
  // With a clock, each reply ends in " <count_unit>=N" (the command's cost,
  // file reading included): "instructions" on QEMU, "cycles" on a board.
  InstructionClock clock = nullptr;
  const char* count_unit = "instructions";
  // Samples captured for "@buffer" (e.g. AudioCapture::samples of a
  // microphone DMA); none without it.
  size_t (*buffered_samples)() = nullptr;
};

// Runs every line of `in` (blank lines and lines starting with '#' skipped)
// through `handler`, writing each reply to `out`, until end of input or a
// line "quit".  Returns the number of commands that failed.
int RunSession(LineHandler* handler, std::FILE* in, std::FILE* out,
               const SessionHooks& hooks = SessionHooks());

}  // namespace sv

#endif  // TFADVQ_SESSION_H_
