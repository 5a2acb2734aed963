"""Speaker-verification metrics over trial scores: EER and minDCF.

A trial is accepted when ``score >= threshold`` (:func:`accept`, the one
decision rule: verification, the device stages and the firmware's ``Verifier``
all decide by it, and every rate here counts by it).  Every distinct score is a
candidate threshold; tied scores are accepted or rejected *together* (one
operating point per distinct value), so a model that outputs constant
scores cannot look better than chance.  Everything is one sort plus
cumulative sums -- O(n log n) numpy, no Python loop over trials.

    FRR(t) = #targets with score < t / #targets        (misses)
    FAR(t) = #non-targets with score >= t / #non-targets (false alarms)

**Units.**  An EER is in **percent** (0-100) everywhere in tfadvq -- here, in
:class:`tfadvq.evaluation.Evaluation`, stage records, ``threshold.json``,
``model.json`` (``eer_percent`` fields) and benchmark rows -- as SV results
are reported; false-accept / false-reject rates (``far``, ``frr``,
``target_far``) are fractions in [0, 1].

EER is where the two curves cross, interpolated linearly between the two
operating points that bracket the crossing (the same value as the classic
``brentq(1 - x - interp(fpr, tpr)(x))`` over the ROC).  minDCF is the NIST
detection cost ``C_miss * P_target * FRR + C_fa * (1 - P_target) * FAR``
minimised over thresholds and normalised by the cost of the better trivial
system ``min(C_miss * P_target, C_fa * (1 - P_target))``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfadvq.errors import DataError


def _validate(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as bool, or DataError saying what is wrong."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.size != labels.size:
        raise DataError(f"scores and labels differ in length ({scores.size} vs {labels.size}); "
                        "there must be one score per trial")
    if scores.size == 0:
        raise DataError("no trials: scores and labels are empty")
    if not np.all(np.isfinite(scores)):
        raise DataError(f"{int(np.sum(~np.isfinite(scores)))} score(s) are NaN or infinite "
                        f"(first at trial {int(np.argmax(~np.isfinite(scores)))})")
    if not np.all((labels == 0) | (labels == 1)):
        raise DataError(f"labels must be 0 (non-target) or 1 (target), got {np.unique(labels)[:5]}")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise DataError(f"trials hold only {'targets' if labels.all() else 'non-targets'}; "
                        "EER and minDCF need both target and non-target trials")
    return scores, labels


def accept(scores, threshold: float) -> np.ndarray:
    """The decision rule: ``score >= threshold`` (bool, elementwise; a 0-d array for one score)."""
    return np.asarray(scores, dtype=np.float64) >= threshold


def false_accept_rate(scores, labels, threshold: float) -> float:
    """Fraction of the non-target trials that :func:`accept` takes at ``threshold``."""
    scores, labels = _validate(scores, labels)
    return float(np.mean(accept(scores[~labels], threshold)))


def error_rates(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, frr, thresholds)`` at every distinct score, ascending, plus "reject all".

    ``thresholds[i]`` is the ``i``-th distinct score; the last entry is just
    above the highest score (FAR 0, FRR 1).  FAR falls and FRR rises along the
    arrays.  Raises DataError on empty, mismatched, non-finite or one-class input.
    """
    scores, labels = _validate(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    thresholds, first = np.unique(sorted_scores, return_index=True)
    targets_below = np.concatenate([[0], np.cumsum(sorted_labels)])[first]
    nontargets_below = first - targets_below
    n_target = int(labels.sum())
    n_nontarget = labels.size - n_target
    frr = np.append(targets_below / n_target, 1.0)
    far = np.append(1.0 - nontargets_below / n_nontarget, 0.0)
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))
    return far, frr, thresholds


def compute_eer(scores, labels) -> tuple[float, float]:
    """``(eer, threshold)``: the equal error rate in percent (0-100) and the threshold
    (a distinct score; accept ``score >= threshold``) of the operating point nearest to it."""
    far, frr, thresholds = error_rates(scores, labels)
    k = int(np.argmax(frr >= far))  # first point at or past the crossing; k >= 1 since far[0] = 1
    gap_before, gap_after = far[k - 1] - frr[k - 1], frr[k] - far[k]
    a = gap_before / (gap_before + gap_after)  # fraction of the way from point k-1 to k
    eer = frr[k - 1] + a * (frr[k] - frr[k - 1])
    return 100.0 * float(eer), float(thresholds[k] if a >= 0.5 else thresholds[k - 1])


def min_dcf_point(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
                  c_fa: float = 1.0) -> tuple[float, float, float, float]:
    """``(min_dcf, far, frr, threshold)`` of the operating point of least normalised cost."""
    if not 0.0 < p_target < 1.0:
        raise DataError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise DataError(f"c_miss and c_fa must be > 0, got {c_miss} and {c_fa}")
    far, frr, thresholds = error_rates(scores, labels)
    cost = (c_miss * p_target * frr + c_fa * (1.0 - p_target) * far) / min(c_miss * p_target,
                                                                            c_fa * (1.0 - p_target))
    i = int(np.argmin(cost))
    return float(cost[i]), float(far[i]), float(frr[i]), float(thresholds[i])


def compute_min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0,
                    c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost (NIST SRE; VoxSRC uses ``p_target`` 0.05 and 0.01)."""
    return min_dcf_point(scores, labels, p_target, c_miss, c_fa)[0]


@dataclasses.dataclass
class Thresholds:
    """Score thresholds calibrated on development trials (accept if ``score >= threshold``).

    ``*_threshold`` fields are scores; ``eer_percent`` is the EER in percent;
    ``target_far`` / ``far_*`` / ``frr_*`` are error rates as fractions in [0, 1].
    ``eer_threshold`` is the EER operating
    point of :func:`compute_eer`; ``low_far_threshold`` is the lowest threshold
    whose false-accept rate on these trials is at most ``target_far``.
    """

    eer_threshold: float
    eer_percent: float
    low_far_threshold: float
    target_far: float
    far_at_low_far: float
    frr_at_low_far: float


def calibrate(scores, labels, target_far: float = 0.01) -> Thresholds:
    """:class:`Thresholds` at the EER and at false-accept rate <= ``target_far``."""
    if not 0.0 < target_far < 1.0:
        raise DataError(f"target_far must be in (0, 1), got {target_far}")
    eer, eer_threshold = compute_eer(scores, labels)
    far, frr, thresholds = error_rates(scores, labels)
    low = int(np.argmax(far <= target_far))  # far falls along the array; the last entry has far 0
    return Thresholds(float(eer_threshold), float(eer), float(thresholds[low]), float(target_far),
                      float(far[low]), float(frr[low]))


@dataclasses.dataclass(frozen=True)
class Interval:
    """A point estimate and its 95 % bootstrap interval (same unit: EER percent or normalised minDCF)."""

    value: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely on one side of 0 (a difference that the data resolve)."""
        return self.low > 0.0 or self.high < 0.0

    def rounded(self, digits: int = 3) -> dict[str, float]:
        return {"value": round(self.value, digits), "low": round(self.low, digits), "high": round(self.high, digits)}


@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """EER (percent) and minDCF with their 95 % intervals; ``resamples`` draws were used of those asked for."""

    eer: Interval
    min_dcf: Interval
    resamples: int
    groups: int
    p_target: float


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """System A minus system B on the same trials: Delta EER (percentage points) and Delta minDCF.

    Negative means A is better.  Both intervals come from the *same* draws, so
    they answer "is A better than B" directly, which two overlapping
    per-system intervals cannot: the speakers that are hard for A are mostly
    hard for B too, and a paired draw cancels that shared part.
    """

    eer: Interval
    min_dcf: Interval
    resamples: int
    groups: int
    systems: tuple[int, int]  # rows (e.g. training seeds) of A and of B
    p_target: float


_MAX_CELLS = 30_000_000  # groups x distinct target scores a bootstrap may tabulate (240 MB)


class _System:
    """One system's trials arranged so that a bootstrap draw costs O(groups), not O(trials).

    A draw takes every trial of group ``g`` ``counts[g]`` times, so the number
    of targets below a threshold is ``sum_g counts[g] * below_g``: per group
    counts, looked up by one ``searchsorted`` in the trials keyed by
    ``(group, score rank)``.  The EER crossing is found by bisection over the
    distinct scores (FRR rises and FAR falls along them); minDCF is minimised
    over the distinct scores that hold a target (and "reject all"), where
    every minimum lies: stepping past a score that holds only non-targets
    never raises the cost.  The operating points are those of
    :func:`error_rates` on the explicitly resampled trials, exactly.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray, index: np.ndarray, groups: int):
        inv = np.unique(scores, return_inverse=True)[1].ravel()
        self.points = int(inv.max()) + 1  # point j accepts the scores >= the j-th distinct score; last: none
        self.stride = self.points + 1
        self.groups = groups
        self.keys, self.start, self.total = [], [], []
        for mask in (labels, ~labels):  # targets, non-targets
            keys = np.sort(index[mask].astype(np.int64) * self.stride + inv[mask])
            self.keys.append(keys)
            self.start.append(np.searchsorted(keys, np.arange(groups, dtype=np.int64) * self.stride))
            self.total.append(np.bincount(index[mask], minlength=groups).astype(np.float64))
        candidates = np.unique(np.append(inv[labels], self.points))
        if groups * candidates.size > _MAX_CELLS:
            raise DataError(f"bootstrap over {groups} groups of {scores.size} trials ({candidates.size} distinct "
                            f"target scores) needs a {groups} x {candidates.size} table; resample groups "
                            "(groups=, e.g. the speaker of each trial) instead of single trials")
        self.candidates = candidates
        # [groups, K]: trials of each class and group below each candidate (a trial is below candidate k
        # when fewer than k + 1 candidates are <= its score rank): one bincount and a cumulative sum
        self.cost_below = []
        for mask in (labels, ~labels):
            passed = np.searchsorted(candidates, inv[mask], side="right")
            cells = np.bincount(index[mask] * (candidates.size + 1) + passed, minlength=groups * (candidates.size + 1))
            self.cost_below.append(np.cumsum(cells.reshape(groups, -1), axis=1)[:, :-1].astype(np.float64))

    def _below(self, c: int, points: np.ndarray) -> np.ndarray:
        """``[len(points), groups]``: trials of class ``c`` (0 targets, 1 non-targets) per group below each point."""
        query = np.arange(self.groups, dtype=np.int64) * self.stride + np.asarray(points, np.int64)[:, None]
        return np.searchsorted(self.keys[c], query) - self.start[c]

    def metrics(self, counts: np.ndarray, p_target: float) -> tuple[np.ndarray, np.ndarray]:
        """``(eer %, min_dcf)`` per row of ``counts [draws, groups]`` (how often each group was drawn).

        Rows with no target or no non-target weight give NaN.
        """
        w = counts.astype(np.float64)
        n_t, n_n = w @ self.total[0], w @ self.total[1]

        def rates(rows: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            frr = np.sum(w[rows] * self._below(0, points), axis=1) / n_t[rows]
            far = 1.0 - np.sum(w[rows] * self._below(1, points), axis=1) / n_n[rows]
            return frr, far

        with np.errstate(invalid="ignore", divide="ignore"):
            lo, hi = np.zeros(len(w), np.int64), np.full(len(w), self.points, np.int64)  # frr<far at lo, >= at hi
            while (active := np.flatnonzero(hi - lo > 1)).size:
                mid = (lo[active] + hi[active]) // 2
                frr, far = rates(active, mid)
                crossed = frr >= far
                hi[active] = np.where(crossed, mid, hi[active])
                lo[active] = np.where(crossed, lo[active], mid)
            rows = np.arange(len(w))
            frr_k, far_k = rates(rows, hi)
            frr_b, far_b = rates(rows, hi - 1)
            gap_before, gap_after = far_b - frr_b, frr_k - far_k
            eer = 100.0 * (frr_b + gap_before / (gap_before + gap_after) * (frr_k - frr_b))
            # Reject-all costs 1 (normalised), and a point costs at least (1 - p) * far / norm, so the minimum
            # lies where far <= norm / (1 - p): only the candidates from the first such point on are scored.
            norm = min(p_target, 1.0 - p_target)
            lo, hi = np.zeros(len(w), np.int64), np.full(len(w), self.points, np.int64)
            while (active := np.flatnonzero(hi - lo > 1)).size:
                mid = (lo[active] + hi[active]) // 2
                low_far = rates(active, mid)[1] <= norm / (1.0 - p_target)
                hi[active] = np.where(low_far, mid, hi[active])
                lo[active] = np.where(low_far, lo[active], mid)
            first = int(np.searchsorted(self.candidates, hi[~((n_t <= 0) | (n_n <= 0))].min(initial=0)))
            frr_c = (w @ self.cost_below[0][:, first:]) / n_t[:, None]
            far_c = 1.0 - (w @ self.cost_below[1][:, first:]) / n_n[:, None]
            dcf = np.min(p_target * frr_c + (1.0 - p_target) * far_c, axis=1) / norm
        bad = (n_t <= 0) | (n_n <= 0)
        eer[bad], dcf[bad] = np.nan, np.nan
        return eer, dcf


def _group_index(groups, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups).ravel()
    if groups.size != n:
        raise DataError(f"groups and scores differ in length ({groups.size} vs {n}); "
                        "there must be one group per trial")
    return np.unique(groups, return_inverse=True)[1].ravel()


def _draws(index: np.ndarray, resamples: int, seed: int, chunk: int = 200):
    """Yield ``(rng, counts [draws, groups])`` chunks: each draw takes as many groups as there are, with
    replacement; ``counts[r, g]`` is how often group ``g`` was drawn (every trial of it counts that often)."""
    if resamples < 1:
        raise DataError(f"resamples must be >= 1, got {resamples}")
    groups = int(index.max()) + 1
    rng = np.random.default_rng(seed)
    for begin in range(0, resamples, chunk):
        size = min(chunk, resamples - begin)
        drawn = rng.integers(0, groups, (size, groups))
        flat = (drawn + groups * np.arange(size)[:, None]).ravel()
        yield rng, np.bincount(flat, minlength=size * groups).reshape(size, groups).astype(np.int32)


def _interval(value: float, draws: np.ndarray, what: str, resamples: int) -> Interval:
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        raise DataError(f"{what}: none of {resamples} bootstrap draws held both target and non-target "
                        "trials; the trials need more than one group with each class")
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(float(value), float(low), float(high))


def bootstrap(scores, labels, groups=None, resamples: int = 1000, seed: int = 0,
              p_target: float = 0.01) -> Bootstrap:
    """EER and minDCF of one system with 95 % bootstrap intervals.

    Without ``groups`` trials are resampled with replacement.  That ignores
    that trials share speakers, so the interval is on the narrow side.  With
    ``groups`` (one label per trial, e.g. the speaker of its test recording)
    whole groups are resampled with replacement and each drawn group brings
    all its trials (a cluster bootstrap): the interval then says how much the
    figures depend on *which speakers* were recorded, which is what a test
    set of a few dozen or hundred speakers is limited by.  Draws that hold
    only one class are skipped.  Vectorised (:class:`_System`): a draw costs
    O(groups x log trials), so 1000 draws of 100 k trials over 160 speakers take seconds.
    """
    scores, labels = _validate(scores, labels)
    index = _group_index(groups, scores.size)
    system = _System(scores, labels, index, int(index.max()) + 1)
    eers, dcfs = [], []
    for _, counts in _draws(index, resamples, seed):
        eer, dcf = system.metrics(counts, p_target)
        eers.append(eer)
        dcfs.append(dcf)
    eers, dcfs = np.concatenate(eers), np.concatenate(dcfs)
    return Bootstrap(_interval(compute_eer(scores, labels)[0], eers, "bootstrap", resamples),
                     _interval(compute_min_dcf(scores, labels, p_target), dcfs, "bootstrap", resamples),
                     int(np.isfinite(eers).sum()), int(index.max()) + 1, p_target)


def eer_ci95(scores, labels, resamples: int = 1000, seed: int = 0, groups=None) -> tuple[float, float]:
    """95 % bootstrap interval of the EER (percent): :func:`bootstrap`'s, over trials or over ``groups``."""
    interval = bootstrap(scores, labels, groups, resamples, seed).eer
    return interval.low, interval.high


def paired_bootstrap(scores_a, scores_b, labels, groups=None, resamples: int = 1000, seed: int = 0,
                     p_target: float = 0.01) -> PairedDifference:
    """Delta EER and Delta minDCF (A minus B) on the same trials, with paired 95 % bootstrap intervals.

    ``scores_a`` and ``scores_b`` are one score per trial (``[trials]``), or
    several systems of each method, e.g. one row per fine-tune seed
    (``[seeds, trials]``).  Each draw resamples the ``groups`` (speakers; every
    trial of a drawn speaker comes along, see :func:`bootstrap`) and computes
    both methods' EER and minDCF on that same draw.  With several rows, the
    method's figure is the mean over its rows, and each draw also resamples
    the rows with replacement, so the interval covers training-seed noise as
    well as speaker sampling.  The point value is mean(A rows) - mean(B rows)
    on all trials.  A difference is resolved when its interval excludes 0
    (:attr:`Interval.excludes_zero`).
    """
    a = np.atleast_2d(np.asarray(scores_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(scores_b, dtype=np.float64))
    labels = np.asarray(labels).ravel()
    for name, rows in (("scores_a", a), ("scores_b", b)):
        if rows.ndim != 2 or rows.shape[1] != labels.size:
            raise DataError(f"paired_bootstrap: {name} has shape {rows.shape}; it must be [trials] or "
                            f"[systems, trials] with {labels.size} trials (one score per trial, same trials "
                            "as the labels)")
    index = _group_index(groups, labels.size)
    systems = [_System(*_validate(row, labels), index, int(index.max()) + 1) for row in (*a, *b)]
    labels = labels.astype(bool)
    point = np.array([[compute_eer(row, labels)[0], compute_min_dcf(row, labels, p_target)] for row in (*a, *b)])
    na = len(a)
    eer_d, dcf_d = [], []
    for rng, counts in _draws(index, resamples, seed):
        per = np.stack([np.stack(s.metrics(counts, p_target)) for s in systems])  # [systems, 2, draws]
        draws = counts.shape[0]
        pick_a = rng.integers(0, na, (draws, na)) if na > 1 else np.zeros((draws, 1), int)
        pick_b = na + (rng.integers(0, len(b), (draws, len(b))) if len(b) > 1 else np.zeros((draws, 1), int))
        cols = np.arange(draws)[:, None]
        mean_a = per[pick_a, :, cols].mean(axis=1)  # [draws, 2]
        mean_b = per[pick_b, :, cols].mean(axis=1)
        eer_d.append(mean_a[:, 0] - mean_b[:, 0])
        dcf_d.append(mean_a[:, 1] - mean_b[:, 1])
    eer_d, dcf_d = np.concatenate(eer_d), np.concatenate(dcf_d)
    delta = point[:na].mean(axis=0) - point[na:].mean(axis=0)
    return PairedDifference(_interval(delta[0], eer_d, "paired_bootstrap", resamples),
                            _interval(delta[1], dcf_d, "paired_bootstrap", resamples),
                            int(np.isfinite(eer_d).sum()), int(index.max()) + 1, (na, len(b)), p_target)
