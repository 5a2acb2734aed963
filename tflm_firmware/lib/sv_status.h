// Error codes shared by every part of the firmware.
//
// Every fallible call returns a Status instead of aborting: on a device there is
// nobody to read a crash, so bad input must turn into a code the host can show.
#ifndef TFADVQ_SV_STATUS_H_
#define TFADVQ_SV_STATUS_H_

namespace sv {

enum class Status : int {
  kOk = 0,
  kBadArgument,
  kAudioTooShort,
  kAudioTooLong,
  kAudioSilent,
  kAudioClipped,
  kBadWav,
  kIoError,
  kModelTruncated,
  kModelBadIdentifier,
  kModelBadVersion,
  kModelBadShape,
  kInterpreterError,
  kBadName,
  kUnknownSpeaker,
  kStoreFull,
  kStoreCorrupt,
  kStoreModelMismatch,
  kParseError,
  kUnknownCommand,
  kEmbeddingInvalid,  // NaN/inf or all-zero embedding: refused before the store changes
  kSaveUnverified,    // a save was written but the medium cannot be read back: persisted or not is unknown
};

// Stable, grep-able name of a status ("AUDIO_SILENT"), for protocol replies.
const char* StatusName(Status status);

}  // namespace sv

#endif  // TFADVQ_SV_STATUS_H_
