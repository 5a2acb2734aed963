// Enrollment store: named speaker models in a flash-like byte medium.
//
// THE RULE: a change the store acknowledged (kOk) is never lost without an
// error, and a store that cannot prove what it holds writes nothing until it
// is reset explicitly (Format(), the protocol's `format`).
//
// Saves.  The medium holds two slots, A (offset 0) and B (kStoreSlotBytes).
// Every save writes the whole new table, with sequence+1, into BOTH slots, one
// after the other, reading each back and checking its CRC-32.  The slot
// written first is the one NOT holding the table in use, so a save cut short
// at any byte (power loss, write error) leaves the previous table or the new
// one intact in some slot; after a complete save both slots hold the same
// table, so later damage to either slot alone loses nothing.
//
// Load classifies each slot as
//   valid       magic, CRC, format version, this model, sane contents
//   blank       every byte 0xFF (erased flash) or every byte 0x00: never written
//   foreign     intact, but another model's (model id or embedding size)
//   unreadable  the medium's Read failed
//   damaged     anything else: a failed CRC, a torn write, an erased or zeroed
//               header over the rest of a table, a stray byte in an erased slot,
//               a CRC-valid table with a bad or duplicate name, zero
//               utterances or a non-finite mean
// and decides, in this order:
//   a slot unreadable         -> kIoError (it might hold the newer table)
//   a slot valid              -> kOk: the valid table with the higher sequence
//   both blank                -> kOk: empty (a fresh medium)
//   a slot foreign            -> kStoreModelMismatch
//   otherwise                 -> kStoreCorrupt (damaged + damaged, damaged + blank)
// "One slot damaged, the other blank" is never an empty store: it can be a
// table whose twin was erased.  Load never writes.  While state() != kOk,
// Enroll/Delete/Find return state() and nothing is written; only Format()
// writes (and is the way out).
//
// Status of a save (Enroll, Delete, Format) -- it says exactly what is
// persisted (chosen over idempotent retries, which would need a request id in
// the protocol).  After a failed write or read-back the store reloads the
// medium, so its RAM view is always what a restart would load, and then:
//   kOk        the new table is persisted (read back, CRC-checked, it is what
//              Load picks) -- also when only the second copy failed;
//   kIoError   the change is NOT persisted.  If state() is still kOk, RAM and
//              medium hold exactly the previous table and a retry counts the
//              utterance once; if state() is not kOk the medium no longer loads
//              (e.g. the first save on a fresh medium cut short after a few
//              bytes: damaged + blank -> kStoreCorrupt) and the store is
//              locked until Format().
//   kSaveUnverified  the first copy was written (the medium said so) but could
//              not be read back, and the reload could not read the medium
//              either: whether the change is persisted is unknown, so neither
//              kOk nor kIoError would be true.  state() is kIoError (locked);
//              after a restart that reads the medium, `list` shows whether the
//              save counted.  When the reload does read the medium, the status
//              is kOk or kIoError as above; a first copy read back intact is
//              kOk even if the medium turns unreadable afterwards.
// The cost of the rule: that cut-short first save reloads as kStoreCorrupt
// (nothing was lost, the store was empty) and needs `format`.  A power loss
// after a save is persisted but before its reply is sent leaves the host
// without a reply; `list` shows whether the utterance counted.  Not covered: a
// save whose second copy failed is held by one slot only until the next save;
// if that slot is then damaged, Load falls back to the previous table.
//
// Inputs.  Enroll refuses an embedding with a NaN/inf or all-zero value with
// kEmbeddingInvalid before anything changes.  The utterance count saturates at
// kMaxUtterances (the mean then no longer moves measurably).  Sequence numbers
// wrap by design: "newer" is a positive signed 32-bit difference, and the two
// slots never differ by more than one save.
//
// A table written for a different model (model id or embedding size) is
// kStoreModelMismatch: embeddings of another network are meaningless to this one.
//
// Slot format (little-endian), version kStoreFormatVersion:
//   u32 magic 'SVST' | u16 format | u16 embed_dim | u32 sequence | u32 model_id |
//   u32 count | count x { char name[16] | u32 utterances | f32 mean[embed_dim] } | u32 crc
// The CRC covers every byte before it; bytes after it are not read.  Names are
// NUL-padded.  Speaker models are the running mean of the L2-normalised
// embeddings of their enrollment utterances.
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
constexpr uint32_t kMaxUtterances = 0xFFFFFFFFu;  // the utterance count saturates here

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

  // Reads the medium and decides by the rule above (never writes).  kOk also
  // for a fresh medium (both slots blank: empty store).  On kStoreCorrupt /
  // kStoreModelMismatch / kIoError the store is locked (every call below but
  // Format returns that status, nothing is written) until Format() succeeds.
  // kBadArgument: bad embed_dim, no medium, or a medium smaller than two slots.
  Status Load();

  // The explicit reset: writes an empty table into both slots, whatever they
  // held (the only write allowed on a locked store).  kOk: the store is empty
  // and usable; kIoError: not persisted, state() tells what the store holds.
  Status Format();

  // Adds one utterance embedding (any finite, non-zero vector; it is
  // L2-normalised) to speaker `name`, creating it if new.  Refusals, with
  // nothing changed: state() if locked, kBadName, kBadArgument (null),
  // kEmbeddingInvalid, kStoreFull.  Otherwise the save's status (see above).
  Status Enroll(const char* name, const float* embedding);

  // What Enroll(name, <a valid embedding>) would refuse before saving --
  // state() if locked, kBadName, kStoreFull (a new name, no room) -- or kOk.
  // Lets the caller refuse before computing the embedding.
  Status CanEnroll(const char* name) const;

  // kUnknownSpeaker if absent; otherwise the save's status.
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

  enum class SlotState { kValid, kBlank, kForeign, kUnreadable, kDamaged };

  bool Usable() const;
  int IndexOf(const char* name) const;
  size_t Serialize(uint32_t sequence);
  // Reads `slot` into image_ and classifies it; *sequence for a valid slot.
  SlotState ReadSlot(int slot, uint32_t* sequence);
  Status WriteSlot(int slot, uint32_t sequence);
  Status Commit();

  StorageMedium* medium_;
  uint32_t model_id_;
  int embed_dim_;
  Status state_ = Status::kStoreCorrupt;  // until Load()
  int active_slot_ = -1;                  // slot the table was loaded from; -1: none
  uint32_t sequence_ = 0;
  int count_ = 0;
  Entry entries_[kMaxSpeakers];
  uint8_t image_[kStoreSlotBytes];
};

}  // namespace sv

#endif  // TFADVQ_STORE_H_
