#include "session.h"

#include <cstring>

namespace sv {

int RunSession(LineHandler* handler, std::FILE* in, std::FILE* out, const SessionHooks& hooks) {
  const InstructionClock clock = hooks.clock;
  char line[kMaxLineBytes + 2];
  char reply[kMaxLineBytes];
  int failures = 0;
  while (std::fgets(line, sizeof(line), in) != nullptr) {
    const size_t n = std::strlen(line);
    if (n > 0 && line[n - 1] != '\n' && !std::feof(in)) {
      // Overlong line: drop its remainder so it is not read as a second command.
      int c = 0;
      while ((c = std::fgetc(in)) != EOF && c != '\n') {
      }
      std::fprintf(out, "ERR %s\n", StatusName(Status::kParseError));
      ++failures;
      continue;
    }
    const char* p = line;
    while (*p == ' ' || *p == '\t') ++p;
    if (*p == '\0' || *p == '\n' || *p == '\r' || *p == '#') continue;
    if (std::strncmp(p, "quit", 4) == 0) break;
    const uint64_t start = clock != nullptr ? clock() : 0;
    const size_t buffered = hooks.buffered_samples != nullptr ? hooks.buffered_samples() : 0;
    if (handler->HandleLine(p, buffered, reply, sizeof(reply)) != Status::kOk) ++failures;
    if (clock != nullptr) {
      std::fprintf(out, "%s %s=%llu\n", reply, hooks.count_unit,
                   static_cast<unsigned long long>(clock() - start));
    } else {
      std::fprintf(out, "%s\n", reply);
    }
    std::fflush(out);
  }
  return failures;
}

}  // namespace sv
