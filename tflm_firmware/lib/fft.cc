#include "fft.h"

#include <cmath>

namespace sv {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

template <int kN>
RealFft<kN>::RealFft() {
  int bits = 0;
  while ((1 << bits) < kHalf) ++bits;
  for (int i = 0; i < kHalf; ++i) {
    int r = 0;
    for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
    bit_reverse_[i] = static_cast<unsigned short>(r);
  }
  for (int k = 0; k < kHalf / 2; ++k) {
    cos_[k] = static_cast<float>(std::cos(2 * kPi * k / kHalf));
    sin_[k] = static_cast<float>(std::sin(2 * kPi * k / kHalf));
  }
  for (int k = 0; k < kHalf; ++k) {
    split_cos_[k] = static_cast<float>(std::cos(2 * kPi * k / kN));
    split_sin_[k] = static_cast<float>(std::sin(2 * kPi * k / kN));
  }
}

template <int kN>
void RealFft<kN>::ComplexInPlace(float* re, float* im) const {
  for (int i = 0; i < kHalf; ++i) {
    const int j = bit_reverse_[i];
    if (j > i) {
      float t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }
  }
  for (int size = 2; size <= kHalf; size <<= 1) {
    const int half = size >> 1;
    const int stride = kHalf / size;
    for (int start = 0; start < kHalf; start += size) {
      for (int k = 0; k < half; ++k) {
        // Forward transform: twiddle exp(-2*pi*i*k/size).
        const float wr = cos_[k * stride];
        const float wi = -sin_[k * stride];
        const int a = start + k;
        const int b = a + half;
        const float tr = re[b] * wr - im[b] * wi;
        const float ti = re[b] * wi + im[b] * wr;
        re[b] = re[a] - tr;
        im[b] = im[a] - ti;
        re[a] += tr;
        im[a] += ti;
      }
    }
  }
}

template <int kN>
void RealFft<kN>::PowerSpectrum(const float* in, float* power) const {
  // Pack: re = even samples, im = odd samples.
  float re[kHalf];
  float im[kHalf];
  for (int n = 0; n < kHalf; ++n) {
    re[n] = in[2 * n];
    im[n] = in[2 * n + 1];
  }
  ComplexInPlace(re, im);
  // X[k] = E[k] + exp(-2*pi*i*k/kN) O[k], with
  // E[k] = (Z[k] + conj(Z[-k])) / 2 and O[k] = (Z[k] - conj(Z[-k])) / (2i).
  for (int k = 0; k <= kHalf; ++k) {
    const int a = k % kHalf;
    const int b = (kHalf - k) % kHalf;
    const float er = 0.5f * (re[a] + re[b]);
    const float ei = 0.5f * (im[a] - im[b]);
    const float orr = 0.5f * (im[a] + im[b]);
    const float oi = -0.5f * (re[a] - re[b]);
    float c = 1.0f;
    float s = 0.0f;
    if (k < kHalf) {
      c = split_cos_[k];
      s = -split_sin_[k];
    } else {
      c = -1.0f;
    }
    const float xr = er + orr * c - oi * s;
    const float xi = ei + orr * s + oi * c;
    power[k] = xr * xr + xi * xi;
  }
}

template class RealFft<512>;

}  // namespace sv
