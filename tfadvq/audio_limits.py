"""The audio tfadvq accepts, in one place: the sample rate and the device's limits (stdlib only).

Every path that reads, checks, generates or scores audio takes these from here:
the reader (:mod:`tfadvq.audio`), the fbank front end's default rate
(:mod:`tfadvq.fbank_config`), the training config (:mod:`tfadvq.train_config`),
the scoring schedule's shortest utterance (:mod:`tfadvq.windows`), ``tfadvq lists``
and the corpus generator.  :class:`AudioLimits` mirrors the firmware's
``sv::AudioLimits`` (tflm_firmware/lib/audio_check.h), so a recording the device
would refuse is refused offline too.
"""
from __future__ import annotations

import dataclasses

from tfadvq.errors import ConfigError

SAMPLE_RATE = 16000  # Hz: every waveform inside tfadvq, and the firmware's microphone rate
MIN_SECONDS = 0.5  # the shortest audio scored or trained on: the firmware's min_samples = 8000 at 16 kHz


@dataclasses.dataclass(frozen=True)
class AudioLimits:
    """What a recording must satisfy to be scored: ``sv::AudioLimits`` of the firmware.

    ``min_rms`` and ``clip_level`` are in int16 units (``32768 * x``).
    """

    min_seconds: float = MIN_SECONDS
    min_rms: float = 30.0  # after removing DC (about -61 dBFS)
    max_clipped_fraction: float = 0.01
    clip_level: int = 32000  # |x| >= this counts as clipped

    def __post_init__(self) -> None:
        if not self.min_seconds >= 0:
            raise ConfigError(f"AudioLimits.min_seconds: {self.min_seconds}; accepted: >= 0")
        if not self.min_rms >= 0:
            raise ConfigError(f"AudioLimits.min_rms: {self.min_rms}; accepted: >= 0 (int16 units)")
        if not 0 <= self.max_clipped_fraction <= 1:
            raise ConfigError(f"AudioLimits.max_clipped_fraction: {self.max_clipped_fraction}; "
                              "accepted: a fraction in [0, 1]")
        if not 0 < self.clip_level <= 32768:
            raise ConfigError(f"AudioLimits.clip_level: {self.clip_level}; accepted: 1..32768 (int16 units)")
