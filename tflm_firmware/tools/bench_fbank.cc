// Cortex-M benchmark: instructions the front end spends per second of audio.
//
// Runs under QEMU (mps2-an386 / mps3-an547) with `-icount shift=0`, where the
// platform counter gives instructions (platform/cortex_m/counter.cc).  The audio is the golden speech compiled in (the front end
// has no data-dependent work, so its content does not matter).
#include <cstdio>

#include "fbank.h"
#include "golden_fbank.h"
#include "platform.h"

namespace {
float g_features[kGoldenFrames * sv::Fbank::kNumMelBins];
}

int main() {
  platform::StartCounter();
  const uint64_t t0 = platform::Count();
  static const sv::Fbank fbank;
  const uint64_t t1 = platform::Count();
  const size_t samples = sizeof(kGoldenPcm) / sizeof(kGoldenPcm[0]);
  int frames = 0;
  const sv::Status status = fbank.Compute(kGoldenPcm, samples, g_features, kGoldenFrames, &frames);
  const uint64_t t2 = platform::Count();
  if (status != sv::Status::kOk) return 1;
  const uint64_t init = t1 - t0;
  const uint64_t run = t2 - t1;
  std::printf("samples=%u frames=%d init_instructions=%llu fbank_instructions=%llu\n",
              static_cast<unsigned>(samples), frames, static_cast<unsigned long long>(init),
              static_cast<unsigned long long>(run));
  return 0;
}
