"""1-bit weights: the static (α·sign) and adaptive (two fitted values) binary quantizers.

Both are :class:`~tfadvq.quant.quantizers.TableQuantizer` subclasses with a
2-entry value table per tensor or per output channel, so stripping, the size
accounting (:mod:`tfadvq.quant.cost`: 1-bit packed indices plus a 2-entry
table per channel) and the converter (a 1-bit TFLM DECODE LUT) treat them
like every other table.  Registered as ``"binary_static"`` and
``"binary_adaptive"`` (:func:`tfadvq.quant.quantizers.register_quantizer`); use them
through ``tfadvq.quantize(model, bits=1, binary="static" | "adaptive")``, which
also composes with mixed precision (``binary`` names the quantizer of every
layer that gets 1 bit; other widths keep ``quantizer``).

**Static**, per channel ``c`` (or the whole tensor), recomputed every step::

    α_c = mean_i |w_ic|          q(w) = +α_c if w > 0 else -α_c

**Adaptive**, two values ``lo_c < hi_c`` fitted to the weights (2-centroid
k-means, not forced symmetric)::

    m_c = lo_c + (hi_c - lo_c) / 2        q(w) = hi_c if w > m_c else lo_c

fitted exactly when wrapping (:func:`tfadvq.quant.kmeans1d.fit`, the KMQAT
codebook at k = 2) and refreshed **every training step in closed form**: one
Lloyd step from the current table, ``lo_c = mean{w <= m_c}``,
``hi_c = mean{w > m_c}`` (an empty side keeps its value), computed in the
forward pass and written to the table variable (the way tfmot's
``MovingAverageQuantizer`` updates its ranges).  Why not only through
:class:`~tfadvq.quant.codebook_refresh.CodebookRefresh` every N steps: at 1 bit
the two values *are* the whole magnitude of a channel, and a table frozen
between refreshes gives the loss no way to change it, while the static
quantizer's α follows every update; the closed-form step costs a compare and
two sums per weight (no sort), so both schemes follow the weights at the same
rate and differ only in the values they fit.  ``CodebookRefresh`` still
re-fits it (this is a :class:`~tfadvq.quant.quantizers.KMeansQuantizer`), which
only polishes a table that one Lloyd step per update already tracks.

**Backward** (both): straight-through with larq's ``ste_sign`` cancellation,
``dq/dw = 1 if |w| <= clip_value else 0`` (``clip_value=None``: always 1),
written as ``q + mask·(w - stop_gradient(w))`` so the forward is exactly
``q``.  No gradient flows into α or the two values (they are statistics of
``w``, not parameters, so there is no separate "learning rate for the
scales").  While training, the latent float weights are also clipped to
``[-clip_value, clip_value]`` (larq's ``weight_clip`` constraint, which larq
pairs with ``ste_sign`` so that weights cannot drift out of reach of a sign
flip); the clip is applied to the variable in the forward pass, i.e. one
step after the optimizer update that crossed it.  The default 1.0 is larq's.

Differences from larq (read from larq's ``quantizers.py``/``math.py``):
larq's ``sign(0) = +1``; here ``0 -> -α`` (the lower entry), the tie rule of
every table quantizer, so ``strip`` (nearest table entry) reproduces the
forward exactly.  larq's magnitude-aware sign scales the gradient by α
(``stop_gradient(α)·ste_sign(w)``); here ``dq/dw = 1`` like every tfadvq
quantizer, so the step size does not shrink with the layer's scale.

Inference (``training=False``, what the TFLite converter sees) is only
compare/multiply/add/mean on constants, which the converter folds to the
binary kernel (no argmin, gather or sort survives conversion).

The first convolution and the embedding layer are commonly kept at higher
precision in binary networks: :func:`tfadvq.quant.spec.higher_precision_ends`
builds that :class:`~tfadvq.quant.spec.BitsSpec`.

Reference: Liu, Wang, Qian, "Towards Lightweight Speaker Verification via
Adaptive Neural Network Quantization" (arXiv 2406.05359), whose third
contribution is a static and an adaptive binary quantizer for 1-bit SV
models.  The copy of the paper available while writing this held only its
abstract, so the formulas above are the issue's definitions (static = α·sign
with α = mean|w|, XNOR-Net style; adaptive = two k-means values), not a
transcription of the paper's equations.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from tfadvq.compat import tf
from tfadvq.errors import QuantizationError
from tfadvq.quant import quantizers as qz

NAMES = {"static": "binary_static", "adaptive": "binary_adaptive"}
DEFAULT_CLIP = 1.0  # larq's ste_sign / weight_clip default


def _check_binary(bits: int, who: str) -> None:
    if bits != 1:
        raise QuantizationError(f"{who}(bits): {bits!r}; a binary quantizer has bits=1 "
                                "(use quantizer='kmeans' for wider layers)")


def _check_clip(clip_value: float | None, who: str) -> float | None:
    if clip_value is None:
        return None
    if not np.isfinite(clip_value) or clip_value <= 0:
        raise QuantizationError(f"{who}(clip_value): {clip_value!r}; accepted: a positive number or None")
    return float(clip_value)


def ste_clipped(w: tf.Tensor, q: tf.Tensor, clip_value: float | None) -> tf.Tensor:
    """Forward exactly ``q``; gradient ``1[|w| <= clip_value]`` (larq ``ste_sign``), 1 without a clip."""
    if clip_value is None:
        return qz.straight_through(w, q)
    mask = tf.cast(tf.abs(w) <= clip_value, w.dtype)
    return tf.stop_gradient(q) + mask * (w - tf.stop_gradient(w))


def _rows(w: tf.Tensor, channels: int) -> tf.Tensor:
    return tf.reshape(w, [-1, channels])


class _Binary:
    """What both binary quantizers share: bits fixed at 1, the clip, latent clipping while training."""

    clip_value: float | None
    source: tf.Variable | None

    def __init__(self, bits: int = 1, per_channel: bool = True, channel_dims: int = 1,
                 clip_value: float | None = DEFAULT_CLIP):
        _check_binary(bits, type(self).__name__)
        super().__init__(bits, per_channel, channel_dims)  # the table quantizer after this mixin
        self.clip_value = _check_clip(clip_value, type(self).__name__)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "clip_value": self.clip_value}

    def _latent(self, inputs: tf.Tensor, training: bool) -> tf.Tensor:
        """The latent weight, clipped to ``[-clip, clip]`` in the variable too while training."""
        if not training or self.clip_value is None:
            return inputs
        clipped = tf.clip_by_value(inputs, -self.clip_value, self.clip_value)
        if self.source is not None:
            self.source.assign(tf.stop_gradient(clipped))
        return clipped

    def _channels(self, shape: Any) -> int:
        return qz._channels(shape, self.channel_dims) if self.per_channel else 1


@qz.register_quantizer("binary_static")
class StaticBinaryQuantizer(_Binary, qz.TableQuantizer):
    """``q(w) = α·sign(w)``, ``α = mean|w|`` per output channel (or tensor), recomputed every step.

    See the module docstring for the formulas and the gradient.  Example::

        qat = tfadvq.quantize(model, bits=1, binary="static", per_channel=True)
    """

    def __call__(self, inputs, training, weights, **kwargs):
        w = self._latent(inputs, training)
        flat = _rows(w, self._channels(w.shape))
        alpha = tf.reduce_mean(tf.abs(flat), axis=0)
        q = tf.where(flat > 0, alpha, -alpha)
        return ste_clipped(w, tf.reshape(q, tf.shape(w)), self.clip_value)

    def value_table(self, w: np.ndarray) -> np.ndarray:
        alpha = np.abs(_np_rows(w, self._channels(w.shape))).mean(axis=0, dtype=np.float32)[:, None]
        table = np.concatenate([-alpha, alpha], axis=1).astype(np.float32)
        return table if self.per_channel else table[0]


@qz.register_quantizer("binary_adaptive")
class AdaptiveBinaryQuantizer(_Binary, qz.KMeansQuantizer):
    """Two fitted values per output channel (or tensor), one closed-form Lloyd step per training step.

    The table is KMQAT's k-means codebook at k = 2 (exact fit when wrapping);
    see the module docstring for the per-step update, the gradient and why.
    Example::

        qat = tfadvq.quantize(model, bits=1, binary="adaptive", per_channel=True)
    """

    def __call__(self, inputs, training, weights, **kwargs):
        if not training:  # the converter's path: compare-and-sum on constants
            return ste_clipped(inputs, qz.nearest_in_table(inputs, weights["codebook"]), self.clip_value)
        w = self._latent(inputs, training)
        channels = self._channels(w.shape)
        flat = _rows(w, channels)
        table = lloyd_step(flat, tf.reshape(weights["codebook"], [channels, 2]))
        weights["codebook"].assign(tf.reshape(table, weights["codebook"].shape))
        lo, hi = table[:, 0], table[:, 1]
        q = tf.where(flat > lo + (hi - lo) / 2, hi, lo)
        return ste_clipped(w, tf.reshape(q, tf.shape(w)), self.clip_value)


def lloyd_step(rows: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """One exact Lloyd step of 2-means per column of ``rows`` ``[n, C]`` from ``table`` ``[C, 2]``.

    Both new values are the means of the weights on their side of the old
    midpoint; a side with no weight keeps its old value, so the table stays
    sorted (``lo <= m < hi``).
    """
    lo, hi = table[:, 0], table[:, 1]
    upper = tf.cast(rows > lo + (hi - lo) / 2, rows.dtype)
    count_hi = tf.reduce_sum(upper, axis=0)
    count_lo = tf.cast(tf.shape(rows)[0], rows.dtype) - count_hi
    sum_hi = tf.reduce_sum(rows * upper, axis=0)
    sum_lo = tf.reduce_sum(rows * (1.0 - upper), axis=0)
    new_hi = tf.where(count_hi > 0, sum_hi / tf.maximum(count_hi, 1.0), hi)
    new_lo = tf.where(count_lo > 0, sum_lo / tf.maximum(count_lo, 1.0), lo)
    return tf.stack([new_lo, new_hi], axis=1)


def _np_rows(w: np.ndarray, channels: int) -> np.ndarray:
    return np.asarray(w, np.float32).reshape(-1, channels)


def quantizer_spec(binary: str | dict | None) -> dict | None:
    """``binary=`` of :func:`tfadvq.quantize` as a quantizer spec (``{"name": "binary_static", ...}``).

    Accepts ``"static"``/``"adaptive"``, any name registered in
    :data:`~tfadvq.quant.quantizers.QUANTIZERS` (a 1-bit scheme of your own),
    or a dict with ``name`` and the quantizer's arguments (``clip_value``).
    """
    if binary is None:
        return None
    spec = dict(binary) if isinstance(binary, dict) else {"name": binary}
    name = spec.get("name")
    full = NAMES.get(name, name)
    if full not in qz.QUANTIZERS:
        raise QuantizationError(f"binary: unknown scheme {name!r}; accepted: {sorted(NAMES)} "
                                f"or a registered quantizer name {sorted(qz.QUANTIZERS)}")
    return {**spec, "name": full}
