#include "sv_status.h"

namespace sv {

const char* StatusName(Status status) {
  switch (status) {
    case Status::kOk: return "OK";
    case Status::kBadArgument: return "BAD_ARGUMENT";
    case Status::kAudioTooShort: return "AUDIO_TOO_SHORT";
    case Status::kAudioTooLong: return "AUDIO_TOO_LONG";
    case Status::kAudioSilent: return "AUDIO_SILENT";
    case Status::kAudioClipped: return "AUDIO_CLIPPED";
    case Status::kBadWav: return "BAD_WAV";
    case Status::kIoError: return "IO_ERROR";
    case Status::kModelTruncated: return "MODEL_TRUNCATED";
    case Status::kModelBadIdentifier: return "MODEL_BAD_IDENTIFIER";
    case Status::kModelBadVersion: return "MODEL_BAD_VERSION";
    case Status::kModelBadShape: return "MODEL_BAD_SHAPE";
    case Status::kInterpreterError: return "INTERPRETER_ERROR";
    case Status::kBadName: return "BAD_NAME";
    case Status::kUnknownSpeaker: return "UNKNOWN_SPEAKER";
    case Status::kStoreFull: return "STORE_FULL";
    case Status::kStoreCorrupt: return "STORE_CORRUPT";
    case Status::kStoreModelMismatch: return "STORE_MODEL_MISMATCH";
    case Status::kParseError: return "PARSE_ERROR";
    case Status::kUnknownCommand: return "UNKNOWN_COMMAND";
    case Status::kEmbeddingInvalid: return "EMBEDDING_INVALID";
    case Status::kSaveUnverified: return "SAVE_UNVERIFIED";
  }
  return "UNKNOWN_STATUS";
}

}  // namespace sv
