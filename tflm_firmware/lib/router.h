// Two models on one device: protocol lines for the second model start with its
// name ("hi verify alice x.wav"); every other line goes to the first.
//
// Each model has its own Verifier, hence its own enrollment store (a store
// refuses another model's embeddings), so a speaker is enrolled per model.
// This is the ground for a cascade (low-bit model first, the higher-bit one on
// close calls); the router itself only dispatches.
#ifndef TFADVQ_ROUTER_H_
#define TFADVQ_ROUTER_H_

#include <cstddef>

#include "protocol.h"

namespace sv {

class ModelRouter : public LineHandler {
 public:
  // `second_name`: the word that selects `second` (1..15 of [A-Za-z0-9_-],
  // not a command word); a null `second` routes everything to `first`.
  ModelRouter(LineHandler* first, const char* second_name, LineHandler* second)
      : first_(first), second_name_(second_name), second_(second) {}

  // "<second_name> <line>" -> second's reply for <line>, prefixed by
  // "<second_name> "; anything else -> first.  kBadArgument for a null first,
  // or a second name that is empty.
  Status HandleLine(const char* line, size_t buffered_samples, char* reply,
                    size_t reply_size) override;

 private:
  LineHandler* first_;
  const char* second_name_;
  LineHandler* second_;
};

}  // namespace sv

#endif  // TFADVQ_ROUTER_H_
