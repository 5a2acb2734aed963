// The converted model(s) compiled into the firmware, as ModelSlot values.
//
// The one place that reads the converter's headers (model_config.h,
// model_data.h, model_ops.h and, with SV_TWO_MODELS, the second model's
// `*_<prefix>.h`).  Each model's configuration is read from its config struct
// (tfadvq::kModelConfig, tfadvq::kModelConfig_<prefix>: model_config.h's
// tfadvq::ModelConfig), the same fields for both models: one set of
// compile-time checks (CheckedModel) that every model eats the features the
// firmware computes, the arenas, and one ModelSlot per model, so main.cc
// handles one model or two with the same code.  Include it from main.cc only.
#ifndef TFADVQ_APP_MODELS_H_
#define TFADVQ_APP_MODELS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fbank.h"
#include "model_config.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_runner.h"
#include "store.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#ifdef SV_TWO_MODELS
#include SV_M2_CONFIG_H
#include SV_M2_DATA_H
#include SV_M2_OPS_H
#endif

// The model version this firmware (its store layout, thresholds, protocol) was
// written for; the converter's --model-version must match.
#ifndef SV_EXPECTED_MODEL_VERSION
#define SV_EXPECTED_MODEL_VERSION 1
#endif
// Headroom over the converter's measured arena (CMSIS-NN scratch buffers).
#ifndef SV_ARENA_MARGIN
#define SV_ARENA_MARGIN 1024
#endif

#ifndef TFADVQ_CONFIG_STRUCT_H_
#error "model_config.h predates tfadvq::ModelConfig: convert the model again (tfadvq convert --c-array)"
#endif

namespace {

// One converted model: what main.cc needs to run it behind its own store.
struct ModelSlot {
  sv::ModelSpec spec;
  const char* prefix;  // the word that starts its protocol lines ("" for the first)
  const char* sha256;  // the model id of its enrollment store
  float threshold;
  int hop_frames;
};

using tfadvq::StrEq;

// What the firmware requires of every model it runs, checked at compile time on its config struct
// (model_config.h's tfadvq::ModelConfig): a calibrated threshold, the one feature configuration the
// front end computes (a model trained with another must not build), an embedding that fits, and a
// scoring window that is its input (the thresholds were calibrated with it; the network's input is the
// only window the firmware can run).  Instantiated once per model: CheckedModel<the model's struct>.
template <const tfadvq::ModelConfig& kConfig>
struct CheckedModel {
  static constexpr const tfadvq::FbankConfig& kFbank = kConfig.fbank;
  static_assert(kConfig.has_thresholds, "model config has no calibrated threshold: convert with trials");
  static_assert(StrEq(kFbank.window, "povey"), "fbank config: povey window");
  static_assert(kConfig.num_mel_bins == sv::Fbank::kNumMelBins, "mel bins differ from the front end");
  static_assert(kFbank.num_mel_bins == sv::Fbank::kNumMelBins, "fbank config: num_mel_bins");
  static_assert(kFbank.sample_rate == sv::Fbank::kSampleRate, "fbank config: sample_rate");
  static_assert(kFbank.frame_length_ms == 25.0f && kFbank.frame_shift_ms == 10.0f,
                "fbank config: 25 ms / 10 ms frames");
  static_assert(kFbank.preemph_coeff == sv::Fbank::kPreemph, "fbank config: preemph_coeff");
  static_assert(kFbank.low_freq == sv::Fbank::kLowFreq && kFbank.high_freq <= 0.0f, "fbank config: 20 Hz .. Nyquist");
  static_assert(kFbank.remove_dc_offset && kFbank.mean_norm, "fbank config: DC removal and mean normalisation");
  static_assert(kFbank.waveform_scale == 32768.0f, "fbank config: int16-range samples");
  static_assert(StrEq(kFbank.features, "fbank"), "fbank config: the host computes this model's features");
  static_assert(StrEq(kFbank.spectrum, "power") && StrEq(kFbank.log, "natural") && kFbank.log_offset == 0.0f &&
                    kFbank.log_floor == sv::Fbank::kLogFloor,
                "fbank config: natural log of mel power with the FLT_EPSILON floor");
  static_assert(kConfig.embed_dim <= sv::kMaxEmbedding, "raise SV_MAX_EMBEDDING");
  static_assert(kConfig.scoring.window_frames == kConfig.input_frames,
                "scoring window differs from the model's input frames");
  static_assert(kConfig.scoring.hop_frames >= 1, "scoring hop: at least one frame");
  static constexpr bool kOk = true;
};

// The threshold a model accepts at (SV_USE_LOW_FAR_THRESHOLD: the low-FAR one).
constexpr float Threshold(const tfadvq::ModelConfig& config) {
#ifdef SV_USE_LOW_FAR_THRESHOLD
  return config.threshold.low_far;
#else
  return config.threshold.eer;
#endif
}

// The slot of the model `config` describes, its flatbuffer `model` (`model_len` bytes) run in `arena`.
ModelSlot Slot(const tfadvq::ModelConfig& config, const char* name, const char* prefix, const unsigned char* model,
               unsigned int model_len, uint8_t* arena, size_t arena_bytes) {
  return {{name, model, model_len, static_cast<size_t>(config.model_bytes),
           static_cast<uint32_t>(config.model_version), SV_EXPECTED_MODEL_VERSION, config.input_frames,
           config.num_mel_bins, config.embed_dim, arena, arena_bytes},
          prefix, config.model_sha256, Threshold(config), config.scoring.hop_frames};
}

constexpr const tfadvq::ModelConfig& kFirst = tfadvq::kModelConfig;
static_assert(CheckedModel<tfadvq::kModelConfig>::kOk, "the model");
alignas(16) uint8_t g_arena[kFirst.arena_bytes + SV_ARENA_MARGIN];

#ifndef SV_TWO_MODELS
constexpr int kNumModels = 1;
constexpr int kMaxInputFrames = kFirst.input_frames;
constexpr int kNumOps = TFADVQ_MODEL_NUM_OPS;
#define SV_SECOND_MODEL_OPS(OP)
#else
// The second model: its config struct (SV_M2_CONFIG, tfadvq::kModelConfig_<prefix>) is checked like the
// first's and read field by field the same way; its op list is the X-macro SV_M2_OPS.
constexpr const tfadvq::ModelConfig& kSecond = SV_M2_CONFIG;
static_assert(CheckedModel<SV_M2_CONFIG>::kOk, "the second model");
// Both models see the one front end (each checked against it above; said here in one line too).
static_assert(kSecond.fbank == kFirst.fbank, "the second model was trained with other features than the first");
constexpr int kNumModels = 2;
constexpr int kMaxInputFrames = kFirst.input_frames > kSecond.input_frames ? kFirst.input_frames
                                                                           : kSecond.input_frames;
#define SV_OP_NAME(op) #op,
// The first model's ops, so the second registers only what they lack.
constexpr const char* kFirstOps[] = {TFADVQ_MODEL_OPS(SV_OP_NAME)};
constexpr const char* kSecondOps[] = {SV_M2_OPS(SV_OP_NAME)};
constexpr int kNumOps = TFADVQ_MODEL_NUM_OPS + sizeof(kSecondOps) / sizeof(kSecondOps[0]);  // at most
alignas(16) uint8_t g_arena2[kSecond.arena_bytes + SV_ARENA_MARGIN];
#define SV_SECOND_MODEL_OPS(OP) SV_M2_OPS(OP)

bool IsFirstOp(const char* name) {
  for (const char* op : kFirstOps) {
    if (std::strcmp(op, name) == 0) return true;
  }
  return false;
}
#endif

const ModelSlot kSlots[kNumModels] = {
    Slot(kFirst, "main", "", g_model, g_model_len, g_arena, sizeof(g_arena)),
#ifdef SV_TWO_MODELS
    Slot(kSecond, SV_M2_PREFIX, SV_M2_PREFIX, SV_M2_MODEL, SV_M2_MODEL_LEN, g_arena2, sizeof(g_arena2)),
#endif
};

using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;

// Every op of the model(s), each once; the name of the first that fails, or nullptr.
const char* RegisterOps(OpResolver* resolver) {
#define SV_ADD_OP(op) \
  if (resolver->Add##op() != kTfLiteOk) return #op;
#define SV_ADD_MISSING_OP(op) \
  if (!IsFirstOp(#op) && resolver->Add##op() != kTfLiteOk) return #op;
  TFADVQ_MODEL_OPS(SV_ADD_OP)
  SV_SECOND_MODEL_OPS(SV_ADD_MISSING_OP)
#undef SV_ADD_OP
#undef SV_ADD_MISSING_OP
  return nullptr;
}

}  // namespace

#endif  // TFADVQ_APP_MODELS_H_
