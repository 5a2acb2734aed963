"""Per-layer weight histograms with the codebook marked: FP weights vs their quantized values.

For the notebook and the CLI's ``--plots``: one PNG per quantized weight,
float histogram (grey), quantized value counts (bars at the centroids) and
the centroids as vertical lines, so a poorly placed codebook is visible at a glance.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tfadvq.quant.records import QuantizedTensor


def plot_tensor(float_values: np.ndarray, tensor: QuantizedTensor, path: str | Path) -> Path:
    """Write the histogram PNG of one quantized weight to ``path``; return the path."""
    path = Path(path)
    quantized = tensor.values().ravel()
    fig = Figure(figsize=(7, 3.5))  # no pyplot: no global backend, nothing chosen at import
    ax = fig.subplots()
    ax.hist(np.asarray(float_values).ravel(), bins=200, color="0.6", label="float32")
    levels, counts = np.unique(quantized, return_counts=True)
    width = (float(np.ptp(float_values)) or 1.0) / 200
    ax.bar(levels, counts, width=width, color="C1", alpha=0.7, label=f"{tensor.bits}-bit values")
    for c in np.unique(tensor.codebook):  # per-channel tables: every channel's centroids
        ax.axvline(c, color="C3", lw=0.5, alpha=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_title(f"{tensor.layer}/{tensor.weight}: {tensor.bits} bits, "
                 f"{'per-channel' if tensor.per_channel else 'per-tensor'} codebook")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def plot_model(float_weights: dict[tuple[str, str], np.ndarray], tensors: list[QuantizedTensor],
               out_dir: str | Path) -> list[Path]:
    """One PNG per tensor, ``float_weights[(layer, weight)]`` being the pre-quantization values."""
    out_dir = Path(out_dir)
    return [plot_tensor(float_weights[(t.layer, t.weight)], t, out_dir / f"{t.layer}__{t.weight}.png")
            for t in tensors]
