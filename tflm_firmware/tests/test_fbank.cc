// Front end: FFT against a direct DFT, fbank against the Python golden vector.
#include <cmath>
#include <cstring>

#include "fbank.h"
#include "fft.h"
#include "golden_fbank.h"
#include "harness.h"

namespace {

// Parity tolerance of the C++ front end vs tfadvq.features (log-mel units,
// after mean normalisation).  Both are float32; they differ by FFT rounding,
// which matters only in near-silent bins.  Measured max ~3e-3 on speech.
constexpr double kParityTolerance = 1e-2;

const sv::Fbank& SharedFbank() {
  static const sv::Fbank fbank;
  return fbank;
}

}  // namespace

TEST(fft_power_matches_direct_dft) {
  constexpr int kN = 512;
  static const sv::RealFft<kN> fft;
  float x[kN];
  uint32_t state = 12345;
  for (int i = 0; i < kN; ++i) {
    state = state * 1664525u + 1013904223u;
    x[i] = static_cast<float>(static_cast<int32_t>(state >> 16) - 32768);
  }
  float power[kN / 2 + 1];
  fft.PowerSpectrum(x, power);
  const double kTwoPi = 6.283185307179586;
  double max_rel = 0.0;
  for (int k = 0; k <= kN / 2; k += 7) {  // every 7th bin keeps it fast on the M4
    double re = 0.0;
    double im = 0.0;
    for (int n = 0; n < kN; ++n) {
      const double a = kTwoPi * k * n / kN;
      re += x[n] * std::cos(a);
      im -= x[n] * std::sin(a);
    }
    const double ref = re * re + im * im;
    max_rel = std::fmax(max_rel, std::fabs(power[k] - ref) / (ref + 1.0));
  }
  CHECK(max_rel < 1e-4);
  // The Nyquist bin is checked separately (k = 256 is not a multiple of 7).
  double nyquist = 0.0;
  for (int n = 0; n < kN; ++n) nyquist += (n % 2 == 0 ? x[n] : -x[n]);
  CHECK_NEAR(power[kN / 2] / (nyquist * nyquist + 1.0), 1.0, 1e-4);
}

TEST(fbank_matches_python_golden) {
  static float features[kGoldenFrames * sv::Fbank::kNumMelBins];
  int frames = 0;
  const size_t n = sizeof(kGoldenPcm) / sizeof(kGoldenPcm[0]);
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, n, features, kGoldenFrames, &frames),
               sv::Status::kOk);
  CHECK_EQ(frames, kGoldenFrames);
  double max_err = 0.0;
  for (int i = 0; i < frames * sv::Fbank::kNumMelBins; ++i) {
    max_err = std::fmax(max_err, std::fabs(features[i] - kGoldenFbank[i]));
  }
  CHECK(max_err < kParityTolerance);
}

TEST(fbank_frame_count_follows_snip_edges) {
  CHECK_EQ(sv::FbankNumFrames(0), 0);
  CHECK_EQ(sv::FbankNumFrames(399), 0);
  CHECK_EQ(sv::FbankNumFrames(400), 1);
  CHECK_EQ(sv::FbankNumFrames(559), 1);
  CHECK_EQ(sv::FbankNumFrames(560), 2);
  CHECK_EQ(sv::FbankNumFrames(16000), 98);
}

TEST(fbank_rejects_short_and_overlong_audio) {
  static float features[4 * sv::Fbank::kNumMelBins];
  int frames = -1;
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, 399, features, 4, &frames),
               sv::Status::kAudioTooShort);
  CHECK_EQ(frames, 0);
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, 400 + 4 * 160, features, 4, &frames),
               sv::Status::kAudioTooLong);
  CHECK_STATUS(SharedFbank().Compute(nullptr, 400, features, 4, &frames),
               sv::Status::kBadArgument);
}

TEST(fbank_of_zeros_is_log_floor_and_mean_norm_zeroes_it) {
  static const int16_t zeros[400 + 160] = {};
  float features[2 * sv::Fbank::kNumMelBins];
  int frames = 0;
  CHECK_STATUS(SharedFbank().Compute(zeros, 560, features, 2, &frames, sv::Features::kLogMel), sv::Status::kOk);
  // ln(FLT_EPSILON) = -23 ln 2, against the float logf of the target's libm
  // (glibc and newlib are within ~1 ulp; an ulp here is 9.5e-7): 4 ulps.
  constexpr double kLnFloor = -15.942385152878742;
  CHECK_NEAR(features[0], kLnFloor, 4e-6);
  CHECK_NEAR(features[80 + 79], kLnFloor, 4e-6);
  CHECK_STATUS(SharedFbank().Compute(zeros, 560, features, 2, &frames, sv::Features::kMeanNorm), sv::Status::kOk);
  CHECK_NEAR(features[79], 0.0, 1e-6);
}

namespace {

// Chunk sizes for the streaming tests: a deterministic mix of empty, tiny,
// around-a-frame and multi-frame chunks (DMA half-buffers and file reads
// come in all of these).
class Chunker {
 public:
  explicit Chunker(uint32_t seed) : state_(seed) {}
  size_t Next() {
    state_ = state_ * 1664525u + 1013904223u;
    const uint32_t r = state_ >> 8;
    switch (r % 5) {
      case 0: return r % 3;                 // 0, 1, 2
      case 1: return 155 + r % 11;          // around the frame shift
      case 2: return 395 + r % 11;          // around the frame length
      default: return 1 + (r >> 4) % 1200;  // anything up to three frames
    }
  }

 private:
  uint32_t state_;
};

class RecordingSink : public sv::FrameSink {
 public:
  sv::Status OnFrame(int index, const int16_t* row) override {
    if (index != count) ++out_of_order;
    if (count < kMax) std::memcpy(rows + count * sv::Fbank::kNumMelBins, row, sizeof(int16_t) * sv::Fbank::kNumMelBins);
    ++count;
    return count == fail_at ? sv::Status::kIoError : sv::Status::kOk;
  }
  static constexpr int kMax = kGoldenFrames;
  int16_t rows[kMax * sv::Fbank::kNumMelBins];
  int count = 0;
  int out_of_order = 0;
  int fail_at = -1;
};

}  // namespace

TEST(fbank_stream_gives_one_shot_frames_and_mean_for_any_chunking) {
  const size_t n = sizeof(kGoldenPcm) / sizeof(kGoldenPcm[0]);
  constexpr int kValues = kGoldenFrames * sv::Fbank::kNumMelBins;
  static float raw[kValues];
  static float kept[kValues];
  int frames = 0;
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, n, raw, kGoldenFrames, &frames, sv::Features::kLogMel),
               sv::Status::kOk);
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, n, kept, kGoldenFrames, &frames, sv::Features::kKept),
               sv::Status::kOk);
  static RecordingSink sink;
  sv::FbankStream stream(&SharedFbank());
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    sink = RecordingSink();
    stream.Reset();
    Chunker chunker(seed);
    size_t pushed = 0;
    int chunks = 0;
    while (pushed < n) {
      size_t take = chunker.Next();
      if (take > n - pushed) take = n - pushed;
      CHECK_STATUS(stream.Push(kGoldenPcm + pushed, take, &sink), sv::Status::kOk);
      pushed += take;
      ++chunks;
      // A frame comes out as soon as its last sample is in, not later.
      CHECK_EQ(stream.frames(), sv::FbankNumFrames(pushed));
    }
    CHECK(chunks > 10);
    CHECK_EQ(stream.samples(), n);
    CHECK_EQ(sink.count, kGoldenFrames);
    CHECK_EQ(sink.out_of_order, 0);
    float mean[sv::Fbank::kNumMelBins];
    stream.Mean(mean);
    int differ = 0;
    for (int i = 0; i < kValues; ++i) {
      differ += sink.rows[i] != sv::KeepLogMel(raw[i]);  // the codes of the one-shot frames
      const float v = (static_cast<float>(sink.rows[i]) - mean[i % 80]) * sv::Fbank::kKeptStep;
      differ += std::memcmp(&v, &kept[i], sizeof(float)) != 0;  // the mean Fbank::Compute subtracts
    }
    CHECK_EQ(differ, 0);
  }
}

// Kept codes: log mel * 2^10 rounded half away from zero (the float sum
// |q| + 0.5f, as tfadvq.features), offset, clamped to int16; every code within
// half a step of its value over the whole range.
TEST(kept_codes_round_log_mel_to_steps_of_2_to_the_minus_10) {
  CHECK_EQ(sv::KeepLogMel(16.0f), 0);
  CHECK_EQ(sv::KeepLogMel(0.0f), -16384);
  CHECK_EQ(sv::KeepLogMel(0.5f / 1024), -16383);   // a tie: away from zero
  CHECK_EQ(sv::KeepLogMel(-0.5f / 1024), -16385);
  CHECK_EQ(sv::KeepLogMel(0.49f / 1024), -16384);
  CHECK_EQ(sv::KeepLogMel(0.49999997f / 1024), -16383);  // |q| + 0.5f rounds to 1 in float
  CHECK_EQ(sv::KeepLogMel(-15.942385f), -32709);  // the log floor fits
  CHECK_EQ(sv::KeepLogMel(-17.0f), -32768);       // clamped below ...
  CHECK_EQ(sv::KeepLogMel(48.0f), 32767);         // ... and above
  CHECK_EQ(sv::KeepLogMel(1e30f), 32767);
  CHECK_EQ(sv::KeepLogMel(NAN), 32767);
  double worst = 0.0;
  for (int i = -16000; i <= 47000; i += 7) {
    const float v = static_cast<float>(i) / 1000.0f + 0.000123f;
    const double back = (sv::KeepLogMel(v) + sv::Fbank::kKeptOffset) * static_cast<double>(sv::Fbank::kKeptStep);
    worst = std::fmax(worst, std::fabs(back - v));
  }
  CHECK(worst <= 0.5 / 1024 + 1e-6);
  CHECK(worst > 0.4 / 1024);  // the grid is 2^-10, not finer
  // Features::kKept differs from the float features by at most about a step
  // (rounding of the frame and of its mean), and is mean-free per bin.
  const size_t n = sizeof(kGoldenPcm) / sizeof(kGoldenPcm[0]);
  static float normalised[kGoldenFrames * 80];
  static float kept[kGoldenFrames * 80];
  int frames = 0;
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, n, normalised, kGoldenFrames, &frames), sv::Status::kOk);
  CHECK_STATUS(SharedFbank().Compute(kGoldenPcm, n, kept, kGoldenFrames, &frames, sv::Features::kKept),
               sv::Status::kOk);
  double max_diff = 0.0;
  for (int i = 0; i < frames * 80; ++i) max_diff = std::fmax(max_diff, std::fabs(kept[i] - normalised[i]));
  CHECK(max_diff < 1.0 / 1024 && max_diff > 0.0);
}

TEST(fbank_stream_stops_at_a_sink_error_and_a_full_store) {
  sv::FbankStream stream(&SharedFbank());
  CHECK_STATUS(stream.Push(nullptr, 0, nullptr), sv::Status::kOk);
  CHECK_STATUS(stream.Push(nullptr, 1, nullptr), sv::Status::kBadArgument);
  static RecordingSink sink;
  sink = RecordingSink();
  sink.fail_at = 5;
  CHECK_STATUS(stream.Push(kGoldenPcm, 4000, &sink), sv::Status::kIoError);
  CHECK_EQ(sink.count, 5);
  static int16_t rows[3 * sv::Fbank::kNumMelBins];
  sv::FrameStore store(rows, 3);
  stream.Reset();
  CHECK_STATUS(stream.Push(kGoldenPcm, 400 + 2 * 160, &store), sv::Status::kOk);
  CHECK_EQ(stream.frames(), 3);
  CHECK_STATUS(stream.Push(kGoldenPcm + 720, 160, &store), sv::Status::kAudioTooLong);
  stream.Reset();
  float mean[sv::Fbank::kNumMelBins];
  stream.Mean(mean);
  CHECK_EQ(stream.frames(), 0);
  CHECK_EQ(mean[0], 0.0f);
}
