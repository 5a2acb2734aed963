// Host/QEMU tool: fbank of one audio file, written as float32 [frames][80].
//
// Used by tests/test_firmware.py and benchmarks/firmware.py to compare the C++
// front end with tfadvq.features on the same audio.
//   fbank_tool IN.wav OUT.f32 [--no-mean-norm | --kept]
// --kept: what the device's windows read (int16 kept frames, sv::Features::kKept).
#include <cstdio>
#include <cstring>

#include "fbank.h"
#include "pcm_io.h"

namespace {
constexpr size_t kMaxSamples = 16000 * 30;
constexpr int kMaxFrames = 3000;
int16_t g_pcm[kMaxSamples];
float g_features[kMaxFrames * sv::Fbank::kNumMelBins];
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s IN.wav OUT.f32 [--no-mean-norm | --kept]\n", argv[0]);
    return 2;
  }
  sv::Features features = sv::Features::kMeanNorm;
  if (argc > 3 && std::strcmp(argv[3], "--no-mean-norm") == 0) features = sv::Features::kLogMel;
  if (argc > 3 && std::strcmp(argv[3], "--kept") == 0) features = sv::Features::kKept;
  static sv::Fbank fbank;
  size_t n = 0;
  sv::Status status = sv::LoadPcmFile(argv[1], g_pcm, kMaxSamples, &n);
  int frames = 0;
  if (status == sv::Status::kOk) {
    status = fbank.Compute(g_pcm, n, g_features, kMaxFrames, &frames, features);
  }
  if (status != sv::Status::kOk) {
    std::fprintf(stderr, "fbank_tool: %s: %s\n", argv[1], sv::StatusName(status));
    return 1;
  }
  FILE* out = std::fopen(argv[2], "wb");
  const size_t count = static_cast<size_t>(frames) * sv::Fbank::kNumMelBins;
  if (out == nullptr || std::fwrite(g_features, sizeof(float), count, out) != count) {
    std::fprintf(stderr, "fbank_tool: cannot write %s\n", argv[2]);
    return 1;
  }
  std::fclose(out);
  std::printf("frames=%d\n", frames);
  return 0;
}
