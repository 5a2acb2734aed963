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


def eer_ci95(scores, labels, resamples: int = 1000, seed: int = 0, groups=None) -> tuple[float, float]:
    """95 % bootstrap interval of the EER (percent).

    Without ``groups`` trials are resampled with replacement.  That ignores
    that trials share speakers, so the interval is on the narrow side; it still
    tells a reader whether two systems' EERs on the same trials differ by more
    than the trial list's noise.  With ``groups`` (one label per trial, e.g. the
    speaker of its test recording) whole groups are resampled with replacement
    and each drawn group brings all its trials (a cluster bootstrap): the
    interval then says how much the EER depends on *which speakers* were
    recorded, which is what a set of a few dozen real speakers is limited by.
    Draws that hold only one class are skipped.
    """
    scores, labels = _validate(scores, labels)
    if groups is None:
        index = np.arange(scores.size)
    else:
        groups = np.asarray(groups).ravel()
        if groups.size != scores.size:
            raise DataError(f"groups and scores differ in length ({groups.size} vs {scores.size}); "
                            "there must be one group per trial")
        index = np.unique(groups, return_inverse=True)[1].ravel()
    order = np.argsort(index, kind="stable")  # the trials of each group, group after group
    counts = np.bincount(index)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        drawn = rng.integers(0, counts.size, counts.size)
        lengths = counts[drawn]
        ends = np.cumsum(lengths)
        pick = order[np.arange(ends[-1]) - np.repeat(ends - lengths - starts[drawn], lengths)]
        if labels[pick].all() or not labels[pick].any():
            continue
        values.append(compute_eer(scores[pick], labels[pick])[0])
    if not values:
        raise DataError(f"eer_ci95: none of {resamples} bootstrap draws held both target and non-target "
                        "trials; the trials need more than one group with each class")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
