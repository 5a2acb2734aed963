"""Does the converted model verify speakers like the Keras model?  Measured on the model's own inputs.

A minimum cosine over a few inputs says little: on seeded noise (inputs no
speaker encoder ever sees) a correct 4-bit LSTM conversion measured 0.967,
while on 200 real inputs even its float ``.tflite`` reached only 0.998.  What
matters is whether the device takes the decisions the Keras model takes.  So
:func:`measure` compares Keras and TFLM embeddings of the same check inputs
(the model's own: ``--inputs``, corpus crops through its front end; seeded
noise only when nothing else is given, and then said so) by

* the **cosine quantiles** between matching embeddings (min, 1 %, 5 %, median), and
* the **decision agreement**: every pair of check inputs is scored (cosine of
  unit embeddings) by both models, and each score accepted or rejected at the
  Keras scores' EER threshold (pairs labelled same/different speaker by the
  inputs' speakers); without speaker labels the threshold is the median Keras
  pair score, where decisions are densest, which is the harder test.

A conversion is refused only on a clear failure (:meth:`ParityReport.failure`):
a non-finite output, a median cosine below :data:`MIN_MEDIAN_COSINE` (most
embeddings pointing elsewhere), or decision agreement below
:data:`MIN_DECISION_AGREEMENT` while the embeddings moved too (5 % cosine
quantile below :data:`CLOSE_COSINE`).  Decisions that flip although every
embedding stayed that close come from the model's own scores lying within a
hair of each other (an untrained model's, say), not from the conversion: they
are reported, not refused.  The figures are reported either way.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tfadvq import metrics

# A conversion whose accept/reject decisions differ from Keras on more than one pair in ten is broken.
MIN_DECISION_AGREEMENT = 0.9
# Half the embeddings more than ~25 degrees from Keras: broken, whatever the decisions on few inputs say.
MIN_MEDIAN_COSINE = 0.9
# Embeddings this close to Keras (5 % quantile) are not a broken conversion, whatever the decisions do.
CLOSE_COSINE = 0.99
NOISE = "seeded noise (no --inputs or --corpus given: not inputs the model ever sees)"


@dataclasses.dataclass(frozen=True)
class CheckInputs:
    """The inputs a conversion is checked on: features ``[N, frames, mels]``, their speakers if known, and
    where they came from (said in the report)."""

    features: np.ndarray
    source: str
    speakers: np.ndarray | None = None

    @classmethod
    def noise(cls, count: int, frames: int, mels: int) -> CheckInputs:
        """The last resort: seeded normal noise, labelled as such."""
        return cls(np.random.default_rng(0).normal(size=(count, frames, mels)).astype(np.float32), NOISE)

    @property
    def is_noise(self) -> bool:
        return self.source == NOISE


@dataclasses.dataclass
class ParityReport:
    """Keras vs TFLM on the check inputs (module doc); stored in ``model.json`` as ``parity``."""

    inputs: str
    examples: int
    min_cosine: float
    p01_cosine: float
    p05_cosine: float
    median_cosine: float
    max_abs_diff: float
    pairs: int
    threshold: float | None
    threshold_from: str
    decision_agreement: float | None
    finite: bool

    def failure(self) -> str | None:
        """Why the conversion is clearly broken, or None."""
        if not self.finite:
            return "the converted model gives non-finite (NaN/inf) embeddings"
        if self.median_cosine < MIN_MEDIAN_COSINE:
            return f"median cosine to Keras {self.median_cosine:.4f} < {MIN_MEDIAN_COSINE}"
        if self.decisions_flip and self.p05_cosine < CLOSE_COSINE:
            return (f"accept/reject decisions agree with Keras on {100 * self.decision_agreement:.1f} % of "
                    f"{self.pairs} pairs (< {100 * MIN_DECISION_AGREEMENT:g} %) and 5 % of the embeddings are "
                    f"below cosine {self.p05_cosine:.4f} (< {CLOSE_COSINE})")
        return None

    @property
    def decisions_flip(self) -> bool:
        return self.decision_agreement is not None and self.decision_agreement < MIN_DECISION_AGREEMENT

    def verdict(self) -> str:
        """``refused: why``, a pass with the refusal rule, or a pass with a note on flipping decisions."""
        failure = self.failure()
        if failure:
            return f"refused: {failure}"
        if self.decisions_flip:
            return (f"pass, but decisions flip on {100 * (1 - self.decision_agreement):.1f} % of pairs while every "
                    f"embedding stays within cosine {CLOSE_COSINE} of Keras: the model's own scores lie too close "
                    "together at its threshold")
        return (f"pass (refused on NaN, median cosine < {MIN_MEDIAN_COSINE}, or agreement < "
                f"{100 * MIN_DECISION_AGREEMENT:g} % with 5 % cosine < {CLOSE_COSINE})")

    def describe(self) -> str:
        """One line: the figures and what they were measured on."""
        agreement = "n/a" if self.decision_agreement is None else f"{100 * self.decision_agreement:.2f} %"
        return (f"cosine to Keras min {self.min_cosine:.4f} / 1 % {self.p01_cosine:.4f} / 5 % "
                f"{self.p05_cosine:.4f} / median {self.median_cosine:.5f}; decisions agree on {agreement} of "
                f"{self.pairs} pairs ({self.threshold_from}); on {self.examples} {self.inputs}")

    def rows(self) -> list[dict[str, object]]:
        """The summary table's rows."""
        return [{"measure": k, "value": v} for k, v in (
            ("inputs", f"{self.examples} x {self.inputs}"),
            ("min cosine", round(self.min_cosine, 6)), ("1 % cosine quantile", round(self.p01_cosine, 6)),
            ("5 % cosine quantile", round(self.p05_cosine, 6)), ("median cosine", round(self.median_cosine, 6)),
            ("max |diff|", f"{self.max_abs_diff:.3g}"), ("pairs", self.pairs),
            ("threshold", "n/a" if self.threshold is None else round(self.threshold, 4)),
            ("threshold from", self.threshold_from),
            ("decision agreement", "n/a" if self.decision_agreement is None else round(self.decision_agreement, 4)),
            ("verdict", self.verdict()))]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def _between(scores: np.ndarray, threshold: float) -> float:
    """``threshold`` moved half-way down to the next lower score: a threshold that *is* one pair's score
    would flip that pair on rounding alone, and every pair keeps the decision it had."""
    lower = scores[scores < threshold]
    return float((threshold + lower.max()) / 2) if lower.size else float(threshold)


def _threshold(scores: np.ndarray, same: np.ndarray | None) -> tuple[float, str]:
    """The Keras scores' EER threshold when both kinds of pair exist, else their median (said so)."""
    if same is not None and 0 < same.sum() < same.size:
        _, threshold = metrics.compute_eer(scores, same.astype(np.int8))
        return _between(scores, threshold), f"EER threshold of the Keras scores, {int(same.sum())} same-speaker pairs"
    why = "inputs without speakers" if same is None else "no pair of both kinds"
    return _between(scores, float(np.median(scores))), f"median Keras score ({why})"


def measure(reference: np.ndarray, candidate: np.ndarray, inputs: CheckInputs) -> ParityReport:
    """Compare Keras embeddings ``reference`` ``[N, D]`` with the converted model's ``candidate`` on ``inputs``."""
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    finite = bool(np.isfinite(candidate).all())
    a, b = _unit(reference), _unit(np.nan_to_num(candidate, nan=0.0, posinf=0.0, neginf=0.0))
    cosine = np.sum(a * b, axis=1) if finite else np.full(len(a), np.nan)
    first, second = np.triu_indices(len(a), k=1)
    threshold, agreement, threshold_from = None, None, "fewer than 2 inputs"
    if first.size and finite:
        keras_scores = np.sum(a[first] * a[second], axis=1)
        device_scores = np.sum(b[first] * b[second], axis=1)
        same = None if inputs.speakers is None else inputs.speakers[first] == inputs.speakers[second]
        threshold, threshold_from = _threshold(keras_scores, same)
        agreement = float(np.mean(metrics.accept(keras_scores, threshold) == metrics.accept(device_scores, threshold)))
    quantiles = np.quantile(cosine, [0.0, 0.01, 0.05, 0.5]) if finite else [float("nan")] * 4
    diff = float(np.max(np.abs(reference - candidate))) if finite else float("nan")
    return ParityReport(inputs=inputs.source, examples=len(a), min_cosine=float(quantiles[0]),
                        p01_cosine=float(quantiles[1]), p05_cosine=float(quantiles[2]),
                        median_cosine=float(quantiles[3]), max_abs_diff=diff, pairs=int(first.size),
                        threshold=threshold, threshold_from=threshold_from, decision_agreement=agreement,
                        finite=finite)
