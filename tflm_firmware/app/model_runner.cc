#include "model_runner.h"

#include <new>

#include "model_check.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace sv {

namespace {

bool TypeSupported(const TfLiteTensor* t) {
  return t->type == kTfLiteFloat32 || t->type == kTfLiteInt8;
}

int Elements(const TfLiteTensor* t) {
  int n = 1;
  for (int i = 0; i < t->dims->size; ++i) n *= t->dims->data[i];
  return n;
}

}  // namespace

ModelRunner::~ModelRunner() {
  if (interpreter_ != nullptr) interpreter_->~MicroInterpreter();
}

Status ModelRunner::Init(const tflite::MicroOpResolver& resolver) {
  if (interpreter_ != nullptr) return Status::kOk;
  ModelBlobInfo info{};
  Status status = CheckModelBlob(spec_.data, spec_.size, spec_.expected_size, &info);
  if (status != Status::kOk) return status;
  if (spec_.version != spec_.expected_version) return Status::kModelBadVersion;
  if (spec_.arena == nullptr || reinterpret_cast<uintptr_t>(spec_.arena) % 16 != 0) {
    return Status::kBadArgument;
  }
  const tflite::Model* model = tflite::GetModel(spec_.data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return Status::kModelBadVersion;
  interpreter_ = new (storage_) tflite::MicroInterpreter(model, resolver, spec_.arena,
                                                         spec_.arena_bytes);
  if (interpreter_->AllocateTensors() != kTfLiteOk) return Status::kInterpreterError;
  return CheckShapes();
}

Status ModelRunner::CheckShapes() {
  if (interpreter_->inputs_size() != 1 || interpreter_->outputs_size() != 1) {
    return Status::kModelBadShape;
  }
  const TfLiteTensor* in = interpreter_->input(0);
  const TfLiteTensor* out = interpreter_->output(0);
  if (!TypeSupported(in) || !TypeSupported(out)) return Status::kModelBadShape;
  // Input [1, frames, mels] (a trailing channel axis of 1 is allowed).
  const TfLiteIntArray* d = in->dims;
  if (spec_.num_mel_bins != Fbank::kNumMelBins || d->size < 3 || d->data[0] != 1 ||
      d->data[1] != spec_.input_frames ||
      d->data[2] != spec_.num_mel_bins ||
      Elements(in) != spec_.input_frames * spec_.num_mel_bins) {
    return Status::kModelBadShape;
  }
  if (out->dims->size != 2 || out->dims->data[0] != 1 || out->dims->data[1] != spec_.embed_dim ||
      spec_.embed_dim > kMaxEmbedding) {
    return Status::kModelBadShape;
  }
  return Status::kOk;
}

Status ModelRunner::Embed(const WindowRows& window, float* embedding) {
  if (interpreter_ == nullptr) return Status::kInterpreterError;
  TfLiteTensor* in = interpreter_->input(0);
  if (in->type == kTfLiteFloat32) {
    window.CopyTo(spec_.input_frames, in->data.f);
  } else {
    window.QuantizeTo(spec_.input_frames, in->params.scale, in->params.zero_point, in->data.int8);
  }
  if (interpreter_->Invoke() != kTfLiteOk) return Status::kInterpreterError;
  const TfLiteTensor* out = interpreter_->output(0);
  for (int i = 0; i < spec_.embed_dim; ++i) {
    embedding[i] = out->type == kTfLiteFloat32
                       ? out->data.f[i]
                       : (out->data.int8[i] - out->params.zero_point) * out->params.scale;
  }
  return Status::kOk;
}

size_t ModelRunner::arena_used_bytes() const {
  return interpreter_ == nullptr ? 0 : interpreter_->arena_used_bytes();
}

}  // namespace sv
