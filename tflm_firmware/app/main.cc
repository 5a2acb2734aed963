// Speaker-verification firmware: TFLM model + the TFLM-free library.
//
// Boot: check the model blob and version, build the interpreter in a static
// arena, check tensor shapes, load the enrollment store; then serve protocol
// lines from stdin (the serial port; semihosting under QEMU) until EOF/quit.
// Build: see README.md ("make firmware-m4 TFLM_DIR=... TFLM_LIB=... MODEL_DIR=...").
#include <cstdio>

#include "fbank.h"
#include "file_medium.h"
#include "model_check.h"
#include "model_config.h"
#include "model_data.h"
#include "model_ops.h"
#include "model_runner.h"
#include "session.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "verifier.h"
#ifdef SV_HAVE_SYSTICK
#include "systick.h"
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
#ifndef SV_MAX_SECONDS
#define SV_MAX_SECONDS 6
#endif
#ifndef SV_STORE_PATH
#define SV_STORE_PATH "sv_store.bin"
#endif

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
static_assert(TFADVQ_EMBED_DIM <= sv::kMaxEmbedding, "raise SV_MAX_EMBEDDING");
static_assert(SV_HOP_FRAMES >= 1, "scoring hop: at least one frame");
#ifdef TFADVQ_SCORING_WINDOW_FRAMES
// The thresholds were calibrated with this window; the network's input is the
// only window the firmware can run.
static_assert(TFADVQ_SCORING_WINDOW_FRAMES == TFADVQ_INPUT_FRAMES,
              "scoring window differs from the model's input frames");
#endif

namespace {

constexpr size_t kMaxSamples = static_cast<size_t>(SV_MAX_SECONDS) * sv::Fbank::kSampleRate;

alignas(16) uint8_t g_arena[TFADVQ_ARENA_BYTES + SV_ARENA_MARGIN];
int16_t g_pcm[kMaxSamples];
float g_features[TFADVQ_INPUT_FRAMES * sv::Fbank::kNumMelBins];  // one network window
uint8_t g_flash[sv::kStoreMediumBytes];

int Fail(const char* what, sv::Status status) {
  std::printf("ERR %s %s\n", sv::StatusName(status), what);
  return 1;
}

// Instructions of one Invoke() on an all-zero window (SysTick under QEMU
// -icount; the count does not depend on the values), 0 where unmeasured.
unsigned long long MeasureInvoke(sv::ModelRunner* runner, float* embedding) {
#ifdef SV_HAVE_SYSTICK
  platform::StartTickCounter();
  const uint64_t t0 = platform::TickCount();
  runner->Embed(g_features, embedding);
  return (platform::TickCount() - t0) * platform::kInstructionsPerTick;
#else
  runner->Embed(g_features, embedding);
  return 0;
#endif
}

}  // namespace

int main() {
#ifdef SV_TFLM_LOG_CALLBACK
  // TFLM's own messages (a missing op, a small arena) go to the console.
  RegisterDebugLogCallback([](const char* s) { std::fputs(s, stderr); });
#endif
  tflite::InitializeTarget();
  static tflite::MicroMutableOpResolver<TFADVQ_MODEL_NUM_OPS> resolver;
#define SV_ADD_OP(op) \
  if (resolver.Add##op() != kTfLiteOk) return Fail("op resolver: " #op, sv::Status::kInterpreterError);
  TFADVQ_MODEL_OPS(SV_ADD_OP)
#undef SV_ADD_OP

  static sv::ModelRunner runner(sv::ModelSpec{
      "main", g_model, g_model_len, TFADVQ_MODEL_BYTES, TFADVQ_MODEL_VERSION,
      SV_EXPECTED_MODEL_VERSION, TFADVQ_INPUT_FRAMES, TFADVQ_NUM_MEL_BINS, TFADVQ_EMBED_DIM,
      g_arena, sizeof(g_arena)});
  sv::Status status = runner.Init(resolver);
  if (status != sv::Status::kOk) return Fail("model", status);
  float embedding[sv::kMaxEmbedding];
  const unsigned long long invoke_instructions = MeasureInvoke(&runner, embedding);

  static sv::FileMedium medium(SV_STORE_PATH, g_flash, sizeof(g_flash));
  static sv::EnrollmentStore store(&medium, sv::ModelIdFromSha256(TFADVQ_MODEL_SHA256),
                                   TFADVQ_EMBED_DIM);
  const sv::Status store_status = store.Load();  // a bad store is reported, not fatal
  static const sv::Fbank fbank;
  sv::AudioLimits limits;
  limits.max_samples = kMaxSamples;
  static sv::Verifier verifier(&fbank, &runner, &store, SV_THRESHOLD,
                               sv::VerifierBuffers{g_pcm, kMaxSamples, g_features, TFADVQ_INPUT_FRAMES},
                               limits, SV_HOP_FRAMES);
  std::printf("READY model_version=%d bytes=%u arena_used=%u arena=%u invoke_instructions=%llu "
              "threshold=%.4f window=%d hop=%d store=%s\n",
              TFADVQ_MODEL_VERSION, g_model_len, static_cast<unsigned>(runner.arena_used_bytes()),
              static_cast<unsigned>(sizeof(g_arena)), invoke_instructions,
              static_cast<double>(SV_THRESHOLD), TFADVQ_INPUT_FRAMES, verifier.hop_frames(),
              sv::StatusName(store_status));
  std::fflush(stdout);
#ifdef SV_HAVE_SYSTICK
  platform::StartTickCounter();
  const sv::InstructionClock clock = [] { return platform::TickCount() * platform::kInstructionsPerTick; };
#else
  const sv::InstructionClock clock = nullptr;
#endif
  return sv::RunSession(&verifier, stdin, stdout, clock) == 0 ? 0 : 2;
}
