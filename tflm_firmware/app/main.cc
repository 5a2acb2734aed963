// Speaker-verification firmware: TFLM model(s) + the TFLM-free library.
//
// Boot: check the model blob and version, build the interpreter in a static
// arena, check tensor shapes, load the enrollment store; then serve protocol
// lines from the console until EOF/quit.  Nothing is run at boot beyond that:
// the cost of a command is what its reply reports (`instructions=` on QEMU,
// `cycles=` on a board).
//
// With a second model (SV_TWO_MODELS, `make ... MODEL2_DIR=... MODEL2_PREFIX=hi`)
// its lines start with the prefix ("hi verify alice x.wav"); each model has
// its runner, arena and enrollment store, and one op resolver holds the union
// of both models' ops.
// Build: see README.md ("make firmware-m4 TFLM_DIR=... TFLM_LIB=... MODEL_DIR=...").
#include <cstdio>
#include <cstring>

#include "capture.h"
#include "fbank.h"
#include "model_check.h"
#include "model_config.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_runner.h"
#include "platform.h"
#include "router.h"
#include "session.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "verifier.h"
#ifdef SV_TWO_MODELS
#include SV_M2_CONFIG_H
#include SV_M2_DATA_H
#include SV_M2_OPS_H
#endif
#ifdef SV_TFLM_LOG_CALLBACK  // cortex_m_generic's DebugLog prints only through a callback
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
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
// The longest utterance scored (whole seconds, >= 1): a longer file or
// recording is scored on its first SV_MAX_SECONDS (SV_TRUNCATE_LONG_AUDIO=1,
// the default) or refused with AUDIO_TOO_LONG (0).  A policy, not memory:
// files stream through the PCM buffer in chunks, whatever their length.
#ifndef SV_MAX_SECONDS
#define SV_MAX_SECONDS 6
#endif
// The frames kept for "@buffer" (a microphone recording, its fbank frames
// computed as it arrives), whole seconds: the one piece of RAM that grows with
// utterance length, 32 KB a second.  Files up to that length are scored in one
// front-end pass too; longer ones in two.  0 = no capture (a file-fed build,
// e.g. QEMU): the frame buffer is then one network window.
#ifndef SV_CAPTURE_SECONDS
#define SV_CAPTURE_SECONDS SV_MAX_SECONDS
#endif
#ifndef SV_TRUNCATE_LONG_AUDIO
#define SV_TRUNCATE_LONG_AUDIO 1
#endif
static_assert(SV_MAX_SECONDS >= 1, "SV_MAX_SECONDS: at least 1 s (the audio check needs 0.5 s)");
static_assert(SV_CAPTURE_SECONDS >= 0 && SV_CAPTURE_SECONDS <= SV_MAX_SECONDS,
              "SV_CAPTURE_SECONDS: 0 (no capture buffer) up to SV_MAX_SECONDS");

// The scoring schedule (lib/window_schedule.h): windows of the model's input
// frames, TFADVQ_SCORING_HOP_FRAMES apart when the converter states it,
// back to back otherwise.
#ifdef TFADVQ_SCORING_HOP_FRAMES
#define SV_HOP_FRAMES TFADVQ_SCORING_HOP_FRAMES
#else
#define SV_HOP_FRAMES TFADVQ_INPUT_FRAMES
#endif

#if !TFADVQ_HAS_THRESHOLDS
#error "model_config.h has no calibrated threshold: convert with trials (tfadvq convert)"
#endif
#ifdef SV_USE_LOW_FAR_THRESHOLD
#define SV_THRESHOLD TFADVQ_THRESHOLD_LOW_FAR
#else
#define SV_THRESHOLD TFADVQ_THRESHOLD_EER
#endif

#ifdef SV_TWO_MODELS
#define SV_M2_CAT2(a, b) TFADVQ_##a##_##b
#define SV_M2_CAT(a, b) SV_M2_CAT2(a, b)
// TFADVQ_<PREFIX>_<NAME> of the second model's model_config_<prefix>.h.
#define SV_M2(name) SV_M2_CAT(SV_M2_UPPER, name)
#if !SV_M2(HAS_THRESHOLDS)
#error "the second model's config has no calibrated threshold: convert with trials"
#endif
#ifdef SV_USE_LOW_FAR_THRESHOLD
#define SV_M2_THRESHOLD SV_M2(THRESHOLD_LOW_FAR)
#else
#define SV_M2_THRESHOLD SV_M2(THRESHOLD_EER)
#endif
#endif

namespace {
constexpr bool StrEq(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || StrEq(a + 1, b + 1));
}
}  // namespace

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

#ifdef SV_TWO_MODELS
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
#endif

namespace {

constexpr size_t kMaxSamples = static_cast<size_t>(SV_MAX_SECONDS) * sv::Fbank::kSampleRate;
constexpr size_t kCaptureSamples = static_cast<size_t>(SV_CAPTURE_SECONDS) * sv::Fbank::kSampleRate;
constexpr int kCaptureFrames =
    kCaptureSamples < sv::Fbank::kFrameLength
        ? 0 : 1 + static_cast<int>((kCaptureSamples - sv::Fbank::kFrameLength) / sv::Fbank::kFrameShift);
// Files stream through the PCM buffer; a chunk of 0.1 s keeps the reads few.
constexpr size_t kChunkSamples = sv::Fbank::kSampleRate / 10;
#ifdef SV_TWO_MODELS
constexpr int kWindowFrames =
    TFADVQ_INPUT_FRAMES > SV_M2(INPUT_FRAMES) ? TFADVQ_INPUT_FRAMES : SV_M2(INPUT_FRAMES);
constexpr int kNumOps = TFADVQ_MODEL_NUM_OPS + SV_M2(MODEL_NUM_OPS);  // at most; the union is registered
alignas(16) uint8_t g_arena2[SV_M2(ARENA_BYTES) + SV_ARENA_MARGIN];
#else
constexpr int kWindowFrames = TFADVQ_INPUT_FRAMES;
constexpr int kNumOps = TFADVQ_MODEL_NUM_OPS;
#endif
// The captured frames, and the frames of a file scored in one pass; at least
// one network window (the two-pass fallback's window buffer).
constexpr int kFrameRows = kCaptureFrames > kWindowFrames ? kCaptureFrames : kWindowFrames;

alignas(16) uint8_t g_arena[TFADVQ_ARENA_BYTES + SV_ARENA_MARGIN];
int16_t g_pcm[kChunkSamples];
float g_frames[kFrameRows * sv::Fbank::kNumMelBins];  // shared by the models

int Fail(const char* what, sv::Status status) {
  std::printf("ERR %s %s\n", sv::StatusName(status), what);
  return 1;
}

#define SV_OP_NAME(op) #op,
// The first model's ops, so the second registers only what they lack.
constexpr const char* kFirstOps[] = {TFADVQ_MODEL_OPS(SV_OP_NAME)};

bool IsFirstOp(const char* name) {
  for (const char* op : kFirstOps) {
    if (std::strcmp(op, name) == 0) return true;
  }
  return false;
}

sv::AudioCapture* g_capture = nullptr;
size_t BufferedSamples() { return g_capture->samples(); }
#ifndef SV_HOST
uint64_t Counter() { return platform::Count(); }
#endif

}  // namespace

int main() {
#ifdef SV_TFLM_LOG_CALLBACK
  // TFLM's own messages (a missing op, a small arena) go to the console.
  RegisterDebugLogCallback([](const char* s) { std::fputs(s, stderr); });
#endif
  tflite::InitializeTarget();
  static tflite::MicroMutableOpResolver<kNumOps> resolver;
#define SV_ADD_OP(op) \
  if (resolver.Add##op() != kTfLiteOk) return Fail("op resolver: " #op, sv::Status::kInterpreterError);
  TFADVQ_MODEL_OPS(SV_ADD_OP)
#ifdef SV_TWO_MODELS
#define SV_ADD_OP2(op) \
  if (!IsFirstOp(#op) && resolver.Add##op() != kTfLiteOk) {                      \
    return Fail("op resolver: " #op, sv::Status::kInterpreterError);             \
  }
  SV_M2(MODEL_OPS)(SV_ADD_OP2)
#undef SV_ADD_OP2
#else
  (void)IsFirstOp;
#endif
#undef SV_ADD_OP

  static sv::ModelRunner runner(sv::ModelSpec{
      "main", g_model, g_model_len, TFADVQ_MODEL_BYTES, TFADVQ_MODEL_VERSION,
      SV_EXPECTED_MODEL_VERSION, TFADVQ_INPUT_FRAMES, TFADVQ_NUM_MEL_BINS, TFADVQ_EMBED_DIM,
      g_arena, sizeof(g_arena)});
  sv::Status status = runner.Init(resolver);
  if (status != sv::Status::kOk) return Fail("model", status);

  static sv::EnrollmentStore store(platform::StoreMedium(0), sv::ModelIdFromSha256(TFADVQ_MODEL_SHA256),
                                   TFADVQ_EMBED_DIM);
  const sv::Status store_status = store.Load();  // a bad store is reported, not fatal
  static const sv::Fbank fbank;
  sv::AudioLimits limits;
  limits.max_samples = kMaxSamples;
  limits.keep_first_samples = SV_TRUNCATE_LONG_AUDIO != 0;
  static sv::AudioCapture capture(&fbank, g_frames, kCaptureFrames, limits);
  g_capture = &capture;
  const sv::VerifierBuffers buffers{g_pcm, kChunkSamples, g_frames, kFrameRows, &capture};
  static sv::Verifier verifier(&fbank, &runner, &store, SV_THRESHOLD, buffers, limits, SV_HOP_FRAMES);
  std::printf("READY model_version=%d bytes=%u arena_used=%u arena=%u threshold=%.4f window=%d hop=%d "
              "max_seconds=%d capture_seconds=%d store=%s counter=%s\n",
              TFADVQ_MODEL_VERSION, g_model_len, static_cast<unsigned>(runner.arena_used_bytes()),
              static_cast<unsigned>(sizeof(g_arena)), static_cast<double>(SV_THRESHOLD),
              TFADVQ_INPUT_FRAMES, verifier.hop_frames(), SV_MAX_SECONDS, SV_CAPTURE_SECONDS,
              sv::StatusName(store_status),
#ifdef SV_HOST
              "none");
#else
              platform::CountUnitName());
#endif

#ifdef SV_TWO_MODELS
  static sv::ModelRunner runner2(sv::ModelSpec{
      SV_M2_PREFIX, SV_M2_MODEL, SV_M2_MODEL_LEN, SV_M2(MODEL_BYTES), SV_M2(MODEL_VERSION),
      SV_EXPECTED_MODEL_VERSION, SV_M2(INPUT_FRAMES), SV_M2(NUM_MEL_BINS), SV_M2(EMBED_DIM),
      g_arena2, sizeof(g_arena2)});
  status = runner2.Init(resolver);
  if (status != sv::Status::kOk) return Fail("model " SV_M2_PREFIX, status);
  static sv::EnrollmentStore store2(platform::StoreMedium(1), sv::ModelIdFromSha256(SV_M2(MODEL_SHA256)),
                                    SV_M2(EMBED_DIM));
  const sv::Status store2_status = store2.Load();
  static sv::Verifier verifier2(&fbank, &runner2, &store2, SV_M2_THRESHOLD, buffers, limits,
                                SV_M2(SCORING_HOP_FRAMES));
  std::printf("READY " SV_M2_PREFIX " model_version=%d bytes=%u arena_used=%u arena=%u threshold=%.4f "
              "window=%d hop=%d store=%s\n",
              SV_M2(MODEL_VERSION), SV_M2_MODEL_LEN, static_cast<unsigned>(runner2.arena_used_bytes()),
              static_cast<unsigned>(sizeof(g_arena2)), static_cast<double>(SV_M2_THRESHOLD),
              SV_M2(INPUT_FRAMES), verifier2.hop_frames(), sv::StatusName(store2_status));
  static sv::ModelRouter router(&verifier, SV_M2_PREFIX, &verifier2);
#else
  static sv::ModelRouter router(&verifier, "", nullptr);
#endif
  std::fflush(stdout);

  platform::SetCapture(&capture);
  sv::SessionHooks hooks;
  hooks.buffered_samples = BufferedSamples;
#ifndef SV_HOST
  platform::StartCounter();
  hooks.clock = Counter;
  hooks.count_unit = platform::CountUnitName();
#endif
  const int failures = sv::RunSession(&router, stdin, stdout, hooks);
#ifndef SV_HOST
  std::printf("BYE stack_used=%u stack_reserved=%u\n", static_cast<unsigned>(platform::StackHighWater()),
              static_cast<unsigned>(platform::StackReserved()));
#endif
  return failures == 0 ? 0 : 2;
}
