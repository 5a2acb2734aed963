"""Detection error trade-off (DET) plots: one trial list, or several systems compared.

The DET curve (Martin et al., Eurospeech 1997) plots miss rate against
false-alarm rate on normal-deviate axes, where Gaussian score distributions
give straight lines and the low-error region that matters is spread out.
The EER point and the minDCF operating points are marked, so a plot alone
tells the numbers of the summary table.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.stats import norm

from tfadvq.errors import DataError
from tfadvq.metrics import compute_eer, error_rates, min_dcf_point

TICKS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
P_TARGETS = (0.01, 0.05)


def _deviate(p: np.ndarray) -> np.ndarray:
    """Normal deviate, clipped to the axis range so 0 % / 100 % points sit on its edge."""
    return norm.ppf(np.clip(p, TICKS[0], TICKS[-1]))


def _det_figure(title: str) -> tuple[Figure, Axes]:
    """An empty DET plot: normal-deviate axes labelled in percent, the EER diagonal in grey."""
    fig = Figure(figsize=(5.5, 5.5))  # no pyplot: no global backend, nothing chosen at import
    ax = fig.subplots()
    ax.plot(_deviate(TICKS[[0, -1]]), _deviate(TICKS[[0, -1]]), color="0.8", lw=0.8, zorder=0)
    labels_pct = [f"{100 * t:g}" for t in TICKS]
    ax.set_xticks(_deviate(TICKS), labels_pct)
    ax.set_yticks(_deviate(TICKS), labels_pct)
    ax.set_xlim(_deviate(TICKS[[0, -1]]))
    ax.set_ylim(_deviate(TICKS[[0, -1]]))
    ax.set_xlabel("false alarm rate (%)")
    ax.set_ylabel("miss rate (%)")
    ax.grid(True, color="0.9")
    ax.set_title(title or "DET curve", fontsize=9)
    return fig, ax


def _save(fig: Figure, ax: Axes, path: str | Path) -> Path:
    path = Path(path)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _draw(ax: Axes, scores, labels, name: str, color: str) -> None:
    """One system's DET curve and its EER point, both labelled with the EER."""
    far, frr, _ = error_rates(scores, labels)
    eer, _ = compute_eer(scores, labels)
    ax.plot(_deviate(far), _deviate(frr), color=color, lw=1.5, label=f"{name} (EER {eer:.2f}%)")
    ax.plot(_deviate(eer / 100), _deviate(eer / 100), "o", color=color)


def plot_det(scores, labels, path: str | Path, title: str = "") -> Path:
    """Write the DET curve of ``scores`` (accept if ``>= threshold``) to the PNG ``path``,
    with its EER point and the minDCF operating points at ``P_TARGETS``."""
    fig, ax = _det_figure(title)
    _draw(ax, scores, labels, "DET", "C0")
    for p, marker in zip(P_TARGETS, ("s", "^")):
        cost, far_p, frr_p, _ = min_dcf_point(scores, labels, p)
        ax.plot(_deviate(far_p), _deviate(frr_p), marker, color="C2", mfc="none",
                label=f"minDCF(p={p:g}) {cost:.3f}")
    return _save(fig, ax, path)


def plot_dets(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path,
              title: str = "") -> Path:
    """Several systems on one DET plot (e.g. FP32 beside its 4- and 2-bit models), each with its
    EER point; ``curves`` maps a legend name to that system's ``(scores, labels)``."""
    if not curves:
        raise DataError("plot_dets: no curves given; pass {name: (scores, labels)}")
    fig, ax = _det_figure(title)
    for i, (name, (scores, labels)) in enumerate(curves.items()):
        _draw(ax, scores, labels, name, f"C{i % 10}")
    return _save(fig, ax, path)
