// Line-based command protocol (serial port or semihosting stdin).
//
//   enroll NAME FILE   add one utterance to speaker NAME
//   verify NAME FILE   score FILE against NAME, accept/reject at the threshold
//   delete NAME        remove NAME
//   list               speakers and their utterance counts
//   format             erase the store (the way out of STORE_CORRUPT)
// FILE is a host path (read over semihosting), or "@buffer" for audio already
// placed in the device's PCM buffer (e.g. by a DMA or a test).  Replies are one
// line: "OK ..." or "ERR <STATUS_NAME> ...".
#ifndef TFADVQ_PROTOCOL_H_
#define TFADVQ_PROTOCOL_H_

#include <cstddef>

#include "store.h"
#include "sv_status.h"

namespace sv {

enum class CommandType { kEnroll, kVerify, kDelete, kList, kFormat };

constexpr int kMaxPathBytes = 128;
constexpr int kMaxLineBytes = 256;
constexpr const char* kBufferSource = "@buffer";

struct Command {
  CommandType type;
  char name[kNameBytes];
  char path[kMaxPathBytes];
};

// Whatever answers protocol lines: a Verifier (one model), or a ModelRouter
// (router.h) in front of several.
class LineHandler {
 public:
  virtual ~LineHandler() = default;
  // Runs one protocol line; `buffered_samples` is how much audio the PCM
  // buffer holds for "@buffer".  Writes a one-line reply ("OK ..."/"ERR ...").
  virtual Status HandleLine(const char* line, size_t buffered_samples, char* reply,
                            size_t reply_size) = 0;
};

// Parses one line (trailing "\r\n" and surrounding blanks ignored).
//   kUnknownCommand  first word is not a command
//   kParseError      wrong number of arguments, line/path too long
//   kBadName         NAME is not 1..15 of [A-Za-z0-9_-]
Status ParseCommand(const char* line, Command* command);

}  // namespace sv

#endif  // TFADVQ_PROTOCOL_H_
