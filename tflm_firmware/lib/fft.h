// Radix-2^2 real FFT with fixed-size tables (no allocation), for the fbank front end.
//
// A real sequence of kN samples is packed into a kN/2-point complex sequence
// (even samples -> real, odd -> imaginary), transformed with an iterative
// radix-2 FFT whose stages run in fused pairs (radix 2^2) and split into the kN/2 + 1 bins of the real spectrum.  That
// halves the work of a complex FFT of the zero-padded frame, which matters on a
// Cortex-M4 where the FFT dominates the front end.
#ifndef TFADVQ_FFT_H_
#define TFADVQ_FFT_H_

#include <cstddef>

namespace sv {

template <int kN>
class RealFft {
  static_assert(kN >= 8 && (kN & (kN - 1)) == 0 && ((kN / 2) & 0x55555555) != 0,
                "RealFft size: a power of two >= 8 whose half is a power of four (radix 2^2)");

 public:
  static constexpr int kHalf = kN / 2;

  RealFft();

  // Power spectrum |X[k]|^2 for k = 0..kN/2 of the real input `in[kN]`.
  // `power` must hold kN/2 + 1 values.  Uses 4*kN bytes of stack.
  void PowerSpectrum(const float* in, float* power) const;

 private:
  // The kHalf-point complex FFT of (re, im) given in bit-reversed order.
  void ComplexInPlace(float* re, float* im) const;

  unsigned short bit_reverse_[kHalf];
  float cos_[kHalf / 2];   // cos(2*pi*k/kHalf): twiddles of the kHalf-point FFT
  float sin_[kHalf / 2];
  float split_cos_[kHalf];  // cos(2*pi*k/kN): twiddles of the real split step
  float split_sin_[kHalf];
};

extern template class RealFft<512>;

}  // namespace sv

#endif  // TFADVQ_FFT_H_
