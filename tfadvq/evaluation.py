"""Using a trained embedding model: evaluate it on a trial list, verify one speaker claim.

This module strings together the pieces other modules own -- whole-utterance
embeddings and (AS-norm) scoring from :mod:`tfadvq.scoring`, EER/minDCF from
:mod:`tfadvq.metrics`, the DET plot from :mod:`tfadvq.plots` -- and keeps the
files a trained model directory accumulates:

``model.keras``        the embedding model (written by training)
``threshold.json``     the cosine-score decision threshold calibrated on trials
                       (the EER point), written by :func:`store_threshold`;
                       ``tfadvq verify`` uses it when no ``--threshold`` is given.

Scores are cosine similarities of L2-normalised embeddings; a trial is
accepted when ``score >= threshold``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError, DataError
from tfadvq.training import MODEL_FILE
from tfadvq.voxceleb import Trials, Utterance

THRESHOLD_FILE = "threshold.json"
P_TARGETS = (0.01, 0.05)


def model_file(path: str | os.PathLike) -> Path:
    """``DIR`` (holding ``model.keras``) or a model file -> the model file; missing raises."""
    path = Path(path)
    candidate = path / MODEL_FILE if path.is_dir() else path
    if not candidate.exists():
        raise ConfigError(f"--model {path}: no such model (expected a .keras file or a directory "
                          f"holding {MODEL_FILE}, as `tfadvq train` writes)")
    return candidate


def load_embedding_model(path: str | os.PathLike) -> keras.Model:
    """Load a saved embedding model with tfadvq's custom layers registered."""
    import tfadvq.models  # noqa: F401  (registers StatsPooling etc. for deserialisation)

    path = model_file(path)
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--model {path}: cannot load a Keras model ({exc})") from None


def stored_threshold(model_path: str | os.PathLike) -> float | None:
    """The calibrated threshold saved beside the model, or None if it was never evaluated."""
    path = model_file(model_path).parent / THRESHOLD_FILE
    return float(json.loads(path.read_text())["threshold"]) if path.is_file() else None


@dataclasses.dataclass
class Evaluation:
    """Results of one trial list.  ``eer`` is in percent; ``threshold`` is the EER point of the
    reported scores, ``cosine_threshold`` that of the raw cosine scores (what ``verify`` uses)."""

    eer: float
    threshold: float
    cosine_threshold: float
    min_dcf: dict[float, float]
    scores: np.ndarray
    labels: np.ndarray
    as_norm: bool

    def row(self) -> dict[str, Any]:
        """One summary-table / benchmark row."""
        row = {"trials": int(self.labels.size), "targets": int(self.labels.sum()),
               "eer": self.eer}
        row.update({f"min_dcf_{p:g}": v for p, v in self.min_dcf.items()})
        row.update(threshold=self.threshold, as_norm=self.as_norm)
        return row


def trial_utterances(trials: Trials, utterances: Sequence[Utterance]) -> list[Utterance]:
    """The utterances ``trials`` mention, in a fixed order; a key not among ``utterances`` raises."""
    by_key = {u.key: u for u in utterances}
    missing = sorted(trials.keys() - set(by_key))
    if missing:
        raise DataError(f"trials: {len(missing)} utterance key(s) not found in the audio "
                        f"(e.g. {missing[0]!r}); keys must be relative to the wav root")
    return [by_key[k] for k in sorted(trials.keys())]


def evaluate(model: keras.Model, trials: Trials, utterances: Sequence[Utterance],
             cohort: Sequence[Utterance] | None = None, top_n: int = 300) -> Evaluation:
    """Embed what ``trials`` need, score (cosine, then AS-norm if a ``cohort`` is given), measure."""
    from tfadvq import metrics, scoring

    if len(trials) == 0:
        raise DataError("trials: the trial list is empty")
    needed = trial_utterances(trials, utterances)
    embeddings = scoring.embed_utterances(model, needed)
    raw = np.asarray(scoring.cosine_scores(embeddings, trials), np.float64)
    labels = np.asarray(trials.labels, np.int8)
    _, cosine_threshold = metrics.compute_eer(raw, labels)
    scores = raw
    if cohort:
        cohort_embeddings = scoring.embed_utterances(model, list(cohort))
        scores = np.asarray(scoring.as_norm(raw, embeddings, trials, cohort_embeddings, top_n),
                            np.float64)
    eer, threshold = metrics.compute_eer(scores, labels)
    min_dcf = {p: float(metrics.compute_min_dcf(scores, labels, p)) for p in P_TARGETS}
    return Evaluation(100.0 * float(eer), float(threshold), float(cosine_threshold), min_dcf,
                      scores, labels, bool(cohort))


def write_outputs(evaluation: Evaluation, trials: Trials, out_dir: str | os.PathLike,
                  title: str = "") -> dict[str, Path]:
    """Write ``scores.txt`` (enroll test score label), ``trial_scores.txt`` (label score, what
    ``tfadvq convert --trial-scores`` reads), ``det.png`` and ``summary.json``."""
    from tfadvq import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("scores.txt", "trial_scores.txt", "det.png",
                                           "summary.json")}
    files["scores.txt"].write_text("".join(
        f"{a} {b} {s:.6f} {int(l)}\n"
        for a, b, s, l in zip(trials.enroll, trials.test, evaluation.scores, evaluation.labels)))
    np.savetxt(files["trial_scores.txt"], np.column_stack([evaluation.labels, evaluation.scores]),
               fmt=["%d", "%.6f"])
    plots.plot_det(evaluation.scores, evaluation.labels, files["det.png"], title=title)
    files["summary.json"].write_text(json.dumps(evaluation.row(), indent=1))
    return files


def store_threshold(model_path: str | os.PathLike, evaluation: Evaluation,
                    trials_path: str | os.PathLike) -> Path:
    """Save the raw-cosine EER threshold beside the model for ``tfadvq verify``."""
    path = model_file(model_path).parent / THRESHOLD_FILE
    path.write_text(json.dumps({"threshold": evaluation.cosine_threshold,
                                "eer": evaluation.eer, "trials": str(trials_path)}, indent=1))
    return path


def embed_files(model: keras.Model, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """L2-normalised embeddings ``[n, dim]`` of audio files of any supported format and rate."""
    from tfadvq.audio import load_audio
    from tfadvq.features import FbankConfig, fbank

    config = FbankConfig()
    rows = []
    for path in paths:
        features = fbank(tf.constant(load_audio(path)), config)[tf.newaxis]
        rows.append(model(features, training=False).numpy()[0])
    embeddings = np.stack(rows)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def verify(model: keras.Model, enroll: Sequence[str | os.PathLike], test: str | os.PathLike,
           threshold: float) -> dict[str, Any]:
    """Score ``test`` against the mean enrollment embedding; accept if ``score >= threshold``."""
    if not enroll:
        raise ConfigError("--enroll: give at least one enrollment recording")
    enrolled = embed_files(model, enroll).mean(axis=0)
    enrolled /= max(float(np.linalg.norm(enrolled)), 1e-12)
    score = float(embed_files(model, [test])[0] @ enrolled)
    return {"score": score, "threshold": float(threshold),
            "decision": "accept" if score >= threshold else "reject"}
