// Protocol parsing, audio checks, WAV input and the enroll/verify pipeline
// with a deterministic stand-in for the network.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "audio_check.h"
#include "capture.h"
#include "harness.h"
#include "pcm_io.h"
#include "protocol.h"
#include "router.h"
#include "schedule_table.h"
#include "scoring.h"
#include "session.h"
#include "verifier.h"
#include "window_schedule.h"

namespace {

constexpr int kDim = sv::Fbank::kNumMelBins;
constexpr int kWindow = 50;
constexpr int kMaxWindow = 200;  // the largest input_frames() a test sets
constexpr size_t kSeconds2 = 32000;

// The stand-in network: per-mel-bin standard deviation over the window.
void StdDevOverWindow(const float* features, int window, float* embedding) {
  for (int d = 0; d < kDim; ++d) {
    float sum = 0.0f;
    float sq = 0.0f;
    for (int t = 0; t < window; ++t) {
      const float v = features[t * kDim + d];
      sum += v;
      sq += v * v;
    }
    const float mean = sum / window;
    embedding[d] = std::sqrt(std::fmax(sq / window - mean * mean, 0.0f));
  }
}

// Voices made of different tone bursts have different spectral dynamics, so
// it separates them the way a real embedding would, with no TFLM.  It keeps
// the first windows and every output, and can check each window's rows
// against the frames the schedule says it must hold.
class StdDevEmbedder : public sv::Embedder {
 public:
  int input_frames() const override { return window; }
  int embedding_size() const override { return kDim; }
  sv::Status Embed(const sv::WindowRows& rows, float* embedding) override {
    rows.CopyTo(window, features);
    if (calls < kKeep && window == kWindow) std::memcpy(seen[calls], features, sizeof(seen[0]));
    if (expect_frames > 0) CheckRows(features);
    StdDevOverWindow(features, window, embedding);
    if (calls < kMaxCalls) std::memcpy(outputs[calls], embedding, sizeof(outputs[0]));
    ++calls;
    return sv::Status::kOk;
  }
  // Expect window k to be rows (expect_starts[k] + t) mod frames of `whole`.
  void Expect(const float* whole, int frames, const int* starts, int count) {
    expect_whole = whole;
    expect_frames = frames;
    expect_starts = starts;
    expect_count = count;
    wrong_rows = 0;
    calls = 0;
  }
  void Reset() {
    window = kWindow;
    expect_frames = 0;
    calls = 0;
  }
  static constexpr int kKeep = 4;
  static constexpr int kMaxCalls = 32;
  int window = kWindow;
  int calls = 0;
  int wrong_rows = 0;  // rows (or calls beyond the schedule) that differ from Expect()
  float seen[kKeep][kWindow * kDim];  // the first windows it was given (at kWindow)
  float outputs[kMaxCalls][kDim];

 private:
  float features[kMaxWindow * kDim];  // the window as the network reads it
  void CheckRows(const float* features) {
    if (calls >= expect_count) {
      ++wrong_rows;
      return;
    }
    for (int t = 0; t < window; ++t) {
      const int frame = (expect_starts[calls] + t) % expect_frames;
      if (std::memcmp(features + t * kDim, expect_whole + frame * kDim, sizeof(float) * kDim) != 0) {
        ++wrong_rows;
      }
    }
  }
  const float* expect_whole = nullptr;
  int expect_frames = 0;
  const int* expect_starts = nullptr;
  int expect_count = 0;
};

// A "voice": 120 ms bursts of two tones separated by 80 ms of low noise.
void Voice(float f1, float f2, uint32_t seed, int16_t* out, size_t n, float gain = 6000.0f) {
  uint32_t state = seed;
  for (size_t i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    const float noise = (static_cast<float>(state >> 16) - 32768.0f) / 32768.0f * 100.0f;
    const float t = static_cast<float>(i) / 16000.0f;
    const bool on = (i % 3200) < 1920;
    const float tone = on ? gain * (std::sin(6.2831853f * f1 * t) +
                                    0.5f * std::sin(6.2831853f * f2 * t + seed % 7))
                          : 0.0f;
    out[i] = static_cast<int16_t>(tone + noise);
  }
}

struct Rig {
  static constexpr size_t kPcmSamples = 16000 * 5;
  int16_t pcm[kPcmSamples];
  int16_t features[kMaxWindow * sv::Fbank::kNumMelBins];  // kept frames
  uint8_t flash[sv::kStoreMediumBytes];
  sv::Fbank fbank;
  StdDevEmbedder embedder;
  sv::RamMedium medium{flash, sizeof(flash)};
  sv::EnrollmentStore store{&medium, 42u, kDim};
  sv::VerifierBuffers buffers{pcm, kPcmSamples, features, kMaxWindow};
  sv::Verifier verifier{&fbank, &embedder, &store, 0.95f, buffers, sv::AudioLimits{}};
  Rig() {
    std::memset(flash, 0xFF, sizeof(flash));
    store.Load();
  }
};

Rig& FreshRig() {
  static Rig rig;
  std::memset(rig.flash, 0xFF, sizeof(rig.flash));
  rig.store.Load();
  rig.embedder.Reset();
  return rig;
}

}  // namespace

TEST(parse_commands) {
  sv::Command c;
  CHECK_STATUS(sv::ParseCommand("enroll alice /tmp/a.wav\r\n", &c), sv::Status::kOk);
  CHECK(c.type == sv::CommandType::kEnroll);
  CHECK(std::strcmp(c.name, "alice") == 0 && std::strcmp(c.path, "/tmp/a.wav") == 0);
  CHECK_STATUS(sv::ParseCommand("  verify  Bob_2   @buffer ", &c), sv::Status::kOk);
  CHECK(c.type == sv::CommandType::kVerify && std::strcmp(c.name, "Bob_2") == 0);
  CHECK_STATUS(sv::ParseCommand("delete bob", &c), sv::Status::kOk);
  CHECK(c.type == sv::CommandType::kDelete);
  CHECK_STATUS(sv::ParseCommand("list", &c), sv::Status::kOk);
  CHECK(c.type == sv::CommandType::kList);
  CHECK_STATUS(sv::ParseCommand("format", &c), sv::Status::kOk);
}

TEST(parse_rejects_malformed_lines) {
  sv::Command c;
  CHECK_STATUS(sv::ParseCommand("", &c), sv::Status::kParseError);
  CHECK_STATUS(sv::ParseCommand("   \n", &c), sv::Status::kParseError);
  CHECK_STATUS(sv::ParseCommand("erase alice", &c), sv::Status::kUnknownCommand);
  CHECK_STATUS(sv::ParseCommand("enroll alice", &c), sv::Status::kParseError);
  CHECK_STATUS(sv::ParseCommand("list extra", &c), sv::Status::kParseError);
  CHECK_STATUS(sv::ParseCommand("delete a b c d e", &c), sv::Status::kParseError);
  CHECK_STATUS(sv::ParseCommand("delete al/ice", &c), sv::Status::kBadName);
  CHECK_STATUS(sv::ParseCommand("delete abcdefghijklmnop", &c), sv::Status::kBadName);
  char long_line[400];
  std::memset(long_line, 'x', sizeof(long_line) - 1);
  long_line[sizeof(long_line) - 1] = '\0';
  std::memcpy(long_line, "enroll a ", 9);
  CHECK_STATUS(sv::ParseCommand(long_line, &c), sv::Status::kParseError);
  char long_path[200] = "verify a ";
  std::memset(long_path + 9, 'p', 150);
  CHECK_STATUS(sv::ParseCommand(long_path, &c), sv::Status::kParseError);
}

TEST(audio_checks) {
  static int16_t pcm[16000];
  const sv::AudioLimits limits;
  Voice(300.0f, 1200.0f, 1, pcm, 16000);
  CHECK_STATUS(sv::CheckAudio(pcm, 16000, limits), sv::Status::kOk);
  CHECK_STATUS(sv::CheckAudio(pcm, 4000, limits), sv::Status::kAudioTooShort);
  CHECK_STATUS(sv::CheckAudio(pcm, limits.max_samples + 1, limits), sv::Status::kAudioTooLong);
  for (int16_t& x : pcm) x = static_cast<int16_t>(x / 1000 + 500);  // quiet, with DC
  CHECK_STATUS(sv::CheckAudio(pcm, 16000, limits), sv::Status::kAudioSilent);
  Voice(300.0f, 1200.0f, 1, pcm, 16000, 40000.0f);  // overdriven
  for (int16_t& x : pcm) x = static_cast<int16_t>(x > 32000 ? 32767 : (x < -32000 ? -32768 : x));
  CHECK_STATUS(sv::CheckAudio(pcm, 16000, limits), sv::Status::kAudioClipped);
}

TEST(wav_parse_and_file_round_trip) {
  static uint8_t wav[44 + 2 * 1000];
  static const uint8_t header[44] = {
      'R', 'I', 'F', 'F', 0xFC, 0x07, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ', 16, 0, 0, 0,
      1, 0, 1, 0, 0x80, 0x3E, 0, 0, 0, 0x7D, 0, 0, 2, 0, 16, 0, 'd', 'a', 't', 'a', 0xD0, 0x07, 0, 0};
  std::memcpy(wav, header, sizeof(header));
  for (int i = 0; i < 1000; ++i) {
    const int16_t v = static_cast<int16_t>(i * 7 - 3000);
    wav[44 + 2 * i] = static_cast<uint8_t>(v & 0xFF);
    wav[45 + 2 * i] = static_cast<uint8_t>((v >> 8) & 0xFF);
  }
  sv::WavView view{};
  CHECK_STATUS(sv::ParseWav(wav, sizeof(wav), &view), sv::Status::kOk);
  CHECK_EQ(view.num_samples, 1000u);
  CHECK_EQ(view.samples[999], 999 * 7 - 3000);
  CHECK_STATUS(sv::ParseWav(wav, sizeof(wav) - 2, &view), sv::Status::kBadWav);  // truncated data
  wav[22] = 2;  // stereo
  CHECK_STATUS(sv::ParseWav(wav, sizeof(wav), &view), sv::Status::kBadWav);
  wav[22] = 1;
  CHECK_STATUS(sv::ParseWav(wav + 4, sizeof(wav) - 4, &view), sv::Status::kBadWav);  // garbage

  const char* path = "sv_test_roundtrip.wav";
  FILE* f = std::fopen(path, "wb");
  CHECK(f != nullptr);
  if (f == nullptr) return;
  std::fwrite(wav, 1, sizeof(wav), f);
  std::fclose(f);
  static int16_t pcm[1000];
  size_t n = 0;
  CHECK_STATUS(sv::LoadPcmFile(path, pcm, 1000, &n), sv::Status::kOk);
  CHECK_EQ(n, 1000u);
  CHECK_EQ(pcm[10], 10 * 7 - 3000);
  CHECK_STATUS(sv::LoadPcmFile(path, pcm, 999, &n), sv::Status::kAudioTooLong);
  std::remove(path);
  CHECK_STATUS(sv::LoadPcmFile("no/such/file.wav", pcm, 1000, &n), sv::Status::kIoError);
}

TEST(cosine_scoring) {
  const float a[3] = {1.0f, 0.0f, 0.0f};
  const float b[3] = {1.0f, 1.0f, 0.0f};
  const float zero[3] = {0.0f, 0.0f, 0.0f};
  CHECK_NEAR(sv::CosineScore(a, b, 3), 1.0 / std::sqrt(2.0), 1e-6);
  CHECK_NEAR(sv::CosineScore(a, zero, 3), 0.0, 0.0);
  CHECK(sv::Decide(a, b, 3, 0.7f).accepted);
  CHECK(!sv::Decide(a, b, 3, 0.71f).accepted);
}

TEST(enroll_and_verify_two_speakers) {
  Rig& rig = FreshRig();
  for (uint32_t utt = 0; utt < 2; ++utt) {
    Voice(300.0f, 1200.0f, 10 + utt, rig.pcm, kSeconds2);
    CHECK_STATUS(rig.verifier.Enroll("alice", rig.pcm, kSeconds2), sv::Status::kOk);
    Voice(700.0f, 2600.0f, 20 + utt, rig.pcm, kSeconds2);
    CHECK_STATUS(rig.verifier.Enroll("bob", rig.pcm, kSeconds2), sv::Status::kOk);
  }
  sv::Decision same{};
  sv::Decision other{};
  Voice(300.0f, 1200.0f, 99, rig.pcm, kSeconds2);
  CHECK_STATUS(rig.verifier.Verify("alice", rig.pcm, kSeconds2, &same), sv::Status::kOk);
  CHECK_STATUS(rig.verifier.Verify("bob", rig.pcm, kSeconds2, &other), sv::Status::kOk);
  CHECK(same.accepted);
  CHECK(!other.accepted);
  CHECK(same.score > other.score + 0.1f);
  CHECK_STATUS(rig.verifier.Verify("carol", rig.pcm, kSeconds2, &same), sv::Status::kUnknownSpeaker);
}

TEST(embedding_averages_windows_over_the_whole_utterance) {
  Rig& rig = FreshRig();
  Voice(300.0f, 1200.0f, 5, rig.pcm, kSeconds2);  // 198 frames -> 4 windows of 50
  float e[kDim];
  rig.embedder.calls = 0;
  CHECK_STATUS(rig.verifier.EmbedUtterance(rig.pcm, kSeconds2, e), sv::Status::kOk);
  CHECK_EQ(rig.embedder.calls, 4);
  float norm = 0.0f;
  for (float v : e) norm += v * v;
  CHECK_NEAR(norm, 1.0, 1e-5);
  // The windows are exactly the rows of the whole-utterance features, the
  // last one aligned to the end.
  static float whole[198 * kDim];
  int frames = 0;
  CHECK_STATUS(rig.fbank.Compute(rig.pcm, kSeconds2, whole, 198, &frames, sv::Features::kKept), sv::Status::kOk);
  CHECK_EQ(frames, 198);
  const int starts[4] = {0, 50, 100, 148};
  for (int w = 0; w < 4; ++w) {
    CHECK(std::memcmp(rig.embedder.seen[w], whole + starts[w] * kDim, sizeof(rig.embedder.seen[w])) == 0);
  }
  CHECK_EQ(rig.verifier.hop_frames(), kWindow);  // no hop given: back-to-back windows
  // Under 0.5 s is refused before any compute.
  rig.embedder.calls = 0;
  CHECK_STATUS(rig.verifier.EmbedUtterance(rig.pcm, 7999, e), sv::Status::kAudioTooShort);
  CHECK_EQ(rig.embedder.calls, 0);
}

namespace {

// An utterance whose spectrum changes every 150 ms, so windows at different
// starts see different frames (the periodic Voice could hide a wrong schedule).
void Changing(uint32_t seed, int16_t* out, size_t n) {
  constexpr size_t kSegment = 2400;
  uint32_t j = 0;
  for (size_t offset = 0; offset < n; offset += kSegment, ++j) {
    const size_t len = n - offset < kSegment ? n - offset : kSegment;
    Voice(220.0f + 97.0f * ((j + seed) % 7), 900.0f + 331.0f * ((3 * j + seed) % 5), seed + j,
          out + offset, len);
  }
}

// The most samples that still give exactly `frames` fbank frames.
size_t SamplesFor(int frames) {
  return sv::Fbank::kFrameLength + static_cast<size_t>(frames) * sv::Fbank::kFrameShift - 1;
}

// L2-normalised sum of the L2-normalised e[0..count-1], in double.
void NormalisedSum(const float (*e)[kDim], int count, double* out) {
  for (int d = 0; d < kDim; ++d) out[d] = 0.0;
  for (int k = 0; k < count; ++k) {
    double norm = 0.0;
    for (int d = 0; d < kDim; ++d) norm += static_cast<double>(e[k][d]) * e[k][d];
    norm = std::sqrt(norm);
    for (int d = 0; d < kDim; ++d) out[d] += norm > 0.0 ? e[k][d] / norm : 0.0;
  }
  double norm = 0.0;
  for (int d = 0; d < kDim; ++d) norm += out[d] * out[d];
  norm = std::sqrt(norm);
  for (int d = 0; d < kDim; ++d) out[d] = norm > 0.0 ? out[d] / norm : 0.0;
}

// The schedule applied by hand to the whole utterance's features: window k
// is rows (starts[k] + t) mod frames, embedded by the stand-in network.
void ReferenceEmbedding(const float* whole, int frames, int window, const int* starts, int count,
                        double* out) {
  static float rows[kMaxWindow * kDim];
  static float windows[StdDevEmbedder::kMaxCalls][kDim];
  for (int k = 0; k < count && k < StdDevEmbedder::kMaxCalls; ++k) {
    for (int t = 0; t < window; ++t) {
      std::memcpy(rows + t * kDim, whole + ((starts[k] + t) % frames) * kDim, sizeof(float) * kDim);
    }
    StdDevOverWindow(rows, window, windows[k]);
  }
  NormalisedSum(windows, count < StdDevEmbedder::kMaxCalls ? count : StdDevEmbedder::kMaxCalls, out);
}

double MaxAbsDiff(const float* a, const double* b) {
  double m = 0.0;
  for (int d = 0; d < kDim; ++d) m = std::fmax(m, std::fabs(a[d] - b[d]));
  return m;
}

double MaxAbsDiff(const double* a, const double* b) {
  double m = 0.0;
  for (int d = 0; d < kDim; ++d) m = std::fmax(m, std::fabs(a[d] - b[d]));
  return m;
}

// Float pipeline vs the double-precision reference: float32 rounding of
// unit-vector components is ~1e-7 per step; a wrong window or weight moves
// them by > 1e-3 (checked below for one case).
constexpr double kEmbeddingTolerance = 1e-5;

float g_whole[(Rig::kPcmSamples / sv::Fbank::kFrameShift) * kDim];

// One case of the shared schedule table (tests/window_schedule.txt) set up on ``rig``: false when the rig
// cannot run it (below the 0.5 s minimum, beyond its buffers or the embedder's calls); else its audio is
// in rig.pcm (*samples long), its one-shot frames in g_whole and the embedder's window is the case's.
bool SetUpScheduleCase(Rig& rig, const th::ScheduleCase& c, size_t* samples) {
  *samples = SamplesFor(c.frames);
  if (c.window > kMaxWindow || *samples < 8000 || *samples > Rig::kPcmSamples) return false;
  if (c.count > StdDevEmbedder::kMaxCalls) return false;
  Changing(static_cast<uint32_t>(c.line), rig.pcm, *samples);
  int frames = 0;
  CHECK_STATUS(rig.fbank.Compute(rig.pcm, *samples, g_whole, c.frames, &frames, sv::Features::kKept),
               sv::Status::kOk);
  CHECK_EQ(frames, c.frames);
  rig.embedder.window = c.window;
  return true;
}

}  // namespace

TEST(short_utterance_is_wrapped_to_fill_the_window) {
  Rig& rig = FreshRig();
  Changing(7, rig.pcm, 8000);  // 0.5 s, the shortest CheckAudio passes: 48 frames
  int frames = 0;
  CHECK_STATUS(rig.fbank.Compute(rig.pcm, 8000, g_whole, 48, &frames, sv::Features::kKept), sv::Status::kOk);
  CHECK_EQ(frames, 48);
  static const int kWindows[2] = {kWindow, 120};  // 2 rows wrap; 2.5 times round
  for (int window : kWindows) {
    const th::ScheduleCase* c = th::FindScheduleCase(48, window, window);
    CHECK(c != nullptr);
    if (c == nullptr) continue;
    rig.embedder.window = window;
    rig.embedder.Expect(g_whole, 48, c->starts, c->count);
    float e[kDim];
    CHECK_STATUS(rig.verifier.EmbedUtterance(rig.pcm, 8000, e), sv::Status::kOk);
    CHECK_EQ(rig.embedder.calls, 1);
    CHECK_EQ(rig.embedder.wrong_rows, 0);  // row t is frame t mod 48, bit for bit
    double ref[kDim];
    ReferenceEmbedding(g_whole, 48, window, c->starts, c->count, ref);
    CHECK(MaxAbsDiff(e, ref) < kEmbeddingTolerance);
  }
  rig.embedder.Reset();
  // Through the protocol: enrolled, not refused.
  char reply[160];
  CHECK_STATUS(rig.verifier.HandleLine("enroll alice @buffer", 8000, reply, sizeof(reply)),
               sv::Status::kOk);
  CHECK(std::strcmp(reply, "OK enrolled alice utterances=1") == 0);
}

TEST(embedding_follows_the_shared_window_schedule) {
  Rig& rig = FreshRig();
  int n = 0;
  const th::ScheduleCase* cases = th::ScheduleCases(&n);
  CHECK(cases != nullptr);
  int tested = 0;
  int wrapped = 0;
  int overlapping = 0;
  for (int i = 0; i < n; ++i) {
    const th::ScheduleCase& c = cases[i];
    size_t samples = 0;
    if (!SetUpScheduleCase(rig, c, &samples)) continue;
    sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f, rig.buffers,
                          sv::AudioLimits{}, c.hop);
    CHECK_EQ(verifier.hop_frames(), c.hop);
    rig.embedder.Expect(g_whole, c.frames, c.starts, c.count);
    float e[kDim];
    const sv::Status status = verifier.EmbedUtterance(rig.pcm, samples, e);
    double ref[kDim];
    ReferenceEmbedding(g_whole, c.frames, c.window, c.starts, c.count, ref);
    double averaged[kDim];  // of what the network returned for each window
    NormalisedSum(rig.embedder.outputs, rig.embedder.calls < StdDevEmbedder::kMaxCalls
                                            ? rig.embedder.calls : StdDevEmbedder::kMaxCalls,
                  averaged);
    const bool ok = status == sv::Status::kOk && rig.embedder.calls == c.count &&
                    rig.embedder.wrong_rows == 0 && MaxAbsDiff(e, ref) < kEmbeddingTolerance &&
                    MaxAbsDiff(e, averaged) < kEmbeddingTolerance;
    if (!ok) {
      std::printf("  window_schedule.txt:%d (%d %d %d): status %s, %d calls for %d windows, "
                  "%d wrong rows, err vs reference %.3g, vs average %.3g\n",
                  c.line, c.frames, c.window, c.hop, sv::StatusName(status), rig.embedder.calls,
                  c.count, rig.embedder.wrong_rows, MaxAbsDiff(e, ref), MaxAbsDiff(e, averaged));
    }
    CHECK(ok);
    ++tested;
    wrapped += c.frames < c.window;
    overlapping += c.hop < c.window && c.count > 2;
  }
  CHECK(tested >= 15 && wrapped >= 3 && overlapping >= 3);
  // The tolerance tells schedules apart: overlapping vs back-to-back windows.
  const th::ScheduleCase* a = th::FindScheduleCase(198, kWindow, 20);
  const th::ScheduleCase* b = th::FindScheduleCase(198, kWindow, kWindow);
  CHECK(a != nullptr && b != nullptr);
  if (a != nullptr && b != nullptr) {
    Changing(1, rig.pcm, SamplesFor(198));
    int frames = 0;
    CHECK_STATUS(rig.fbank.Compute(rig.pcm, SamplesFor(198), g_whole, 198, &frames, sv::Features::kKept),
                 sv::Status::kOk);
    double ra[kDim];
    double rb[kDim];
    ReferenceEmbedding(g_whole, 198, kWindow, a->starts, a->count, ra);
    ReferenceEmbedding(g_whole, 198, kWindow, b->starts, b->count, rb);
    CHECK(MaxAbsDiff(ra, rb) > 100 * kEmbeddingTolerance);
  }
  rig.embedder.Reset();
}

namespace {

int16_t g_raw[(Rig::kPcmSamples / sv::Fbank::kFrameShift) * kDim];

// Streams pcm[n] in pseudo-random chunks (empty, tiny, around a frame, several
// frames) into `stream` + `store` and `stats`, as DMA blocks or file reads would.
sv::Status StreamInChunks(const int16_t* pcm, size_t n, uint32_t seed, sv::FbankStream* stream,
                          sv::FrameStore* store, sv::AudioStats* stats,
                          const sv::AudioLimits& limits) {
  uint32_t state = seed;
  for (size_t pushed = 0; pushed < n;) {
    state = state * 1664525u + 1013904223u;
    const uint32_t r = state >> 8;
    size_t take = r % 4 == 0 ? r % 3 : 1 + (r >> 4) % 1500;
    if (take > n - pushed) take = n - pushed;
    stats->Add(pcm + pushed, take, limits);
    const sv::Status status = stream->Push(pcm + pushed, take, store);
    if (status != sv::Status::kOk) return status;
    pushed += take;
  }
  return sv::Status::kOk;
}

}  // namespace

TEST(streamed_audio_gives_the_one_shot_embedding_on_the_shared_schedule) {
  Rig& rig = FreshRig();
  int n = 0;
  const th::ScheduleCase* cases = th::ScheduleCases(&n);
  CHECK(cases != nullptr);
  const int capacity = static_cast<int>(sizeof(g_raw) / sizeof(g_raw[0]) / kDim);
  sv::FbankStream stream(&rig.fbank);
  int tested = 0;
  for (int i = 0; i < n; ++i) {
    const th::ScheduleCase& c = cases[i];
    size_t samples = 0;
    if (!SetUpScheduleCase(rig, c, &samples)) continue;
    sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f, rig.buffers,
                          sv::AudioLimits{}, c.hop);
    float one_shot[kDim];
    CHECK_STATUS(verifier.EmbedUtterance(rig.pcm, samples, one_shot), sv::Status::kOk);

    stream.Reset();
    sv::FrameStore store(g_raw, capacity);
    sv::AudioStats stats;
    const sv::AudioLimits limits;
    CHECK_STATUS(StreamInChunks(rig.pcm, samples, 1000u + c.line, &stream, &store, &stats, limits),
                 sv::Status::kOk);
    CHECK_STATUS(sv::CheckAudioStats(stats, limits), sv::CheckAudio(rig.pcm, samples, limits));
    CHECK_EQ(stream.frames(), c.frames);
    float mean[kDim];
    stream.Mean(mean);
    rig.embedder.Expect(g_whole, c.frames, c.starts, c.count);  // rows bit for bit, in schedule order
    float streamed[kDim];
    const sv::Status status = verifier.EmbedFrames(store.rows(), stream.frames(), mean, streamed);
    const bool ok = status == sv::Status::kOk && rig.embedder.calls == c.count &&
                    rig.embedder.wrong_rows == 0 &&
                    std::memcmp(streamed, one_shot, sizeof(streamed)) == 0;
    if (!ok) {
      std::printf("  window_schedule.txt:%d (%d %d %d) streamed: status %s, %d calls for %d windows, "
                  "%d wrong rows, embedding %s\n", c.line, c.frames, c.window, c.hop,
                  sv::StatusName(status), rig.embedder.calls, c.count, rig.embedder.wrong_rows,
                  std::memcmp(streamed, one_shot, sizeof(streamed)) == 0 ? "equal" : "differs");
    }
    CHECK(ok);

    // Replayable audio (a file) needs no frame store: a first streamed pass
    // gives T and the mean, a second streams the frames straight into the
    // windows, each window embedded as soon as its last frame is in.
    stream.Reset();
    sv::AudioStats unused;
    CHECK_STATUS(StreamInChunks(rig.pcm, samples, 2000u + c.line, &stream, nullptr, &unused, limits),
                 sv::Status::kOk);
    stream.Mean(mean);
    const int total = stream.frames();
    float replayed[kDim];
    sv::WindowAssembler windows(&rig.embedder, rig.features, c.window, 0, total, c.window, c.hop, mean,
                                replayed);
    rig.embedder.Expect(g_whole, c.frames, c.starts, c.count);
    CHECK_STATUS(windows.Finish(), sv::Status::kBadArgument);  // no frame yet
    stream.Reset();
    int early = 0;  // windows embedded later than the push that completed them
    uint32_t state = 3000u + c.line;
    for (size_t pushed = 0; pushed < samples;) {
      state = state * 1664525u + 1013904223u;
      size_t take = 1 + (state >> 8) % 700;
      if (take > samples - pushed) take = samples - pushed;
      CHECK_STATUS(stream.Push(rig.pcm + pushed, take, &windows), sv::Status::kOk);
      pushed += take;
      int done = 0;  // windows whose last frame is in
      for (int k = 0; k < c.count; ++k) {
        const int last = c.frames < c.window ? c.frames - 1 : c.starts[k] + c.window - 1;
        done += last < stream.frames();
      }
      early += rig.embedder.calls != done;
    }
    CHECK_STATUS(windows.Finish(), sv::Status::kOk);
    CHECK_EQ(early, 0);
    CHECK_EQ(rig.embedder.calls, c.count);
    CHECK_EQ(rig.embedder.wrong_rows, 0);
    CHECK(std::memcmp(replayed, one_shot, sizeof(replayed)) == 0);
    ++tested;
  }
  CHECK(tested >= 15);
  rig.embedder.Reset();
}

TEST(one_pass_and_two_passes_give_the_same_embedding_on_the_shared_schedule) {
  Rig& rig = FreshRig();
  int n = 0;
  const th::ScheduleCase* cases = th::ScheduleCases(&n);
  CHECK(cases != nullptr);
  const int capacity = static_cast<int>(sizeof(g_raw) / sizeof(g_raw[0]) / kDim);
  static int16_t ring[sizeof(g_raw) / sizeof(g_raw[0])];
  int two_pass = 0;  // cases longer than one window: the small buffers take two passes
  for (int i = 0; i < n; ++i) {
    const th::ScheduleCase& c = cases[i];
    size_t samples = 0;
    if (!SetUpScheduleCase(rig, c, &samples) || c.frames > capacity) continue;
    const sv::AudioLimits limits;
    // Every frame kept: one pass.  One window: two passes, every frame computed
    // twice.  Between: the second pass computes only the frames not kept.
    const int between = c.frames > c.window + 1 ? (c.window + c.frames) / 2 : c.window;
    const sv::VerifierBuffers buffers[] = {{rig.pcm, Rig::kPcmSamples, g_raw, capacity},
                                           {rig.pcm, Rig::kPcmSamples, rig.features, c.window},
                                           {rig.pcm, Rig::kPcmSamples, ring, between}};
    float e[3][kDim];
    for (int b = 0; b < 3; ++b) {
      sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f, buffers[b], limits, c.hop);
      rig.embedder.Expect(g_whole, c.frames, c.starts, c.count);
      CHECK_STATUS(verifier.EmbedUtterance(rig.pcm, samples, e[b]), sv::Status::kOk);
      CHECK_EQ(rig.embedder.calls, c.count);
      CHECK_EQ(rig.embedder.wrong_rows, 0);
    }
    CHECK(std::memcmp(e[0], e[1], sizeof(e[0])) == 0);
    CHECK(std::memcmp(e[0], e[2], sizeof(e[0])) == 0);
    two_pass += c.frames > c.window + 1;
  }
  CHECK(two_pass >= 10);
  rig.embedder.Reset();
}

namespace {

// Pushes pcm[n] into `capture` in DMA half-blocks of 256 samples.
void PushBlocks(sv::AudioCapture* capture, const int16_t* pcm, size_t n) {
  for (size_t i = 0; i < n; i += 256) capture->Push(pcm + i, n - i < 256 ? n - i : 256);
}

// The stored speaker model of `name` (its utterances' mean embedding).
const float* Model(const sv::EnrollmentStore& store, const char* name) {
  const float* mean = nullptr;
  uint32_t utterances = 0;
  return store.Find(name, &mean, &utterances) == sv::Status::kOk ? mean : nullptr;
}

}  // namespace

TEST(capture_computes_frames_as_audio_arrives_and_scores_them_as_the_utterance) {
  Rig& rig = FreshRig();
  Voice(250.0f, 900.0f, 11, rig.pcm, kSeconds2);
  const sv::AudioLimits limits;
  char reply[160];
  // A buffer for 2 s of frames: the whole utterance, scored in one pass.
  const int whole = sv::FbankNumFrames(kSeconds2);
  sv::AudioCapture capture(&rig.fbank, g_raw, whole, limits);
  sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                        sv::VerifierBuffers{rig.pcm, 1000, g_raw, whole, &capture}, limits);
  CHECK_STATUS(verifier.HandleLine("enroll alice @buffer", 0, reply, sizeof(reply)), sv::Status::kAudioTooShort);
  PushBlocks(&capture, rig.pcm, kSeconds2);
  CHECK_EQ(capture.samples(), kSeconds2);
  CHECK_EQ(capture.dropped(), 0u);
  CHECK_EQ(capture.frames(), whole);
  CHECK_STATUS(verifier.HandleLine("enroll alice @buffer", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK_STATUS(rig.verifier.Enroll("bob", rig.pcm, kSeconds2), sv::Status::kOk);  // from the PCM
  CHECK(Model(rig.store, "alice") != nullptr && Model(rig.store, "bob") != nullptr);
  CHECK(std::memcmp(Model(rig.store, "alice"), Model(rig.store, "bob"), sizeof(float) * kDim) == 0);

  // A capture longer than its buffer (one second of frames) keeps its start,
  // scored as the recording that stops there.
  const int second = 98;
  sv::AudioCapture short_capture(&rig.fbank, g_raw, second, limits);
  sv::Verifier short_verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                              sv::VerifierBuffers{rig.pcm, 1000, g_raw, second, &short_capture}, limits);
  PushBlocks(&short_capture, rig.pcm, kSeconds2);
  const size_t kept = 400 + second * 160 - 1;  // the samples of 98 frames, and a tail of no frame
  CHECK_EQ(short_capture.samples(), kept);
  CHECK_EQ(short_capture.dropped(), kSeconds2 - kept);
  CHECK_STATUS(short_verifier.HandleLine("enroll carol @buffer", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK_STATUS(rig.verifier.Enroll("dave", rig.pcm, kept), sv::Status::kOk);
  CHECK(std::memcmp(Model(rig.store, "carol"), Model(rig.store, "dave"), sizeof(float) * kDim) == 0);
  CHECK(std::memcmp(Model(rig.store, "carol"), Model(rig.store, "alice"), sizeof(float) * kDim) != 0);

  // A new recording starts empty; silence is refused like silent PCM.
  short_capture.Restart();
  CHECK_EQ(short_capture.samples(), 0u);
  CHECK_EQ(short_capture.frames(), 0);
  CHECK_EQ(short_capture.Push(nullptr, 10), 0u);
  static int16_t quiet[kSeconds2];
  PushBlocks(&short_capture, quiet, kSeconds2);
  CHECK_STATUS(short_verifier.HandleLine("verify alice @buffer", 0, reply, sizeof(reply)), sv::Status::kAudioSilent);
  rig.embedder.Reset();
}

TEST(audio_stats_of_chunks_decide_as_check_audio) {
  static int16_t pcm[16000];
  const sv::AudioLimits limits;
  static int16_t rows[100 * kDim];
  sv::Fbank& fbank = FreshRig().fbank;
  sv::FbankStream stream(&fbank);
  for (int kind = 0; kind < 4; ++kind) {
    Voice(300.0f, 1200.0f, 1, pcm, 16000, kind == 2 ? 40000.0f : 6000.0f);
    if (kind == 1) {
      for (int16_t& x : pcm) x = static_cast<int16_t>(x / 1000 + 500);  // quiet, with DC
    }
    if (kind == 2) {
      for (int16_t& x : pcm) x = static_cast<int16_t>(x > 32000 ? 32767 : (x < -32000 ? -32768 : x));
    }
    const size_t n = kind == 3 ? 4000 : 16000;  // too short
    stream.Reset();
    sv::FrameStore store(rows, 100);
    sv::AudioStats stats;
    CHECK_STATUS(StreamInChunks(pcm, n, 7u + kind, &stream, &store, &stats, limits), sv::Status::kOk);
    const sv::Status expected[4] = {sv::Status::kOk, sv::Status::kAudioSilent,
                                    sv::Status::kAudioClipped, sv::Status::kAudioTooShort};
    CHECK_STATUS(sv::CheckAudio(pcm, n, limits), expected[kind]);
    CHECK_STATUS(sv::CheckAudioStats(stats, limits), expected[kind]);
  }
}

// A network that outputs NaN (a broken model or arena) for every window.
class NanEmbedder : public sv::Embedder {
 public:
  int input_frames() const override { return kWindow; }
  int embedding_size() const override { return kDim; }
  sv::Status Embed(const sv::WindowRows&, float* embedding) override {
    for (int d = 0; d < kDim; ++d) embedding[d] = d == 0 ? NAN : 0.5f;
    return sv::Status::kOk;
  }
};

TEST(non_finite_network_output_is_refused_not_scored) {
  Rig& rig = FreshRig();
  Voice(300.0f, 1200.0f, 5, rig.pcm, kSeconds2);
  CHECK_STATUS(rig.verifier.Enroll("alice", rig.pcm, kSeconds2), sv::Status::kOk);
  NanEmbedder broken;
  sv::Verifier verifier(&rig.fbank, &broken, &rig.store, 0.95f, rig.buffers, sv::AudioLimits{});
  sv::Decision decision{};
  CHECK_STATUS(verifier.Verify("alice", rig.pcm, kSeconds2, &decision), sv::Status::kEmbeddingInvalid);
  CHECK_STATUS(verifier.Enroll("bob", rig.pcm, kSeconds2), sv::Status::kEmbeddingInvalid);
  const float* model = nullptr;
  uint32_t utterances = 0;
  CHECK_STATUS(rig.store.Find("bob", &model, &utterances), sv::Status::kUnknownSpeaker);
}

TEST(negative_hop_is_refused) {
  Rig& rig = FreshRig();
  Voice(300.0f, 1200.0f, 5, rig.pcm, kSeconds2);
  sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f, rig.buffers,
                        sv::AudioLimits{}, -1);
  float e[kDim];
  CHECK_STATUS(verifier.EmbedUtterance(rig.pcm, kSeconds2, e), sv::Status::kBadArgument);
  CHECK_EQ(rig.embedder.calls, 0);
}

TEST(protocol_session_over_buffer) {
  Rig& rig = FreshRig();
  char reply[160];
  Voice(300.0f, 1200.0f, 3, rig.pcm, kSeconds2);
  CHECK_STATUS(rig.verifier.HandleLine("enroll alice @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kOk);
  CHECK(std::strcmp(reply, "OK enrolled alice utterances=1") == 0);
  CHECK_STATUS(rig.verifier.HandleLine("verify alice @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kOk);
  // The same utterance scores 1 up to float rounding; compare the number, not
  // its printed digits.
  CHECK(std::strncmp(reply, "OK ACCEPT alice score=", 22) == 0);
  CHECK_NEAR(std::strtod(reply + 22, nullptr), 1.0, 1e-4);
  CHECK_STATUS(rig.verifier.HandleLine("list", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK(std::strcmp(reply, "OK 1 alice:1") == 0);
  CHECK_STATUS(rig.verifier.HandleLine("verify bob @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kUnknownSpeaker);
  CHECK(std::strcmp(reply, "ERR UNKNOWN_SPEAKER") == 0);
  std::memset(rig.pcm, 0, sizeof(rig.pcm));
  CHECK_STATUS(rig.verifier.HandleLine("enroll bob @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kAudioSilent);
  CHECK(std::strcmp(reply, "ERR AUDIO_SILENT") == 0);
  CHECK_STATUS(rig.verifier.HandleLine("enroll bob no_such_file.wav", 0, reply, sizeof(reply)),
               sv::Status::kIoError);
  CHECK_STATUS(rig.verifier.HandleLine("delete alice", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK_STATUS(rig.verifier.HandleLine("list", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK(std::strcmp(reply, "OK 0") == 0);
  CHECK_STATUS(rig.verifier.HandleLine("hello", 0, reply, sizeof(reply)),
               sv::Status::kUnknownCommand);
  CHECK(std::strcmp(reply, "ERR UNKNOWN_COMMAND") == 0);
}

TEST(corrupted_store_blocks_protocol_until_format) {
  Rig& rig = FreshRig();
  char reply[160];
  Voice(300.0f, 1200.0f, 3, rig.pcm, kSeconds2);
  CHECK_STATUS(rig.verifier.HandleLine("enroll alice @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kOk);
  for (size_t i = 0; i < sizeof(rig.flash); i += 64) rig.flash[i] ^= 0x5A;
  CHECK_STATUS(rig.store.Load(), sv::Status::kStoreCorrupt);
  CHECK_STATUS(rig.verifier.HandleLine("verify alice @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kStoreCorrupt);
  CHECK(std::strcmp(reply, "ERR STORE_CORRUPT") == 0);
  CHECK_STATUS(rig.verifier.HandleLine("enroll bob @buffer", kSeconds2, reply, sizeof(reply)),
               sv::Status::kStoreCorrupt);
  CHECK_STATUS(rig.verifier.HandleLine("list", 0, reply, sizeof(reply)), sv::Status::kStoreCorrupt);
  CHECK_STATUS(rig.verifier.HandleLine("format", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK_STATUS(rig.verifier.HandleLine("list", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK(std::strcmp(reply, "OK 0") == 0);
}

namespace {

// A 16 kHz mono 16-bit WAV file of `pcm[n]`.
bool WriteWav(const char* path, const int16_t* pcm, uint32_t n) {
  uint8_t header[44] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't', ' ',
                        16, 0, 0, 0, 1, 0, 1, 0, 0x80, 0x3E, 0, 0, 0, 0x7D, 0, 0, 2, 0, 16, 0,
                        'd', 'a', 't', 'a', 0, 0, 0, 0};
  const uint32_t bytes = 2 * n;
  for (int i = 0; i < 4; ++i) {
    header[4 + i] = static_cast<uint8_t>((bytes + 36) >> (8 * i));
    header[40 + i] = static_cast<uint8_t>(bytes >> (8 * i));
  }
  FILE* f = std::fopen(path, "wb");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(header, 1, 44, f) == 44 && std::fwrite(pcm, 2, n, f) == n;
  return std::fclose(f) == 0 && ok;
}

// Runs `commands` through RunSession(handler, hooks); the replies land in
// `replies`.  Returns the failure count (-1 if a scratch file fails).
int RunCommands(sv::LineHandler* handler, const char* commands, const sv::SessionHooks& hooks,
                char* replies, size_t size) {
  FILE* f = std::fopen("sv_session_in.txt", "wb");
  if (f == nullptr) return -1;
  std::fputs(commands, f);
  std::fclose(f);
  FILE* in = std::fopen("sv_session_in.txt", "rb");
  FILE* out = std::fopen("sv_session_out.txt", "wb");
  if (in == nullptr || out == nullptr) return -1;
  const int failures = sv::RunSession(handler, in, out, hooks);
  std::fclose(in);
  std::fclose(out);
  FILE* r = std::fopen("sv_session_out.txt", "rb");
  if (r == nullptr) return -1;
  const size_t got = std::fread(replies, 1, size - 1, r);
  std::fclose(r);
  replies[got] = '\0';
  std::remove("sv_session_in.txt");
  std::remove("sv_session_out.txt");
  return failures;
}

}  // namespace

TEST(session_runs_a_command_file) {
  Rig& rig = FreshRig();
  static int16_t pcm[kSeconds2];
  Voice(300.0f, 1200.0f, 1, pcm, kSeconds2);
  CHECK(WriteWav("sv_alice1.wav", pcm, kSeconds2));
  Voice(300.0f, 1200.0f, 2, pcm, kSeconds2);
  CHECK(WriteWav("sv_alice2.wav", pcm, kSeconds2));
  Voice(700.0f, 2600.0f, 3, pcm, kSeconds2);
  CHECK(WriteWav("sv_bob.wav", pcm, kSeconds2));
  char replies[512] = {};
  CHECK_EQ(RunCommands(&rig.verifier,
                       "# enrollment\nenroll alice sv_alice1.wav\n\nverify alice sv_alice2.wav\n"
                       "verify alice sv_bob.wav\nverify carol sv_bob.wav\nlist\nquit\nlist\n",
                       sv::SessionHooks(), replies, sizeof(replies)),
           1);  // carol is unknown
  CHECK(std::strncmp(replies, "OK enrolled alice utterances=1\nOK ACCEPT alice score=", 53) == 0);
  CHECK(std::strstr(replies, "\nOK REJECT alice score=") != nullptr);
  CHECK(std::strstr(replies, "\nERR UNKNOWN_SPEAKER\nOK 1 alice:1\n") != nullptr);
  const char* last = std::strstr(replies, "OK 1 alice:1\n");
  CHECK(last != nullptr && last[13] == '\0');  // nothing after "quit"
  static const char* const kFiles[] = {"sv_alice1.wav", "sv_alice2.wav", "sv_bob.wav"};
  for (const char* path : kFiles) std::remove(path);
}

namespace {
uint64_t g_fake_clock = 0;
uint64_t FakeClock() { return g_fake_clock += 1000; }
}  // namespace

TEST(session_reports_instructions_per_command) {
  Rig& rig = FreshRig();
  sv::SessionHooks hooks;
  hooks.clock = FakeClock;
  hooks.count_unit = "cycles";  // the board's unit; the label is the caller's
  char reply[64] = {};
  CHECK_EQ(RunCommands(&rig.verifier, "list\n", hooks, reply, sizeof(reply)), 0);
  CHECK(std::strcmp(reply, "OK 0 cycles=1000\n") == 0);
}

namespace {
size_t g_buffered = 0;
size_t Buffered() { return g_buffered; }
}  // namespace

TEST(ninth_speaker_is_store_full_before_any_embedding) {
  Rig& rig = FreshRig();
  Voice(300.0f, 1200.0f, 3, rig.pcm, 8000);
  char name[8] = "spk0";
  for (int i = 0; i < sv::kMaxSpeakers; ++i) {
    name[3] = static_cast<char>('0' + i);
    CHECK_STATUS(rig.verifier.Enroll(name, rig.pcm, 8000), sv::Status::kOk);
  }
  const int calls = rig.embedder.calls;
  CHECK_STATUS(rig.verifier.Enroll("ninth", rig.pcm, 8000), sv::Status::kStoreFull);
  char reply[160];
  // Through the protocol the audio is not even read: a missing file is not the error.
  CHECK_STATUS(rig.verifier.HandleLine("enroll ninth no_such_file.wav", 0, reply, sizeof(reply)),
               sv::Status::kStoreFull);
  CHECK(std::strcmp(reply, "ERR STORE_FULL") == 0);
  CHECK_EQ(rig.embedder.calls, calls);  // no window was embedded for the refusals
  // An enrolled name still takes more utterances.
  CHECK_STATUS(rig.verifier.Enroll("spk0", rig.pcm, 8000), sv::Status::kOk);
  CHECK(rig.embedder.calls > calls);
}

TEST(long_file_is_scored_on_its_first_buffer_at_every_max_seconds) {
  // 3.6 s of speech against PCM buffers of 1, 2, 3 and 6 s (SV_MAX_SECONDS).
  constexpr size_t kFile = 57600;
  constexpr size_t kMax = 6 * 16000;
  static int16_t file_pcm[kFile];
  static int16_t pcm[kMax];
  static int16_t features[kMaxWindow * sv::Fbank::kNumMelBins];
  Voice(300.0f, 1200.0f, 11, file_pcm, kFile);
  CHECK(WriteWav("sv_long.wav", file_pcm, kFile));
  Rig& rig = FreshRig();
  const size_t seconds_offered[] = {1, 2, 3, 6};
  for (size_t seconds : seconds_offered) {
    const size_t capacity = seconds * 16000;
    sv::AudioLimits limits;
    limits.max_samples = capacity;
    limits.keep_first_samples = true;
    sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                          sv::VerifierBuffers{pcm, capacity, features, kMaxWindow}, limits);
    size_t n = 0;
    CHECK_STATUS(sv::LoadPcmFile("sv_long.wav", pcm, capacity, &n, true), sv::Status::kOk);
    const size_t expect = capacity < kFile ? capacity : kFile;
    CHECK_EQ(n, expect);
    CHECK(std::memcmp(pcm, file_pcm, expect * sizeof(int16_t)) == 0);
    float from_file[kDim];
    CHECK_STATUS(verifier.EmbedUtterance(pcm, n, from_file), sv::Status::kOk);
    float from_start[kDim];
    CHECK_STATUS(verifier.EmbedUtterance(file_pcm, expect, from_start), sv::Status::kOk);
    CHECK(std::memcmp(from_file, from_start, sizeof(from_file)) == 0);
    char reply[160];
    CHECK_STATUS(rig.store.Format(), sv::Status::kOk);
    CHECK_STATUS(verifier.HandleLine("enroll alice sv_long.wav", 0, reply, sizeof(reply)),
                 sv::Status::kOk);
    CHECK_STATUS(verifier.HandleLine("verify alice sv_long.wav", 0, reply, sizeof(reply)),
                 sv::Status::kOk);
    CHECK(std::strncmp(reply, "OK ACCEPT alice score=", 22) == 0);
    // Refusing instead is the other build option.
    limits.keep_first_samples = false;
    sv::Verifier strict(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                        sv::VerifierBuffers{pcm, capacity, features, kMaxWindow}, limits);
    CHECK_STATUS(strict.HandleLine("verify alice sv_long.wav", 0, reply, sizeof(reply)),
                 capacity < kFile ? sv::Status::kAudioTooLong : sv::Status::kOk);
  }
  std::remove("sv_long.wav");
}

TEST(router_gives_each_model_its_own_store) {
  Rig& rig = FreshRig();
  static uint8_t flash2[sv::kStoreMediumBytes];
  std::memset(flash2, 0xFF, sizeof(flash2));
  static sv::RamMedium medium2(flash2, sizeof(flash2));
  static sv::EnrollmentStore store2(&medium2, 43u, kDim);  // another model id
  CHECK_STATUS(store2.Load(), sv::Status::kOk);
  static sv::Verifier second(&rig.fbank, &rig.embedder, &store2, 0.95f, rig.buffers, sv::AudioLimits{});
  sv::ModelRouter router(&rig.verifier, "hi", &second);
  Voice(300.0f, 1200.0f, 3, rig.pcm, kSeconds2);
  char replies[512];
  g_buffered = kSeconds2;
  sv::SessionHooks hooks;
  hooks.buffered_samples = Buffered;
  const int failures = RunCommands(&router,
                                   "hi enroll alice @buffer\nhi list\nlist\nverify alice @buffer\n"
                                   "hi verify alice @buffer\nhigh list\n",
                                   hooks, replies, sizeof(replies));
  CHECK_EQ(failures, 2);  // alice is unknown to the first model; "high" is no command
  CHECK(std::strncmp(replies,
                     "hi OK enrolled alice utterances=1\nhi OK 1 alice:1\nOK 0\nERR UNKNOWN_SPEAKER\n"
                     "hi OK ACCEPT alice score=", 98) == 0);
  CHECK(std::strstr(replies, "\nERR UNKNOWN_COMMAND\n") != nullptr);
  CHECK_EQ(store2.count(), 1);
  CHECK_EQ(rig.store.count(), 0);
  // Without a second model every line goes to the first.
  sv::ModelRouter single(&rig.verifier, "hi", nullptr);
  char reply[64];
  CHECK_STATUS(single.HandleLine("hi list", 0, reply, sizeof(reply)), sv::Status::kUnknownCommand);
}

TEST(file_streamed_through_a_small_buffer_gives_the_one_shot_embedding) {
  // Files of 0.5 s (wrapped), 2 s and 6 s (longer than the rig's 5 s PCM
  // buffer) read through PCM buffers of 161 samples to 5 s; hop 20
  // (overlapping windows) and 70 (longer than the window: skipped frames).
  constexpr size_t kLong = 6 * 16000;
  static int16_t file_pcm[kLong];
  Changing(5, file_pcm, kLong);
  Rig& rig = FreshRig();
  const size_t lengths[] = {8000, 32000, kLong};
  const size_t chunks[] = {161, 399, 4000, Rig::kPcmSamples};
  const int hops[] = {20, 70};
  for (size_t length : lengths) {
    CHECK(WriteWav("sv_stream.wav", file_pcm, static_cast<uint32_t>(length)));
    sv::AudioLimits limits;
    limits.max_samples = kLong;
    for (int hop : hops) {
      sv::Verifier whole(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                         sv::VerifierBuffers{file_pcm, kLong, rig.features, kMaxWindow}, limits, hop);
      float expected[kDim];
      rig.embedder.calls = 0;
      CHECK_STATUS(whole.EmbedUtterance(file_pcm, length, expected), sv::Status::kOk);
      const int windows = rig.embedder.calls;
      for (size_t chunk : chunks) {
        sv::Verifier streamed(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                              sv::VerifierBuffers{rig.pcm, chunk, rig.features, kMaxWindow}, limits, hop);
        rig.embedder.calls = 0;
        float e[kDim];
        CHECK_STATUS(streamed.EmbedFile("sv_stream.wav", e), sv::Status::kOk);
        CHECK_EQ(rig.embedder.calls, windows);
        CHECK(std::memcmp(e, expected, sizeof(e)) == 0);
      }
    }
  }
  // Longer than limits.max_samples: refused, or scored on its first max_samples.
  sv::AudioLimits limits;
  limits.max_samples = 3 * 16000;
  sv::Verifier strict(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                      sv::VerifierBuffers{rig.pcm, 1000, rig.features, kMaxWindow}, limits);
  float e[kDim];
  CHECK_STATUS(strict.EmbedFile("sv_stream.wav", e), sv::Status::kAudioTooLong);
  limits.keep_first_samples = true;
  sv::Verifier keep(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                    sv::VerifierBuffers{rig.pcm, 1000, rig.features, kMaxWindow}, limits);
  float first[kDim];
  CHECK_STATUS(keep.EmbedFile("sv_stream.wav", e), sv::Status::kOk);
  CHECK_STATUS(keep.EmbedUtterance(file_pcm, limits.max_samples, first), sv::Status::kOk);
  CHECK(std::memcmp(e, first, sizeof(e)) == 0);
  CHECK_STATUS(keep.EmbedFile("no/such/file.wav", e), sv::Status::kIoError);
  std::remove("sv_stream.wav");
  rig.embedder.Reset();
}

TEST(a_file_scored_during_a_capture_restarts_it) {
  Rig& rig = FreshRig();
  Voice(300.0f, 1100.0f, 4, rig.pcm, kSeconds2);
  CHECK(WriteWav("sv_capture_file.wav", rig.pcm, kSeconds2));
  const sv::AudioLimits limits;
  const int whole = sv::FbankNumFrames(kSeconds2);
  sv::AudioCapture capture(&rig.fbank, g_raw, whole, limits);
  sv::Verifier verifier(&rig.fbank, &rig.embedder, &rig.store, 0.95f,
                        sv::VerifierBuffers{rig.pcm, 1000, g_raw, whole, &capture}, limits);
  PushBlocks(&capture, rig.pcm, kSeconds2);
  char reply[160];
  // The file's frames take the memory of the captured ones: the capture starts again.
  CHECK_STATUS(verifier.HandleLine("enroll alice sv_capture_file.wav", 0, reply, sizeof(reply)), sv::Status::kOk);
  CHECK_EQ(capture.samples(), 0u);
  CHECK_STATUS(verifier.HandleLine("verify alice @buffer", 0, reply, sizeof(reply)), sv::Status::kAudioTooShort);
  std::remove("sv_capture_file.wav");
  rig.embedder.Reset();
}

// The int8 input path quantises as TFLM's QUANTIZE kernel: round(v / scale)
// half away from zero, plus the zero point, clamped (converters.tflm does the
// same in Python).
TEST(quantize_int8_rounds_as_tflm) {
  CHECK(sv::QuantizeInt8(0.5f, 1.0f, 0) == 1);
  CHECK(sv::QuantizeInt8(-0.5f, 1.0f, 0) == -1);
  CHECK(sv::QuantizeInt8(2.5f, 1.0f, 0) == 3);  // not to even
  CHECK(sv::QuantizeInt8(0.49999997f, 1.0f, 0) == 0);
  CHECK(sv::QuantizeInt8(-1.25f, 0.5f, 4) == 1);  // -2.5 -> -3, + 4
  CHECK(sv::QuantizeInt8(1000.0f, 0.1f, 0) == 127);
  CHECK(sv::QuantizeInt8(-1e30f, 0.1f, -5) == -128);
  CHECK(sv::QuantizeInt8(0.0f, 0.07f, -20) == -20);
}

TEST(window_rows_quantize_mean_normalised_rows) {
  constexpr int kMels = sv::Fbank::kNumMelBins;
  static int16_t raw[3 * kMels];
  static float mean[kMels];
  for (int i = 0; i < 3 * kMels; ++i) raw[i] = static_cast<int16_t>(10 * (i % 97) - 300);
  for (int m = 0; m < kMels; ++m) mean[m] = 2.5f * static_cast<float>(m);
  const sv::WindowRows rows{raw, 3, 1, mean};
  static float expected[2 * kMels];
  static int8_t q[2 * kMels];
  rows.CopyTo(2, expected);
  rows.QuantizeTo(2, 0.0123f, 7, q);
  for (int i = 0; i < 2 * kMels; ++i) CHECK(q[i] == sv::QuantizeInt8(expected[i], 0.0123f, 7));
  // Row 0 is frame start = 1, in log-mel units: (code - mean) * 2^-10.
  CHECK(expected[0] == (static_cast<float>(raw[kMels]) - mean[0]) / 1024.0f);
  CHECK(expected[kMels + 5] == (static_cast<float>(raw[2 * kMels + 5]) - mean[5]) / 1024.0f);
  CHECK(q[0] == sv::QuantizeInt8((raw[kMels] - mean[0]) / 1024.0f, 0.0123f, 7));
}
