// Cosine scoring of a test embedding against an enrolled speaker model.
#ifndef TFADVQ_SCORING_H_
#define TFADVQ_SCORING_H_

namespace sv {

struct Decision {
  float score;
  float threshold;
  bool accepted;  // score >= threshold
};

// Cosine similarity of a[n] and b[n]; 0 when either vector is all zeros
// (an undefined angle must never look like a match).
float CosineScore(const float* a, const float* b, int n);

// Scales v[n] to unit L2 norm; leaves an all-zero vector unchanged.
void L2Normalize(float* v, int n);

// Scores `test` against `enrolled` and compares with the calibrated threshold.
Decision Decide(const float* enrolled, const float* test, int n, float threshold);

}  // namespace sv

#endif  // TFADVQ_SCORING_H_
