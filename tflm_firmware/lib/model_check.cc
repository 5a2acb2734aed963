#include "model_check.h"

#include <cstring>

namespace sv {

namespace {

uint32_t Le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Positions are 64-bit so that offsets read from a garbage blob cannot wrap
// around a 32-bit size_t on the device.
using Pos = uint64_t;

// Field `index` of the table at `table`: its absolute position, or 0 if absent
// (flatbuffers omit fields equal to their default).  kModelTruncated if any
// offset leaves the blob.
Status FieldPosition(const uint8_t* data, Pos size, Pos table, int index, Pos* pos) {
  if (table + 4 > size) return Status::kModelTruncated;
  const int32_t soffset = static_cast<int32_t>(Le32(data + table));
  const int64_t vtable = static_cast<int64_t>(table) - soffset;
  if (vtable < 0 || static_cast<Pos>(vtable) + 4 > size) return Status::kModelTruncated;
  const uint16_t vtable_bytes = Le16(data + vtable);
  if (vtable_bytes < 4 || static_cast<Pos>(vtable) + vtable_bytes > size) {
    return Status::kModelTruncated;
  }
  const Pos slot = 4 + 2 * static_cast<Pos>(index);
  const uint16_t field = slot + 2 <= vtable_bytes ? Le16(data + vtable + slot) : 0;
  *pos = field == 0 ? 0 : table + field;
  if (*pos != 0 && *pos + 4 > size) return Status::kModelTruncated;
  return Status::kOk;
}

}  // namespace

Status CheckModelBlob(const uint8_t* data, size_t size, size_t expected_size, ModelBlobInfo* info) {
  if (data == nullptr || info == nullptr) return Status::kBadArgument;
  if (size < 8) return Status::kModelTruncated;
  if (std::memcmp(data + 4, "TFL3", 4) != 0) return Status::kModelBadIdentifier;
  if (expected_size != 0 && size != expected_size) return Status::kModelTruncated;
  const Pos root = Le32(data);
  // Model table fields: 0 version, 1 operator_codes, 2 subgraphs.
  Pos version_pos = 0;
  Status status = FieldPosition(data, size, root, 0, &version_pos);
  if (status != Status::kOk) return status;
  info->schema_version = version_pos == 0 ? 0 : Le32(data + version_pos);
  if (info->schema_version != kTfliteSchemaVersion) return Status::kModelBadVersion;
  Pos subgraphs_pos = 0;
  status = FieldPosition(data, size, root, 2, &subgraphs_pos);
  if (status != Status::kOk) return status;
  if (subgraphs_pos == 0) return Status::kModelTruncated;
  const Pos vector = subgraphs_pos + Le32(data + subgraphs_pos);
  if (vector + 4 > size) return Status::kModelTruncated;
  info->num_subgraphs = Le32(data + vector);
  if (info->num_subgraphs == 0 || vector + 4 + 4 * static_cast<Pos>(info->num_subgraphs) > size) {
    return Status::kModelTruncated;
  }
  for (uint32_t i = 0; i < info->num_subgraphs; ++i) {
    const Pos element = vector + 4 + 4 * static_cast<Pos>(i);
    if (element + Le32(data + element) + 4 > size) return Status::kModelTruncated;
  }
  return Status::kOk;
}

uint32_t ModelIdFromSha256(const char* sha256_hex) {
  if (sha256_hex == nullptr) return 0;
  uint32_t id = 0;
  for (int i = 0; i < 8; ++i) {
    const char c = sha256_hex[i];
    uint32_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<uint32_t>(c - 'A' + 10);
    } else {
      return 0;
    }
    id = (id << 4) | digit;
  }
  return id;
}

}  // namespace sv
