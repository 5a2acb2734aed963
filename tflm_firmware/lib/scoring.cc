#include "scoring.h"

#include <cmath>

namespace sv {

float CosineScore(const float* a, const float* b, int n) {
  float dot = 0.0f;
  float aa = 0.0f;
  float bb = 0.0f;
  for (int i = 0; i < n; ++i) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  if (aa <= 0.0f || bb <= 0.0f) return 0.0f;
  return dot / (std::sqrt(aa) * std::sqrt(bb));
}

void L2Normalize(float* v, int n) {
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) sum += v[i] * v[i];
  if (sum <= 0.0f) return;
  const float scale = 1.0f / std::sqrt(sum);
  for (int i = 0; i < n; ++i) v[i] *= scale;
}

Decision Decide(const float* enrolled, const float* test, int n, float threshold) {
  const float score = CosineScore(enrolled, test, n);
  return Decision{score, threshold, score >= threshold};
}

}  // namespace sv
