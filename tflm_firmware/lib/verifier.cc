#include "verifier.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "capture.h"
#include "pcm_io.h"

namespace sv {

namespace {

constexpr int kMels = Fbank::kNumMelBins;

// Runs the network on one window and adds its L2-normalised embedding to
// `sum[dim]`.  A NaN/inf network output must not be scored or enrolled.
Status AddWindow(Embedder* embedder, const WindowRows& rows, float* sum) {
  const int dim = embedder->embedding_size();
  if (dim <= 0 || dim > kMaxEmbedding) return Status::kModelBadShape;
  float part[kMaxEmbedding];
  const Status status = embedder->Embed(rows, part);
  if (status != Status::kOk) return status;
  for (int d = 0; d < dim; ++d) {
    if (!std::isfinite(part[d])) return Status::kEmbeddingInvalid;
  }
  L2Normalize(part, dim);
  for (int d = 0; d < dim; ++d) sum[d] += part[d];
  return Status::kOk;
}

}  // namespace

void WindowRows::Row(int t, float* out) const {
  int f = (start + t) % frames;
  if (slots > 0) f %= slots;
  const int16_t* row = raw + f * kMels;
  // As Fbank::Compute(Features::kKept) and tfadvq.features: float(code) is
  // exact, the difference rounds once, the power-of-two step is exact.
  for (int m = 0; m < kMels; ++m) out[m] = (static_cast<float>(row[m]) - mean[m]) * Fbank::kKeptStep;
}

void WindowRows::CopyTo(int rows, float* out) const {
  for (int t = 0; t < rows; ++t) Row(t, out + t * kMels);
}

void WindowRows::QuantizeTo(int rows, float scale, int zero_point, int8_t* out) const {
  float row[kMels];
  for (int t = 0; t < rows; ++t) {
    Row(t, row);
    for (int m = 0; m < kMels; ++m) out[t * kMels + m] = QuantizeInt8(row[m], scale, zero_point);
  }
}

int8_t QuantizeInt8(float value, float scale, int zero_point) {
  // Clamped before the conversion to int (NaN and huge values included), then
  // rounded half away from zero: one VRINTA where the FPU has it (M55: what
  // TFLM's kernel compiles to), else by hand (no libm call on the M4;
  // q - trunc(q) is exact in float).
  float q = value / scale;
  if (!(q > -256.0f)) q = -256.0f;
  if (q > 256.0f) q = 256.0f;
#if defined(__ARM_FP) && defined(__ARM_ARCH) && __ARM_ARCH >= 8  // FPv5 (M33/M55): VRINTA
  const int i = static_cast<int>(__builtin_roundf(q));
#else
  int i = static_cast<int>(q);
  const float frac = q - static_cast<float>(i);
  if (frac >= 0.5f) ++i;
  if (frac <= -0.5f) --i;
#endif
  const int v = i + zero_point;
  return static_cast<int8_t>(v < -128 ? -128 : (v > 127 ? 127 : v));
}

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
  if (*window > buffers_.frame_capacity || hop_frames_ < 0) return Status::kBadArgument;
  *hop = hop_frames();
  return Status::kOk;
}

WindowAssembler::WindowAssembler(Embedder* embedder, int16_t* ring, int capacity, int kept, int frames,
                                 int window, int hop, const float* mean, float* embedding)
    : embedder_(embedder),
      ring_(ring),
      capacity_(capacity),
      kept_(kept),
      mean_(mean),
      frames_(frames),
      window_(window),
      hop_(hop),
      windows_(WindowCount(frames, window, hop)),
      embedding_(embedding) {
  const int dim = embedder->embedding_size();
  for (int d = 0; d < dim && d < kMaxEmbedding; ++d) embedding_[d] = 0.0f;
}

Status WindowAssembler::Check() const {
  if (windows_ < 1) return Status::kAudioTooShort;
  if (kept_ < 0 || kept_ > capacity_ || (frames_ > capacity_ && capacity_ < window_)) {
    return Status::kBadArgument;
  }
  return Status::kOk;
}

Status WindowAssembler::RunReady(int last) {
  while (k_ < windows_) {
    // A short utterance (T < W, one window) ends at its last frame.
    const int end = frames_ < window_ ? frames_ - 1 : start_ + window_ - 1;
    if (end > last) break;
    const Status status =
        AddWindow(embedder_, WindowRows{ring_, frames_, start_, mean_, capacity_}, embedding_);
    if (status != Status::kOk) return status;
    if (++k_ < windows_) start_ = WindowStart(frames_, window_, hop_, k_);
  }
  return Status::kOk;
}

Status WindowAssembler::OnFrame(int f, const int16_t* raw) {
  Status status = Check();
  if (status != Status::kOk || !Wants(f)) return status;
  // Every frame before f is in (kept, arrived, or wanted by no window): the
  // windows they complete run before f takes the slot of frame f - capacity.
  status = RunReady(f - 1);
  if (status != Status::kOk || !Wants(f)) return status;
  std::memcpy(ring_ + (f % capacity_) * kMels, raw, sizeof(int16_t) * kMels);
  return RunReady(f);
}

Status WindowAssembler::Finish() {
  Status status = Check();
  if (status == Status::kOk) status = RunReady(kept_ - 1);
  if (status != Status::kOk) return status;
  if (k_ != windows_) return Status::kBadArgument;
  L2Normalize(embedding_, embedder_->embedding_size());
  return Status::kOk;
}

Status Verifier::EmbedUtterance(const int16_t* pcm, size_t num_samples, float* embedding) {
  int window = 0;
  int hop = 0;
  Status status = CheckShapes(&window, &hop);
  if (status != Status::kOk) return status;
  status = CheckAudio(pcm, num_samples, limits_);
  if (status != Status::kOk) return status;
  // First pass: the utterance mean of the kept codes, summed as FbankStream
  // does (exactly), keeping the frames that fit (no FbankStream here, whose
  // frame of samples would add to the stack).
  const int frames = FbankNumFrames(num_samples);
  if (frames < 1) return Status::kAudioTooShort;  // limits below 400 samples
  const int capacity = buffers_.frame_capacity;
  int64_t sums[kMels] = {};
  int16_t row[kMels];
  for (int t = 0; t < frames; ++t) {
    int16_t* out = t < capacity ? buffers_.frames + t * kMels : row;
    fbank_->ComputeKeptFrame(pcm + t * Fbank::kFrameShift, out);
    for (int m = 0; m < kMels; ++m) sums[m] += out[m];
  }
  float mean[kMels];
  KeptMean(sums, frames, mean);
  if (frames <= capacity) return EmbedFrames(buffers_.frames, frames, mean, embedding);
  // Second pass: each frame a window needs beyond the kept ones, computed once, in order.
  WindowAssembler windows(embedder_, buffers_.frames, capacity, capacity, frames, window, hop, mean,
                          embedding);
  for (int t = capacity; t < frames && status == Status::kOk; ++t) {
    if (!windows.Wants(t)) continue;
    fbank_->ComputeKeptFrame(pcm + t * Fbank::kFrameShift, row);
    status = windows.OnFrame(t, row);
  }
  return status == Status::kOk ? windows.Finish() : status;
}

Status Verifier::EmbedFrames(const int16_t* raw, int frames, const float* mean, float* embedding) {
  int window = 0;
  int hop = 0;
  Status status = CheckShapes(&window, &hop);
  if (status != Status::kOk) return status;
  if (raw == nullptr || mean == nullptr || frames < 0) return Status::kBadArgument;
  const int windows = WindowCount(frames, window, hop);
  if (windows < 1) return Status::kAudioTooShort;
  const int dim = embedder_->embedding_size();
  for (int d = 0; d < dim; ++d) embedding[d] = 0.0f;
  for (int k = 0; k < windows && status == Status::kOk; ++k) {
    status = AddWindow(embedder_, WindowRows{raw, frames, WindowStart(frames, window, hop, k), mean},
                       embedding);
  }
  if (status == Status::kOk) L2Normalize(embedding, dim);
  return status;
}

Status Verifier::StreamFile(PcmFileReader* file, size_t n, FbankStream* stream, FrameSink* sink,
                            AudioStats* stats) {
  for (size_t done = 0; done < n;) {
    const size_t left = n - done;
    const size_t chunk = left < buffers_.pcm_capacity ? left : buffers_.pcm_capacity;
    Status status = file->Read(buffers_.pcm, chunk);
    if (status != Status::kOk) return status;
    if (stats != nullptr) stats->Add(buffers_.pcm, chunk, limits_);
    status = stream->Push(buffers_.pcm, chunk, sink);
    if (status != Status::kOk) return status;
    done += chunk;
  }
  return Status::kOk;
}

Status Verifier::EmbedFile(const char* path, float* embedding) {
  PcmFileReader file;
  Status status = file.Open(path);
  if (status != Status::kOk) return status;
  size_t n = file.num_samples();
  if (n > limits_.max_samples) {
    if (!limits_.keep_first_samples) return Status::kAudioTooLong;
    n = limits_.max_samples;  // as a recording that stopped there
  }
  int window = 0;
  int hop = 0;
  status = CheckShapes(&window, &hop);
  if (status != Status::kOk) return status;
  if (n < limits_.min_samples) return Status::kAudioTooShort;  // before reading it
  if (buffers_.pcm_capacity == 0) return Status::kBadArgument;
  // Pass 1: the frame count, the utterance mean and the audio checks; the
  // frames too, as many as fit.
  FbankStream stream(fbank_);
  AudioStats stats;
  const int capacity = buffers_.frame_capacity;
  FrameStore kept(buffers_.frames, capacity, FrameStore::kKeepFirst);
  status = StreamFile(&file, n, &stream, &kept, &stats);
  if (status == Status::kOk) status = CheckAudioStats(stats, limits_);
  if (status != Status::kOk) return status;
  const int frames = stream.frames();
  if (frames < 1) return Status::kAudioTooShort;  // limits below 400 samples
  float mean[kMels];
  stream.Mean(mean);
  if (frames <= capacity) return EmbedFrames(buffers_.frames, frames, mean, embedding);
  // Pass 2: the frames not kept again (the others are not computed), straight into the windows.
  WindowAssembler windows(embedder_, buffers_.frames, capacity, capacity, frames, window, hop, mean,
                          embedding);
  stream.Reset();
  status = file.Rewind();
  if (status == Status::kOk) status = StreamFile(&file, n, &stream, &windows, nullptr);
  return status == Status::kOk ? windows.Finish() : status;
}

Status Verifier::EmbedCapture(float* embedding) {
  const AudioCapture& capture = *buffers_.capture;
  Status status = CheckAudioStats(capture.stats(), limits_);
  if (status != Status::kOk) return status;
  float mean[kMels];
  capture.Mean(mean);
  return EmbedFrames(capture.rows(), capture.frames(), mean, embedding);
}

Status Verifier::EmbedSource(const Command& command, size_t buffered_samples, float* embedding) {
  if (std::strcmp(command.path, kBufferSource) != 0) {
    // The file's frames go where the capture keeps its own.
    if (buffers_.capture != nullptr) buffers_.capture->Restart();
    return EmbedFile(command.path, embedding);
  }
  if (buffers_.capture != nullptr) return EmbedCapture(embedding);
  if (buffered_samples > buffers_.pcm_capacity) return Status::kBadArgument;
  return EmbedUtterance(buffers_.pcm, buffered_samples, embedding);
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

Status Verifier::Execute(const Command& command, size_t buffered_samples, char* reply,
                         size_t reply_size) {
  Status status = Status::kOk;
  switch (command.type) {
    case CommandType::kEnroll: {
      float embedding[kMaxEmbedding];
      status = store_->CanEnroll(command.name);  // before reading audio
      if (status == Status::kOk) status = EmbedSource(command, buffered_samples, embedding);
      if (status == Status::kOk) status = store_->Enroll(command.name, embedding);
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
      float embedding[kMaxEmbedding];
      status = store_->Find(command.name, &mean, &utterances);  // before reading audio
      if (status == Status::kOk) status = EmbedSource(command, buffered_samples, embedding);
      if (status == Status::kOk) d = Decide(mean, embedding, embedder_->embedding_size(), threshold_);
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
