// Model blob checks on a hand-built minimal TFLite flatbuffer and on garbage.
#include <cstring>

#include "harness.h"
#include "model_check.h"

namespace {

// root -> table at 20; vtable at 8 (fields: version @+4, subgraphs @+8);
// subgraphs vector at 32 with one element.
constexpr uint8_t kMinimal[44] = {
    20, 0, 0, 0, 'T', 'F', 'L', '3',         // root offset, identifier
    10, 0, 12, 0, 4, 0, 0, 0, 8, 0, 0, 0,    // vtable: size, table size, f0, f1, f2, pad
    12, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0,     // table: soffset, version=3, subgraphs ->32
    1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,      // vector: count 1, element offset, element
};

sv::Status Check(const uint8_t* data, size_t size, size_t expected = 0) {
  sv::ModelBlobInfo info{};
  return sv::CheckModelBlob(data, size, expected, &info);
}

}  // namespace

TEST(model_check_accepts_minimal_model) {
  sv::ModelBlobInfo info{};
  CHECK_STATUS(sv::CheckModelBlob(kMinimal, sizeof(kMinimal), sizeof(kMinimal), &info),
               sv::Status::kOk);
  CHECK_EQ(info.schema_version, 3u);
  CHECK_EQ(info.num_subgraphs, 1u);
}

TEST(model_check_rejects_every_truncation) {
  for (size_t n = 0; n < sizeof(kMinimal); ++n) {
    CHECK(Check(kMinimal, n) != sv::Status::kOk);
  }
  CHECK_STATUS(Check(kMinimal, 6), sv::Status::kModelTruncated);
  CHECK_STATUS(Check(kMinimal, 30), sv::Status::kModelTruncated);
  // A whole blob of the wrong length (the converter recorded another size).
  CHECK_STATUS(Check(kMinimal, sizeof(kMinimal), sizeof(kMinimal) + 4), sv::Status::kModelTruncated);
}

TEST(model_check_rejects_wrong_identifier_and_version) {
  uint8_t blob[sizeof(kMinimal)];
  std::memcpy(blob, kMinimal, sizeof(blob));
  blob[7] = '2';
  CHECK_STATUS(Check(blob, sizeof(blob)), sv::Status::kModelBadIdentifier);
  std::memcpy(blob, kMinimal, sizeof(blob));
  blob[24] = 2;  // schema version 2
  CHECK_STATUS(Check(blob, sizeof(blob)), sv::Status::kModelBadVersion);
}

TEST(model_check_survives_garbage) {
  // Random bytes with a valid identifier: offsets point anywhere, including
  // past the end or wrapping a 32-bit size_t; the check must only say no.
  uint8_t blob[64];
  uint32_t state = 7;
  int rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    for (uint8_t& b : blob) {
      state = state * 1664525u + 1013904223u;
      b = static_cast<uint8_t>(state >> 24);
    }
    std::memcpy(blob + 4, "TFL3", 4);
    if (Check(blob, sizeof(blob)) != sv::Status::kOk) ++rejected;
  }
  CHECK(rejected > 1990);
}

TEST(model_id_from_sha256) {
  CHECK_EQ(sv::ModelIdFromSha256("3fA0b1c2deadbeef"), 0x3FA0B1C2u);
  CHECK_EQ(sv::ModelIdFromSha256("3fa0b1c"), 0u);  // too short
  CHECK_EQ(sv::ModelIdFromSha256("3fa0b1cg"), 0u);
  CHECK_EQ(sv::ModelIdFromSha256(nullptr), 0u);
}
