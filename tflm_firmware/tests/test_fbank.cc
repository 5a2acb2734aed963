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
  CHECK_STATUS(SharedFbank().Compute(zeros, 560, features, 2, &frames, false), sv::Status::kOk);
  // ln(FLT_EPSILON) = -23 ln 2, against the float logf of the target's libm
  // (glibc and newlib are within ~1 ulp; an ulp here is 9.5e-7): 4 ulps.
  constexpr double kLnFloor = -15.942385152878742;
  CHECK_NEAR(features[0], kLnFloor, 4e-6);
  CHECK_NEAR(features[80 + 79], kLnFloor, 4e-6);
  CHECK_STATUS(SharedFbank().Compute(zeros, 560, features, 2, &frames, true), sv::Status::kOk);
  CHECK_NEAR(features[79], 0.0, 1e-6);
}
