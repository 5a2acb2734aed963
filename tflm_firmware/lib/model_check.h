// Sanity checks of a TFLite flatbuffer before it reaches the interpreter.
//
// tflite::GetModel() trusts its input: a truncated or garbage blob (a bad
// flash, the wrong file) reads out of bounds.  These checks need no TFLM, so
// they are unit-tested on the host and on the M4 without it.
#ifndef TFADVQ_MODEL_CHECK_H_
#define TFADVQ_MODEL_CHECK_H_

#include <cstddef>
#include <cstdint>

#include "sv_status.h"

namespace sv {

constexpr uint32_t kTfliteSchemaVersion = 3;

struct ModelBlobInfo {
  uint32_t schema_version;
  uint32_t num_subgraphs;
};

// Checks `data[size]`: at least the flatbuffer header, identifier "TFL3" at
// offset 4, root table, vtable, the subgraphs vector and its tables inside the blob,
// schema version 3 and at least one subgraph.  `expected_size` (the length the
// converter recorded; 0 = unknown) must match `size`.
//   kModelTruncated     blob shorter than its own offsets or than expected_size
//   kModelBadIdentifier not a TFLite flatbuffer
//   kModelBadVersion    schema version != 3
Status CheckModelBlob(const uint8_t* data, size_t size, size_t expected_size, ModelBlobInfo* info);

// The enrollment store's model id: the first 32 bits of the model's SHA-256
// (hex, as the converter writes TFADVQ_MODEL_SHA256), so speakers enrolled with
// one network are never scored by another.  0 if `sha256_hex` is not >= 8 hex digits.
uint32_t ModelIdFromSha256(const char* sha256_hex);

}  // namespace sv

#endif  // TFADVQ_MODEL_CHECK_H_
