"""Weight distributions of one tensor before and after binarization, one panel per method.

What a 1-bit scheme does to a layer is easiest to judge side by side: the
float weights of the FP32 model (grey), the latent float weights the
fine-tune ended with (outline; absent for post-training), and the two values
each output channel is stored as (bars at the table entries, height = how
many weights take them).  Static tables are symmetric (±α per channel),
adaptive ones follow the asymmetry of each channel, plain sign has ±1 (drawn
on its own scale, so its panel's x axis differs).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tfadvq.quant.records import QuantizedTensor


def plot_binary_weights(before: np.ndarray, after: Mapping[str, tuple[np.ndarray | None, QuantizedTensor]],
                        path: str | Path, title: str = "") -> Path:
    """Write one PNG: a panel per method of ``after`` (``method -> (latent weights or None, tensor)``).

    ``before`` is the float tensor before quantization; each ``tensor`` is
    the method's :class:`~tfadvq.quant.records.QuantizedTensor` of that weight.
    """
    if not after:
        raise ValueError("plot_binary_weights: no method to draw")
    path = Path(path)
    before = np.asarray(before, np.float32).ravel()
    fig = Figure(figsize=(4.2 * len(after), 3.4))  # no pyplot: no global backend
    axes = np.atleast_1d(fig.subplots(1, len(after), sharey=True))
    for ax, (method, (latent, tensor)) in zip(axes, after.items()):
        bins = np.linspace(before.min(), before.max(), 120)
        ax.hist(before, bins=bins, color="0.7", label="FP32")
        if latent is not None:
            ax.hist(np.asarray(latent).ravel(), bins=bins, histtype="step", color="C0", label="latent after")
        levels, counts = np.unique(tensor.values().ravel(), return_counts=True)
        ax.bar(levels, counts, width=(bins[1] - bins[0]), color="C3", alpha=0.8, label="1-bit values")
        ax.set_yscale("log")
        ax.set_title(f"{method}: {levels.size} values", fontsize=9)
        ax.set_xlabel("weight value")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("count")
    fig.suptitle(title or f"{next(iter(after.values()))[1].layer}/{next(iter(after.values()))[1].weight}",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
