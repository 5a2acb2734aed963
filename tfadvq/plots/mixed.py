"""Mixed-precision pictures: where the sensitivity is and the bits went, how the trace estimate
converged, and EER against model size for every method with the allocation's Pareto front.

``plot_sensitivity`` takes the rows of :meth:`tfadvq.quant.allocate.Allocation.rows`
(a log-scale bar per tensor of its sensitivity at the chosen width, the width
written on it); ``plot_convergence`` the :class:`~tfadvq.quant.sensitivity.TraceEstimate`
per tensor (running estimate over probes, normalised by the final one, so
every tensor shares one axis); ``plot_eer_vs_size`` the benchmark's rows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def plot_sensitivity(rows: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Per tensor: sensitivity at its chosen bits (bars, log scale) and the bits (labels, right axis)."""
    if not rows:
        raise ValueError("plot_sensitivity: no rows to draw")
    names = [str(r["tensor"]) for r in rows]
    sens = np.array([float(r["sensitivity"]) for r in rows])
    positive = sens[sens > 0]
    floor = positive.min() / 10 if positive.size else 1.0  # exact (0) errors drawn at the bottom, not at 1e-30
    sens = np.maximum(sens, floor)
    bits = [int(r["bits"]) for r in rows]
    fig = Figure(figsize=(max(5.0, 0.45 * len(rows) + 2), 4.2))  # no pyplot: no global backend
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x, sens, color="C0", alpha=0.8, label="sensitivity at chosen bits")
    ax.set_yscale("log")
    ax.set_ylabel("HAWQ-V2 sensitivity (tr(H)/n · ||Q(W)-W||²)")
    ax.set_xticks(x, names, rotation=70, ha="right", fontsize=7)
    twin = ax.twinx()
    twin.plot(x, bits, "o-", color="C3", label="bits")
    twin.set_ylabel("bits", color="C3")
    twin.set_ylim(0, 9)
    for xi, b in zip(x, bits):
        twin.annotate(str(b), (xi, b), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7,
                      color="C3")
    ax.set_title(title or "sensitivity and chosen bits per tensor", fontsize=9)
    return _save(fig, path)


def plot_convergence(traces: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Running Hutchinson estimate over the probe count, per tensor, relative to its final value."""
    if not traces:
        raise ValueError("plot_convergence: no traces to draw")
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.subplots()
    for i, (key, est) in enumerate(traces.items()):
        running = np.asarray(est.running, np.float64)
        final = running[-1] if running[-1] != 0 else 1.0
        ax.plot(np.arange(1, running.size + 1), running / final, color=f"C{i % 10}", lw=1,
                label=key if len(traces) <= 16 else None)
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("Rademacher probes per batch")
    ax.set_ylabel("running trace estimate / final")
    if len(traces) <= 16:
        ax.legend(fontsize=6, ncol=2)
    ax.set_title(title or "Hutchinson trace estimate convergence", fontsize=9)
    return _save(fig, path)


def plot_eer_vs_size(rows: Sequence[Mapping[str, Any]], path: str | Path, *,
                     front: Sequence[tuple[int, float]] = (), title: str = "") -> Path:
    """EER against ``tflite_bytes`` (or ``size_bytes``) per ``method``, with error bars from
    ``eer_ci95`` when present (both in percent, as benchmark rows and :class:`tfadvq.evaluation.Evaluation` hold them); ``front``: the allocation's Pareto front as ``(bytes, sensitivity)``,
    drawn on a second axis (the model of what the allocation trades)."""
    if not rows:
        raise ValueError("plot_eer_vs_size: no rows to draw")
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    methods = list(dict.fromkeys(str(r["method"]) for r in rows))
    for i, method in enumerate(methods):
        mine = sorted((r for r in rows if r["method"] == method),
                      key=lambda r: r.get("tflite_bytes") or r["size_bytes"])
        x = np.array([(r.get("tflite_bytes") or r["size_bytes"]) / 1024 for r in mine])
        y = np.array([r["eer"] for r in mine])
        ci = [r.get("eer_ci95") for r in mine]
        if all(c is not None for c in ci):
            err = np.abs(np.array([[c[0], c[1]] for c in ci]).T - y)
            ax.errorbar(x, y, yerr=err, fmt="o-", color=f"C{i % 10}", capsize=3, lw=1.2, label=method)
        else:
            ax.plot(x, y, "o-", color=f"C{i % 10}", lw=1.2, label=method)
    ax.set_xlabel("converted .tflite size (KiB)")
    ax.set_ylabel("EER (%)")
    ax.grid(True, color="0.9")
    if front:
        twin = ax.twinx()
        fb, fs = np.array(front, np.float64).T
        twin.plot(fb / 1024, np.maximum(fs, 1e-30), color="0.5", lw=0.8, ls=":", label="Pareto front (sensitivity)")
        twin.set_yscale("log")
        twin.set_ylabel("total sensitivity of the front", color="0.4")
        twin.legend(loc="upper center", fontsize=7)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title or "EER vs model size", fontsize=9)
    return _save(fig, path)
