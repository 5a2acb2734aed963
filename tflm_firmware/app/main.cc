// Speaker-verification firmware: TFLM model(s) + the TFLM-free library.
//
// Boot: register the models' ops, then per model check the blob and version,
// build the interpreter in its static arena, check tensor shapes and load its
// enrollment store; then serve protocol lines from the console until
// EOF/quit.  Nothing is run at boot beyond that: the cost of a command is what
// its reply reports (`instructions=` on QEMU, `cycles=` on a board).
//
// With a second model (SV_TWO_MODELS, `make ... MODEL2_DIR=... MODEL2_PREFIX=hi`)
// its lines start with the prefix ("hi verify alice x.wav"); each model has
// its runner, arena and enrollment store (app/models.h describes each by a
// ModelSlot), and one op resolver holds the union of both models' ops.
// Build: see README.md ("make firmware-m4 TFLM_DIR=... TFLM_LIB=... MODEL_DIR=...").
#include <cstdio>
#include <new>

#include "capture.h"
#include "fbank.h"
#include "model_check.h"
#include "model_runner.h"
#include "models.h"
#include "platform.h"
#include "router.h"
#include "session.h"
#include "store.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "verifier.h"
#ifdef SV_TFLM_LOG_CALLBACK  // cortex_m_generic's DebugLog prints only through a callback
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
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
// utterance length, 16 KB a second (int16 codes, lib/fbank.h).  Files up to
// that length are scored in one front-end pass too; longer ones compute the
// frames beyond it once more, so any length is scored; a longer recording is
// scored on its first SV_CAPTURE_SECONDS.  The default, 3 s (or
// SV_MAX_SECONDS if shorter), scores a 3 s verification in one pass within
// 160 KB of RAM with the demo model.  0 = no capture (a file-fed build, e.g.
// QEMU): the frame buffer is then one network window.
#ifndef SV_CAPTURE_SECONDS
#define SV_CAPTURE_SECONDS (SV_MAX_SECONDS < 3 ? SV_MAX_SECONDS : 3)
#endif
// The frames kept for scoring a file in one front-end pass, when more than the
// capture's (and one network window): a file-fed build (SV_CAPTURE_SECONDS=0)
// sized to its RAM budget.  A longer file computes only the frames not kept
// again; 160 B per frame, about 44.7 k instructions saved per frame on the M4.
#ifndef SV_KEPT_FRAMES
#define SV_KEPT_FRAMES 0
#endif
#ifndef SV_TRUNCATE_LONG_AUDIO
#define SV_TRUNCATE_LONG_AUDIO 1
#endif
static_assert(SV_KEPT_FRAMES >= 0, "SV_KEPT_FRAMES: 0 (the capture's frames, at least one window) or more");
static_assert(SV_MAX_SECONDS >= 1, "SV_MAX_SECONDS: at least 1 s (the audio check needs 0.5 s)");
static_assert(SV_CAPTURE_SECONDS >= 0 && SV_CAPTURE_SECONDS <= SV_MAX_SECONDS,
              "SV_CAPTURE_SECONDS: 0 (no capture buffer) up to SV_MAX_SECONDS");

namespace {

constexpr size_t kMaxSamples = static_cast<size_t>(SV_MAX_SECONDS) * sv::Fbank::kSampleRate;
constexpr size_t kCaptureSamples = static_cast<size_t>(SV_CAPTURE_SECONDS) * sv::Fbank::kSampleRate;
constexpr int kCaptureFrames =
    kCaptureSamples < sv::Fbank::kFrameLength
        ? 0 : 1 + static_cast<int>((kCaptureSamples - sv::Fbank::kFrameLength) / sv::Fbank::kFrameShift);
// Files stream through the PCM buffer; a chunk of 0.1 s keeps the reads few.
constexpr size_t kChunkSamples = sv::Fbank::kSampleRate / 10;
// The captured frames, and the frames of a file scored in one pass; at least
// one network window (the two-pass fallback's ring) and SV_KEPT_FRAMES.
constexpr int Max(int a, int b) { return a > b ? a : b; }
constexpr int kFrameRows = Max(Max(kCaptureFrames, kMaxInputFrames), SV_KEPT_FRAMES);

int16_t g_pcm[kChunkSamples];
int16_t g_frames[kFrameRows * sv::Fbank::kNumMelBins];  // kept codes, shared by the models

// One model on the device: its TFLM runner, enrollment store and verifier.
struct Model {
  Model(const ModelSlot& slot, int index, const sv::Fbank* fbank, const sv::VerifierBuffers& buffers,
        const sv::AudioLimits& limits)
      : runner(slot.spec),
        store(platform::StoreMedium(index), sv::ModelIdFromSha256(slot.sha256), slot.spec.embed_dim),
        verifier(fbank, &runner, &store, slot.threshold, buffers, limits, slot.hop_frames) {}
  sv::ModelRunner runner;
  sv::EnrollmentStore store;
  sv::Verifier verifier;
};
alignas(Model) unsigned char g_models[kNumModels][sizeof(Model)];

// "ERR <status> <what>[ <name>]": a boot failure, then the firmware stops.
int Fail(const char* what, const char* name, sv::Status status) {
  std::printf("ERR %s %s%s%s\n", sv::StatusName(status), what, *name != '\0' ? " " : "", name);
  return 1;
}

// Builds model `index` in place: its interpreter (kInterpreterError for a
// missing op or a small arena, the blob checks' errors) and its store, whose
// load status (a bad store is reported, not fatal) goes to `store_status`.
sv::Status SetUpModel(int index, const OpResolver& resolver, const sv::Fbank* fbank,
                      const sv::VerifierBuffers& buffers, const sv::AudioLimits& limits, Model** model,
                      sv::Status* store_status) {
  *model = new (g_models[index]) Model(kSlots[index], index, fbank, buffers, limits);
  const sv::Status status = (*model)->runner.Init(resolver);
  if (status == sv::Status::kOk) *store_status = (*model)->store.Load();
  return status;
}

sv::AudioCapture* g_capture = nullptr;
size_t BufferedSamples() { return g_capture->samples(); }

#ifdef SV_HOST
const char* CounterName() { return "none"; }
void StartCounter(sv::SessionHooks*) {}
void PrintStack() {}
#else
const char* CounterName() { return platform::CountUnitName(); }
uint64_t Counter() { return platform::Count(); }
void StartCounter(sv::SessionHooks* hooks) {
  platform::StartCounter();
  hooks->clock = Counter;
  hooks->count_unit = platform::CountUnitName();
}
void PrintStack() {
  std::printf("BYE stack_used=%u stack_reserved=%u\n", static_cast<unsigned>(platform::StackHighWater()),
              static_cast<unsigned>(platform::StackReserved()));
}
#endif

}  // namespace

int main() {
#ifdef SV_TFLM_LOG_CALLBACK
  // TFLM's own messages (a missing op, a small arena) go to the console.
  RegisterDebugLogCallback([](const char* s) { std::fputs(s, stderr); });
#endif
  tflite::InitializeTarget();
  static OpResolver resolver;
  if (const char* op = RegisterOps(&resolver)) {
    return Fail("op resolver:", op, sv::Status::kInterpreterError);
  }

  static const sv::Fbank fbank;
  sv::AudioLimits limits;
  limits.max_samples = kMaxSamples;
  limits.keep_first_samples = SV_TRUNCATE_LONG_AUDIO != 0;
  static sv::AudioCapture capture(&fbank, g_frames, kCaptureFrames, limits);
  g_capture = &capture;
  const sv::VerifierBuffers buffers{g_pcm, kChunkSamples, g_frames, kFrameRows, &capture};

  Model* models[2] = {nullptr, nullptr};
  for (int i = 0; i < kNumModels; ++i) {
    const ModelSlot& slot = kSlots[i];
    sv::Status store_status = sv::Status::kOk;
    const sv::Status status = SetUpModel(i, resolver, &fbank, buffers, limits, &models[i], &store_status);
    if (status != sv::Status::kOk) return Fail("model", slot.prefix, status);
    std::printf("READY %s%smodel_version=%d bytes=%u arena_used=%u arena=%u threshold=%.4f window=%d hop=%d ",
                slot.prefix, i == 0 ? "" : " ", static_cast<int>(slot.spec.version),
                static_cast<unsigned>(slot.spec.size),
                static_cast<unsigned>(models[i]->runner.arena_used_bytes()),
                static_cast<unsigned>(slot.spec.arena_bytes), static_cast<double>(slot.threshold),
                slot.spec.input_frames, models[i]->verifier.hop_frames());
    if (i == 0) {
      std::printf("max_seconds=%d capture_seconds=%d kept_frames=%d ", SV_MAX_SECONDS, SV_CAPTURE_SECONDS,
                  kFrameRows);
    }
    std::printf("store=%s", sv::StatusName(store_status));
    if (i == 0) std::printf(" counter=%s", CounterName());
    std::printf("\n");
  }
  static sv::ModelRouter router(&models[0]->verifier, kNumModels > 1 ? kSlots[kNumModels - 1].prefix : "",
                                kNumModels > 1 ? &models[kNumModels - 1]->verifier : nullptr);
  std::fflush(stdout);

  platform::SetCapture(&capture);
  sv::SessionHooks hooks;
  hooks.buffered_samples = BufferedSamples;
  StartCounter(&hooks);
  const int failures = sv::RunSession(&router, stdin, stdout, hooks);
  PrintStack();
  return failures == 0 ? 0 : 2;
}
