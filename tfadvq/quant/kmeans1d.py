"""Fast 1-D k-means for weight codebooks (k = 2^b centroids, b = 1..8), optionally weighted.

Weights are one-dimensional data, so k-means needs neither distance matrices
nor random restarts of a general-purpose solver.  On a *sorted* copy of the
values every cluster of a 1-D k-means partition is a contiguous run, bounded
by the midpoints between neighbouring centroids.  With prefix sums of the
sorted values one exact Lloyd iteration is then:

    boundaries  = searchsorted(sorted_values, midpoints(c))        O(k log n)
    c_j         = (S[b_{j+1}] - S[b_j]) / (W[b_{j+1}] - W[b_j])    O(k)

so the only O(n log n) work is the sort, and Lloyd can iterate to its exact
fixed point (boundaries unchanged) for almost nothing.

**Weighted k-means.**  With non-negative importances ``f_i`` (``weights=``,
e.g. a diagonal Fisher: the numeric core of sensitivity-weighted k-means as in
SqueezeLLM, Kim et al. 2023) the objective is ``sum_i f_i (w_i - c(w_i))^2``.
Nothing else changes: ``W`` and ``S`` become prefix sums of ``f`` and
``f w``, every step below is exact for them, and without importances ``W``
is the count.  A partition's error is ``sum f w^2 - sum_clusters S^2 / W``,
and the first term is the same for every partition, so no prefix sum of
squares is kept.

**Global search.**  Lloyd alone stalls in poor local optima (8x the optimal
error at k=256 on heavy-tailed weights from quantile starts), so the search
has three steps:

1. *Cells* (runs of neighbouring sorted values, never splitting a run of
   equal values).  When a tensor (row) has at most ``bins`` distinct values,
   each run of equal values is a cell, and step 2 is the **exact** optimum of
   the 1-D k-means (exact duplicates, already quantized or small tensors).
   Otherwise ``bins`` cells whose density follows ``(f p)^(1/3)``, the
   optimal point density of high-resolution quantization theory, with
   ``f p`` (the importance-weighted value density) estimated on ``4 * bins``
   equal-count quantile segments, and at most one cell per value (in sparse
   tails the 1/3 law asks for more cells than there are values).
   Equal-*width* bins (the previous histogram) spend their resolution on
   empty tails: on N(0, .02) plus 60 outliers from N(0, 2) the whole core
   fell into ~30 bins and ended 31x above sklearn at k=256.
2. The *globally optimal partition of the cells*: the k-segment dynamic
   programme ``D[t][i] = min_j D[t-1][j] - S(j, i)^2 / W(j, i)``, whose
   argmin is monotone in ``i`` for this cost, so each of the k layers is
   solved by divide and conquer in O(cells log cells), vectorised per
   recursion level.
3. *Polish on the raw values*: the same programme on a lattice of
   ``2 L + 1`` positions around each boundary (L = 8 for one tensor, 4 for
   rows), the widest cell wide at first, then L times finer down to single
   values (all boundaries move jointly, exactly on each lattice), alternated
   with exact Lloyd until neither moves.  A
   Lloyd fixed point alone is not enough: on real, discrete data the error
   is jagged at the scale of single values, and Lloyd stops in the first dip.

An optional warm start (the previous codebook during quantization-aware
training) descends by Lloyd and is polished too; the lower error wins.
Cells plus polish are a measured safeguard, not a proof of optimality (that
needs ``bins`` >= the number of distinct values, e.g. ``bins=values.size``:
the exact optimum in O(k n log n)).  Measured on 40 960-value tensors
(normal, Student-t with 2 degrees of freedom, normal plus outliers, each
also weighted) in ``benchmarks/kmeans_error.py``: within 0.08 % of the exact
optimum at every k = 2..256 (at it for most k <= 12), and never above
sklearn's KMeans (k-means++, ``n_init=1``), which ends up to 28 % above it;
all 37 kernels of a ResNet34 (6.6 M values) fit at k=16 in ~0.3 s, 13-17x
faster than sklearn on the 2-core benchmark machine.

Rows (per-output-channel codebooks) are solved together: each row is mapped
affinely to ``[2r, 2r + 1]`` in float64, so a single ``searchsorted`` over the
concatenated rows finds every row's boundaries at once.

Documented fallbacks and errors:

* at most ``k`` distinct values in a tensor (or row): the codebook is those
  distinct values, padded by repeating the largest.  Quantization is then
  lossless; duplicate centroids are harmless for nearest-centroid assignment.
  When every row is such a row (8-bit per-channel codebooks on channels of up
  to 256 weights) there is no search at all: 1024 rows of 256 in 0.1 s, where
  the search took 284 s on 128 rows of 80.
* importances that are all zero in a tensor (or row): every codebook has zero
  weighted error there, so that row is fitted unweighted.
* NaN/inf anywhere, or a tensor whose values are all equal: :class:`QuantizationError`
  naming the tensor (a constant tensor is almost always a broken checkpoint);
  negative or non-finite importances, or importances of another shape, too.

Ties (a value exactly on a midpoint) go to the lower centroid, the same rule as
:func:`assign` and the Keras quantizer's forward pass.
"""
from __future__ import annotations

import numpy as np

from tfadvq.errors import QuantizationError

_MAX_ITER = 1000
_MAX_POLISH = 20
# Lattice positions on each side of a boundary: one row, and many rows (a step costs rows x (2L+1)^2).
_LATTICE, _LATTICE_ROWS = 8, 4
CELLS_PER_CENTROID = 8
MIN_CELLS = 512
_SEGMENTS_PER_CELL = 4  # equal-count quantile segments per cell for the density estimate


def fit(values: np.ndarray, k: int, *, init: np.ndarray | None = None, name: str = "weights",
        bins: int | None = None, max_iter: int = _MAX_ITER, search: bool = True,
        weights: np.ndarray | None = None) -> np.ndarray:
    """Codebook of ``k`` sorted float32 centroids minimising the (weighted) squared error of ``values``.

    ``weights`` (same shape as ``values``, >= 0, e.g. a diagonal Fisher)
    weigh each value's squared error; ``None`` weighs all alike.  ``init``
    (``[k]``, e.g. the previous codebook) is tried besides the global search;
    with ``search=False`` it is the only start (Lloyd from the previous
    codebook, the cheap refresh during training).  Example::

        >>> fit(np.array([0., .1, 1., 1.1]), 2)
        array([0.05, 1.05], dtype=float32)
        >>> fit(np.array([0., .1, 1., 1.1]), 2, weights=np.array([1., 3., 1., 1.]))
        array([0.075, 1.05 ], dtype=float32)
    """
    values = np.asarray(values)
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != values.shape:
            raise QuantizationError(f"{name}: importances (weights=) have shape {weights.shape}; "
                                    f"accepted: the values' shape {values.shape}")
        weights = weights.reshape(1, -1)
    return fit_rows(values.reshape(1, -1), k, init=None if init is None else np.asarray(init).reshape(1, -1),
                    name=name, bins=bins, max_iter=max_iter, search=search, weights=weights)[0]


def fit_rows(rows: np.ndarray, k: int, *, init: np.ndarray | None = None, name: str = "weights",
             bins: int | None = None, max_iter: int = _MAX_ITER, search: bool = True,
             weights: np.ndarray | None = None) -> np.ndarray:
    """One codebook per row of ``rows`` (``[R, n]``) -> ``[R, k]`` float32, rows solved jointly.

    ``weights`` (``[R, n]``, >= 0) are per-value importances as in :func:`fit`.
    ``bins`` is the number of cells per row the optimal DP runs on (rows with
    at most ``bins`` distinct values are solved exactly on those values).
    Default ``max(8 k, 512 / rows)``: the DP only has to find the right
    basin, the lattice polish then works on single values; many rows
    (per-channel) share the budget so a whole layer costs about one tensor.
    """
    rows = np.asarray(rows)
    rows = rows if rows.dtype in (np.float32, np.float64) else rows.astype(np.float64)
    if k < 2:
        raise QuantizationError(f"{name}: k={k} centroids requested; accepted: k >= 2")
    if init is None and not search:
        raise QuantizationError(f"{name}: search=False needs a warm-start codebook (init)")
    importances = None if weights is None else _checked_importances(weights, rows.shape, name)
    data = _SortedRows(rows, importances, _checked_mean(rows, name))
    if np.all(data.values[:, -1] == data.values[:, 0]):
        raise QuantizationError(f"{name}: all {rows.size} values equal {rows.flat[0]!r}; a constant "
                                "tensor has no codebook to learn (is the checkpoint broken?)")
    if init is None and np.all(data.distinct <= k):
        # Every row fits its own values exactly (e.g. 8-bit per-channel codebooks on channels of
        # <= 256 weights): nothing to search, and the k-layer programme over so few values took minutes.
        return (data.with_few_distinct_fallback(np.zeros((data.num_rows, k)), k) + data.mean).astype(np.float32)
    if bins is None:
        bins = max(CELLS_PER_CENTROID * k, MIN_CELLS // data.num_rows)
    elif bins < k:
        raise QuantizationError(f"{name}: bins={bins} grid cells for k={k} centroids; accepted: bins >= k")
    if init is not None and init.shape != (rows.shape[0], k):
        raise QuantizationError(f"{name}: warm-start codebook has shape {init.shape}, "
                                f"expected {(rows.shape[0], k)}")
    candidates, window = [], None
    if search:
        edges = data.cells(bins)
        window = data.widest_cell(edges, exact=data.distinct <= bins)
        candidates.append(optimal_on_cells(data, edges, k))
    if init is not None:
        candidates.append(np.sort(np.asarray(init, dtype=np.float64), axis=1) - data.mean)
    best, best_err = None, None
    for i, start in enumerate(candidates):
        if window is not None and np.any(window > 0):
            # The grid optimum goes straight to the lattice; a warm start first descends by Lloyd.
            centroids = data.polish(start if search and i == 0 else data.lloyd(start, max_iter), window, max_iter)
        else:
            centroids = data.lloyd(start, max_iter)
        err = data.squared_error(centroids)
        if best is None:
            best, best_err = centroids, err
        else:
            better = err < best_err
            best[better], best_err[better] = centroids[better], err[better]
    return (data.with_few_distinct_fallback(best, k) + data.mean).astype(np.float32)


def assign(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index (uint8) of the nearest centroid of a sorted ``codebook`` ``[k]`` for each value."""
    codebook = np.asarray(codebook, dtype=np.float32)
    midpoints = (codebook[:-1] + (codebook[1:] - codebook[:-1]) / 2).astype(np.float32)
    return np.searchsorted(midpoints, np.asarray(values, dtype=np.float32), side="left").astype(np.uint8)


def assign_rows(rows: np.ndarray, codebooks: np.ndarray) -> np.ndarray:
    """:func:`assign` per row: ``rows`` ``[R, n]``, ``codebooks`` ``[R, k]`` -> uint8 ``[R, n]``."""
    rows = np.asarray(rows, dtype=np.float32)
    codebooks = np.asarray(codebooks, dtype=np.float32)
    midpoints = codebooks[:, :-1] + (codebooks[:, 1:] - codebooks[:, :-1]) / 2
    # Vectorised over rows: count the midpoints strictly below each value.
    out = np.zeros(rows.shape, dtype=np.uint8)
    for j in range(midpoints.shape[1]):  # k - 1 <= 255 passes, each vectorised over all values
        out += rows > midpoints[:, j:j + 1]
    return out


def squared_error(values: np.ndarray, codebook: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Sum of (``weights``-weighted) squared distances of ``values`` to their nearest centroid."""
    values = np.asarray(values, dtype=np.float64).ravel()
    q = np.asarray(codebook, dtype=np.float64)[assign(values, codebook)]
    err = (values - q) ** 2
    if weights is not None:
        err = err * np.asarray(weights, dtype=np.float64).ravel()
    return float(np.sum(err))


def _checked_mean(rows: np.ndarray, name: str) -> np.ndarray:
    """Row means ``[R, 1]`` (float64); the one pass over the values also finds NaN/inf."""
    if rows.size == 0:
        raise QuantizationError(f"{name}: no values to quantize")
    mean = rows.mean(axis=1, keepdims=True, dtype=np.float64)
    if not np.all(np.isfinite(mean)):
        bad = int(np.size(rows) - np.count_nonzero(np.isfinite(rows)))
        if bad:
            raise QuantizationError(f"{name}: {bad} NaN/inf value(s); quantize a finite checkpoint")
        raise QuantizationError(f"{name}: values up to {np.max(np.abs(rows))!r} overflow a float64 sum; "
                                "accepted: weights a float64 can square and sum")
    return mean


def _checked_importances(weights: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Importances as float64 ``shape``; all-zero rows become ones (see the module docstring)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != shape:
        raise QuantizationError(f"{name}: importances (weights=) have shape {weights.shape}; "
                                f"accepted: the values' shape {shape}")
    bad = int(np.count_nonzero(~(np.isfinite(weights) & (weights >= 0))))
    if bad:
        raise QuantizationError(f"{name}: {bad} importance(s) negative, NaN or inf; "
                                "accepted: finite values >= 0")
    dead = ~np.any(weights > 0, axis=1)
    if np.any(dead):
        weights = weights.copy()
        weights[dead] = 1.0
    return weights


class _SortedRows:
    """Sorted rows (with their importances) and prefix sums, mapped into one monotone key space."""

    def __init__(self, rows: np.ndarray, importances: np.ndarray | None = None, mean: np.ndarray | None = None):
        # Sorted in the input's precision (float32 sorts faster), then centred in float64 per
        # row so that Σ f x² - Σ S²/W does not cancel catastrophically.  The shift is a
        # float32 number, so float32 values keep their exact value through it; a shift
        # rounds monotonically, so the order holds.
        self.num_rows, self.n = rows.shape
        if mean is None:
            mean = rows.mean(axis=1, keepdims=True, dtype=np.float64)
        self.mean = mean.astype(np.float32).astype(np.float64)
        if importances is None:
            self.values = weighted = np.subtract(np.sort(rows, axis=1), self.mean, dtype=np.float64)
            # Unweighted: the cumulative weight is the count (no array of ones).
            self.prefix_w = np.broadcast_to(np.arange(self.n + 1, dtype=np.float64), (self.num_rows, self.n + 1))
        else:
            order = np.argsort(rows, axis=1)
            self.values = np.subtract(np.take_along_axis(rows, order, axis=1), self.mean, dtype=np.float64)
            f = np.take_along_axis(importances, order, axis=1)
            weighted = f * self.values
            self.prefix_w = self._prefix(f)
        self.lo = self.values[:, :1]
        span = self.values[:, -1:] - self.lo
        self.span = np.where(span > 0, span, 1.0)
        self.offset = 2.0 * np.arange(self.num_rows)[:, None]
        self.row_start = (np.arange(self.num_rows) * self.n)[:, None]
        self.keys = self._key(self.values).ravel()
        self.prefix = self._prefix(weighted)
        # Σ f x² is the same for every partition: a partition's error is this minus
        # Σ S²/W over its clusters, so no prefix sum of squares is needed.
        self.total_sq = np.einsum("ij,ij->i", weighted, self.values)
        self.distinct = 1 + np.count_nonzero(self.values[:, 1:] != self.values[:, :-1], axis=1)

    def _prefix(self, a: np.ndarray) -> np.ndarray:
        out = np.empty((self.num_rows, self.n + 1))
        out[:, 0] = 0.0
        np.cumsum(a, axis=1, out=out[:, 1:])
        return out

    def _key(self, x: np.ndarray) -> np.ndarray:
        """Monotone keys of row values: row r maps to [2r, 2r + 1] (one row: the values themselves)."""
        if self.num_rows == 1:
            return x
        return self.offset + (x - self.lo) / self.span

    def run_starts(self, which: np.ndarray) -> np.ndarray:
        """``[R, n]`` bool: True where a run of equal values starts, in the rows ``which`` only."""
        starts = np.zeros((self.num_rows, self.n), dtype=bool)
        starts[which, 0] = True
        starts[which, 1:] = self.values[which, 1:] != self.values[which, :-1]
        return starts

    def cells(self, bins: int) -> np.ndarray:
        """``[R, bins + 1]`` non-decreasing local positions of the cell edges (0 first, n last).

        Rows with at most ``bins`` distinct values get one cell per run of equal
        values (padded with empty cells at the end); the others the companded grid.
        """
        exact = self.distinct <= bins
        edges = np.full((self.num_rows, bins + 1), self.n, dtype=np.int64)
        if not np.all(exact):
            edges[~exact] = self._companded_edges(bins)[~exact]
        if np.any(exact):
            starts = self.run_starts(exact)
            rank = np.cumsum(starts, axis=1) - 1
            r, i = np.nonzero(starts)
            edges[r, rank[r, i]] = i
        return edges

    def widest_cell(self, edges: np.ndarray, exact: np.ndarray) -> np.ndarray:
        """Per row, the most values in a cell holding more than one distinct value (0 for exact rows)."""
        length = np.diff(edges, axis=1)
        first = np.take_along_axis(self.values, np.minimum(edges[:, :-1], self.n - 1), axis=1)
        last = np.take_along_axis(self.values, np.maximum(edges[:, 1:] - 1, 0), axis=1)
        return np.where(exact, 0, np.max(np.where(last > first, length, 0), axis=1))

    def _companded_edges(self, bins: int) -> np.ndarray:
        """Cell edges with cell density proportional to (importance-weighted density)^(1/3).

        The density is estimated on equal-count quantile segments.  A segment
        gets at most one cell per value (more would be empty: in sparse tails
        the (1/3)-law asks for cells in the gaps between values), the cells
        are spread evenly by rank inside each segment, and each edge is moved
        to the start of its run of equal values.
        """
        segments = min(_SEGMENTS_PER_CELL * bins, self.n)
        pos = np.rint(np.linspace(0, self.n, segments + 1)).astype(np.int64)
        count = np.diff(pos).astype(np.float64)[None, :]
        mass = np.diff(self.prefix_w[:, pos], axis=1)
        # A segment reaches halfway across the gaps to its neighbours (the extremes: to their value).
        x = self.values
        split = (x[:, np.maximum(pos - 1, 0)] + x[:, np.minimum(pos, self.n - 1)]) / 2
        split[:, 0], split[:, -1] = x[:, 0], x[:, -1]
        width = np.diff(split, axis=1)
        # density^(1/3) * width = mass^(1/3) * width^(2/3) per segment.
        g = np.cbrt(mass * width ** 2)
        g = np.where(g.sum(axis=1, keepdims=True) > 0, g, mass)  # all mass at single values
        cells = _water_fill(g, np.broadcast_to(count, g.shape), float(bins))
        cum = np.concatenate([np.zeros((self.num_rows, 1)), np.cumsum(cells, axis=1)], axis=1)
        # Edge j of a row sits where the cumulative cell count reaches j (scaled, if capped below bins).
        flat = (cum / np.maximum(cum[:, -1:], 1e-300) + self.offset).ravel()
        row = np.repeat(np.arange(self.num_rows), bins - 1)
        targets = (self.offset + np.arange(1, bins)[None, :] / bins).ravel()
        seg = np.searchsorted(flat, targets, side="right") - 1
        seg = np.clip(seg, row * (segments + 1), row * (segments + 1) + segments - 1)
        c0, c1 = flat[seg], flat[seg + 1]
        frac = np.clip(np.where(c1 > c0, (targets - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0), 0.0, 1.0)
        local = seg - row * (segments + 1)
        # Rounded down, edges of cells spaced >= 1 value apart stay distinct (no round-half-even pairs).
        at = np.floor(pos[local] + frac * (pos[local + 1] - pos[local]) + 1e-7).astype(np.int64)
        at = np.minimum(at, self.n - 1).reshape(self.num_rows, bins - 1)
        # Each edge at the start of its run of equal values: a run is never split.
        first = np.take_along_axis(self.values, at, axis=1)
        found = np.searchsorted(self.keys, self._key(first).ravel(), side="left").reshape(first.shape)
        inner = np.clip(found - self.row_start, 0, self.n)
        ends = np.full((self.num_rows, 1), self.n)
        return np.sort(np.concatenate([np.zeros_like(ends), inner, ends], axis=1), axis=1)

    def boundaries(self, centroids: np.ndarray) -> np.ndarray:
        """``[R, k+1]`` local start indices of each cluster (value == midpoint goes low)."""
        midpoints = centroids[:, :-1] + (centroids[:, 1:] - centroids[:, :-1]) / 2
        found = np.searchsorted(self.keys, self._key(midpoints).ravel(), side="right")
        inner = np.clip(found.reshape(midpoints.shape) - self.row_start, 0, self.n)
        ends = np.full((self.num_rows, 1), self.n)
        return np.concatenate([np.zeros_like(ends), inner, ends], axis=1)

    def _prefix_at(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prefix (weight, weighted sum) at local positions ``pos`` ``[R, m]``."""
        flat = pos + self.row_start + np.arange(self.num_rows)[:, None]  # rows are n + 1 long
        w = pos.astype(np.float64) if self.prefix_w.strides[0] == 0 else self.prefix_w.ravel()[flat]
        return w, self.prefix.ravel()[flat]

    def _sums(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-cluster (weight, weighted sum) between ``bounds``."""
        return (np.diff(np.take_along_axis(self.prefix_w, bounds, axis=1), axis=1),
                np.diff(np.take_along_axis(self.prefix, bounds, axis=1), axis=1))

    def _means(self, bounds: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """Weighted cluster means; a cluster without weight keeps its centroid.

        Each mean is clipped into its cluster's value range: prefix-sum rounding
        must not move the centroid of a cluster of equal values off that value.
        """
        w, s = self._sums(bounds)
        first = np.take_along_axis(self.values, np.minimum(bounds[:, :-1], self.n - 1), axis=1)
        last = np.take_along_axis(self.values, np.maximum(bounds[:, 1:] - 1, 0), axis=1)
        means = np.clip(s / np.where(w > 0, w, 1.0), first, last)
        return np.where(w > 0, means, centroids)

    def lloyd(self, centroids: np.ndarray, max_iter: int) -> np.ndarray:
        """Exact Lloyd iterations until no boundary moves (or ``max_iter``)."""
        centroids = np.sort(centroids, axis=1)
        bounds = self.boundaries(centroids)
        for _ in range(max_iter):
            centroids = np.sort(self._means(bounds, centroids), axis=1)
            new_bounds = self.boundaries(centroids)
            if np.array_equal(new_bounds, bounds):
                break
            bounds = new_bounds
        return centroids

    def polish(self, centroids: np.ndarray, window: np.ndarray, max_iter: int) -> np.ndarray:
        """Alternate coarse-to-fine lattice DPs (:meth:`lattice_step`) and Lloyd until neither helps.

        A Lloyd fixed point is only a local optimum: on real, discrete data the
        error is jagged at the scale of single values, and Lloyd stops in the
        first dip, often a few values from the optimum of the grid cell it
        started in.  The lattice DP moves all boundaries *jointly* to the best
        partition on a lattice of ``2 L + 1`` positions around each boundary,
        ``window`` values wide at first, then ``L`` times finer down to single
        values (``L`` = 8 for one row, 4 for many).
        """
        half = _LATTICE if self.num_rows == 1 else _LATTICE_ROWS
        bounds = self.boundaries(centroids)
        polished = False
        for _ in range(_MAX_POLISH):
            stride = np.maximum(-(-window // half), 1) * (window > 0)
            start = bounds
            while True:
                bounds = self.lattice_step(bounds, stride, half)
                if not np.any(stride > 1):
                    break
                stride = np.where(stride > 1, -(-stride // half), stride)
            if polished and np.array_equal(bounds, start):
                break
            centroids = self.lloyd(np.sort(self._means(bounds, centroids), axis=1), max_iter)
            polished = True
            moved, bounds = bounds, self.boundaries(centroids)
            if np.array_equal(bounds, moved):  # Lloyd kept the lattice optimum: the lattice would too
                break
        return centroids

    def lattice_step(self, bounds: np.ndarray, stride: np.ndarray, half: int) -> np.ndarray:
        """Best partition with boundary ``t`` in ``bounds[:, t] + stride * (-half..half)`` (exact DP).

        ``stride`` is per row (0: that row keeps its bounds).  The current
        partition is on the lattice, so the result is never worse.
        """
        k = bounds.shape[1] - 1
        offsets = np.arange(-half, half + 1)
        # Lattice positions of boundaries 0..k: [R, k+1, M]; the fixed ends repeat 0 and n.
        lattice = np.clip(bounds[:, :, None] + stride[:, None, None] * offsets, 0, self.n)
        lattice[:, 0], lattice[:, k] = 0, self.n
        w_at, s_at = self._prefix_at(lattice.reshape(self.num_rows, -1))
        w_at, s_at = w_at.reshape(lattice.shape), s_at.reshape(lattice.shape)
        prev = np.zeros((self.num_rows, offsets.size))
        args = []
        chunk = max(1, (1 << 22) // (self.num_rows * offsets.size ** 2))
        for t0 in range(0, k, chunk):
            t1 = min(k, t0 + chunk)
            # -S²/W of the values between every lattice point of boundary t and of t+1: [R, t, from, to].
            w = w_at[:, t0 + 1:t1 + 1, None, :] - w_at[:, t0:t1, :, None]
            s = s_at[:, t0 + 1:t1 + 1, None, :] - s_at[:, t0:t1, :, None]
            ordered = lattice[:, t0:t1, :, None] <= lattice[:, t0 + 1:t1 + 1, None, :]
            cost = np.where(ordered, -s * s / np.where(ordered, np.maximum(w, 1e-300), np.inf), np.inf)
            for t in range(t1 - t0):
                total = prev[:, :, None] + cost[:, t]
                arg = np.argmin(total, axis=1)
                prev = np.take_along_axis(total, arg[:, None, :], axis=1)[:, 0]
                args.append(arg)
        best = prev[:, 0]  # every lattice point of boundary k is n
        out = bounds.copy()
        choice = np.zeros(self.num_rows, dtype=np.int64)
        rows = np.arange(self.num_rows)
        for t in range(k - 1, 0, -1):  # backtrack: the lattice index of boundary t
            choice = args[t][rows, choice]
            out[:, t] = lattice[rows, t, choice]
        # Move only on a real gain: an equal-cost partition (float noise) would not settle.
        w, s = (np.diff(a, axis=1) for a in self._prefix_at(bounds))
        now = -np.sum(s * s / np.maximum(w, 1e-300), axis=1)
        keep = ~(best < now - 1e-12 * np.abs(now))
        out[keep] = bounds[keep]
        return out

    def squared_error(self, centroids: np.ndarray) -> np.ndarray:
        """Per-row weighted sum of squared errors from prefix sums: Σfx² - Σ(2cΣfx - c²Σf)."""
        w, s = self._sums(self.boundaries(centroids))
        return np.maximum(self.total_sq - np.sum(2 * centroids * s - centroids ** 2 * w, axis=1), 0.0)

    def with_few_distinct_fallback(self, centroids: np.ndarray, k: int) -> np.ndarray:
        """Rows with <= k distinct values get exactly those values, padded with the largest."""
        few = self.distinct <= k
        if not np.any(few):
            return centroids
        starts = self.run_starts(few)
        for r in np.flatnonzero(few):  # rare rows only
            unique = self.values[r][starts[r]]
            centroids[r] = np.concatenate([unique, np.full(k - unique.size, unique[-1])])
        return centroids


def _water_fill(g: np.ndarray, cap: np.ndarray, total: float) -> np.ndarray:
    """Per row ``min(t * g, cap)`` with ``t`` chosen so the row sums to ``total`` (or all caps)."""
    ratio = np.where(g > 0, cap / np.where(g > 0, g, 1.0), np.inf)
    order = np.argsort(ratio, axis=1)
    r = np.take_along_axis(ratio, order, axis=1)
    c = np.cumsum(np.take_along_axis(cap, order, axis=1), axis=1)
    gs = np.cumsum(np.take_along_axis(g, order, axis=1), axis=1)
    free = gs[:, -1:] - gs  # weight of the segments not yet capped at t = r
    with np.errstate(invalid="ignore"):
        at_break = np.where(np.isfinite(r), c + r * free, np.inf)  # the row's sum at t = r
    j = np.count_nonzero(at_break <= total, axis=1)[:, None]  # segments capped at the solution
    c_j = np.where(j > 0, np.take_along_axis(c, np.maximum(j - 1, 0), axis=1), 0.0)
    g_j = np.where(j > 0, np.take_along_axis(gs, np.maximum(j - 1, 0), axis=1), 0.0)
    rest = gs[:, -1:] - g_j
    t = np.where(rest > 0, (total - c_j) / np.where(rest > 0, rest, 1.0), np.inf)
    with np.errstate(invalid="ignore"):
        return np.where(g > 0, np.minimum(t * g, cap), 0.0)


def optimal_on_cells(data: _SortedRows, edges: np.ndarray, k: int) -> np.ndarray:
    """Centroids ``[R, k]`` (row-centred) of the optimal k-segment partition of each row's cells.

    ``edges`` ``[R, m + 1]`` are cell edges (local positions into the sorted
    rows); a segment's cost is -S²/W of its raw values, which is its exact
    weighted SSE up to Σ f x², the same for every partition.
    """
    W, S = (np.take_along_axis(a, edges, axis=1) for a in (data.prefix_w, data.prefix))
    num_rows, width = W.shape
    m = width - 1
    Wf, Sf = W.ravel(), S.ravel()

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """-S²/W of the cells between flat prefix positions ``a`` and ``b`` (same row)."""
        s = Sf[b] - Sf[a]
        return -s * s / np.maximum(Wf[b] - Wf[a], 1e-300)

    starts = np.arange(num_rows)[:, None] * width
    prev = cost(np.broadcast_to(starts, (num_rows, width)), starts + np.arange(width)).ravel()
    splits = []
    tree = _dc_tree(num_rows, width)
    for _ in range(k - 1):
        prev, arg = _dp_layer(prev, cost, tree, width)
        splits.append(arg.reshape(num_rows, width))
    bounds = np.empty((num_rows, k + 1), dtype=np.int64)
    bounds[:, k] = m
    rows = np.arange(num_rows)
    for t in range(k - 1, 0, -1):  # backtrack the k-1 cut positions
        bounds[:, t] = splits[t - 1][rows, bounds[:, t + 1]]
    bounds[:, 0] = 0
    w = np.diff(np.take_along_axis(W, bounds, axis=1), axis=1)
    s = np.diff(np.take_along_axis(S, bounds, axis=1), axis=1)
    # An empty segment (fewer occupied cells than k) sits at its first value, keeping the order.
    first = np.minimum(np.take_along_axis(edges, bounds[:, :-1], axis=1), data.n - 1)
    return np.where(w > 0, s / np.maximum(w, 1e-300), np.take_along_axis(data.values, first, axis=1))


def _dp_layer(prev: np.ndarray, cost, tree: list[tuple[np.ndarray, ...]], size: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """``cur[r, i] = min_{j<=i} prev[r, j] + cost(r, j, i)`` by monotone-argmin divide and conquer.

    ``prev`` is flat ``[num_rows * size]``; ``tree`` is :func:`_dc_tree`.  All
    rows and all subproblems of one recursion level are evaluated in one
    vectorised pass, so a layer costs O(log size) numpy passes over
    ~num_rows * size candidates.
    """
    cur = np.empty_like(prev)
    arg = np.empty(prev.shape, dtype=np.int64)
    opt_lo = opt_hi = best_j = None
    for level, (query, mid, base, nodes, pick_lo, pick_hi) in enumerate(tree):
        if level == 0:
            opt_lo, opt_hi = np.zeros(mid.size, np.int64), np.full(mid.size, size - 1, np.int64)
        else:  # a left child searches [parent lo, parent argmin], a right one [parent argmin, parent hi]
            bounds = np.concatenate((opt_lo, best_j, opt_hi))
            opt_lo, opt_hi = bounds[pick_lo], bounds[pick_hi]
        lens = np.minimum(opt_hi, mid) - opt_lo + 1
        ends = np.cumsum(lens)
        starts = ends - lens
        seg = np.repeat(nodes, lens)
        j = np.arange(ends[-1]) - (starts - opt_lo)[seg]
        a = base[seg] + j
        val = prev[a] + cost(a, query[seg])
        best = np.minimum.reduceat(val, starts)
        best_j = np.minimum.reduceat(np.where(val <= best[seg], j, size), starts)
        cur[query], arg[query] = best, best_j
    return cur, arg


def _dc_tree(num_rows: int, size: int) -> list[tuple[np.ndarray, ...]]:
    """The divide-and-conquer recursion of :func:`_dp_layer`, which depends on the sizes only.

    Per level: flat query position, local query index, flat row start, node
    numbers, and where each node's candidate range comes from in
    ``concat(parent lo, parent argmin, parent hi)``.
    """
    tree = []
    base = np.arange(num_rows, dtype=np.int64) * size
    lo = np.zeros(num_rows, np.int64)
    hi = np.full(num_rows, size - 1, np.int64)
    pick_lo = pick_hi = np.empty(0, np.int64)
    while base.size:
        mid = (lo + hi) // 2
        tree.append((base + mid, mid, base, np.arange(base.size), pick_lo, pick_hi))
        left, right = mid > lo, mid < hi
        parents = base.size
        index = np.arange(parents)
        pick_lo = np.concatenate((index[left], parents + index[right]))
        pick_hi = np.concatenate((parents + index[left], 2 * parents + index[right]))
        base = np.concatenate((base[left], base[right]))
        lo, hi = np.concatenate((lo[left], mid[right] + 1)), np.concatenate((mid[left] - 1, hi[right]))
    return tree
