// One speaker-embedding network on TFLite Micro, behind sv::Embedder.
//
// Each runner owns its interpreter (constructed in place, no heap) and uses an
// arena the caller provides, so several runners -- e.g. a low-bit model that
// screens every attempt and a higher-bit one that settles close calls -- can
// live on one device side by side, sharing one op resolver.
#ifndef TFADVQ_MODEL_RUNNER_H_
#define TFADVQ_MODEL_RUNNER_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "verifier.h"

namespace sv {

// What the converter's model_config.h / model_data.cc say about one model.
struct ModelSpec {
  const char* name;               // for messages ("low-bit", "main")
  const unsigned char* data;      // g_model (alignas(16))
  size_t size;                    // g_model_len
  size_t expected_size;           // TFADVQ_MODEL_BYTES
  uint32_t version;               // TFADVQ_MODEL_VERSION
  uint32_t expected_version;      // the version this firmware was written for
  int input_frames;               // TFADVQ_INPUT_FRAMES
  int num_mel_bins;               // TFADVQ_NUM_MEL_BINS
  int embed_dim;                  // TFADVQ_EMBED_DIM
  uint8_t* arena;                 // alignas(16) static buffer
  size_t arena_bytes;             // TFADVQ_ARENA_BYTES + margin
};

class ModelRunner : public Embedder {
 public:
  explicit ModelRunner(const ModelSpec& spec) : spec_(spec) {}
  ~ModelRunner() override;
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // Checks the blob (size, "TFL3", schema), the model version, then builds the
  // interpreter and checks tensor shapes/types against the spec:
  // kModelTruncated / kModelBadIdentifier / kModelBadVersion / kModelBadShape /
  // kInterpreterError (missing op, arena too small) / kBadArgument (arena alignment).
  Status Init(const tflite::MicroOpResolver& resolver);

  int input_frames() const override { return spec_.input_frames; }
  int embedding_size() const override { return spec_.embed_dim; }
  // Writes the window's rows straight into the input tensor (quantised for an
  // int8 input), runs the network and dequantises its output.
  Status Embed(const WindowRows& window, float* embedding) override;

  size_t arena_used_bytes() const;
  const ModelSpec& spec() const { return spec_; }

 private:
  Status CheckShapes();

  ModelSpec spec_;
  tflite::MicroInterpreter* interpreter_ = nullptr;
  alignas(tflite::MicroInterpreter) unsigned char storage_[sizeof(tflite::MicroInterpreter)];
};

}  // namespace sv

#endif  // TFADVQ_MODEL_RUNNER_H_
