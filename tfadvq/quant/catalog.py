"""Every packaged quantizer by name, and :func:`get`, which resolves a name to one.

The schemes register themselves with :func:`~tfadvq.quant.quantizers.register_quantizer`
when their module loads (k-means and uniform in ``quantizers``, the 1-bit schemes in
``binary``, which builds on it).  This module imports them all, so a name is known here
whichever module a caller happened to load first, and no scheme module imports another
one's registry back (no cycle).  A scheme of your own: decorate it, import its module, and
:func:`get` finds it too.
"""
from __future__ import annotations

from typing import Any

from tfadvq.errors import QuantizationError
from tfadvq.quant import binary  # noqa: F401  (registers "binary_static", "binary_adaptive")
from tfadvq.quant import quantizers as qz


def get(identifier: str | dict | qz.TableQuantizer, **kwargs: Any) -> qz.TableQuantizer:
    """A quantizer from a short name (``"kmeans"``), ``{"name": ..., **args}`` or an instance."""
    if isinstance(identifier, qz.TableQuantizer):
        return identifier
    if isinstance(identifier, dict):
        kwargs = {**identifier, **kwargs}
        identifier = kwargs.pop("name", None)
    if identifier not in qz.QUANTIZERS:
        raise QuantizationError(f"quantizer: unknown name {identifier!r}; accepted: {sorted(qz.QUANTIZERS)}")
    return qz.QUANTIZERS[identifier](**kwargs)


def custom_objects() -> dict[str, type]:
    """Every registered quantizer class by class name (to reload a saved model with them)."""
    return {cls.__name__: cls for cls in qz.QUANTIZERS.values()}
