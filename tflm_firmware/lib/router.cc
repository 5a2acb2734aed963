#include "router.h"

#include <cstdio>
#include <cstring>

namespace sv {

Status ModelRouter::HandleLine(const char* line, size_t buffered_samples, char* reply,
                               size_t reply_size) {
  if (first_ == nullptr || (second_ != nullptr && (second_name_ == nullptr || *second_name_ == '\0'))) {
    std::snprintf(reply, reply_size, "ERR %s", StatusName(Status::kBadArgument));
    return Status::kBadArgument;
  }
  while (*line == ' ' || *line == '\t') ++line;
  const size_t n = second_ != nullptr ? std::strlen(second_name_) : 0;
  if (n == 0 || std::strncmp(line, second_name_, n) != 0 || (line[n] != ' ' && line[n] != '\t')) {
    return first_->HandleLine(line, buffered_samples, reply, reply_size);
  }
  const int prefix = std::snprintf(reply, reply_size, "%s ", second_name_);
  if (prefix < 0 || static_cast<size_t>(prefix) >= reply_size) return Status::kBadArgument;
  return second_->HandleLine(line + n + 1, buffered_samples, reply + prefix, reply_size - prefix);
}

}  // namespace sv
