"""Fbank options as data (no TensorFlow): what the model was trained with and what the firmware must compute.

Kept apart from :mod:`tfadvq.features` (the TensorFlow implementation) so that
configuration, metadata and recipe code can read and check it without
importing TensorFlow.  The definition of each option is the docstring of
:mod:`tfadvq.features`.
"""
from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np

from tfadvq.audio_limits import SAMPLE_RATE
from tfadvq.errors import ConfigError

FLOAT_EPS = float(np.finfo(np.float32).eps)


class Window(str, enum.Enum):
    """Kaldi window types (``window_type``)."""

    POVEY = "povey"
    HAMMING = "hamming"
    HANNING = "hanning"
    RECTANGULAR = "rectangular"
    HANN_PERIODIC = "hann_periodic"  # 0.5 - 0.5 cos(2 pi i / N): tf.signal.stft's and librosa's default


class Features(str, enum.Enum):
    """Who computes a model's input features (``features``)."""

    FBANK = "fbank"  # tfadvq.features.fbank from these settings (host tools and, for the defaults, the firmware)
    HOST = "host"  # the host computes them its own way; only num_mel_bins and the frame timing are stated


class Spectrum(str, enum.Enum):
    """What the mel banks weigh (``spectrum``)."""

    POWER = "power"  # |X|^2 (Kaldi, tf.signal pipelines squaring the STFT)
    MAGNITUDE = "magnitude"  # |X|


class LogScale(str, enum.Enum):
    """The compression of mel energies ``E`` (``log``); ``log_offset`` is added first, ``log_floor`` bounds it."""

    NATURAL = "natural"  # ln(E)
    LOG10 = "log10"  # log10(E)
    DB = "db"  # 10 log10(E)


@dataclasses.dataclass
class FbankConfig:
    """The front end a model eats; defaults are Kaldi's SV-standard 80-dim fbank, the one the firmware computes.

    The fields after ``mean_norm`` describe other log-mel front ends (e.g. a
    ``tf.signal`` pipeline: ``window: hann_periodic``, ``preemph_coeff: 0``,
    ``remove_dc_offset: false``, ``waveform_scale: 1``, ``log_offset: 1e-6``,
    ``high_freq: 7600``: its mel matrix is Kaldi's banks between the same
    edges), and ``features: host`` a model whose features tfadvq cannot compute
    at all (then only ``num_mel_bins``, ``sample_rate`` and the frame timing
    mean anything, and its inputs are given as arrays: ``--inputs``).
    """

    sample_rate: int = SAMPLE_RATE
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemph_coeff: float = 0.97
    remove_dc_offset: bool = True
    window: Window = Window.POVEY
    low_freq: float = 20.0
    high_freq: float = 0.0  # <= 0: offset from Nyquist (Kaldi convention)
    waveform_scale: float = 32768.0
    log_floor: float = FLOAT_EPS
    mean_norm: bool = True
    features: Features = Features.FBANK
    spectrum: Spectrum = Spectrum.POWER
    log: LogScale = LogScale.NATURAL
    log_offset: float = 0.0  # added to the mel energies before the floor and the log
    # Step 10 as the firmware computes it (tfadvq.features, step 10b): the log mel energies rounded to int16 codes
    # (steps of 2^-10) before the mean, which is that of the codes.  The firmware keeps its frames so until the
    # utterance mean is known (half the RAM of float frames); converters.tflm's scorer sets it to score as the
    # device does.  A model is trained without it.
    int16_frames: bool = False

    def __post_init__(self) -> None:
        self.window = Window(self.window)
        self.features = Features(self.features)
        self.spectrum = Spectrum(self.spectrum)
        self.log = LogScale(self.log)
        if self.log_offset < 0:
            raise ConfigError(f"FbankConfig: log_offset must be >= 0, got {self.log_offset}")
        nyquist = self.sample_rate / 2
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not 0 <= self.low_freq < high <= nyquist:
            raise ConfigError(
                f"FbankConfig: need 0 <= low_freq < high_freq <= {nyquist} Hz, got "
                f"low_freq={self.low_freq}, high_freq={self.high_freq} (effective {high})"
            )
        if self.frame_shift_ms <= 0 or self.frame_length_ms < self.frame_shift_ms:
            raise ConfigError(
                "FbankConfig: need 0 < frame_shift_ms <= frame_length_ms, got "
                f"{self.frame_shift_ms} and {self.frame_length_ms}"
            )
        if self.num_mel_bins < 1 or self.log_floor <= 0:
            raise ConfigError("FbankConfig: num_mel_bins must be >= 1 and log_floor > 0")

    @property
    def computable(self) -> bool:
        """True when :func:`tfadvq.features.fbank` computes these features (False: ``features: host``)."""
        return self.features == Features.FBANK

    def describe(self) -> str:
        """One line a summary prints: what the model eats."""
        if not self.computable:
            return (f"{self.num_mel_bins} features per frame computed by the host, "
                    f"{self.frame_length_ms:g} ms / {self.frame_shift_ms:g} ms frames")
        log = {LogScale.NATURAL: "ln", LogScale.LOG10: "log10", LogScale.DB: "dB"}[self.log]
        return (f"{log} mel {self.spectrum.value}, {self.num_mel_bins} bands, {self.window.value} window "
                f"{self.frame_length_ms:g} ms / {self.frame_shift_ms:g} ms"
                f"{', mean-normalised' if self.mean_norm else ''}")

    @property
    def frame_length(self) -> int:
        """Samples per frame (400 at 16 kHz / 25 ms)."""
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def frame_shift(self) -> int:
        """Samples between frame starts (160 at 16 kHz / 10 ms)."""
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def fft_length(self) -> int:
        """Zero-padded FFT size: next power of two of the frame length (512)."""
        return 1 << math.ceil(math.log2(self.frame_length))


def num_frames(num_samples: int, config: FbankConfig | None = None) -> int:
    """Frames :func:`fbank` yields for ``num_samples`` samples (Kaldi snip_edges)."""
    config = config or FbankConfig()
    if num_samples < config.frame_length:
        return 0
    return 1 + (num_samples - config.frame_length) // config.frame_shift
