"""``QuantizedWeights``: per-layer value tables and b-bit indices, the hand-over to the converter.

One :class:`QuantizedTensor` per quantized weight: ``codebook`` is ``[k]`` or
``[C, k]`` (C = output channels, the trailing ``channel_dims`` of ``shape``
flattened), ``indices`` are uint8 of the weight's ``shape``; the weight is
``codebook[indices]`` (per tensor) or ``codebook[c, indices[..., c]]``
(per channel).  Round-trips through ``to_dict``/``from_dict`` (JSON-ready)
and ``save``/``load`` (one ``.npz``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq.errors import QuantizationError


@dataclasses.dataclass
class QuantizedTensor:
    layer: str
    weight: str
    bits: int
    per_channel: bool
    channel_dims: int
    codebook: np.ndarray
    indices: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.indices.shape)

    def values(self) -> np.ndarray:
        """The weight the indices and codebook stand for (float32, :attr:`shape`)."""
        if not self.per_channel:
            return self.codebook[self.indices]
        channels = self.codebook.shape[0]
        idx = self.indices.reshape(-1, channels)
        return self.codebook[np.arange(channels)[None, :], idx].reshape(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "weight": self.weight, "bits": self.bits,
                "per_channel": self.per_channel, "channel_dims": self.channel_dims,
                "shape": list(self.shape), "codebook": self.codebook.tolist(),
                "indices": self.indices.ravel().tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantizedTensor:
        return cls(layer=data["layer"], weight=data["weight"], bits=int(data["bits"]),
                   per_channel=bool(data["per_channel"]), channel_dims=int(data["channel_dims"]),
                   codebook=np.asarray(data["codebook"], dtype=np.float32),
                   indices=np.asarray(data["indices"], dtype=np.uint8).reshape(data["shape"]))


@dataclasses.dataclass
class QuantizedWeights:
    """Every quantized weight of a stripped model, in layer order."""

    tensors: list[QuantizedTensor]

    def get(self, layer: str, weight: str) -> QuantizedTensor:
        for t in self.tensors:
            if t.layer == layer and t.weight == weight:
                return t
        raise QuantizationError(f"QuantizedWeights: no quantized weight {layer}/{weight}")

    def bits_by_layer(self) -> dict[str, int]:
        return {t.layer: t.bits for t in self.tensors}

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": [t.to_dict() for t in self.tensors]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantizedWeights:
        return cls([QuantizedTensor.from_dict(t) for t in data["tensors"]])

    def save(self, path: str | Path) -> None:
        """One ``.npz``: a JSON header plus codebook/indices arrays per tensor."""
        arrays = {}
        header = []
        for i, t in enumerate(self.tensors):
            meta = t.to_dict()
            del meta["codebook"], meta["indices"]
            header.append(meta)
            arrays[f"codebook_{i}"], arrays[f"indices_{i}"] = t.codebook, t.indices
        np.savez_compressed(path, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> QuantizedWeights:
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            return cls([QuantizedTensor(layer=m["layer"], weight=m["weight"], bits=m["bits"],
                                        per_channel=m["per_channel"], channel_dims=m["channel_dims"],
                                        codebook=data[f"codebook_{i}"], indices=data[f"indices_{i}"])
                        for i, m in enumerate(header)])
