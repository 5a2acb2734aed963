#include "store.h"

#include <cmath>
#include <cstring>

#include "crc32.h"
#include "scoring.h"

namespace sv {

namespace {

constexpr uint32_t kMagic = 0x54535653u;  // "SVST" little-endian
constexpr size_t kHeaderBytes = 20;

void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t Get32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Every byte of p[n] equals `value`: p[0] does, and each byte equals the next.
bool AllEqual(const uint8_t* p, size_t n, uint8_t value) {
  return n == 0 || (p[0] == value && std::memcmp(p, p + 1, n - 1) == 0);
}

// Sequence numbers wrap; "newer" is a positive signed difference.
bool Newer(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

// `in[n]` scaled to unit L2 norm into `out`; false (out unspecified) for a
// NaN/inf or all-zero vector.  Vectors whose squared norm would overflow or
// underflow a float are scaled by their largest magnitude first.
bool UnitVector(const float* in, int n, float* out) {
  float largest = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(in[i])) return false;
    largest = std::fmax(largest, std::fabs(in[i]));
  }
  if (!(largest > 0.0f)) return false;
  const bool rescale = largest > 1e18f || largest < 1e-18f;
  for (int i = 0; i < n; ++i) out[i] = rescale ? in[i] / largest : in[i];
  L2Normalize(out, n);
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) return false;
  }
  return true;
}

}  // namespace

Status RamMedium::Read(size_t offset, uint8_t* out, size_t size) {
  if (offset > size_ || size > size_ - offset) return Status::kIoError;
  std::memcpy(out, bytes_ + offset, size);
  return Status::kOk;
}

Status RamMedium::Write(size_t offset, const uint8_t* data, size_t size) {
  if (offset > size_ || size > size_ - offset) return Status::kIoError;
  std::memcpy(bytes_ + offset, data, size);
  return Status::kOk;
}

bool ValidSpeakerName(const char* name) {
  if (name == nullptr) return false;
  size_t n = 0;
  for (; name[n] != '\0'; ++n) {
    const char c = name[n];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok || n + 1 >= static_cast<size_t>(kNameBytes)) return false;
  }
  return n > 0;
}

EnrollmentStore::EnrollmentStore(StorageMedium* medium, uint32_t model_id, int embed_dim)
    : medium_(medium),
      model_id_(model_id),
      embed_dim_(embed_dim) {}

bool EnrollmentStore::Usable() const {
  return medium_ != nullptr && embed_dim_ > 0 && embed_dim_ <= kMaxEmbedding &&
         medium_->Size() >= kStoreMediumBytes;
}

size_t EnrollmentStore::Serialize(uint32_t sequence) {
  Put32(image_, kMagic);
  image_[4] = static_cast<uint8_t>(kStoreFormatVersion);
  image_[5] = static_cast<uint8_t>(kStoreFormatVersion >> 8);
  image_[6] = static_cast<uint8_t>(embed_dim_);
  image_[7] = static_cast<uint8_t>(embed_dim_ >> 8);
  Put32(image_ + 8, sequence);
  Put32(image_ + 12, model_id_);
  Put32(image_ + 16, static_cast<uint32_t>(count_));
  uint8_t* p = image_ + kHeaderBytes;
  for (int i = 0; i < count_; ++i) {
    std::memcpy(p, entries_[i].name, kNameBytes);
    Put32(p + kNameBytes, entries_[i].utterances);
    p += kNameBytes + 4;
    std::memcpy(p, entries_[i].mean, 4 * static_cast<size_t>(embed_dim_));
    p += 4 * embed_dim_;
  }
  const size_t body = static_cast<size_t>(p - image_);
  Put32(p, Crc32(image_, body));
  return body + 4;
}

EnrollmentStore::SlotState EnrollmentStore::ReadSlot(int slot, uint32_t* sequence) {
  if (medium_->Read(static_cast<size_t>(slot) * kStoreSlotBytes, image_, kStoreSlotBytes) !=
      Status::kOk) {
    return SlotState::kUnreadable;
  }
  // Blank means the whole slot: an erased or zeroed header over the rest of a
  // table is damage, not an empty store.
  if (AllEqual(image_, kStoreSlotBytes, 0xFF) || AllEqual(image_, kStoreSlotBytes, 0x00)) {
    return SlotState::kBlank;
  }
  // The CRC is checked against the table's own size first: a table of another
  // model is intact, just not ours.
  const uint32_t count = Get32(image_ + 16);
  const uint16_t dim = static_cast<uint16_t>(image_[6] | (image_[7] << 8));
  if (Get32(image_) != kMagic || count > static_cast<uint32_t>(kMaxSpeakers) ||
      dim > kMaxEmbedding) {
    return SlotState::kDamaged;
  }
  const size_t entry_bytes = kNameBytes + 4 + 4 * static_cast<size_t>(dim);
  const size_t body = kHeaderBytes + count * entry_bytes;
  if (Crc32(image_, body) != Get32(image_ + body)) return SlotState::kDamaged;
  const uint16_t format = static_cast<uint16_t>(image_[4] | (image_[5] << 8));
  if (format != kStoreFormatVersion) return SlotState::kDamaged;
  if (dim != embed_dim_ || Get32(image_ + 12) != model_id_) return SlotState::kForeign;
  // A CRC only proves the bytes are as written; refuse contents this code
  // would never write (they would break the invariants Find/Enroll rely on).
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* e = image_ + kHeaderBytes + i * entry_bytes;
    const char* name = reinterpret_cast<const char*>(e);
    if (std::memchr(name, '\0', kNameBytes) == nullptr || !ValidSpeakerName(name)) {
      return SlotState::kDamaged;
    }
    for (uint32_t j = 0; j < i; ++j) {
      const char* other = reinterpret_cast<const char*>(image_ + kHeaderBytes + j * entry_bytes);
      if (std::strncmp(name, other, kNameBytes) == 0) return SlotState::kDamaged;
    }
    if (Get32(e + kNameBytes) == 0) return SlotState::kDamaged;
    for (int d = 0; d < dim; ++d) {
      float v = 0.0f;
      std::memcpy(&v, e + kNameBytes + 4 + 4 * d, 4);
      if (!std::isfinite(v)) return SlotState::kDamaged;
    }
  }
  *sequence = Get32(image_ + 8);
  return SlotState::kValid;
}

Status EnrollmentStore::Load() {
  count_ = 0;
  active_slot_ = -1;
  sequence_ = 0;
  if (!Usable()) return state_ = Status::kBadArgument;
  SlotState states[2];
  uint32_t sequences[2] = {0, 0};
  // Slot B first, so that image_ holds slot A -- the one picked when both
  // hold the same table -- afterwards.
  states[1] = ReadSlot(1, &sequences[1]);
  states[0] = ReadSlot(0, &sequences[0]);
  if (states[0] == SlotState::kUnreadable || states[1] == SlotState::kUnreadable) {
    return state_ = Status::kIoError;  // the unread slot might hold the newer table
  }
  const bool valid0 = states[0] == SlotState::kValid;
  const bool valid1 = states[1] == SlotState::kValid;
  if (!valid0 && !valid1) {
    if (states[0] == SlotState::kBlank && states[1] == SlotState::kBlank) {
      return state_ = Status::kOk;  // a fresh medium: empty store
    }
    if (states[0] == SlotState::kForeign || states[1] == SlotState::kForeign) {
      return state_ = Status::kStoreModelMismatch;
    }
    return state_ = Status::kStoreCorrupt;  // damaged + damaged, damaged + blank
  }
  const int best = (valid1 && (!valid0 || Newer(sequences[1], sequences[0]))) ? 1 : 0;
  if (best == 1) {
    uint32_t again = 0;
    if (ReadSlot(1, &again) != SlotState::kValid || again != sequences[1]) {
      return state_ = Status::kIoError;  // the medium changed under us
    }
  }
  const int count = static_cast<int>(Get32(image_ + 16));
  const uint8_t* p = image_ + kHeaderBytes;
  for (int i = 0; i < count; ++i) {
    std::memcpy(entries_[i].name, p, kNameBytes);
    entries_[i].utterances = Get32(p + kNameBytes);
    p += kNameBytes + 4;
    std::memcpy(entries_[i].mean, p, 4 * static_cast<size_t>(embed_dim_));
    p += 4 * embed_dim_;
  }
  count_ = count;
  active_slot_ = best;
  sequence_ = sequences[best];
  return state_ = Status::kOk;
}

Status EnrollmentStore::WriteSlot(int slot, uint32_t sequence) {
  const size_t bytes = Serialize(sequence);
  const uint32_t crc = Get32(image_ + bytes - 4);
  if (medium_->Write(static_cast<size_t>(slot) * kStoreSlotBytes, image_, bytes) != Status::kOk) {
    return Status::kIoError;
  }
  // Read back: a write that "succeeded" into bad flash must not count.
  uint32_t got = 0;
  const SlotState state = ReadSlot(slot, &got);
  if (state == SlotState::kUnreadable) return Status::kSaveUnverified;  // written, but unseen
  if (state != SlotState::kValid || got != sequence ||
      Get32(image_ + 16) != static_cast<uint32_t>(count_) || Get32(image_ + bytes - 4) != crc) {
    return Status::kIoError;
  }
  return Status::kOk;
}

Status EnrollmentStore::Commit() {
  const uint32_t sequence = sequence_ + 1;  // wraps; see Newer()
  // First the slot not holding the table in use, then the other one.
  const int first = active_slot_ == 1 ? 0 : 1;
  const Status written = WriteSlot(first, sequence);
  Status status = written;
  if (status == Status::kOk) status = WriteSlot(1 - first, sequence);
  if (status == Status::kOk) {
    active_slot_ = 1 - first;
    sequence_ = sequence;
    return Status::kOk;
  }
  // What is persisted decides the status: reload exactly what a restart would.
  Load();
  if (state_ == Status::kOk) return sequence_ == sequence ? Status::kOk : Status::kIoError;
  if (state_ == Status::kIoError) {  // the medium cannot be read now: say what is known
    if (written == Status::kOk) return Status::kOk;  // the first copy was read back: persisted
    if (written == Status::kSaveUnverified) return Status::kSaveUnverified;  // written, never seen
  }
  return Status::kIoError;  // the first copy's write failed or read back wrong: not persisted
}

Status EnrollmentStore::Format() {
  if (!Usable()) return Status::kBadArgument;
  if (state_ != Status::kOk) {  // locked: nothing loaded, no sequence to continue
    active_slot_ = -1;
    sequence_ = 0;
  }
  count_ = 0;
  state_ = Status::kOk;
  return Commit();
}

int EnrollmentStore::IndexOf(const char* name) const {
  for (int i = 0; i < count_; ++i) {
    if (std::strncmp(entries_[i].name, name, kNameBytes) == 0) return i;
  }
  return -1;
}

Status EnrollmentStore::Enroll(const char* name, const float* embedding) {
  Status status = CanEnroll(name);
  if (status != Status::kOk) return status;
  if (embedding == nullptr) return Status::kBadArgument;
  float unit[kMaxEmbedding];
  if (!UnitVector(embedding, embed_dim_, unit)) return Status::kEmbeddingInvalid;
  int i = IndexOf(name);
  if (i < 0) {
    i = count_++;
    std::memset(&entries_[i], 0, sizeof(Entry));
    std::strncpy(entries_[i].name, name, kNameBytes - 1);
  }
  Entry& e = entries_[i];
  if (e.utterances < kMaxUtterances) e.utterances += 1;  // saturates, never wraps to 0
  for (int d = 0; d < embed_dim_; ++d) e.mean[d] += (unit[d] - e.mean[d]) / e.utterances;
  return Commit();
}

Status EnrollmentStore::CanEnroll(const char* name) const {
  if (state_ != Status::kOk) return state_;
  if (!ValidSpeakerName(name)) return Status::kBadName;
  return IndexOf(name) < 0 && count_ >= kMaxSpeakers ? Status::kStoreFull : Status::kOk;
}

Status EnrollmentStore::Delete(const char* name) {
  if (state_ != Status::kOk) return state_;
  if (!ValidSpeakerName(name)) return Status::kBadName;
  const int i = IndexOf(name);
  if (i < 0) return Status::kUnknownSpeaker;
  for (int j = i; j + 1 < count_; ++j) entries_[j] = entries_[j + 1];
  --count_;
  return Commit();
}

Status EnrollmentStore::Find(const char* name, const float** mean, uint32_t* utterances) const {
  if (state_ != Status::kOk) return state_;
  if (!ValidSpeakerName(name)) return Status::kBadName;
  const int i = IndexOf(name);
  if (i < 0) return Status::kUnknownSpeaker;
  *mean = entries_[i].mean;
  *utterances = entries_[i].utterances;
  return Status::kOk;
}

}  // namespace sv
