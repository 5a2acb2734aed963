// Enrollment store: named speaker models in a flash-like byte medium.
//
// Layout: the medium holds two slots (A/B).  Each save writes the whole table,
// with a sequence number one higher, into the slot NOT holding the current
// table, reads it back and checks its CRC-32; only then does it become
// current.  A save cut short (power loss, write error) therefore leaves the
// previous table intact in the other slot, and load picks the valid slot with
// the highest sequence.  A table whose CRC fails is never used; if no slot is
// valid (and not both are blank/erased), the store reports kStoreCorrupt until
// it is formatted.  A table written for a different model (model id or
// embedding size) is kStoreModelMismatch: embeddings of another network are
// meaningless to this one.
//
// Slot format (little-endian), version kStoreFormatVersion:
//   u32 magic 'SVST' | u16 format | u16 embed_dim | u32 sequence | u32 model_id |
//   u32 count | count x { char name[16] | u32 utterances | f32 mean[embed_dim] } | u32 crc
// The CRC covers every byte before it.  Speaker models are the running mean of
// the L2-normalised embeddings of their enrollment utterances.
#ifndef TFADVQ_STORE_H_
#define TFADVQ_STORE_H_

#include <cstddef>
#include <cstdint>

#include "sv_status.h"

#ifndef SV_MAX_SPEAKERS
#define SV_MAX_SPEAKERS 8
#endif
#ifndef SV_MAX_EMBEDDING
#define SV_MAX_EMBEDDING 256
#endif

namespace sv {

constexpr int kMaxSpeakers = SV_MAX_SPEAKERS;
constexpr int kMaxEmbedding = SV_MAX_EMBEDDING;
constexpr int kNameBytes = 16;  // 15 characters + NUL
constexpr uint16_t kStoreFormatVersion = 1;

// Bytes of one slot, sized for the largest table so that slot positions do not
// depend on the model (a store of another model is then still read, and
// recognised as such).  The medium must hold two slots.
constexpr size_t kStoreSlotBytes =
    20 + static_cast<size_t>(kMaxSpeakers) * (kNameBytes + 4 + 4 * kMaxEmbedding) + 4;
constexpr size_t kStoreMediumBytes = 2 * kStoreSlotBytes;

// A byte-addressable persistent memory (flash sector, EEPROM, file, RAM).
class StorageMedium {
 public:
  virtual ~StorageMedium() = default;
  virtual size_t Size() const = 0;
  virtual Status Read(size_t offset, uint8_t* out, size_t size) = 0;
  virtual Status Write(size_t offset, const uint8_t* data, size_t size) = 0;
};

// A medium over a caller-owned byte array (RAM, or memory-mapped flash image).
class RamMedium : public StorageMedium {
 public:
  RamMedium(uint8_t* bytes, size_t size) : bytes_(bytes), size_(size) {}
  size_t Size() const override { return size_; }
  Status Read(size_t offset, uint8_t* out, size_t size) override;
  Status Write(size_t offset, const uint8_t* data, size_t size) override;
  const uint8_t* bytes() const { return bytes_; }

 private:
  uint8_t* bytes_;
  size_t size_;
};

// True if `name` is 1..15 characters of [A-Za-z0-9_-].
bool ValidSpeakerName(const char* name);

class EnrollmentStore {
 public:
  EnrollmentStore(StorageMedium* medium, uint32_t model_id, int embed_dim);

  // Reads the newest valid table.  kOk also for a blank medium (empty store).
  // On kStoreCorrupt / kStoreModelMismatch / kIoError the store is unusable
  // (every call below returns that status) until Format() succeeds.
  Status Load();

  // Erases both slots and writes an empty table.
  Status Format();

  // Adds one utterance embedding (any norm) to speaker `name`, creating it if
  // new.  kBadName, kStoreFull, or the save's error (store then unchanged).
  Status Enroll(const char* name, const float* embedding);

  // kUnknownSpeaker if absent.
  Status Delete(const char* name);

  // Mean embedding of `name` (`embed_dim` values) and its utterance count.
  Status Find(const char* name, const float** mean, uint32_t* utterances) const;

  Status state() const { return state_; }
  int count() const { return count_; }
  int embed_dim() const { return embed_dim_; }
  const char* name_at(int i) const { return entries_[i].name; }
  uint32_t utterances_at(int i) const { return entries_[i].utterances; }

 private:
  struct Entry {
    char name[kNameBytes];
    uint32_t utterances;
    float mean[kMaxEmbedding];
  };

  int IndexOf(const char* name) const;
  size_t Serialize(uint32_t sequence);
  Status Deserialize(size_t slot, uint32_t* sequence, bool* blank);
  Status WriteSlot(size_t slot, size_t bytes);
  Status Commit();

  StorageMedium* medium_;
  uint32_t model_id_;
  int embed_dim_;
  Status state_ = Status::kStoreCorrupt;  // until Load()
  int active_slot_ = -1;                  // -1: nothing written yet
  uint32_t sequence_ = 0;
  int count_ = 0;
  Entry entries_[kMaxSpeakers];
  uint8_t image_[kStoreSlotBytes];
};

}  // namespace sv

#endif  // TFADVQ_STORE_H_
