"""How an utterance is cut into the windows the deployed model sees: the one scoring schedule.

A converted model takes a fixed ``window_frames`` fbank frames per invoke, so
the device scores an utterance of ``T`` frames window by window.  Keras
evaluation, ``tfadvq verify``, threshold calibration, the converter's checks
and the firmware's ``Verifier`` (``tflm_firmware/lib/verifier.cc``) all use this
schedule, so a threshold calibrated offline means the same thing on the device:

* features are mean-normalised over the whole utterance (:mod:`tfadvq.features`);
* ``T >= W``: ``n = ceil((T - W) / H) + 1`` windows starting at
  ``s_k = min(k * H, T - W)`` (the last one ends at the last frame);
* ``T < W``: one window whose row ``t`` is frame ``t mod T`` (the utterance
  repeated to fill it), so no utterance that passes the length check goes
  unscored; in general row ``t`` of window ``k`` is frame ``(s_k + t) mod T``;
* each window's embedding is L2-normalised, and the utterance embedding is the
  L2-normalised mean of them (equal weights).

The table ``tflm_firmware/tests/data/window_schedule.txt`` pins the starts;
both the Python and the C++ tests read it.  Pure numpy: no TensorFlow here.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfadvq.audio_limits import MIN_SECONDS
from tfadvq.errors import ConfigError, DataError

DEFAULT_WINDOW_FRAMES = 200  # 2 s at a 10 ms shift


@dataclasses.dataclass
class ScoringConfig:
    """The device's scoring schedule (module doc).  ``hop_frames`` null means ``window_frames``."""

    window_frames: int = DEFAULT_WINDOW_FRAMES
    hop_frames: int | None = None
    min_seconds: float = MIN_SECONDS

    def __post_init__(self) -> None:
        if self.window_frames < 1:
            raise ConfigError(f"scoring.window_frames: {self.window_frames}; accepted: >= 1")
        if self.hop_frames is not None and self.hop_frames < 1:
            raise ConfigError(f"scoring.hop_frames: {self.hop_frames}; accepted: >= 1 or null")
        if self.min_seconds <= 0:
            raise ConfigError(f"scoring.min_seconds: {self.min_seconds}; accepted: > 0")

    @property
    def hop(self) -> int:
        return self.hop_frames or self.window_frames


def window_starts(frames: int, window: int, hop: int) -> np.ndarray:
    """Start frame of each window for an utterance of ``frames`` frames (module doc)."""
    if window < 1 or hop < 1:
        raise ConfigError(f"window {window} and hop {hop} must be >= 1")
    if frames < 1:
        raise DataError(f"an utterance of {frames} frames cannot be scored")
    if frames <= window:
        return np.zeros(1, np.int64)
    count = -(-(frames - window) // hop) + 1
    return np.minimum(np.arange(count, dtype=np.int64) * hop, frames - window)


def _rows(starts: np.ndarray, frames: int, window: int) -> np.ndarray:
    """``[n, window]`` frame indices of the windows starting at ``starts``: ``(s + t) mod frames``."""
    return (np.asarray(starts, np.int64)[:, None] + np.arange(window)[None]) % frames


def window_indices(frames: int, config: ScoringConfig) -> np.ndarray:
    """``[n, window_frames]`` frame indices of every window: ``(s_k + t) mod frames``."""
    return _rows(window_starts(frames, config.window_frames, config.hop), frames, config.window_frames)


def crop_window(features: np.ndarray, window: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """One ``[window, F]`` window of ``[T, F]`` features as the device sees one (the representative crops
    of the int8 ranges).

    Rows follow the schedule's rule ``(s + t) mod T`` (an utterance shorter than
    the window repeats); the start ``s`` is uniform in ``[0, max(T - window, 0)]``
    with ``rng``, else the centre one.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or len(features) < 1:
        raise DataError(f"features: expected [frames >= 1, mels], got shape {features.shape}")
    spare = max(len(features) - window, 0)
    start = int(rng.integers(0, spare + 1)) if rng is not None else spare // 2
    return features[_rows(np.array([start]), len(features), window)[0]]


def cut_windows(features: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """``[T, F]`` mean-normalised features -> ``[n, window_frames, F]`` windows."""
    features = np.asarray(features, np.float32)
    if features.ndim != 2:
        raise DataError(f"features: expected [frames, mels], got shape {features.shape}")
    return features[window_indices(len(features), config)]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pool_windows(window_embeddings: np.ndarray) -> np.ndarray:
    """``[n, D]`` window embeddings -> the unit utterance embedding (mean of unit windows)."""
    return l2_normalize(l2_normalize(window_embeddings).mean(axis=0))
