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
  // The radix-2 stages of sizes m and 2m fused into one pass (radix 2^2):
  // each group of four values is loaded and stored once for both stages, and
  // each twiddle once per pass.  The arithmetic is that of the two radix-2
  // butterflies; the second stage's upper twiddle W_2m^(k+m/2) = -i W_2m^k is
  // applied as -i times the lower one, exact where the table's
  // cos(pi/2) = 6e-17 was not.  The twiddle 1 (k = 0) skips its
  // multiplications, which are exact there.
  for (int m = 2; m < kHalf; m <<= 2) {
    const int q = m >> 1;  // the first stage's half
    const int step = 2 * m;
    for (int k = 0; k < q; ++k) {
      // Forward transform: twiddles exp(-2*pi*i*k/m) and exp(-2*pi*i*k/(2m)).
      const float w1r = cos_[k * (kHalf / m)];
      const float w1i = -sin_[k * (kHalf / m)];
      const float w2r = cos_[k * (kHalf / step)];
      const float w2i = -sin_[k * (kHalf / step)];
      for (int i0 = k; i0 < kHalf; i0 += step) {
        const int i1 = i0 + q;
        const int i2 = i0 + m;
        const int i3 = i2 + q;
        float t1r = re[i1];
        float t1i = im[i1];
        float t3r = re[i3];
        float t3i = im[i3];
        if (k != 0) {
          const float ar = t1r;
          t1r = ar * w1r - t1i * w1i;
          t1i = ar * w1i + t1i * w1r;
          const float br = t3r;
          t3r = br * w1r - t3i * w1i;
          t3i = br * w1i + t3i * w1r;
        }
        const float y0r = re[i0] + t1r;
        const float y0i = im[i0] + t1i;
        const float y1r = re[i0] - t1r;
        const float y1i = im[i0] - t1i;
        const float y2r = re[i2] + t3r;
        const float y2i = im[i2] + t3i;
        const float y3r = re[i2] - t3r;
        const float y3i = im[i2] - t3i;
        float ur = y2r;
        float ui = y2i;
        float vr = y3i;   // -i * y3
        float vi = -y3r;
        if (k != 0) {
          ur = y2r * w2r - y2i * w2i;
          ui = y2r * w2i + y2i * w2r;
          vr = y3r * w2i + y3i * w2r;
          vi = y3i * w2i - y3r * w2r;
        }
        re[i0] = y0r + ur;
        im[i0] = y0i + ui;
        re[i2] = y0r - ur;
        im[i2] = y0i - ui;
        re[i1] = y1r + vr;
        im[i1] = y1i + vi;
        re[i3] = y1r - vr;
        im[i3] = y1i - vi;
      }
    }
  }
}

template <int kN>
void RealFft<kN>::PowerSpectrum(const float* in, float* power) const {
  // Pack: re = even samples, im = odd samples, straight into bit-reversed order.
  float re[kHalf];
  float im[kHalf];
  for (int n = 0; n < kHalf; ++n) {
    const int j = bit_reverse_[n];
    re[j] = in[2 * n];
    im[j] = in[2 * n + 1];
  }
  ComplexInPlace(re, im);
  // X[k] = E[k] + exp(-2*pi*i*k/kN) O[k], with
  // E[k] = (Z[k] + conj(Z[-k])) / 2 and O[k] = (Z[k] - conj(Z[-k])) / (2i).
  // Bins k and kHalf - k read the same two values: their sums are shared
  // (float addition commutes, so each bin is what it would be alone).
  // k = 0 and k = kHalf: Z[0] with itself, twiddles 1 and -1.
  {
    const float er = 0.5f * (re[0] + re[0]);
    const float orr = 0.5f * (im[0] + im[0]);
    const float x0 = er + orr;  // twiddle 1: imaginary parts are 0
    const float xh = er - orr;  // twiddle -1
    power[0] = x0 * x0;
    power[kHalf] = xh * xh;
  }
  for (int k = 1; k <= kHalf / 2; ++k) {
    const int b = kHalf - k;
    const float sr = 0.5f * (re[k] + re[b]);
    const float dr = 0.5f * (re[k] - re[b]);
    const float si = 0.5f * (im[k] + im[b]);
    const float di = 0.5f * (im[k] - im[b]);
    // Bin k: E = (sr, di), O = (si, -dr).
    {
      const float c = split_cos_[k];
      const float s = -split_sin_[k];
      const float oi = -dr;
      const float xr = sr + si * c - oi * s;
      const float xi = di + si * s + oi * c;
      power[k] = xr * xr + xi * xi;
    }
    if (b == k) break;
    // Bin kHalf - k: E = (sr, -di), O = (si, dr).
    {
      const float c = split_cos_[b];
      const float s = -split_sin_[b];
      const float xr = sr + si * c - dr * s;
      const float xi = -di + si * s + dr * c;
      power[b] = xr * xr + xi * xi;
    }
  }
}

template class RealFft<512>;

}  // namespace sv
