"""k-means codebook benchmark: kmeans1d against sklearn KMeans on heavy-tailed weights, and fit time.

Part A (error): float32 tensors of 40 960 values (the size of the issue
"Quantizing a model you did not train"): N(0, 0.05) as the control, Student-t
with 2 degrees of freedom (x 0.05), and N(0, 0.02) plus 60 outliers from
N(0, 2) (a layer fed unnormalised inputs).  For k = 2..256 (powers of two and
a few others) the squared error of ``kmeans1d.fit`` / that of sklearn KMeans
(k-means++, ``n_init=1``, ``random_state=0``, on float64 values, its centres
stored as float32 like ours) is ``error_ratio`` (<= 1 is the requirement),
and ours / the exact optimum (``kmeans1d.fit(..., bins=n)``: the k-segment DP
on every distinct value) is ``optimum_ratio``.  The same again weighted: the
importances are heavy-tailed with 20 % exact zeros (a diagonal Fisher's
shape), sklearn gets them as ``sample_weight``, and errors are weighted.

Part B (speed): every quantizable kernel (the ``tfadvq.quant.layer_rules``
rules) of a randomly initialised ResNet34 (``build_model("ResNet34",
feat_dim=80, embed_dim=256, base_width=32)``, seed 0), one codebook per
tensor, ours vs sklearn KMeans (k-means++, ``n_init=1``, float32 values as
``benchmarks/kmqat.py`` measures it); the best of ``--repeats`` runs of each,
``speedup_vs_sklearn`` = sklearn seconds / ours.  The >= 10x target is at
4 bits, the setting of ``benchmarks/kmqat.py``; 2 bits is shown beside it.
sklearn runs two OpenMP threads and ours one, so the ratio moves with the
machine's load (measured at 2 bits: 8-46x over four runs, 13-17x at 4 bits).

Usage: ``python benchmarks/kmeans_error.py [--quick]``; writes benchmarks/results/kmeans_error.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from tqdm import tqdm

from tfadvq.quant import kmeans1d
from tfadvq.report import machine_description, print_table

RESULT = Path(__file__).parent / "results" / "kmeans_error.json"
KS = [2, 3, 4, 5, 8, 12, 16, 32, 48, 64, 100, 128, 200, 256]
QUICK_KS = [2, 4, 16, 64, 256]
N = 40960
TENSORS = ("normal", "student_t2", "outliers")


def tensor(kind: str, n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        v = rng.normal(0, 0.05, n)
    elif kind == "student_t2":
        v = rng.standard_t(2, n) * 0.05
    elif kind == "outliers":
        v = np.concatenate([rng.normal(0, 0.02, n - 60), rng.normal(0, 2, 60)])
    else:
        raise ValueError(f"unknown tensor {kind!r}; known: {', '.join(TENSORS)}")
    return v.astype(np.float32)


def importances(n: int = N, seed: int = 1) -> np.ndarray:
    """Non-negative, heavy-tailed, 20 % exact zeros: the shape of a diagonal Fisher."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n) ** 2 * rng.lognormal(0, 1, n)
    f[rng.random(n) < 0.2] = 0.0
    return f


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def sklearn_codebook(values: np.ndarray, k: int, weights: np.ndarray | None = None,
                     dtype=np.float64) -> np.ndarray:
    km = KMeans(k, n_init=1, random_state=0).fit(values.reshape(-1, 1).astype(dtype), sample_weight=weights)
    return np.sort(km.cluster_centers_.ravel()).astype(np.float32)


def error_rows(ks: list[int], exact: bool) -> list[dict]:
    rows = []
    cases = [(kind, weighted, k) for weighted in (False, True) for kind in TENSORS for k in ks]
    for kind, weighted, k in tqdm(cases, desc="error table"):
        values = tensor(kind)
        f = importances() if weighted else None
        ours, ours_s = timed(kmeans1d.fit, values, k, weights=f)
        theirs, sk_s = timed(sklearn_codebook, values, k, f)
        row = {"method": "kmeans1d", "tensor": kind, "weighted": weighted, "k": k, "bits": float(np.log2(k)),
               "sq_error": kmeans1d.squared_error(values, ours, f), "sklearn_sq_error": kmeans1d.squared_error(values, theirs, f)}
        row["error_ratio"] = row["sq_error"] / row["sklearn_sq_error"]
        if exact:
            row["exact_sq_error"] = kmeans1d.squared_error(values, kmeans1d.fit(values, k, weights=f, bins=N), f)
            row["optimum_ratio"] = row["sq_error"] / row["exact_sq_error"]
        rows.append({**row, "seconds": ours_s, "sklearn_seconds": sk_s})
    return rows


def resnet34_kernels() -> list[np.ndarray]:
    """Every weight the quantizer would quantize in a random-init ResNet34 (seed 0)."""
    from tfadvq.compat import keras
    from tfadvq.models import build_model
    from tfadvq.quant import layer_rules

    keras.utils.set_random_seed(0)
    model = build_model("ResNet34", feat_dim=80, embed_dim=256, base_width=32)
    return [layer_rules.get_attr(layer, name).numpy() for layer in model.submodules
            if isinstance(layer, keras.layers.Layer) and (rule := layer_rules.rule_for(layer)) is not None
            for name in rule.weights]


def speed_rows(weights: list[np.ndarray], bits_list: list[int], repeats: int) -> list[dict]:
    rows = []
    common = {"model": "resnet34", "tensors": len(weights), "values": int(sum(w.size for w in weights))}
    for bits in bits_list:
        k = 2 ** bits
        ours_s, sk_s = [], []
        for _ in tqdm(range(repeats), desc=f"resnet34 fit, {bits} bits"):
            ours, seconds = timed(lambda: [kmeans1d.fit(w, k) for w in weights])
            ours_s.append(seconds)
            theirs, seconds = timed(lambda: [sklearn_codebook(w, k, dtype=np.float32) for w in weights])
            sk_s.append(seconds)
        ours_err = sum(kmeans1d.squared_error(w, c) for w, c in zip(weights, ours))
        sk_err = sum(kmeans1d.squared_error(w, c) for w, c in zip(weights, theirs))
        rows.append({**common, "method": "kmeans1d", "bits": bits, "k": k, "seconds": min(ours_s),
                     "sq_error": ours_err, "speedup_vs_sklearn": min(sk_s) / min(ours_s)})
        rows.append({**common, "method": "sklearn_kmeans", "bits": bits, "k": k, "seconds": min(sk_s),
                     "sq_error": sk_err, "speedup_vs_sklearn": 1.0})
    return rows


def error_view(row: dict) -> dict:
    """A table row: the ratio, and how far above the exact optimum each method ends, in percent."""
    view = {c: row[c] for c in ("tensor", "weighted", "k", "error_ratio")}
    if "exact_sq_error" in row:
        view["ours_above_optimum_%"] = 100 * (row["sq_error"] / row["exact_sq_error"] - 1)
        view["sklearn_above_optimum_%"] = 100 * (row["sklearn_sq_error"] / row["exact_sq_error"] - 1)
    return {**view, "seconds": row["seconds"], "sklearn_seconds": row["sklearn_seconds"]}


def targets(error: list[dict], speed: list[dict]) -> list[dict]:
    out = []
    for weighted in (False, True):
        for kind in TENSORS:
            mine = [r for r in error if r["tensor"] == kind and r["weighted"] == weighted]
            worst = max(mine, key=lambda r: r["error_ratio"])
            out.append({"target": f"{kind}{' weighted' if weighted else ''}: error <= sklearn at every k",
                        "measured": worst["error_ratio"], "at_k": worst["k"], "limit": 1 + 1e-9,
                        "met": worst["error_ratio"] <= 1 + 1e-9})
    for r in speed:
        if r["method"] == "kmeans1d" and r["bits"] == 4:  # the requirement, at benchmarks/kmqat.py's setting
            out.append({"target": f"resnet34 {r['bits']}-bit fit >= 10x faster than sklearn",
                        "measured": r["speedup_vs_sklearn"], "at_k": r["k"], "limit": 10.0,
                        "met": r["speedup_vs_sklearn"] >= 10})
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"k in {QUICK_KS}, no exact optimum, one repeat")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 2], help="ResNet34 fit-time bit widths")
    parser.add_argument("--repeats", type=int, default=2, help="ResNet34 fit-time runs of each (best kept)")
    parser.add_argument("--out", type=Path, default=RESULT)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    ks = QUICK_KS if args.quick else KS
    repeats = 1 if args.quick else args.repeats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        error = error_rows(ks, exact=not args.quick)
        weights = resnet34_kernels()
        speed = speed_rows(weights, args.bits, repeats)
    print_table([error_view(r) for r in error], title="squared error: ours / sklearn, and % above the optimum")
    print_table(speed, title="ResNet34 codebook fit")
    checks = targets(error, speed)
    print_table(checks, title="targets")
    config = {"values": N, "tensors": {"normal": "N(0, 0.05)", "student_t2": "Student-t(2) x 0.05",
                                       "outliers": "N(0, 0.02), 60 of them replaced by N(0, 2)"},
              "seeds": {"tensors": 0, "importances": 1, "sklearn_random_state": 0, "resnet34_init": 0},
              "importances": "N(0,1)^2 x lognormal(0, 1), 20 % set to 0",
              "ks": ks, "sklearn": "KMeans(k, n_init=1, init='k-means++', random_state=0); "
                                   "error table on float64 values, fit time on float32 values",
              "exact_optimum": None if args.quick else "kmeans1d.fit(values, k, bins=n)",
              "resnet34": {"model_args": {"feat_dim": 80, "embed_dim": 256, "base_width": 32},
                           "tensors": len(weights), "values": int(sum(w.size for w in weights)),
                           "bits": args.bits, "repeats": repeats, "timing": "best of repeats"},
              "kmeans1d_defaults": {"cells_per_centroid": kmeans1d.CELLS_PER_CENTROID,
                                    "min_cells": kmeans1d.MIN_CELLS}}
    result = {"benchmark": "kmeans_error", "date": datetime.date.today().isoformat(),
              "machine": machine_description(), "config": config, "rows": error + speed, "targets": checks}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
