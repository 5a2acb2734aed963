#include "store.h"

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

bool AllEqual(const uint8_t* p, size_t n, uint8_t value) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != value) return false;
  }
  return true;
}

// Sequence numbers wrap; "newer" is a positive signed difference.
bool Newer(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

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

Status EnrollmentStore::Deserialize(size_t slot, uint32_t* sequence, bool* blank) {
  *blank = false;
  Status status = medium_->Read(slot * kStoreSlotBytes, image_, kStoreSlotBytes);
  if (status != Status::kOk) return status;
  if (AllEqual(image_, kHeaderBytes, 0xFF) || AllEqual(image_, kHeaderBytes, 0x00)) {
    *blank = true;
    return Status::kStoreCorrupt;
  }
  // The CRC is checked against the table's own size first: a table of another
  // model is intact, just not ours.
  const uint32_t count = Get32(image_ + 16);
  const uint16_t dim = static_cast<uint16_t>(image_[6] | (image_[7] << 8));
  if (Get32(image_) != kMagic || count > static_cast<uint32_t>(kMaxSpeakers) ||
      dim > kMaxEmbedding) {
    return Status::kStoreCorrupt;
  }
  const size_t body = kHeaderBytes + count * (kNameBytes + 4 + 4 * static_cast<size_t>(dim));
  if (Crc32(image_, body) != Get32(image_ + body)) return Status::kStoreCorrupt;
  const uint16_t format = static_cast<uint16_t>(image_[4] | (image_[5] << 8));
  if (format != kStoreFormatVersion) return Status::kStoreCorrupt;
  if (dim != embed_dim_ || Get32(image_ + 12) != model_id_) return Status::kStoreModelMismatch;
  *sequence = Get32(image_ + 8);
  return Status::kOk;
}

Status EnrollmentStore::Load() {
  count_ = 0;
  active_slot_ = -1;
  if (embed_dim_ <= 0 || embed_dim_ > kMaxEmbedding || medium_ == nullptr ||
      medium_->Size() < 2 * kStoreSlotBytes) {
    return state_ = Status::kBadArgument;
  }
  uint32_t sequences[2] = {0, 0};
  Status results[2];
  bool blanks[2];
  for (int s = 0; s < 2; ++s) results[s] = Deserialize(s, &sequences[s], &blanks[s]);
  int best = -1;
  for (int s = 0; s < 2; ++s) {
    if (results[s] == Status::kOk && (best < 0 || Newer(sequences[s], sequences[best]))) best = s;
  }
  if (best < 0) {
    if (results[0] == Status::kStoreModelMismatch || results[1] == Status::kStoreModelMismatch) {
      return state_ = Status::kStoreModelMismatch;
    }
    // Blank: never written, or a torn first save (which lost nothing: the store was empty).
    if (blanks[0] || blanks[1]) return state_ = Status::kOk;
    return state_ = (results[0] == Status::kIoError ? Status::kIoError : Status::kStoreCorrupt);
  }
  // Re-read the chosen slot: image_ holds whichever slot was read last.
  bool blank = false;
  Deserialize(best, &sequences[best], &blank);
  active_slot_ = best;
  sequence_ = sequences[best];
  count_ = static_cast<int>(Get32(image_ + 16));
  const uint8_t* p = image_ + kHeaderBytes;
  for (int i = 0; i < count_; ++i) {
    std::memcpy(entries_[i].name, p, kNameBytes);
    entries_[i].name[kNameBytes - 1] = '\0';
    entries_[i].utterances = Get32(p + kNameBytes);
    p += kNameBytes + 4;
    std::memcpy(entries_[i].mean, p, 4 * static_cast<size_t>(embed_dim_));
    p += 4 * embed_dim_;
  }
  return state_ = Status::kOk;
}

Status EnrollmentStore::WriteSlot(size_t slot, size_t bytes) {
  Status status = medium_->Write(slot * kStoreSlotBytes, image_, bytes);
  if (status != Status::kOk) return status;
  // Read back: a write that "succeeded" into bad flash must not become current.
  uint32_t sequence = 0;
  bool blank = false;
  const uint32_t expected = Get32(image_ + 8);
  status = Deserialize(slot, &sequence, &blank);
  if (status != Status::kOk || sequence != expected) return Status::kIoError;
  return Status::kOk;
}

Status EnrollmentStore::Commit() {
  const uint32_t sequence = sequence_ + 1;
  const bool first = active_slot_ < 0;
  const size_t target = first ? 0 : static_cast<size_t>(1 - active_slot_);
  Status status = WriteSlot(target, Serialize(sequence));
  // The very first save is mirrored into the other slot, so from then on a
  // damaged slot always has a valid twin (a blank twin would read as "empty").
  if (status == Status::kOk && first) status = WriteSlot(1, Serialize(sequence));
  if (status != Status::kOk) {
    Load();  // restore the in-RAM table from the slot that is still valid
    return status == Status::kStoreCorrupt ? Status::kIoError : status;
  }
  active_slot_ = static_cast<int>(target);
  sequence_ = sequence;
  return Status::kOk;
}

Status EnrollmentStore::Format() {
  if (medium_ == nullptr || embed_dim_ <= 0 || embed_dim_ > kMaxEmbedding ||
      medium_->Size() < 2 * kStoreSlotBytes) {
    return Status::kBadArgument;
  }
  count_ = 0;
  active_slot_ = -1;
  sequence_ = 0;
  const Status status = Commit();
  state_ = status;
  return status;
}

int EnrollmentStore::IndexOf(const char* name) const {
  for (int i = 0; i < count_; ++i) {
    if (std::strncmp(entries_[i].name, name, kNameBytes) == 0) return i;
  }
  return -1;
}

Status EnrollmentStore::Enroll(const char* name, const float* embedding) {
  if (state_ != Status::kOk) return state_;
  if (!ValidSpeakerName(name)) return Status::kBadName;
  if (embedding == nullptr) return Status::kBadArgument;
  float unit[kMaxEmbedding];
  std::memcpy(unit, embedding, 4 * static_cast<size_t>(embed_dim_));
  L2Normalize(unit, embed_dim_);
  int i = IndexOf(name);
  if (i < 0) {
    if (count_ >= kMaxSpeakers) return Status::kStoreFull;
    i = count_++;
    std::memset(&entries_[i], 0, sizeof(Entry));
    std::strncpy(entries_[i].name, name, kNameBytes - 1);
  }
  Entry& e = entries_[i];
  e.utterances += 1;
  for (int d = 0; d < embed_dim_; ++d) e.mean[d] += (unit[d] - e.mean[d]) / e.utterances;
  return Commit();
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
