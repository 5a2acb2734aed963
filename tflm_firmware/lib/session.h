// The device's command loop: one protocol line in, one reply line out.
//
// On the board `in`/`out` are the serial port; under QEMU and on the host they
// are stdin/stdout or files reached through semihosting.
#ifndef TFADVQ_SESSION_H_
#define TFADVQ_SESSION_H_

#include <cstdint>
#include <cstdio>

#include "verifier.h"

namespace sv {

// Instructions (or cycles) executed so far, for per-command cost on a device.
using InstructionClock = uint64_t (*)();

// Runs every line of `in` (blank lines and lines starting with '#' skipped)
// through `verifier`, writing each reply to `out`, until end of input or a
// line "quit".  With a `clock`, each reply ends in " instructions=N" (the
// command's cost, file reading included).  Returns the number of commands that failed.
int RunSession(Verifier* verifier, std::FILE* in, std::FILE* out,
               InstructionClock clock = nullptr);

}  // namespace sv

#endif  // TFADVQ_SESSION_H_
