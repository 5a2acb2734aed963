"""What a weight bit width is, and the one check of it (stdlib only: loads without TensorFlow).

A quantized weight has ``b`` bits, ``1 <= b <= 8``: its values come from a
table of at most ``2^b`` entries in Keras; on the device 1-7 bits are a LUT
of exactly those values and 8 bits are int8 on a per-channel grid (what ``b``
means on both sides, and how far 8 bits differ: :mod:`tfadvq.quant.cost`).  Every place that
takes bits from a user -- ``--bits``, a ``BitsSpec`` YAML, the quantizers,
the mixed-precision ``allowed`` widths, the cost model, the converter's
``bits_per_layer`` -- calls :func:`check_bits`, so a bad width is refused the
same way (:class:`~tfadvq.errors.QuantizationError` naming where it came
from) wherever it enters.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable

from tfadvq.errors import QuantizationError

MIN_BITS, MAX_BITS = 1, 8


def check_bits(bits: object, where: str = "bits") -> int:
    """``bits`` as int if it is an integer in ``MIN_BITS..MAX_BITS``, else raise naming ``where``."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not MIN_BITS <= bits <= MAX_BITS:
        raise QuantizationError(f"{where}: {bits!r} is not a supported bit width; "
                                f"accepted: integers {MIN_BITS}..{MAX_BITS}")
    return int(bits)


def check_allowed(allowed: Iterable[object], where: str = "allowed bits") -> list[int]:
    """A non-empty set of bit widths, each checked by :func:`check_bits`; sorted, without repeats."""
    values = list(allowed)
    if not values:
        raise QuantizationError(f"{where}: empty; accepted: a non-empty list of integers {MIN_BITS}..{MAX_BITS}")
    return sorted({check_bits(b, f"{where} {values}") for b in values})
