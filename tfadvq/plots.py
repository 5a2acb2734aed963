"""Detection error trade-off (DET) plot of a trial list.

The DET curve (Martin et al., Eurospeech 1997) plots miss rate against
false-alarm rate on normal-deviate axes, where Gaussian score distributions
give straight lines and the low-error region that matters is spread out.
The EER point and the minDCF operating points are marked, so a plot alone
tells the numbers of the summary table.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from tfadvq.metrics import compute_eer, error_rates, min_dcf_point  # noqa: E402

TICKS = np.array([0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
P_TARGETS = (0.01, 0.05)


def _deviate(p: np.ndarray) -> np.ndarray:
    """Normal deviate, clipped to the axis range so 0 % / 100 % points sit on its edge."""
    return norm.ppf(np.clip(p, TICKS[0], TICKS[-1]))


def plot_det(scores, labels, path: str | Path, title: str = "") -> Path:
    """Write the DET curve of ``scores`` (accept if ``>= threshold``) to the PNG ``path``."""
    path = Path(path)
    far, frr, _ = error_rates(scores, labels)
    eer, _ = compute_eer(scores, labels)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot(_deviate(far), _deviate(frr), color="C0", lw=1.5, label="DET")
    ax.plot(_deviate(eer), _deviate(eer), "o", color="C3", label=f"EER {100 * eer:.2f}%")
    for p, marker in zip(P_TARGETS, ("s", "^")):
        cost, far_p, frr_p, _ = min_dcf_point(scores, labels, p)
        ax.plot(_deviate(far_p), _deviate(frr_p), marker, color="C2", mfc="none",
                label=f"minDCF(p={p:g}) {cost:.3f}")
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
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
