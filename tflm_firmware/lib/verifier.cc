#include "verifier.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "pcm_io.h"

namespace sv {

Verifier::Verifier(const Fbank* fbank, Embedder* embedder, EnrollmentStore* store,
                   float threshold, const VerifierBuffers& buffers, const AudioLimits& limits,
                   int hop_frames)
    : fbank_(fbank),
      embedder_(embedder),
      store_(store),
      threshold_(threshold),
      buffers_(buffers),
      limits_(limits),
      hop_frames_(hop_frames) {}

Status Verifier::CheckShapes(int* window, int* hop) const {
  const int dim = embedder_->embedding_size();
  *window = embedder_->input_frames();
  if (dim <= 0 || dim > kMaxEmbedding || *window <= 0) return Status::kModelBadShape;
  if (*window > buffers_.window_frames || hop_frames_ < 0) return Status::kBadArgument;
  *hop = hop_frames();
  return Status::kOk;
}

// The window loop of both entry points.  `raw_frame(f, row)` writes frame f,
// not mean-normalised, into `row`; each frame is asked for at most once.
template <typename RawFrame>
Status Verifier::EmbedWindows(int frames, int window, int hop, const float* mean,
                              RawFrame raw_frame, float* embedding) {
  const int dim = embedder_->embedding_size();
  const int windows = WindowCount(frames, window, hop);
  if (windows < 1) return Status::kAudioTooShort;  // no frame at all
  constexpr int kMels = Fbank::kNumMelBins;
  constexpr size_t kRowBytes = sizeof(float) * kMels;
  float* features = buffers_.features;
  float part[kMaxEmbedding];
  std::memset(embedding, 0, sizeof(float) * dim);
  int previous = 0;
  for (int k = 0; k < windows; ++k) {
    const int start = WindowStart(frames, window, hop, k);
    int first_new = 0;  // rows [0, first_new) already hold this window's frames
    if (k > 0 && start - previous < window) {  // overlap with the previous window
      const int shift = start - previous;        // > 0: starts increase
      std::memmove(features, features + shift * kMels, kRowBytes * (window - shift));
      first_new = window - shift;
    }
    for (int t = first_new; t < window; ++t) {
      float* row = features + t * kMels;
      if (t >= frames) {  // wrapped: frame (start + t) mod T is already in row t - T
        std::memcpy(row, row - frames * kMels, kRowBytes);
        continue;
      }
      raw_frame((start + t) % frames, row);
      for (int m = 0; m < kMels; ++m) row[m] -= mean[m];
    }
    previous = start;
    const Status status = embedder_->Embed(features, part);
    if (status != Status::kOk) return status;
    for (int d = 0; d < dim; ++d) {  // a NaN/inf network output must not be scored or enrolled
      if (!std::isfinite(part[d])) return Status::kEmbeddingInvalid;
    }
    L2Normalize(part, dim);
    for (int d = 0; d < dim; ++d) embedding[d] += part[d];
  }
  L2Normalize(embedding, dim);
  return Status::kOk;
}

Status Verifier::EmbedUtterance(const int16_t* pcm, size_t num_samples, float* embedding) {
  int window = 0;
  int hop = 0;
  Status status = CheckShapes(&window, &hop);
  if (status != Status::kOk) return status;
  status = CheckAudio(pcm, num_samples, limits_);
  if (status != Status::kOk) return status;
  // First pass: the utterance mean, summed frame by frame as FbankStream and
  // SubtractMean do (the same floats), in the window buffer: no FbankStream
  // here, whose frame of samples would add 1.4 KB to the stack.
  const int frames = FbankNumFrames(num_samples);
  if (frames < 1) return Status::kAudioTooShort;  // limits below 400 samples
  float mean[Fbank::kNumMelBins] = {};
  for (int t = 0; t < frames; ++t) {
    fbank_->ComputeFrame(pcm + t * Fbank::kFrameShift, buffers_.features);
    for (int m = 0; m < Fbank::kNumMelBins; ++m) mean[m] += buffers_.features[m];
  }
  for (int m = 0; m < Fbank::kNumMelBins; ++m) mean[m] /= frames;
  // Second pass: each window's frames recomputed from the samples.
  const Fbank* fbank = fbank_;
  return EmbedWindows(frames, window, hop, mean,
                      [fbank, pcm](int f, float* row) {
                        fbank->ComputeFrame(pcm + f * Fbank::kFrameShift, row);
                      },
                      embedding);
}

Status Verifier::EmbedFrames(const float* raw, int frames, const float* mean, float* embedding) {
  int window = 0;
  int hop = 0;
  const Status status = CheckShapes(&window, &hop);
  if (status != Status::kOk) return status;
  if (raw == nullptr || mean == nullptr || frames < 0) return Status::kBadArgument;
  return EmbedWindows(frames, window, hop, mean,
                      [raw](int f, float* row) {
                        std::memcpy(row, raw + f * Fbank::kNumMelBins,
                                    sizeof(float) * Fbank::kNumMelBins);
                      },
                      embedding);
}

Status Verifier::Enroll(const char* name, const int16_t* pcm, size_t num_samples) {
  Status status = store_->CanEnroll(name);  // a full store refuses before the costly part
  if (status != Status::kOk) return status;
  float embedding[kMaxEmbedding];
  status = EmbedUtterance(pcm, num_samples, embedding);
  return status == Status::kOk ? store_->Enroll(name, embedding) : status;
}

Status Verifier::Verify(const char* name, const int16_t* pcm, size_t num_samples,
                        Decision* decision) {
  const float* model = nullptr;
  uint32_t utterances = 0;
  Status status = store_->Find(name, &model, &utterances);  // before the costly part
  if (status != Status::kOk) return status;
  float embedding[kMaxEmbedding];
  status = EmbedUtterance(pcm, num_samples, embedding);
  if (status != Status::kOk) return status;
  *decision = Decide(model, embedding, embedder_->embedding_size(), threshold_);
  return Status::kOk;
}

Status Verifier::Audio(const Command& command, size_t buffered_samples, size_t* num_samples) {
  if (std::strcmp(command.path, kBufferSource) == 0) {
    *num_samples = buffered_samples;
    return buffered_samples <= buffers_.pcm_capacity ? Status::kOk : Status::kBadArgument;
  }
  return LoadPcmFile(command.path, buffers_.pcm, buffers_.pcm_capacity, num_samples,
                     limits_.keep_first_samples);
}

Status Verifier::Execute(const Command& command, size_t buffered_samples, char* reply,
                         size_t reply_size) {
  size_t n = 0;
  Status status = Status::kOk;
  switch (command.type) {
    case CommandType::kEnroll: {
      status = store_->CanEnroll(command.name);  // before reading audio
      if (status == Status::kOk) status = Audio(command, buffered_samples, &n);
      if (status == Status::kOk) status = Enroll(command.name, buffers_.pcm, n);
      const float* mean = nullptr;
      uint32_t utterances = 0;
      if (status == Status::kOk) status = store_->Find(command.name, &mean, &utterances);
      if (status == Status::kOk) {
        std::snprintf(reply, reply_size, "OK enrolled %s utterances=%lu", command.name,
                      static_cast<unsigned long>(utterances));
      }
      break;
    }
    case CommandType::kVerify: {
      Decision d{};
      const float* mean = nullptr;
      uint32_t utterances = 0;
      status = store_->Find(command.name, &mean, &utterances);  // before reading audio
      if (status == Status::kOk) status = Audio(command, buffered_samples, &n);
      if (status == Status::kOk) status = Verify(command.name, buffers_.pcm, n, &d);
      if (status == Status::kOk) {
        std::snprintf(reply, reply_size, "OK %s %s score=%.4f threshold=%.4f",
                      d.accepted ? "ACCEPT" : "REJECT", command.name, static_cast<double>(d.score),
                      static_cast<double>(d.threshold));
      }
      break;
    }
    case CommandType::kDelete:
      status = store_->Delete(command.name);
      if (status == Status::kOk) std::snprintf(reply, reply_size, "OK deleted %s", command.name);
      break;
    case CommandType::kList: {
      status = store_->state();
      if (status != Status::kOk) break;
      int used = std::snprintf(reply, reply_size, "OK %d", store_->count());
      for (int i = 0; i < store_->count() && used > 0 && static_cast<size_t>(used) < reply_size;
           ++i) {
        used += std::snprintf(reply + used, reply_size - used, " %s:%lu", store_->name_at(i),
                              static_cast<unsigned long>(store_->utterances_at(i)));
      }
      break;
    }
    case CommandType::kFormat:
      status = store_->Format();
      if (status == Status::kOk) std::snprintf(reply, reply_size, "OK formatted");
      break;
  }
  return status;
}

Status Verifier::HandleLine(const char* line, size_t buffered_samples, char* reply,
                            size_t reply_size) {
  Command command;
  Status status = ParseCommand(line, &command);
  if (status == Status::kOk) status = Execute(command, buffered_samples, reply, reply_size);
  if (status != Status::kOk) std::snprintf(reply, reply_size, "ERR %s", StatusName(status));
  return status;
}

}  // namespace sv
