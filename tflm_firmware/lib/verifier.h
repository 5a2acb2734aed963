// The device's verification pipeline: audio -> fbank -> embedding -> store/score.
//
// The network is behind the Embedder interface so that this file (and its
// tests) need no TFLM; the TFLM model runner (app/model_runner.h) implements
// it, and tests use a small deterministic stand-in.
#ifndef TFADVQ_VERIFIER_H_
#define TFADVQ_VERIFIER_H_

#include <cstddef>
#include <cstdint>

#include "audio_check.h"
#include "fbank.h"
#include "protocol.h"
#include "scoring.h"
#include "store.h"
#include "sv_status.h"

namespace sv {

class Embedder {
 public:
  virtual ~Embedder() = default;
  // Frames of fbank features per network call.
  virtual int input_frames() const = 0;
  virtual int embedding_size() const = 0;
  // `features[input_frames()][Fbank::kNumMelBins]` -> `embedding[embedding_size()]`.
  virtual Status Embed(const float* features, float* embedding) = 0;
};

// Caller-owned work memory (static arrays on the device).  Features are
// computed one network window at a time, so only the audio scales with the
// utterance length.
struct VerifierBuffers {
  int16_t* pcm;         // audio of one utterance
  size_t pcm_capacity;  // samples
  float* features;      // [window_frames][Fbank::kNumMelBins]
  int window_frames;    // >= the embedder's input_frames()
};

class Verifier {
 public:
  Verifier(const Fbank* fbank, Embedder* embedder, EnrollmentStore* store, float threshold,
           const VerifierBuffers& buffers, const AudioLimits& limits);

  // Utterance embedding: features are mean-normalised over the whole
  // utterance, cut into windows of input_frames() (the last one aligned to the
  // end), and the unit-norm window embeddings averaged.  The utterance mean is
  // taken in a first pass and each window's frames recomputed in the second
  // (the same values as Fbank::Compute, bit for bit), which trades ~2x front-end
  // work for not storing the whole utterance's features.
  Status EmbedUtterance(const int16_t* pcm, size_t num_samples, float* embedding);

  Status Enroll(const char* name, const int16_t* pcm, size_t num_samples);
  Status Verify(const char* name, const int16_t* pcm, size_t num_samples, Decision* decision);

  // Parses and runs one protocol line; `buffered_samples` is how much audio is
  // in buffers.pcm for "@buffer".  Writes a one-line reply.
  Status HandleLine(const char* line, size_t buffered_samples, char* reply, size_t reply_size);

  const VerifierBuffers& buffers() const { return buffers_; }

 private:
  Status Audio(const Command& command, size_t buffered_samples, size_t* num_samples);
  Status Execute(const Command& command, size_t buffered_samples, char* reply, size_t reply_size);

  const Fbank* fbank_;
  Embedder* embedder_;
  EnrollmentStore* store_;
  float threshold_;
  VerifierBuffers buffers_;
  AudioLimits limits_;
};

}  // namespace sv

#endif  // TFADVQ_VERIFIER_H_
