// Rejects audio that cannot give a trustworthy embedding, before any compute.
//
// A silent or clipped recording still yields an embedding -- just a wrong one,
// which would be averaged into a speaker model or accepted/rejected at random.
#ifndef TFADVQ_AUDIO_CHECK_H_
#define TFADVQ_AUDIO_CHECK_H_

#include <cstddef>
#include <cstdint>

#include "sv_status.h"

namespace sv {

struct AudioLimits {
  size_t min_samples = 8000;       // 0.5 s at 16 kHz
  size_t max_samples = 16000 * 8;  // the longest utterance scored (a file streams through any PCM buffer)
  float min_rms = 30.0f;           // int16 units, after removing DC (~ -61 dBFS)
  float max_clipped_fraction = 0.01f;
  int16_t clip_level = 32000;      // |x| >= this counts as clipped
  // A file longer than max_samples: scored on its first max_samples (true)
  // or refused with kAudioTooLong (false).  The firmware's
  // SV_TRUNCATE_LONG_AUDIO; with a short SV_MAX_SECONDS most utterances are longer.
  bool keep_first_samples = false;
};

// kAudioTooShort, kAudioTooLong, kAudioSilent, kAudioClipped or kOk.
Status CheckAudio(const int16_t* pcm, size_t num_samples, const AudioLimits& limits);

// What CheckAudio decides on, summed as the audio arrives in chunks (a stream
// keeps no whole utterance to check at the end).  Integer sums: exact, so the
// decision is CheckAudio's on the same samples whatever the chunking.
struct AudioStats {
  size_t samples = 0;
  int64_t sum = 0;
  int64_t sum_sq = 0;
  size_t clipped = 0;  // |x| >= limits.clip_level
  void Add(const int16_t* pcm, size_t n, const AudioLimits& limits);
};

// CheckAudio's verdict on the samples summed in `stats`.
Status CheckAudioStats(const AudioStats& stats, const AudioLimits& limits);

}  // namespace sv

#endif  // TFADVQ_AUDIO_CHECK_H_
