// The converted model(s) compiled into the firmware, as ModelSlot values.
//
// The one place that reads the converter's headers (model_config.h,
// model_data.h, model_ops.h and, with SV_TWO_MODELS, the second model's
// `*_<prefix>.h` whose macros are TFADVQ_<PREFIX>_*): it checks at compile
// time that every model eats the features the firmware computes, owns the
// arenas, and describes each model by a ModelSlot, so main.cc handles one
// model or two with the same code.  Include it from main.cc only.
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

#if !TFADVQ_HAS_THRESHOLDS
#error "model_config.h has no calibrated threshold: convert with trials (tfadvq convert)"
#endif
#ifdef SV_USE_LOW_FAR_THRESHOLD
#define SV_THRESHOLD TFADVQ_THRESHOLD_LOW_FAR
#else
#define SV_THRESHOLD TFADVQ_THRESHOLD_EER
#endif
// The scoring schedule (lib/window_schedule.h): windows of the model's input
// frames, TFADVQ_SCORING_HOP_FRAMES apart when the converter states it,
// back to back otherwise.
#ifdef TFADVQ_SCORING_HOP_FRAMES
#define SV_HOP_FRAMES TFADVQ_SCORING_HOP_FRAMES
#else
#define SV_HOP_FRAMES TFADVQ_INPUT_FRAMES
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

constexpr bool StrEq(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || StrEq(a + 1, b + 1));
}

// The front end is compiled for one feature configuration; a model trained
// with another must not build.
static_assert(StrEq(TFADVQ_FBANK_WINDOW, "povey"), "fbank config: povey window");
static_assert(TFADVQ_NUM_MEL_BINS == sv::Fbank::kNumMelBins, "mel bins differ from the front end");
static_assert(TFADVQ_FBANK_NUM_MEL_BINS == sv::Fbank::kNumMelBins, "fbank config: num_mel_bins");
static_assert(TFADVQ_FBANK_SAMPLE_RATE == sv::Fbank::kSampleRate, "fbank config: sample_rate");
static_assert(TFADVQ_FBANK_FRAME_LENGTH_MS == 25.0f && TFADVQ_FBANK_FRAME_SHIFT_MS == 10.0f,
              "fbank config: 25 ms / 10 ms frames");
static_assert(TFADVQ_FBANK_PREEMPH_COEFF == sv::Fbank::kPreemph, "fbank config: preemph_coeff");
static_assert(TFADVQ_FBANK_LOW_FREQ == sv::Fbank::kLowFreq && TFADVQ_FBANK_HIGH_FREQ <= 0.0f,
              "fbank config: 20 Hz .. Nyquist");
static_assert(TFADVQ_FBANK_REMOVE_DC_OFFSET == 1 && TFADVQ_FBANK_MEAN_NORM == 1,
              "fbank config: DC removal and mean normalisation");
static_assert(TFADVQ_FBANK_WAVEFORM_SCALE == 32768.0f, "fbank config: int16-range samples");
// Headers from tfadvq versions that could state other front ends (features computed by the host, a
// magnitude spectrum, log10/dB, an offset before the log): the firmware computes none of them.
#ifdef TFADVQ_FBANK_FEATURES
static_assert(StrEq(TFADVQ_FBANK_FEATURES, "fbank"), "fbank config: the host computes this model's features");
static_assert(StrEq(TFADVQ_FBANK_SPECTRUM, "power") && StrEq(TFADVQ_FBANK_LOG, "natural") &&
                  TFADVQ_FBANK_LOG_OFFSET == 0.0f && TFADVQ_FBANK_LOG_FLOOR == sv::Fbank::kLogFloor,
              "fbank config: natural log of mel power with the FLT_EPSILON floor");
#endif
static_assert(TFADVQ_EMBED_DIM <= sv::kMaxEmbedding, "raise SV_MAX_EMBEDDING");
static_assert(SV_HOP_FRAMES >= 1, "scoring hop: at least one frame");
#ifdef TFADVQ_SCORING_WINDOW_FRAMES
// The thresholds were calibrated with this window; the network's input is the
// only window the firmware can run.
static_assert(TFADVQ_SCORING_WINDOW_FRAMES == TFADVQ_INPUT_FRAMES,
              "scoring window differs from the model's input frames");
#endif

alignas(16) uint8_t g_arena[TFADVQ_ARENA_BYTES + SV_ARENA_MARGIN];

#ifndef SV_TWO_MODELS
constexpr int kNumModels = 1;
constexpr int kMaxInputFrames = TFADVQ_INPUT_FRAMES;
constexpr int kNumOps = TFADVQ_MODEL_NUM_OPS;
#define SV_SECOND_MODEL_OPS(OP)
#else
// The second model's macros, TFADVQ_<PREFIX>_<NAME> (SV_M2_UPPER is the prefix).
#define SV_M2_CAT2(a, b) TFADVQ_##a##_##b
#define SV_M2_CAT(a, b) SV_M2_CAT2(a, b)
#define SV_M2(name) SV_M2_CAT(SV_M2_UPPER, name)
#if !SV_M2(HAS_THRESHOLDS)
#error "the second model's config has no calibrated threshold: convert with trials"
#endif
#ifdef SV_USE_LOW_FAR_THRESHOLD
#define SV_M2_THRESHOLD SV_M2(THRESHOLD_LOW_FAR)
#else
#define SV_M2_THRESHOLD SV_M2(THRESHOLD_EER)
#endif
// Both models see the one front end, so the second must have been trained
// with the same features; it may differ in window, hop and embedding size.
static_assert(StrEq(SV_M2(FBANK_WINDOW), TFADVQ_FBANK_WINDOW) &&
                  SV_M2(FBANK_NUM_MEL_BINS) == TFADVQ_FBANK_NUM_MEL_BINS &&
                  SV_M2(NUM_MEL_BINS) == TFADVQ_NUM_MEL_BINS &&
                  SV_M2(FBANK_SAMPLE_RATE) == TFADVQ_FBANK_SAMPLE_RATE &&
                  SV_M2(FBANK_FRAME_LENGTH_MS) == TFADVQ_FBANK_FRAME_LENGTH_MS &&
                  SV_M2(FBANK_FRAME_SHIFT_MS) == TFADVQ_FBANK_FRAME_SHIFT_MS &&
                  SV_M2(FBANK_PREEMPH_COEFF) == TFADVQ_FBANK_PREEMPH_COEFF &&
                  SV_M2(FBANK_LOW_FREQ) == TFADVQ_FBANK_LOW_FREQ &&
                  SV_M2(FBANK_HIGH_FREQ) == TFADVQ_FBANK_HIGH_FREQ &&
                  SV_M2(FBANK_REMOVE_DC_OFFSET) == TFADVQ_FBANK_REMOVE_DC_OFFSET &&
                  SV_M2(FBANK_MEAN_NORM) == TFADVQ_FBANK_MEAN_NORM &&
                  SV_M2(FBANK_WAVEFORM_SCALE) == TFADVQ_FBANK_WAVEFORM_SCALE,
              "the second model was trained with other features than the first");
static_assert(SV_M2(EMBED_DIM) <= sv::kMaxEmbedding, "raise SV_MAX_EMBEDDING");
static_assert(SV_M2(SCORING_WINDOW_FRAMES) == SV_M2(INPUT_FRAMES) && SV_M2(SCORING_HOP_FRAMES) >= 1,
              "second model: scoring window differs from its input frames");
constexpr int kNumModels = 2;
constexpr int kMaxInputFrames =
    TFADVQ_INPUT_FRAMES > SV_M2(INPUT_FRAMES) ? TFADVQ_INPUT_FRAMES : SV_M2(INPUT_FRAMES);
constexpr int kNumOps = TFADVQ_MODEL_NUM_OPS + SV_M2(MODEL_NUM_OPS);  // at most; the union is registered
alignas(16) uint8_t g_arena2[SV_M2(ARENA_BYTES) + SV_ARENA_MARGIN];
#define SV_SECOND_MODEL_OPS(OP) SV_M2(MODEL_OPS)(OP)

#define SV_OP_NAME(op) #op,
// The first model's ops, so the second registers only what they lack.
constexpr const char* kFirstOps[] = {TFADVQ_MODEL_OPS(SV_OP_NAME)};

bool IsFirstOp(const char* name) {
  for (const char* op : kFirstOps) {
    if (std::strcmp(op, name) == 0) return true;
  }
  return false;
}
#endif

const ModelSlot kSlots[kNumModels] = {
    {{"main", g_model, g_model_len, TFADVQ_MODEL_BYTES, TFADVQ_MODEL_VERSION, SV_EXPECTED_MODEL_VERSION,
      TFADVQ_INPUT_FRAMES, TFADVQ_NUM_MEL_BINS, TFADVQ_EMBED_DIM, g_arena, sizeof(g_arena)},
     "", TFADVQ_MODEL_SHA256, SV_THRESHOLD, SV_HOP_FRAMES},
#ifdef SV_TWO_MODELS
    {{SV_M2_PREFIX, SV_M2_MODEL, SV_M2_MODEL_LEN, SV_M2(MODEL_BYTES), SV_M2(MODEL_VERSION),
      SV_EXPECTED_MODEL_VERSION, SV_M2(INPUT_FRAMES), SV_M2(NUM_MEL_BINS), SV_M2(EMBED_DIM), g_arena2,
      sizeof(g_arena2)},
     SV_M2_PREFIX, SV_M2(MODEL_SHA256), SV_M2_THRESHOLD, SV_M2(SCORING_HOP_FRAMES)},
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
