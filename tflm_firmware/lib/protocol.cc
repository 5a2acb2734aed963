#include "protocol.h"

#include <cstring>

namespace sv {

namespace {

constexpr int kMaxWords = 4;

struct CommandSpec {
  const char* word;
  CommandType type;
  int arguments;  // after the command word: NAME, then FILE
};

constexpr CommandSpec kCommands[] = {
    {"enroll", CommandType::kEnroll, 2}, {"verify", CommandType::kVerify, 2},
    {"delete", CommandType::kDelete, 1}, {"list", CommandType::kList, 0},
    {"format", CommandType::kFormat, 0},
};

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Splits `copy` in place into at most kMaxWords words; returns the count, or
// kMaxWords + 1 if there are more.
int SplitWords(char* copy, char** words) {
  int n = 0;
  char* p = copy;
  while (*p != '\0') {
    while (IsBlank(*p)) *p++ = '\0';
    if (*p == '\0') break;
    if (n == kMaxWords) return kMaxWords + 1;
    words[n++] = p;
    while (*p != '\0' && !IsBlank(*p)) ++p;
  }
  return n;
}

}  // namespace

Status ParseCommand(const char* line, Command* command) {
  if (line == nullptr || command == nullptr) return Status::kBadArgument;
  const size_t length = std::strlen(line);
  if (length >= static_cast<size_t>(kMaxLineBytes)) return Status::kParseError;
  char copy[kMaxLineBytes];
  std::memcpy(copy, line, length + 1);
  char* words[kMaxWords];
  const int n = SplitWords(copy, words);
  if (n == 0) return Status::kParseError;
  const CommandSpec* spec = nullptr;
  for (const CommandSpec& candidate : kCommands) {
    if (std::strcmp(words[0], candidate.word) == 0) spec = &candidate;
  }
  if (spec == nullptr) return Status::kUnknownCommand;
  if (n != 1 + spec->arguments) return Status::kParseError;
  std::memset(command, 0, sizeof(*command));
  command->type = spec->type;
  if (spec->arguments >= 1) {
    if (!ValidSpeakerName(words[1])) return Status::kBadName;
    std::strcpy(command->name, words[1]);
  }
  if (spec->arguments >= 2) {
    if (std::strlen(words[2]) >= static_cast<size_t>(kMaxPathBytes)) return Status::kParseError;
    std::strcpy(command->path, words[2]);
  }
  return Status::kOk;
}

}  // namespace sv
