"""How weights are quantized: value-table quantizers as tfmot ``Quantizer`` classes.

Every quantizer here maps a weight tensor onto a sorted *value table* of 2^b
entries, one table per tensor or one per output channel, and exposes that
table (:meth:`TableQuantizer.value_table`) so stripping, size accounting and
the converter treat all of them alike (k-means today; mixed precision and
1-bit quantizers plug in by name: :func:`register_quantizer`, resolved by
:func:`tfadvq.quant.catalog.get`).

Forward (nearest table entry, ties to the lower entry), with sorted table
``c`` and midpoints ``m_i = c_i + (c_{i+1} - c_i) / 2`` (m_{-1} = -inf, m_{k-1} = +inf)::

    q(w) = Σ_j c_j · ([w > m_{j-1}] - [w > m_j])

Only elementwise compare/multiply/add on constants: the TFLite converter folds
it into a constant, unlike argmin/gather, which can survive conversion and
then break TFLite Micro.  While training, the same values come from a binary
search (:func:`nearest_in_table_indexed`), O(n log k) instead of O(n k) per
step; the converter only ever sees the inference form.

Backward: straight-through estimator, dq/dw = 1, written as ``q + (w - stop_gradient(w))`` so the forward value is *exactly*
``q`` (``w + stop_gradient(q - w)`` is not, and would leak extra distinct
values into a channel).

Example::

    with tfmot.quantization.keras.quantize_scope(custom_objects()):
        ...  # or simply use tfadvq.quantize(model, bits=4)

Reference: Liu, Wang, Qian, "Towards Lightweight Speaker Verification via
Adaptive Neural Network Quantization" (KMQAT: per-layer k-means codebooks).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import tensorflow_model_optimization as tfmot
from tqdm import tqdm

from tfadvq.compat import keras, tf
from tfadvq.errors import QuantizationError
from tfadvq.quant import kmeans1d
from tfadvq.quant.bits import check_bits

_Quantizer = tfmot.quantization.keras.quantizers.Quantizer
_CHUNK_ELEMENTS = 1 << 24  # bound on the [n, chunk] comparison tensor of one forward pass


_BARS: list[tqdm] = []


@contextlib.contextmanager
def build_progress(total: int, enabled: bool = True) -> Iterator[None]:
    """Show a bar ticking once per quantizer built (codebook fits happen inside tfmot's build)."""
    bar = tqdm(total=total, desc="quantizing weights", unit="weight", disable=not enabled)
    _BARS.append(bar)
    try:
        yield
    finally:
        _BARS.pop()
        bar.close()


def _tick() -> None:
    if _BARS:
        _BARS[-1].update(1)


_IMPORTANCES: list[Mapping[str, np.ndarray]] = []


@contextlib.contextmanager
def importance_scope(importances: Mapping[str, np.ndarray] | None) -> Iterator[None]:
    """Per-value importances (weight key ``"layer/weight"`` -> array of the weight's shape) for the
    k-means quantizers built inside (tfmot rebuilds quantizers from their config, so they cannot
    be handed over as constructor arguments: arrays do not belong in a layer config)."""
    _IMPORTANCES.append(importances or {})
    try:
        yield
    finally:
        _IMPORTANCES.pop()


def nearest_in_table(w: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """Nearest entry of ``table`` (``[k]`` or ``[C, k]`` sorted; C = trailing channels of ``w``).

    Written as Σ_j c_j·[m_{j-1} < w <= m_j] (m_{-1} = -inf, m_{k-1} = +inf): exactly
    one indicator is 1, so the result is bit-exactly a table entry (a running sum of
    steps c_{i+1} - c_i would drift by rounding and leak extra distinct values).
    """
    k = table.shape[-1]
    table = tf.reshape(table, [-1, k])
    flat = tf.reshape(w, [-1, table.shape[0]])
    inf = tf.fill([table.shape[0], 1], float("inf"))
    edges = tf.concat([-inf, table[:, :-1] + (table[:, 1:] - table[:, :-1]) / 2, inf], axis=1)
    chunk = max(1, min(k, _CHUNK_ELEMENTS // max(int(np.prod(w.shape)), 1)))
    q = tf.zeros_like(flat)
    for start in range(0, k, chunk):  # k <= 256 entries, in few chunks
        end = min(start + chunk, k)
        above = tf.cast(flat[..., None] > edges[:, start:end + 1], w.dtype)
        q = q + tf.reduce_sum((above[..., :-1] - above[..., 1:]) * table[:, start:end], axis=-1)
    return tf.reshape(q, tf.shape(w))


def nearest_in_table_indexed(w: tf.Tensor, table: tf.Tensor) -> tf.Tensor:
    """:func:`nearest_in_table` by binary search, O(n log k) instead of O(n k): the training path.

    Same midpoints, same tie rule (index = number of midpoints strictly below
    ``w``), and a gather returns the table entry itself, so the values are
    bit-identical to :func:`nearest_in_table`.  Only used while training:
    ``searchsorted``/``gather`` must not reach the converted graph.
    """
    k = table.shape[-1]
    table = tf.reshape(table, [-1, k])
    rows = tf.transpose(tf.reshape(w, [-1, table.shape[0]]))  # [C, n / C]
    midpoints = table[:, :-1] + (table[:, 1:] - table[:, :-1]) / 2
    index = tf.searchsorted(midpoints, rows, side="left")
    q = tf.gather(table, index, batch_dims=1)
    return tf.reshape(tf.transpose(q), tf.shape(w))


def straight_through(w: tf.Tensor, q: tf.Tensor) -> tf.Tensor:
    """Forward exactly ``q``; gradient 1 with respect to ``w``."""
    return tf.stop_gradient(q) + (w - tf.stop_gradient(w))


def _channels(shape: Any, channel_dims: int) -> int:
    return int(np.prod(tuple(shape)[len(shape) - channel_dims:]))


Q = TypeVar("Q", bound=type)

QUANTIZERS: dict[str, type[TableQuantizer]] = {}
"""Every quantizer by its short name; filled only by :func:`register_quantizer` (resolve with
:func:`tfadvq.quant.catalog.get`, which loads every packaged scheme first)."""


def register_quantizer(name: str) -> Callable[[Q], Q]:
    """Class decorator: register a quantizer under ``name`` (larq's ``register_alias``).

    It also registers the class as Keras-serializable, so a saved model with it reloads.
    A name taken by another class is an error, not a silent replacement.
    """
    def register(cls: Q) -> Q:
        taken = QUANTIZERS.get(name)
        if taken is not None and taken is not cls:
            raise QuantizationError(f"quantizer name {name!r} is taken by {taken.__qualname__}; "
                                    f"register {cls.__qualname__} under another name")
        QUANTIZERS[name] = keras.utils.register_keras_serializable(package="tfadvq")(cls)
        return cls

    return register


class TableQuantizer(_Quantizer):
    """Base of the value-table quantizers: bit width, per-channel layout, serialization.

    ``channel_dims`` trailing dimensions of a weight form its output channel
    (1 for Conv2D/Dense/RNN kernels, 2 for DepthwiseConv2D ``[kh, kw, in, mult]``,
    whose TFLite output channel is ``in * mult``).
    """

    def __init__(self, bits: int, per_channel: bool = False, channel_dims: int = 1):
        self.bits = check_bits(bits, f"{type(self).__name__}(bits)")
        self.per_channel = bool(per_channel)
        self.channel_dims = int(channel_dims)
        self.source: tf.Variable | None = None  # the float weight, found when built

    def build(self, tensor_shape, name: str, layer):
        """Remember the float weight this quantizer serves (tfmot passes only its name)."""
        self.source = _find_weight(layer, name, tensor_shape)
        _tick()
        return {}

    @property
    def levels(self) -> int:
        return 2 ** self.bits

    def table_shape(self, weight_shape: Any) -> tuple[int, ...]:
        """``[k]`` per tensor or ``[C, k]`` per output channel."""
        if self.per_channel:
            return (_channels(weight_shape, self.channel_dims), self.levels)
        return (self.levels,)

    def table_entries(self, weight_shape: Any) -> int:
        """Entries of this quantizer's value table (what :func:`tfadvq.quant.api.summary` shows).

        Not the stored size: the converter writes per-channel tables whatever
        the quantizer's layout; :mod:`tfadvq.quant.cost` counts those bytes.
        """
        return int(np.prod(self.table_shape(weight_shape)))

    def value_table(self, w: np.ndarray) -> np.ndarray:
        """The sorted table ``w`` is quantized onto (numpy, shape :meth:`table_shape`)."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {"bits": self.bits, "per_channel": self.per_channel, "channel_dims": self.channel_dims}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


@register_quantizer("kmeans")
class KMeansQuantizer(TableQuantizer):
    """Nearest of 2^b k-means centroids, fitted on the layer's own (pre-trained) weights.

    The codebook is a variable of the wrapping layer (saved with the model),
    fitted by :func:`kmeans1d.fit` when the layer is built.  During QAT it
    then either

    * follows the float weights: re-fitted by k-means every few steps
      (:class:`tfadvq.quant.codebook_refresh.CodebookRefresh`), non-trainable
      (``train_codebook=False``); or
    * is trained by the loss (``train_codebook=True``): each entry gets the sum
      of the gradients of the weights that use it (``gather``'s gradient) and
      the optimizer moves it; the weights still get theirs by the STE, and
      :meth:`refit` leaves a trained codebook alone.  The k-means fit stays the
      start.  At 2 bits the 4 values of a table are worth moving to where the
      loss wants them, not where the weights' mean is (see README's claims).
    """

    def __init__(self, bits: int, per_channel: bool = False, channel_dims: int = 1,
                 train_codebook: bool = False):
        super().__init__(bits, per_channel, channel_dims)
        self.train_codebook = bool(train_codebook)
        self._codebook: tf.Variable | None = None
        # Per-value importances (sensitivity-weighted k-means), kept for every refit; not saved
        # with the model (see :func:`tfadvq.quant.api.set_importances` after reloading).
        self.importances: np.ndarray | None = None

    def build(self, tensor_shape, name: str, layer):
        super().build(tensor_shape, name, layer)
        key = f"{getattr(layer, 'layer', layer).name}/{name}"
        found = _IMPORTANCES[-1].get(key) if _IMPORTANCES else None
        if found is not None:
            self.set_importances(found, key)
        initial = self.fit(self.source.numpy(), name=key)
        if self.train_codebook:
            _trained_after_layer(layer)
        self._codebook = layer.add_weight(
            f"{name}_codebook", shape=initial.shape, dtype=tf.float32, trainable=self.train_codebook,
            initializer=keras.initializers.Constant(initial))
        return {"codebook": self._codebook}

    def __call__(self, inputs, training, weights, **kwargs):
        # tfmot passes a Python bool; inference keeps the foldable compare-and-sum form.
        nearest = nearest_in_table_indexed if training else nearest_in_table
        if not self.train_codebook:
            return straight_through(inputs, nearest(inputs, weights["codebook"]))
        # Gradient steps may reorder entries; the midpoints need them sorted (sort passes gradients back).
        q = nearest(inputs, tf.sort(weights["codebook"], axis=-1))
        return q + (inputs - tf.stop_gradient(inputs))  # forward exactly q; d/dw = 1, d/dtable = gather's

    def get_config(self) -> dict[str, Any]:
        # Only when set: configs saved before it reload unchanged, and the 1-bit subclass (whose own
        # Lloyd step owns its table) never carries it.
        return {**super().get_config(), **({"train_codebook": True} if self.train_codebook else {})}

    def fit(self, w: np.ndarray, init: np.ndarray | None = None, name: str = "weights",
            search: bool = True) -> np.ndarray:
        """k-means codebook of ``w`` in :meth:`table_shape` (optionally warm-started; see kmeans1d.fit).

        Weighted by :attr:`importances` when set (Σ f (w - c(w))², sensitivity-weighted k-means).
        """
        f = self.importances
        if not self.per_channel:
            return kmeans1d.fit(w, self.levels, init=init, name=name, search=search, weights=f)
        channels = _channels(w.shape, self.channel_dims)
        return kmeans1d.fit_rows(w.reshape(-1, channels).T, self.levels, init=init, name=name, search=search,
                                 weights=None if f is None else f.reshape(-1, channels).T)

    def set_importances(self, importances: np.ndarray | None, name: str = "weights") -> None:
        """Weigh this quantizer's fits (and refits) by ``importances`` (the weight's shape, >= 0)."""
        if importances is None:
            self.importances = None
            return
        importances = np.asarray(importances, dtype=np.float64)
        if self.source is not None and importances.shape != tuple(self.source.shape):
            raise QuantizationError(f"{name}: importances have shape {importances.shape}; "
                                    f"accepted: the weight's shape {tuple(self.source.shape)}")
        self.importances = importances

    def refit(self) -> None:
        """Re-fit the codebook on the current float weights by Lloyd from the current codebook.

        Between refreshes the weights move by a few optimizer steps, so the old
        codebook is already near a good optimum; skipping the global histogram
        search keeps a refresh to a sort and a few O(k log n) Lloyd passes.
        """
        if self.source is None or self._codebook is None:
            raise QuantizationError("KMeansQuantizer.refit: quantizer not built (wrap the model first)")
        if self.train_codebook:
            return  # the loss owns a trained codebook; k-means would pull it back to the weights' means
        self._codebook.assign(self.fit(self.source.numpy(), init=self._codebook.numpy(),
                                       name=self.source.name, search=False))

    def value_table(self, w: np.ndarray) -> np.ndarray:
        if self._codebook is None:
            return self.fit(w)
        return np.sort(self._codebook.numpy(), axis=-1)  # a trained codebook may have reordered


@register_quantizer("uniform")
class UniformQuantizer(TableQuantizer):
    """Linear symmetric quantizer (the peer of k-means in the benchmark).

    Per output channel (default) or per tensor, ``s = max|w| / L`` with
    ``L = 2^(b-1) - 1`` (narrow range, so zero is exact), ``q = s·round(w/s)``;
    at b = 1 the two levels are ``±mean|w|``.  The scale follows the current
    weights (no state); its value table has ``2L + 1`` levels padded to 2^b.
    It has one size, wrapped or stripped: the converter stores it like any
    value table (b-bit indices + 2^b entries per channel; TFLM has no
    scale-only decoding for 1-7 bits), and :mod:`tfadvq.quant.cost` counts that.
    """

    def __init__(self, bits: int, per_channel: bool = True, channel_dims: int = 1):
        super().__init__(bits, per_channel, channel_dims)

    def __call__(self, inputs, training, weights, **kwargs):
        channels = _channels(inputs.shape, self.channel_dims) if self.per_channel else 1
        flat = tf.reshape(inputs, [-1, channels])
        if self.bits == 1:
            q = tf.where(flat > 0, 1.0, -1.0) * tf.reduce_mean(tf.abs(flat), axis=0)
        else:
            half = float(2 ** (self.bits - 1) - 1)
            scale = tf.maximum(tf.reduce_max(tf.abs(flat), axis=0), 1e-12) / half
            q = tf.round(flat / scale) * scale
        return straight_through(inputs, tf.reshape(q, tf.shape(inputs)))

    def value_table(self, w: np.ndarray) -> np.ndarray:
        channels = _channels(w.shape, self.channel_dims) if self.per_channel else 1
        flat = np.abs(w.reshape(-1, channels).astype(np.float32))
        if self.bits == 1:
            amp = flat.mean(axis=0)[:, None]
            table = np.concatenate([-amp, amp], axis=1)
        else:
            half = 2 ** (self.bits - 1) - 1
            scale = np.maximum(flat.max(axis=0), 1e-12) / np.float32(half)
            table = scale[:, None] * np.arange(-half, half + 1, dtype=np.float32)
            table = np.concatenate([table, table[:, -1:]], axis=1)  # pad 2^b - 1 levels to 2^b
        return table.astype(np.float32) if self.per_channel else table[0].astype(np.float32)


def _trained_after_layer(wrapper) -> None:
    """Keep a trainable quantizer variable after the wrapped layer's own trainable weights.

    tfmot's ``QuantizeWrapperV2`` lists its ``_trainable_weights`` first and copies the inner layer's
    into them before building it; on a reload the inner layer is only built afterwards, so a trainable
    variable a quantizer adds would come first, and an HDF5 reload (weights by position) would pour the
    kernel into it.  Listing the layer's weights first makes both orders the same.
    """
    listed = getattr(wrapper, "_trainable_weights", None)
    inner = getattr(wrapper, "layer", None)
    if listed is None or inner is None:
        return
    listed.extend(w for w in inner.trainable_weights if not any(w is v for v in listed))


def _find_weight(layer, name: str, shape) -> tf.Variable:
    """The float weight ``name`` of the layer a tfmot wrapper wraps (wrappers pass names only)."""
    inner = getattr(layer, "layer", layer)
    for weight in inner.weights:
        if weight.name.split(":")[0].split("/")[-1] == name and tuple(weight.shape) == tuple(shape):
            return weight
    raise QuantizationError(f"{inner.name}: no weight named {name!r} of shape {tuple(shape)}; "
                            f"has {[w.name for w in inner.weights]}")
