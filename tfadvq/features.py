"""Log Mel filterbank ("fbank") features in pure TensorFlow, Kaldi conventions.

The same definition runs in ``tf.data`` (graph mode), inside a Keras model
(:class:`Fbank` layer) and -- ported by hand -- in the C++ firmware, so it is
spelled out here exactly.  With the defaults of :class:`FbankConfig`:

1. **Scale**: ``x = waveform * 32768`` (Kaldi works on int16-range samples).
2. **Framing** (Kaldi ``snip_edges=true``): frame length ``N = 400`` samples
   (25 ms at 16 kHz), shift ``S = 160`` (10 ms);
   ``num_frames = 0 if n < N else 1 + (n - N) // S``; frame ``t`` holds
   ``x[t*S : t*S + N]``.  Trailing samples that do not fill a frame are dropped.
3. **Dither**: none (Kaldi's dither is 0 at evaluation; tfadvq never dithers).
4. **DC removal**: ``f[i] -= mean(f)`` over the frame's ``N`` samples.
5. **Pre-emphasis** (coefficient ``p = 0.97``): ``g[i] = f[i] - p*f[i-1]`` for
   ``i >= 1`` and ``g[0] = f[0] - p*f[0]``.
6. **Window** (Povey): ``w[i] = (0.5 - 0.5*cos(2*pi*i/(N-1)))**0.85``,
   ``i = 0..N-1``; ``h = g * w``.
7. **FFT**: zero-pad ``h`` to ``K = 512`` (next power of two of ``N``) and take
   the real FFT; **power** spectrum ``P[k] = re^2 + im^2``, ``k = 0..K/2``.
8. **Mel banks** (Kaldi, not HTK/Slaney): ``mel(f) = 1127 * ln(1 + f/700)``;
   ``low = mel(20)``, ``high = mel(8000)`` (``high_freq <= 0`` means Nyquist
   plus ``high_freq``); ``d = (high - low) / (M + 1)`` with ``M = 80`` bins.
   Bin ``m`` (0-based) has edges ``l = low + m*d``, ``c = l + d``, ``r = l + 2d``.
   For FFT bin ``k = 0..K/2 - 1`` (the Nyquist bin ``K/2`` gets weight 0) with
   ``z = mel(k * sr / K)``: weight ``(z - l)/(c - l)`` if ``l < z <= c``,
   ``(r - z)/(r - c)`` if ``c < z < r``, else 0.  Triangles are not normalised.
9. **Log**: ``E[m] = ln(max(sum_k P[k] * W[k, m], eps))`` with
   ``eps = FLT_EPSILON = 1.1920929e-07``.
10. **Mean normalisation** (``mean_norm=True``): subtract, per utterance, the mean
    of ``E`` over all frames (the frames axis, ``-2``).

10b. **The firmware's kept frames** (``int16_frames=True``, not a training option:
    what the device computes, which keeps frames in int16 until the utterance mean is
    known; ``tflm_firmware/lib/fbank.h``): codes ``c = sign(q) * floor(|q| + 0.5) - 16384``
    with ``q = E * 2**10`` (half away from zero, the sum in float32; clamped to int16),
    then ``(c - mean(c)) * 2**-10`` with the
    mean of the codes summed exactly (float32 ``sum / frames``), instead of step 10;
    without ``mean_norm``, ``(c + 16384) * 2**-10``.  Every value is within
    ``2**-10`` of step 10's; :func:`converters.tflm.tflm_embedder` computes these, so
    the Python TFLM scorer and the firmware feed the network the same int8 tensor.

Other front ends (fields of :class:`FbankConfig` beyond Kaldi's): ``window:
hann_periodic`` is ``0.5 - 0.5*cos(2*pi*i/N)`` (``tf.signal.stft``'s default);
``spectrum: magnitude`` weighs ``|X| = sqrt(P)`` instead of ``P`` in step 8;
step 9 becomes ``E' = max(E + log_offset, log_floor)`` then ``ln``, ``log10``
or ``10*log10`` (``log: natural | log10 | db``).  ``features: host`` means the
host computes the features some other way: :func:`fbank` refuses it.

Steps 1-9 equal ``kaldi-native-fbank`` with ``dither=0``, ``num_bins=80`` (see
tests/test_features.py for the measured agreement); :func:`mel_filterbank` and
:func:`frame_window` give the constants a port needs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfadvq.compat import keras, tf
from tfadvq.config import from_dict, to_dict
from tfadvq.errors import ConfigError
from tfadvq.fbank_config import FLOAT_EPS, FbankConfig, LogScale, Spectrum, Window, num_frames

__all__ = ["FLOAT_EPS", "Fbank", "FbankConfig", "Window", "fbank", "frame_window", "mel_filterbank",
           "num_frames"]


def _mel(freq: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(freq, np.float64) / 700.0)


def mel_filterbank(config: FbankConfig | None = None) -> np.ndarray:
    """Kaldi triangular mel weights, float32 ``[fft_length // 2 + 1, num_mel_bins]``."""
    config = config or FbankConfig()
    half = config.fft_length // 2
    nyquist = config.sample_rate / 2
    high = config.high_freq if config.high_freq > 0 else nyquist + config.high_freq
    low_mel, high_mel = _mel(config.low_freq), _mel(high)
    delta = (high_mel - low_mel) / (config.num_mel_bins + 1)
    left = low_mel + delta * np.arange(config.num_mel_bins)
    center, right = left + delta, left + 2 * delta
    z = _mel(np.arange(half) * config.sample_rate / config.fft_length)[:, None]
    rising = (z - left) / (center - left)
    falling = (right - z) / (right - center)
    weights = np.where((z > left) & (z <= center), rising,
                       np.where((z > center) & (z < right), falling, 0.0))
    nyquist_row = np.zeros((1, config.num_mel_bins))
    return np.concatenate([weights, nyquist_row]).astype(np.float32)


def frame_window(config: FbankConfig | None = None) -> np.ndarray:
    """The analysis window, float32 ``[frame_length]`` (Kaldi definitions)."""
    config = config or FbankConfig()
    n = config.frame_length
    a = 2 * np.pi * np.arange(n) / (n - 1)
    windows = {
        Window.POVEY: (0.5 - 0.5 * np.cos(a)) ** 0.85,
        Window.HAMMING: 0.54 - 0.46 * np.cos(a),
        Window.HANNING: 0.5 - 0.5 * np.cos(a),
        Window.RECTANGULAR: np.ones(n),
        Window.HANN_PERIODIC: 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n),
    }
    return windows[config.window].astype(np.float32)


def fbank(waveform: tf.Tensor, config: FbankConfig | None = None) -> tf.Tensor:
    """Log mel features ``[..., frames, num_mel_bins]`` of float waveforms ``[..., samples]``.

    ``waveform`` holds samples in [-1, 1] at ``config.sample_rate``; any
    leading batch dimensions pass through.  Pure TF ops, so it traces in
    ``tf.data`` maps and Keras models alike.
    """
    config = config or FbankConfig()
    if not config.computable:
        raise ConfigError(f"the model's front end is computed by the host (features: {config.features.value}, "
                          f"{config.num_mel_bins} features per frame): tfadvq cannot compute it from audio; give "
                          "the model's inputs as an array (--inputs X.npy) or declare a front end tfadvq computes")
    x = tf.convert_to_tensor(waveform, tf.float32) * config.waveform_scale
    frames = tf.signal.frame(x, config.frame_length, config.frame_shift, pad_end=False)
    if config.remove_dc_offset:
        frames -= tf.reduce_mean(frames, axis=-1, keepdims=True)
    if config.preemph_coeff:
        previous = tf.concat([frames[..., :1], frames[..., :-1]], axis=-1)
        frames -= config.preemph_coeff * previous
    frames *= frame_window(config)
    padding = [[0, 0]] * (frames.shape.rank - 1) + [[0, config.fft_length - config.frame_length]]
    spectrum = tf.signal.rfft(tf.pad(frames, padding), fft_length=[config.fft_length])
    power = tf.math.square(tf.math.real(spectrum)) + tf.math.square(tf.math.imag(spectrum))
    if config.spectrum == Spectrum.MAGNITUDE:
        power = tf.math.sqrt(power)
    energies = tf.tensordot(power, mel_filterbank(config), axes=1)
    features = tf.math.log(tf.maximum(energies + config.log_offset, config.log_floor))
    if config.log != LogScale.NATURAL:
        features *= (10.0 if config.log == LogScale.DB else 1.0) / float(np.log(10.0))
    if config.int16_frames:
        return _int16_frames(features, config.mean_norm)
    if config.mean_norm:
        features -= tf.reduce_mean(features, axis=-2, keepdims=True)
    return features


INT16_FRAME_SCALE = 1024.0  # the firmware's kept frames (step 10b): codes in steps of 2**-10 ...
INT16_FRAME_OFFSET = 16384.0  # ... offset so that they span log mel energies [-16, 48)


def _int16_frames(features: tf.Tensor, mean_norm: bool) -> tf.Tensor:
    """Step 10b, operation for operation as the firmware's float32 arithmetic (the same values, bit for bit)."""
    scaled = features * INT16_FRAME_SCALE  # a power of two: exact
    rounded = tf.sign(scaled) * tf.floor(tf.abs(scaled) + 0.5)  # half away from zero, the sum rounded in float32
    codes = tf.clip_by_value(rounded - INT16_FRAME_OFFSET, -32768.0, 32767.0)
    if not mean_norm:
        return (codes + INT16_FRAME_OFFSET) / INT16_FRAME_SCALE
    sums = tf.reduce_sum(tf.cast(codes, tf.int64), axis=-2, keepdims=True)  # exact, as the firmware's int64
    count = tf.cast(tf.shape(codes)[-2], tf.float32)
    return (codes - tf.cast(sums, tf.float32) / count) / INT16_FRAME_SCALE


@keras.utils.register_keras_serializable(package="tfadvq")
class Fbank(keras.layers.Layer):
    """Keras layer: waveforms ``[batch, samples]`` -> fbank ``[batch, frames, num_mel_bins]``.

    Puts the front end inside a model so an exported model takes raw audio;
    has no weights.  Round-trips through ``get_config``/``from_config``.
    """

    def __init__(self, config: FbankConfig | dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = from_dict(FbankConfig, config, where=f"{self.name}.config")
        self.config = config or FbankConfig()

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        return fbank(inputs, self.config)

    def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
        shape = tf.TensorShape(input_shape)
        samples = shape[-1]
        frames = None if samples is None else num_frames(samples, self.config)
        return shape[:-1].concatenate([frames, self.config.num_mel_bins])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "config": to_dict(self.config)}

