// The device's command loop: one protocol line in, one reply line out.
//
// On the board `in`/`out` are the serial port; under QEMU and on the host they
// are stdin/stdout or files reached through semihosting.
#ifndef TFADVQ_SESSION_H_
#define TFADVQ_SESSION_H_

#include <cstdio>

#include "verifier.h"

namespace sv {

// Runs every line of `in` (blank lines and lines starting with '#' skipped)
// through `verifier`, writing each reply to `out`, until end of input or a
// line "quit".  Returns the number of commands that failed.
int RunSession(Verifier* verifier, std::FILE* in, std::FILE* out);

}  // namespace sv

#endif  // TFADVQ_SESSION_H_
