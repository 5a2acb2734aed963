"""Using a trained embedding model: evaluate it on a trial list, calibrate and keep its threshold,
verify one speaker claim.

This module strings together the pieces other modules own -- utterance
embeddings by the device's schedule and (AS-norm) scoring from
:mod:`tfadvq.scoring`, EER/minDCF/thresholds from :mod:`tfadvq.metrics`, the
DET plot from :mod:`tfadvq.plots`, file names from :mod:`tfadvq.rundir`.

A stored threshold has one home, the directory of the evaluation that
calibrated it (``threshold.json`` of :class:`tfadvq.rundir.EvalDir`, written by
``tfadvq eval`` and the ``evaluate`` stage alike), and a provenance: the
SHA-256 of the model it was calibrated for, the trial list and its size, the
scoring schedule and the embedder (Keras or TFLM).  :func:`store_threshold`
replaces a threshold of the same model only by one from at least as many
trials (or when forced); :func:`load_threshold` refuses one that belongs to
another model, so retraining cannot leave a stale threshold in use; and
:func:`model_threshold` is the rule ``tfadvq verify`` follows when given no
threshold: of the model's evaluations in their default places
(``<model dir>/eval_<trials>/``), the one calibrated on the most trials.
Scores are cosine similarities of unit embeddings; a trial is accepted when
``score >= threshold`` (:func:`tfadvq.metrics.accept`).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq import rundir
from tfadvq.config import to_dict
from tfadvq.errors import ConfigError, DataError
from tfadvq.voxceleb import Corpus, Trials, Utterance
from tfadvq.windows import ScoringConfig

P_TARGETS = (0.01, 0.05)


@dataclasses.dataclass
class Evaluation:
    """Results of one trial list.  ``eer`` is in percent (as every EER: :mod:`tfadvq.metrics`);
    ``eer_threshold`` is the EER point of the
    reported scores, ``cosine_eer_threshold`` that of the raw cosine scores (what ``verify`` uses).

    ``scores`` and ``labels`` are those of the trials scored: ``kept`` marks
    them among the trials given (a trial that needs a bad file is dropped),
    and ``bad`` lists the skipped files as ``(path, reason)``.
    """

    eer: float
    eer_threshold: float
    cosine_eer_threshold: float
    min_dcf: dict[float, float]
    scores: np.ndarray
    labels: np.ndarray
    as_norm: bool
    bad: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    kept: np.ndarray | None = None  # bool [trials given]; None: all scored
    duplicates: int = 0  # duplicate trial lines dropped when the list was read

    @property
    def dropped_trials(self) -> int:
        """Trials not scored because they need a bad file."""
        return 0 if self.kept is None else int(self.kept.size - self.kept.sum())

    def row(self) -> dict[str, Any]:
        """One summary-table / benchmark row."""
        row = {"trials": int(self.labels.size), "targets": int(self.labels.sum()), "eer": self.eer}
        row.update({f"min_dcf_{p:g}": v for p, v in self.min_dcf.items()})
        row.update(eer_threshold=self.eer_threshold, as_norm=self.as_norm, bad_files=len(self.bad),
                   dropped_trials=self.dropped_trials, duplicate_trials=self.duplicates)
        return row


def trial_utterances(trials: Trials, utterances: Sequence[Utterance]) -> list[Utterance]:
    """The utterances ``trials`` mention, in a fixed order; a key not among ``utterances`` raises."""
    by_key = {u.key: u for u in utterances}
    missing = sorted(trials.keys() - set(by_key))
    if missing:
        raise DataError(f"trials: {len(missing)} utterance key(s) not found in the audio "
                        f"(e.g. {missing[0]!r}); keys must be relative to the wav root")
    return [by_key[k] for k in sorted(trials.keys())]


def evaluate(model, trials: Trials, utterances: Sequence[Utterance], scoring: ScoringConfig | None = None,
             cohort: Sequence[Utterance] | None = None, top_n: int = 300) -> Evaluation:
    """Embed what ``trials`` need, score (cosine, then AS-norm if a ``cohort`` is given), measure.

    ``model`` is a Keras model or an embedder (:mod:`tfadvq.scoring`).  Every
    file is checked first as the device would check it
    (:class:`tfadvq.audio.AudioLimits` with ``scoring.min_seconds``: unreadable,
    too short, silent or clipped): a bad file is skipped and reported in
    ``Evaluation.bad``, the trials that need it are dropped (counted in
    ``dropped_trials``), a bad cohort file only leaves the cohort.  If no
    trial -- or no target or no non-target trial -- is left, that is a :class:`DataError`.
    """
    from tfadvq import metrics
    from tfadvq import scoring as sc
    from tfadvq.audio_limits import AudioLimits
    from tfadvq.pipeline import check_utterances

    scoring = scoring or ScoringConfig()
    embed = sc.as_embedder(model)
    if len(trials) == 0:
        raise DataError("trials: the trial list is empty")
    if cohort is not None and len(cohort) == 0:
        raise DataError("cohort: no utterances (an evaluation-only corpus has no training part to "
                        "serve as the AS-norm cohort); give a corpus with a dev part or a wav tree")
    limits = AudioLimits(min_seconds=scoring.min_seconds)
    needed, bad = check_utterances(trial_utterances(trials, utterances), limits, signal=True)
    usable = {u.key for u in needed}
    kept = np.array([a in usable and b in usable for a, b in zip(trials.enroll, trials.test)], bool)
    scored = trials.select(kept)
    labels = np.asarray(scored.labels, np.int8)
    if labels.sum() == 0 or labels.sum() == labels.size:
        what = "trial" if labels.size == 0 else ("target trial" if labels.sum() == 0 else "non-target trial")
        example = f"; e.g. {bad[0][0]}: {bad[0][1]}" if bad else ""
        raise DataError(f"trials: no {what} left to score after dropping {int((~kept).sum())} of "
                        f"{len(trials)} trials that need one of {len(bad)} bad audio files{example}")
    wanted = scored.keys()
    needed = [u for u in needed if u.key in wanted]
    embeddings = sc.embed_utterances(embed, needed, scoring)
    raw = np.asarray(sc.cosine_scores(embeddings, scored), np.float64)
    _, cosine_threshold = metrics.compute_eer(raw, labels)
    scores = raw
    if cohort:
        cohort_ok, cohort_bad = check_utterances(list(cohort), limits, signal=True)
        bad = bad + cohort_bad
        cohort_embeddings = sc.embed_utterances(embed, cohort_ok, scoring, desc="cohort") if cohort_ok else {}
        scores = np.asarray(sc.as_norm(raw, embeddings, scored, cohort_embeddings, top_n), np.float64)
    eer, threshold = metrics.compute_eer(scores, labels)
    min_dcf = {p: float(metrics.compute_min_dcf(scores, labels, p)) for p in P_TARGETS}
    return Evaluation(float(eer), float(threshold), float(cosine_threshold), min_dcf,
                      scores, labels, bool(cohort), bad, kept, trials.duplicates)


def write_outputs(evaluation: Evaluation, trials: Trials, out: rundir.EvalDir,
                  title: str = "") -> rundir.EvalDir:
    """Write scores (``enroll test score label``), trial scores (``label score``), the DET plot,
    the skipped files (``path<TAB>reason``, empty if none) and the summary into ``out``.

    ``trials`` is the list given to :func:`evaluate`; only the trials it scored are written.
    """
    from tfadvq import plots

    scored = trials if evaluation.kept is None else trials.select(evaluation.kept)
    if len(scored) != evaluation.scores.size:
        raise DataError(f"write_outputs: {evaluation.scores.size} scores for {len(scored)} trials; "
                        "pass the trial list that was evaluated")
    rundir.atomic_write(out.scores, "".join(
        f"{a} {b} {s:.6f} {int(l)}\n"
        for a, b, s, l in zip(scored.enroll, scored.test, evaluation.scores, evaluation.labels)))
    rundir.atomic_write(out.trial_scores, "".join(
        f"{int(l)} {s:.6f}\n" for l, s in zip(evaluation.labels, evaluation.scores)))
    rundir.write_bad_files(out.bad, evaluation.bad)
    rundir.atomic_save_with(out.det, lambda tmp: plots.plot_det(evaluation.scores, evaluation.labels,
                                                               tmp, title=title))
    rundir.write_json(out.summary, evaluation.row())
    return out


# --------------------------------------------------------------------------- a model's evaluation


@dataclasses.dataclass
class EvalTrials:
    """Trials to score, the utterances their keys name, and the list's path (the threshold's provenance).

    ``corpus`` is the corpus directory when these are its own test trials: on a real-speech corpus
    (``tfadvq data real``) the evaluation then also reports the EER by source.
    """

    trials: Trials
    utterances: list[Utterance]
    path: Path
    corpus: Path | None = None


def load_trials(corpus: str | os.PathLike | None = None, trials: str | os.PathLike | None = None,
                wav_root: str | os.PathLike | None = None, loaded: Corpus | None = None) -> EvalTrials:
    """The trials an evaluation scores: a corpus directory's test part (its own trial list unless
    ``trials`` names another one over the same test part), or a trial list over the wav tree ``wav_root``.

    ``loaded`` is ``corpus`` already loaded (a recipe loads a corpus once for all its stages).
    """
    from tfadvq.voxceleb import corpus_trials_path, load_corpus, read_trials, scan_tree

    if (corpus is None) == (wav_root is None):
        raise ConfigError("trials: give either a corpus directory or a wav tree the trial keys are relative to")
    if corpus is None:
        if trials is None:
            raise ConfigError(f"trials: a trial list is needed with the wav tree {wav_root}")
        return EvalTrials(read_trials(trials), scan_tree(wav_root), Path(trials))
    loaded = loaded or load_corpus(corpus)
    own = corpus_trials_path(corpus)
    if trials is None or Path(trials) == own:
        return EvalTrials(loaded.trials, loaded.test, own, Path(corpus))
    return EvalTrials(read_trials(trials), loaded.test, Path(trials))


def cohort_utterances(path: str | os.PathLike) -> list[Utterance]:
    """An AS-norm imposter cohort: a corpus directory (its training speakers) or a VoxCeleb-style tree."""
    from tfadvq.voxceleb import load_corpus, scan_tree

    return load_corpus(path).train if rundir.CorpusDir(Path(path)).lists.is_dir() else scan_tree(path)


@dataclasses.dataclass
class EvaluationRun:
    """What :func:`evaluate_into` measured and wrote: the result, its directory, the stored threshold
    (None when the caller keeps thresholds elsewhere) and, on a real-speech corpus, the EER by source."""

    result: Evaluation
    out: rundir.EvalDir
    threshold: Path | None
    front_end: str
    by_source: list[dict[str, Any]] | None = None
    model: str = ""  # the model evaluated, as a summary names it

    def row(self) -> dict[str, Any]:
        """The evaluation's line in a summary table."""
        return {**self.result.row(), "det": str(self.out.det), "scores": str(self.out.scores),
                "threshold_file": str(self.threshold), "front_end": self.front_end}

    def details(self) -> list[tuple[list[dict[str, Any]], str]]:
        """``(rows, title)`` of the tables beside the summary row: EER by source, skipped files."""
        tables = []
        if self.by_source:
            tables.append((self.by_source, f"EER by source, speaker-level 95 % intervals ({self.out.by_source})"))
        if self.result.bad:
            tables.append(([{"file": p, "reason": r} for p, r in self.result.bad[:20]],
                           f"skipped files ({len(self.result.bad)}; all in {self.out.bad})"))
        return tables


def evaluate_into(out: rundir.EvalDir, embed, trials: EvalTrials, scoring: ScoringConfig, *,
                  threshold_for: str | os.PathLike | None, cohort: Sequence[Utterance] | None = None,
                  top_n: int = 300, embedder: str = "keras", force: bool = False, title: str = "",
                  command: str = "tfadvq eval") -> EvaluationRun:
    """Evaluate ``embed`` on ``trials`` into ``out``: the one evaluation flow of ``tfadvq eval``, the
    evaluation after ``tfadvq train`` and the recipe's ``evaluate`` and ``calibrate`` stages.

    Scores, DET and summary (:func:`write_outputs`), the EER by source of a real-speech corpus, and the
    raw-cosine threshold with its provenance (:func:`store_threshold`) for the model file
    ``threshold_for`` (None: none stored; the calibrate stage keeps its thresholds in ``model.json``).
    An ``out`` holding an evaluation already is refused before any scoring unless ``force``.
    """
    if out.summary.is_file() and not force:  # said before minutes of scoring, not after
        kept = rundir.read_json(out.threshold).get("num_trials") if out.threshold.is_file() else None
        found = f"; its threshold is from {kept} trials" if kept is not None else ""
        raise ConfigError(f"--out {out.path}: holds an evaluation already ({out.summary.name}{found}); "
                          "pass --force to replace it or choose another --out")
    result = evaluate(embed, trials.trials, trials.utterances, scoring, cohort, top_n)
    stored, by_source = None, None
    with rundir.claim_dir(out.path, rundir.EvalDir, force=force, flag="--out", command=command):
        if threshold_for is not None:
            stored = store_threshold(out.threshold, result, trials.path, threshold_for, scoring, embedder, force)
        write_outputs(result, trials.trials, out, title=title)
        if trials.corpus is not None:
            from tfadvq.corpus.real import report_by_source

            by_source = report_by_source(result, trials.trials, trials.corpus, out)
    front_end = getattr(embed, "front_end", None)
    eats = "default front end" if front_end is None else \
        f"{front_end.fbank.num_mel_bins} mel bins from {front_end.source}"
    return EvaluationRun(result, out, stored, eats, by_source, str(threshold_for or ""))


def evaluate_model(model: str | os.PathLike, trials: EvalTrials, scoring: ScoringConfig,
                   out: rundir.EvalDir | None = None, cohort: Sequence[Utterance] | None = None,
                   top_n: int = 300, force: bool = False) -> EvaluationRun:
    """Evaluate the Keras model a user names (a file or any run folder; its recorded front end) by
    :func:`evaluate_into`, by default into ``<model dir>/eval_<trials name>/``.

    ``tfadvq eval`` and the evaluation after ``tfadvq train`` both call this.
    """
    from tfadvq import frontend
    from tfadvq.model_io import open_model
    from tfadvq.scoring import keras_embedder

    run_dir = rundir.TrainDir.of_model(model)
    loaded = open_model(model)
    embed = keras_embedder(loaded.model, frontend.resolve(loaded.file))
    done = evaluate_into(out or run_dir.evaluation(trials.path), embed, trials, scoring, threshold_for=run_dir.model,
                         cohort=cohort, top_n=top_n, force=force, title=f"{run_dir.model} on {trials.path.name}")
    return dataclasses.replace(done, model=loaded.describe())


def threshold_in_use(run: rundir.TrainDir) -> str:
    """Which threshold ``tfadvq verify`` would use for ``run.model`` (:func:`model_threshold`), in words."""
    try:
        chosen = model_threshold(run)
    except ConfigError as exc:  # an evaluation may have succeeded; say why verify would refuse
        return f"none usable ({exc})"
    if chosen is None:
        return "none: pass --threshold-from"
    return f"{chosen[0]} ({chosen[1].num_trials} trials, threshold {chosen[1].threshold:.4g})"


# --------------------------------------------------------------------------- thresholds


@dataclasses.dataclass
class StoredThreshold:
    """A decision threshold and where it comes from."""

    threshold: float
    eer: float  # percent (as every EER), on the calibration trials
    trials: str
    num_trials: int
    model_sha256: str
    scoring: dict[str, Any]
    embedder: str = "keras"


def store_threshold(path: str | os.PathLike, evaluation: Evaluation, trials_path: str | os.PathLike,
                    model_path: str | os.PathLike, scoring: ScoringConfig, embedder: str = "keras",
                    force: bool = False) -> Path:
    """Save the raw-cosine EER threshold of ``evaluation`` with its provenance at ``path`` (an
    :class:`~tfadvq.rundir.EvalDir`'s ``threshold``; module doc).

    A threshold already there for the same model from more trials is kept and this raises, unless
    ``force``: a threshold from fewer trials never silently replaces a better-founded one.
    """
    record = StoredThreshold(evaluation.cosine_eer_threshold, evaluation.eer, str(trials_path),
                             int(evaluation.labels.size), rundir.file_sha256(model_path), to_dict(scoring),
                             embedder)
    old = _read_threshold(Path(path)) if Path(path).is_file() else None
    if old is not None and old.model_sha256 == record.model_sha256 and old.num_trials > record.num_trials \
            and not force:
        raise ConfigError(f"{path}: holds this model's threshold from {old.num_trials} trials ({old.trials}); "
                          f"one from {record.num_trials} trials does not replace it: pass --force to replace it, "
                          "or --out another directory")
    return rundir.write_json(path, dataclasses.asdict(record))


def _read_threshold(path: Path) -> StoredThreshold:
    from tfadvq.config import from_dict

    try:
        return from_dict(StoredThreshold, rundir.read_json(path), where=str(path))
    except ConfigError as exc:
        raise ConfigError(f"{exc}; re-run `tfadvq eval` to calibrate the threshold again") from None


def load_threshold(path: str | os.PathLike, model_path: str | os.PathLike) -> StoredThreshold | None:
    """The threshold stored at ``path`` for the model file ``model_path``; None if there is none.

    One calibrated for another model (retrained since, or copied) raises.
    """
    path = Path(path)
    if not path.is_file():
        return None
    record = _read_threshold(path)
    if record.model_sha256 != rundir.file_sha256(model_path):
        raise ConfigError(f"{path}: this threshold was calibrated for another model than {model_path} "
                          "(retrained or replaced since); re-run `tfadvq eval` or pass --threshold")
    check_threshold(record.threshold, str(path))
    return record


def model_threshold(run: rundir.TrainDir) -> tuple[Path, StoredThreshold] | None:
    """The threshold ``tfadvq verify`` uses for ``run.model`` when given none (module doc): among the
    model's evaluations (:meth:`~tfadvq.rundir.TrainDir.evaluations`), the one from the most trials
    (then the newest); None if no evaluation stored one.  Thresholds only of another model raise, and so
    does one left in the old place beside the model (naming the new one).
    """
    digest = rundir.file_sha256(run.model)
    found, stale = [], []
    for evaluation in run.evaluations():
        if evaluation.threshold.is_file():
            record = _read_threshold(evaluation.threshold)
            (found if record.model_sha256 == digest else stale).append((evaluation.threshold, record))
    if found:
        path, record = max(found, key=lambda item: (item[1].num_trials, item[0].stat().st_mtime_ns))
        check_threshold(record.threshold, str(path))
        return path, record
    if stale:
        raise ConfigError(f"{stale[0][0]}: this threshold was calibrated for another model than {run.model} "
                          "(retrained or replaced since); re-run `tfadvq eval` or pass --threshold")
    if run.legacy_threshold.is_file():
        raise ConfigError(f"{run.legacy_threshold}: thresholds no longer live beside the model but in the "
                          f"evaluation that calibrated them ({run.evaluation('<trials>').threshold}); re-run "
                          "`tfadvq eval`, or pass --threshold or --threshold-from")
    return None


def check_threshold(threshold: float, what: str = "--threshold") -> float:
    """A cosine threshold must be a finite number in [-1, 1]."""
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise ConfigError(f"{what}: {threshold!r} is not a cosine-score threshold; accepted: a number in [-1, 1]")
    return float(threshold)


# --------------------------------------------------------------------------- verification


def verify(model, enroll: Sequence[str | os.PathLike], test: str | os.PathLike, threshold: float,
           scoring: ScoringConfig | None = None) -> dict[str, Any]:
    """Score ``test`` against the mean enrollment embedding; accept if ``score >= threshold``.

    ``model`` is a Keras model or an embedder; every recording goes through
    the device's checks (too short, silent, clipped: :class:`tfadvq.audio.AudioLimits`,
    an :class:`~tfadvq.errors.AudioError` naming the file) and schedule
    (:func:`tfadvq.scoring.utterance_embedding`).
    """
    from tfadvq import scoring as sc
    from tfadvq.metrics import accept
    from tfadvq.windows import l2_normalize

    if not enroll:
        raise ConfigError("--enroll: give at least one enrollment recording")
    threshold = check_threshold(threshold)
    scoring = scoring or ScoringConfig()
    embed = sc.as_embedder(model)
    enrolled = l2_normalize(sc.embed_files(embed, enroll, scoring).mean(axis=0))
    score = float(sc.embed_files(embed, [test], scoring)[0] @ enrolled)
    return {"score": score, "threshold": threshold,
            "decision": "accept" if accept(score, threshold) else "reject"}


def example_claim(corpus) -> tuple[str, list[Path], Path, Path]:
    """A verification example from a corpus's test part: claimed speaker, enrollment recordings,
    a genuine and an impostor test recording (the verify and device_verify stages, notebook 01)."""
    by_speaker: dict[str, list] = {}
    for u in corpus.test:
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = [s for s, utts in by_speaker.items() if len(utts) >= 3]
    if len(by_speaker) < 2 or not speakers:
        raise DataError("verify example: the test part needs 2 speakers, one with >= 3 utterances")
    claimed = speakers[0]
    own, other = by_speaker[claimed], next(u for s, u in by_speaker.items() if s != claimed)
    return claimed, [Path(u.path) for u in own[:2]], Path(own[2].path), Path(other[0].path)


def claim_outcome(embed, corpus, threshold: float, scoring: ScoringConfig) -> dict[str, Any]:
    """Run the example claim of ``corpus`` with ``embed``; scores and decisions of both tests."""
    claimed, enroll, genuine, impostor = example_claim(corpus)
    results = [verify(embed, enroll, test, threshold, scoring) for test in (genuine, impostor)]
    return {"speaker": claimed, "enroll": [str(p) for p in enroll], "genuine": str(genuine),
            "impostor": str(impostor), "scores": [r["score"] for r in results],
            "decisions": [r["decision"] for r in results], "threshold": threshold}


def describe_claim(outcome: dict[str, Any]) -> str:
    """One line for a summary: the claim's two scores and decisions at its threshold."""
    s, d = outcome["scores"], outcome["decisions"]
    return (f"speaker {outcome['speaker']}: genuine score {s[0]:.3f} -> {d[0]}, impostor {s[1]:.3f} -> "
            f"{d[1]} (threshold {outcome['threshold']:.3f})")
