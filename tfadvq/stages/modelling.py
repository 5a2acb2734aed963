"""Stages of the FP32 model: train it, evaluate it on trials (and keep its threshold), verify a claim."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from tfadvq import rundir
from tfadvq.config import bounded, identity
from tfadvq.errors import ConfigError
from tfadvq.fbank_config import FbankConfig
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage
from tfadvq.stages.lineage import lineage
from tfadvq.train_config import DataConfig, StrategyName, TrainConfig, resolve_config


def frontend_output(directory: Path) -> dict[str, str]:
    """``{"frontend": path}`` of the front-end record a stage wrote into ``directory`` (none: ``{}``), for
    its outputs: their digest then covers it, so a changed front end re-runs what depends on the model."""
    path = rundir.RunDir(directory).frontend
    return {"frontend": str(path)} if path.is_file() else {}


def open_keras_model(ctx: StageContext, path: Path):
    """The model at ``path`` (:func:`tfadvq.model_io.open_model`), loaded once per content in a recipe run."""
    from tfadvq.model_io import open_model

    return ctx.cached(f"model:{path}:{rundir.file_sha256(path)}", lambda: open_model(path))


def load_keras_model(ctx: StageContext, path: Path):
    return open_keras_model(ctx, path).model


def corpus_of(ctx: StageContext, stage: str):
    from tfadvq.voxceleb import load_corpus

    directory = ctx.output(stage, "corpus")
    return ctx.cached(f"corpus:{directory}", lambda: load_corpus(directory))


def replaced_data(ctx: StageContext, corpus: str | None, data: DataConfig | None = None):
    """``(DataConfig | None, train utterances | None)``: the data a quantization or fine-tune stage reads
    instead of the model's training data -- the corpus stage ``corpus``'s (loaded once per recipe run),
    else ``data`` (its own sources) -- the one rule of every stage; ``(None, None)``: the model's own."""
    if corpus is None:
        return data, None
    return DataConfig(corpus=str(ctx.output(corpus, "corpus"))), corpus_of(ctx, corpus).train


@dataclasses.dataclass
class TrialSource:
    """Trials to score: a corpus stage's test trials, or a trial list with the wav tree its keys are in."""

    corpus: str | None = None
    trials: str | None = None
    wav_root: str | None = None

    def check(self, where: str) -> None:
        if (self.corpus is None) == (self.trials is None):
            raise ConfigError(f"{where}: give either corpus (a corpus stage) or trials + wav_root")
        if self.trials is not None and self.wav_root is None:
            raise ConfigError(f"{where}: trials needs wav_root (where the trial keys live)")

    def load(self, ctx: StageContext):
        """The :class:`tfadvq.evaluation.EvalTrials` to score (the corpus loaded once per recipe run)."""
        from tfadvq.evaluation import load_trials

        if self.corpus is not None:
            return load_trials(ctx.output(self.corpus, "corpus"), loaded=corpus_of(ctx, self.corpus))
        return load_trials(trials=self.trials, wav_root=self.wav_root)

    def digest(self) -> dict[str, Any]:
        return {"trials": rundir.file_sha256(self.trials)} if self.trials else {}


@register_stage("train")
@dataclasses.dataclass
class TrainStage(StageBase):
    """Train an embedding model from a training YAML (or packaged name); ``corpus`` replaces its data."""

    produces: ClassVar[tuple[str, ...]] = ("model", "train_dir")
    needs: ClassVar[dict[str, str]] = {"corpus": "corpus"}

    config: str = "demo"
    corpus: str | None = None
    epochs: int | None = bounded(None, 1)
    steps_per_epoch: int | None = bounded(None, 1)
    batch_size: int | None = bounded(None, 1)
    strategy: StrategyName | None = None

    def uses(self) -> dict[str, str]:
        return {"corpus": self.corpus} if self.corpus else {}

    def resolved(self, ctx: StageContext) -> TrainConfig:
        """The training config this stage runs (:func:`tfadvq.train_config.overridden`, as ``tfadvq train``)."""
        from tfadvq.train_config import overridden

        corpus = ctx.output(self.corpus, "corpus") if self.corpus is not None else None
        return overridden(resolve_config(self.config), corpus=corpus, epochs=self.epochs,
                          steps_per_epoch=self.steps_per_epoch, batch_size=self.batch_size, strategy=self.strategy)

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        return {"train_config": identity(self.resolved(ctx))}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.training import train

        config = self.resolved(ctx)
        run = rundir.TrainDir(ctx.out)
        finished = run.model.is_file() and not run.backup.exists() and run.config.is_file()
        if not finished:  # else: trained already, only the record was missing (killed right after)
            train(config, run.path)
        history = run.load_history()
        last = {k: v[-1] for k, v in history.items() if v}
        bad = run.bad.read_text().splitlines() if run.bad.is_file() else []
        return StageResult(
            outputs={"model": str(run.model), "train_dir": str(run.path)},
            metrics={**{"final_" + k: v for k, v in last.items()}, "skipped_files": len(bad)},
            summary=f"{config.model}, {config.epochs} epochs, final loss {last.get('loss', float('nan')):.3f}")


@register_stage("model")
@dataclasses.dataclass
class ModelStage(StageBase):
    """A model you bring: a saved Keras embedding model (a ``.keras``/``.h5`` file, a SavedModel, a Keras 3
    ``.keras`` (rebuilt in tf-keras) or any run folder tfadvq writes; :mod:`tfadvq.model_io`).

    Its training config and AAM head are used by a later fine-tune when they
    lie beside it (a tfadvq train directory); otherwise fine-tune it with the
    distillation objective and give the fine-tune its data.  ``fbank`` declares
    the front end it was trained with when none is recorded beside it
    (:mod:`tfadvq.frontend`); the one it resolves to is recorded in this stage's directory.
    """

    produces: ClassVar[tuple[str, ...]] = ("model", "train_dir")

    path: str = ""
    fbank: FbankConfig | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("model: give path (a model file or a run folder)")

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        return {"model": rundir.file_sha256(rundir.TrainDir.of_model(self.path).model)}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq import frontend

        run = rundir.TrainDir.of_model(self.path)
        loaded = open_keras_model(ctx, run.model)
        model = loaded.model
        found = frontend.for_input(frontend.resolve(loaded.file, self.fbank, f"stage {ctx.name}: fbank"),
                                   model.input_shape, str(loaded.file))
        frontend.record(ctx.out, None if found is None else found.fbank)
        eats = "" if found is None else f"; front end {found.fbank.num_mel_bins} mel bins from {found.source}"
        return StageResult(outputs={"model": str(run.model), "train_dir": str(run.path),
                                    **frontend_output(ctx.out)},
                           metrics={"params": int(model.count_params()), **loaded.row()},
                           summary=f"{loaded.describe()}: {model.name}, {model.count_params()} parameters{eats}")


def evaluate_to(ctx: StageContext, embed, source: TrialSource, title: str, *, threshold_for: Path | None,
                cohort: str | None = None, top_n: int = 300, embedder: str = "keras"):
    """Evaluate ``embed`` on ``source``'s trials into ``ctx.out`` by :func:`tfadvq.evaluation.evaluate_into`
    (what ``tfadvq eval`` runs); ``threshold_for``: the model file whose threshold is stored (None: none)."""
    from tfadvq.evaluation import evaluate_into

    # force: the engine empties a stage directory whose config changed; one it keeps holds only this stage's
    # own interrupted attempt, which the evaluation replaces
    return evaluate_into(rundir.EvalDir(ctx.out), embed, source.load(ctx), ctx.scoring, threshold_for=threshold_for,
                         cohort=corpus_of(ctx, cohort).train if cohort else None, top_n=top_n, embedder=embedder,
                         force=True, title=title, command=f"stage {ctx.name}")


@register_stage("evaluate")
@dataclasses.dataclass
class EvaluateStage(StageBase):
    """EER/minDCF of a model on trials through the device's scoring schedule; DET plot; threshold.

    ``model`` is any earlier stage that produced a Keras model (train,
    quantize, finetune) or a ``.tflite`` (convert, calibrate), which is then
    run under the TFLM interpreter.  ``cohort`` (a corpus stage) adds AS-norm.
    """

    produces: ClassVar[tuple[str, ...]] = ("scores", "threshold", "det", "model")
    needs: ClassVar[dict[str, str]] = {"corpus": "corpus"}

    model: str = "train"
    corpus: str | None = None
    trials: str | None = None
    wav_root: str | None = None
    cohort: str | None = None
    top_n: int = bounded(300, 1)

    def __post_init__(self) -> None:
        self.source.check("evaluate")

    @property
    def source(self) -> TrialSource:
        return TrialSource(self.corpus, self.trials, self.wav_root)

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("corpus", self.corpus), ("cohort", self.cohort)) if v}

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        return self.source.digest()

    def run(self, ctx: StageContext) -> StageResult:
        from converters.tflm import tflm_embedder
        from tfadvq.scoring import keras_embedder

        made = lineage(ctx, self.model)
        if made.tflite is not None:
            model_path = made.tflite
            embed, kind = tflm_embedder(model_path.read_bytes(), made.device_front_end()), "tflm"
        else:
            model_path = made.keras_model(ctx.name)
            embed = keras_embedder(load_keras_model(ctx, model_path), made.front_end())
            kind = "keras"
        done = evaluate_to(ctx, embed, self.source, f"{self.model} ({kind}), test trials", threshold_for=model_path,
                           cohort=self.cohort, top_n=self.top_n, embedder=kind)
        result, out, by_source = done.result, done.out, done.by_source
        same = next((r for r in by_source or () if r["trials"] == "same-source" and "eer" in r), None)
        return StageResult(
            outputs={"scores": str(out.trial_scores), "threshold": str(out.threshold), "det": str(out.det),
                     "model": str(model_path)},
            metrics={**result.row(), "embedder": kind, **({"by_source": by_source} if by_source else {})},
            summary=f"EER {result.eer:.2f} %, minDCF(0.01) {result.min_dcf[0.01]:.3f}, "
                    f"minDCF(0.05) {result.min_dcf[0.05]:.3f} ({kind})"
                    + (f"; same-source EER {same['eer']:.2f} % [{same['eer_ci95'][0]:.1f}, "
                       f"{same['eer_ci95'][1]:.1f}] over {same['speakers']} speakers" if same else "")
                    + f"; DET {out.det}")


@register_stage("verify")
@dataclasses.dataclass
class VerifyStage(StageBase):
    """A genuine and an impostor claim from the corpus's test speakers, at an evaluate stage's threshold."""

    produces: ClassVar[tuple[str, ...]] = ("verification",)
    needs: ClassVar[dict[str, str]] = {"threshold": "threshold", "corpus": "corpus"}

    model: str = "train"
    threshold: str = "evaluate"
    corpus: str = "corpus"

    def uses(self) -> dict[str, str]:
        return {"model": self.model, "threshold": self.threshold, "corpus": self.corpus}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.evaluation import claim_outcome, describe_claim, load_threshold
        from tfadvq.scoring import keras_embedder

        made = lineage(ctx, self.model)
        model_path = made.keras_model(ctx.name)
        stored = load_threshold(ctx.output(self.threshold, "threshold"), model_path)
        if stored is None:
            raise ConfigError(f"stage {ctx.name}: stage {self.threshold!r} stored no threshold")
        embed = keras_embedder(load_keras_model(ctx, model_path), made.front_end())
        outcome = claim_outcome(embed, corpus_of(ctx, self.corpus), stored.threshold, ctx.scoring)
        path = rundir.write_json(rundir.EvalDir(ctx.out).verification, outcome)
        return StageResult(outputs={"verification": str(path)}, metrics=outcome,
                           summary=describe_claim(outcome))
