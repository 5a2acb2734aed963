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
#include "pcm_io.h"
#include "protocol.h"
#include "scoring.h"
#include "store.h"
#include "sv_status.h"
#include "window_schedule.h"

namespace sv {

// One network window as the Verifier hands it over, without copying it into
// a window buffer first: row t is frame (start + t) mod frames (its row in
// the ring when `slots` > 0) of the kept codes `raw[frames][Fbank::kNumMelBins]`
// (KeepLogMel), minus the codes' utterance mean `mean[kNumMelBins]` (code
// units), times 2^-10: Fbank::Compute(Features::kKept), row by row.  The TFLM
// runner writes the rows straight into its input tensor.
struct WindowRows {
  const int16_t* raw;
  int frames;
  int start;
  const float* mean;
  int slots = 0;  // > 0: `raw` is a ring of that many rows, frame f in row f mod slots
  // `out[Fbank::kNumMelBins]`: row t.
  void Row(int t, float* out) const;
  // `out[rows][Fbank::kNumMelBins]`: rows 0 .. rows - 1.
  void CopyTo(int rows, float* out) const;
  // The same rows quantised into an int8 input tensor, each value as TFLM's
  // QUANTIZE kernel does it (QuantizeInt8): an int8-input model gives the
  // embedding a float-input model with a leading QUANTIZE would, without the
  // float input tensor in the arena.
  void QuantizeTo(int rows, float scale, int zero_point, int8_t* out) const;
};

// `value` quantised as TFLM's reference AffineQuantize: round(value / scale)
// (half away from zero, the division in float) + zero_point, clamped to int8.
// tfadvq's Python scorer (converters.tflm) quantises the same way, so device
// and Python feed the network the same int8 tensor.
int8_t QuantizeInt8(float value, float scale, int zero_point);

class Embedder {
 public:
  virtual ~Embedder() = default;
  // Frames of fbank features per network call.
  virtual int input_frames() const = 0;
  virtual int embedding_size() const = 0;
  // The input_frames() rows of `window` -> `embedding[embedding_size()]`.
  virtual Status Embed(const WindowRows& window, float* embedding) = 0;
};

// The scoring schedule driven by arriving frames, over a ring of kept codes (not
// mean-normalised) of frames: frames 0 .. kept - 1 are already in the ring (a
// first pass kept them), frame f >= kept arrives in order through OnFrame and
// goes into slot f mod capacity, and each window runs as soon as its last
// frame is in, its rows read from the ring minus the utterance mean.  With
// capacity >= window, no frame is overwritten before every window that needs
// it has run.  kept = 0, capacity = window: the bounded stream (one window of
// frames whatever the utterance length); the longer the ring, the fewer
// frames a second pass recomputes.  It needs the frame count T and the mean up
// front (a first pass over the audio: per-utterance mean normalisation).
class WindowAssembler : public FrameSink {
 public:
  // `ring[capacity][kNumMelBins]`, its first min(kept, capacity) rows frames
  // 0 .. kept - 1 (kept <= capacity); `mean[kNumMelBins]` (FbankStream::Mean)
  // is read while the
  // windows run; the window embeddings are summed into
  // `embedding[embedding_size()]` (the caller's result, so no second buffer).
  // An invalid schedule (frames, window or hop < 1) makes every OnFrame and
  // Finish kAudioTooShort; a ring shorter than both the window and the
  // utterance, kBadArgument.
  WindowAssembler(Embedder* embedder, int16_t* ring, int capacity, int kept, int frames, int window,
                  int hop, const float* mean, float* embedding);

  // Whether frame f must still arrive: not kept, and in a window still to
  // come (a hop longer than the window skips frames: they need not be computed).
  bool Wants(int f) const override { return f >= kept_ && k_ < windows_ && f >= start_; }
  // Frames must come in order; a frame not Wanted is ignored.  The network's
  // error, or kEmbeddingInvalid for a NaN/inf output, stops the stream.
  Status OnFrame(int f, const int16_t* raw) override;
  // Makes `embedding` the L2-normalised sum of the L2-normalised window
  // embeddings, once every window has run (else kBadArgument: frames are missing).
  Status Finish();

 private:
  Status Check() const;
  // Runs every window still to come whose frames are all in (up to `last`).
  Status RunReady(int last);

  Embedder* embedder_;
  int16_t* ring_;
  int capacity_;
  int kept_;
  const float* mean_;
  int frames_;
  int window_;
  int hop_;
  int windows_;
  float* embedding_;
  int k_ = 0;      // the next window to run
  int start_ = 0;  // its first frame
};

class AudioCapture;

// Caller-owned work memory (static arrays on the device).  An utterance of at
// most frame_capacity frames is scored in one front-end pass: its frames are
// kept (int16 codes, not mean-normalised: 160 B a frame) until the mean is
// known, and each window reads them from there.  A longer one keeps its first frame_capacity frames in the
// first pass (the mean) and computes the others once more in a second, with
// `frames` as the WindowAssembler's ring, so any length is scored with memory
// for one chunk of audio and frame_capacity frames.
struct VerifierBuffers {
  int16_t* pcm;         // audio: one file chunk, or a whole utterance for EmbedUtterance
  size_t pcm_capacity;  // samples
  int16_t* frames;      // [frame_capacity][Fbank::kNumMelBins] kept codes
  int frame_capacity;   // >= the embedder's input_frames()
  // "@buffer": the microphone capture, whose frames live in `frames` (a file
  // scored meanwhile overwrites them, so it restarts the capture).  nullptr:
  // "@buffer" is the `buffered_samples` of `pcm`.
  AudioCapture* capture = nullptr;
};

class Verifier : public LineHandler {
 public:
  // `hop_frames`: frames between window starts (window_schedule.h); 0 means
  // the embedder's input_frames() (back-to-back windows), < 0 is refused by
  // EmbedUtterance with kBadArgument.
  Verifier(const Fbank* fbank, Embedder* embedder, EnrollmentStore* store, float threshold,
           const VerifierBuffers& buffers, const AudioLimits& limits, int hop_frames = 0);

  // Utterance embedding, the device scoring schedule of window_schedule.h:
  // features (Fbank::Compute(Features::kKept): kept codes) are mean-normalised
  // over the whole utterance (T frames), window k
  // of W = input_frames() rows starts at WindowStart(T, W, hop, k) and its row
  // t is frame (start + t) mod T -- an utterance shorter than one window (but
  // past CheckAudio's minimum) is wrapped cyclically to fill it.  The result
  // is the L2-normalised sum of the L2-normalised window embeddings.
  // Up to buffers.frame_capacity frames, each frame is computed once and kept
  // until the utterance mean is known (EmbedFrames); longer, the first pass
  // (the mean) keeps the first frame_capacity frames and the second computes
  // the others again from the PCM, in order, into the ring (the same codes as
  // FbankStream, bit for bit): rows shared by consecutive windows and
  // wrapped rows are read again, not recomputed.  Any number of frames kept
  // gives the same embedding, bit for bit.
  Status EmbedUtterance(const int16_t* pcm, size_t num_samples, float* embedding);

  // The same embedding from the frames of a FbankStream, kept by a FrameStore
  // as the audio arrived: `raw[frames][Fbank::kNumMelBins]` kept codes, not
  // mean-normalised, `mean` the stream's Mean().  Bit for bit EmbedUtterance of the same samples,
  // in one front-end pass (no frame is recomputed, no window buffer: each
  // window's rows go from `raw` to the network); the audio checks are the
  // caller's (CheckAudioStats on the AudioStats of the same chunks).
  Status EmbedFrames(const int16_t* raw, int frames, const float* mean, float* embedding);

  // The embedding of a PCM file (WAV or raw), streamed through buffers.pcm:
  // one pass keeping the frames when they fit in buffers.frames (T, mean,
  // audio checks and frames, then EmbedFrames), else two (T, mean and audio
  // checks; then the frames straight into the windows): bit for bit
  // EmbedUtterance of its samples, with memory for one chunk and
  // frame_capacity frames whatever the file's length.  Longer than
  // limits.max_samples: kAudioTooLong, or scored on its first max_samples
  // with limits.keep_first_samples.
  Status EmbedFile(const char* path, float* embedding);

  Status Enroll(const char* name, const int16_t* pcm, size_t num_samples);
  Status Verify(const char* name, const int16_t* pcm, size_t num_samples, Decision* decision);

  // Parses and runs one protocol line; `buffered_samples` is how much audio is
  // in buffers.pcm for "@buffer".  Writes a one-line reply.
  Status HandleLine(const char* line, size_t buffered_samples, char* reply,
                    size_t reply_size) override;

  const VerifierBuffers& buffers() const { return buffers_; }
  // The hop in use: hop_frames, or input_frames() when it was 0.
  int hop_frames() const { return hop_frames_ > 0 ? hop_frames_ : embedder_->input_frames(); }

 private:
  Status CheckShapes(int* window, int* hop) const;
  Status EmbedCapture(float* embedding);
  Status EmbedSource(const Command& command, size_t buffered_samples, float* embedding);
  Status StreamFile(PcmFileReader* file, size_t n, FbankStream* stream, FrameSink* sink,
                    AudioStats* stats);
  Status Execute(const Command& command, size_t buffered_samples, char* reply, size_t reply_size);

  const Fbank* fbank_;
  Embedder* embedder_;
  EnrollmentStore* store_;
  float threshold_;
  VerifierBuffers buffers_;
  AudioLimits limits_;
  int hop_frames_;
};

}  // namespace sv

#endif  // TFADVQ_VERIFIER_H_
