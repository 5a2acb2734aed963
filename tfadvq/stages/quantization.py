"""KMQAT stages: post-training quantization, then quantization-aware fine-tuning.

Both write a :class:`~tfadvq.rundir.QuantDir` and hand on the lineage the next
stage needs: the FP32 source model (the distillation teacher), the training
config the model was trained with (a fine-tune follows it) and the AAM head
(the trained one, then each fine-tune's own).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from tfadvq import frontend, rundir
from tfadvq.config import bounded, load_yaml, to_dict
from tfadvq.errors import ConfigError
from tfadvq.quant.post_training import PTQSettings
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage
from tfadvq.stages.lineage import Lineage, lineage
from tfadvq.stages.modelling import frontend_output, load_keras_model, replaced_data
from tfadvq.train_config import DataConfig, TrainConfig


def quantize_summary(label: str, outputs, tuned: dict[str, Any] | None) -> str:
    size = outputs.size
    tuning = (f"fine-tune {tuned['steps']} steps, final loss {tuned['last_loss']:.3f}; " if tuned else "")
    return (f"{label}: {tuning}{size.size_bytes / 1024:.1f} KiB vs {size.fp32_bytes / 1024:.1f} KiB FP32 "
            f"({size.compression:.2f}x)")


@register_stage("quantize")
@dataclasses.dataclass
class QuantizeStage(PTQSettings, StageBase):
    """KMQAT post-training quantization: per-layer k-means codebooks fitted to the trained weights.

    The settings are :class:`~tfadvq.quant.post_training.PTQSettings` (what
    ``tfadvq quantize`` takes too), run by the same
    :func:`~tfadvq.quant.post_training.post_training`.  The data of
    ``weighted`` / ``bias_correction`` (both on by default when there is data,
    ``false`` opts out) is ``corpus`` (a corpus stage) or the model's training
    data, fed as the model's input wants
    (:func:`tfadvq.quant.finetune.model_inputs`), or ``inputs`` (an ``.npy``
    array of model inputs); a model with none of them gets plain k-means and
    one warning.
    """

    produces: ClassVar[tuple[str, ...]] = ("wrapped", "plain", "source_model", "train_dir")
    needs: ClassVar[dict[str, str]] = {"corpus": "corpus"}

    model: str = "train"
    corpus: str | None = None
    inputs: str | None = None

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("corpus", self.corpus)) if v}

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        found = {"bits_spec": rundir.file_sha256(self.bits_per_layer)} if self.bits_per_layer else {}
        return {**found, "inputs": rundir.file_sha256(self.inputs)} if self.inputs else found

    def _data(self, ctx: StageContext, model, made: Lineage):
        """Batches for the Fisher and bias correction, as the model's input wants them (None: unused or none).

        The same rule as ``tfadvq quantize``: ``inputs``, ``corpus`` or the
        model's training data; without any, the defaults fall back to plain
        k-means and an explicit ``weighted``/``bias_correction`` is refused.
        """
        if not self.wants_data:
            return None
        from tfadvq.quant.finetune import model_inputs

        if not (self.corpus or self.inputs or made.train_config):
            if self.needs_data:
                raise ConfigError(f"stage {ctx.name}: weighted/bias_correction need data: give corpus or inputs")
            return None
        config = load_yaml(TrainConfig, made.train_config) if made.train_config else TrainConfig()
        _, utterances = replaced_data(ctx, self.corpus)
        return model_inputs(model, config, inputs=self.inputs, utterances=utterances)

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.quant import outputs
        from tfadvq.quant.post_training import post_training

        made = lineage(ctx, self.model)
        source = made.keras_model(ctx.name)
        model = load_keras_model(ctx, source)
        front_end = frontend.for_input(made.front_end(), model.input_shape, str(source))
        result = post_training(model, self, self._data(ctx, model, made))
        out = rundir.QuantDir(ctx.out)
        saved = outputs.save(result.wrapped, out, front_end=front_end, source_model=str(source),
                             settings=to_dict(self), ptq=result.path)
        ctx.cache[f"wrapped:{out.wrapped}"] = result.wrapped
        return StageResult(
            outputs={"wrapped": str(out.wrapped), "plain": str(out.plain), "source_model": str(source),
                     "train_dir": str(made.train_dir), **frontend_output(out.path)},
            metrics={"size_bytes": saved.size.size_bytes, "fp32_bytes": saved.size.fp32_bytes,
                     "compression": saved.size.compression, "ptq": result.path},
            summary=quantize_summary(f"{f'binary {self.binary}' if self.binary else 'KMQAT'} "
                                     f"{self.bits_per_layer or f'{self.bits}-bit'} PTQ "
                                     f"({result.settings.describe()})", saved, None))


@register_stage("finetune")
@dataclasses.dataclass
class FinetuneStage(StageBase):
    """Quantization-aware fine-tuning of a quantized model, following the model's own training config.

    ``corpus`` (a corpus stage) or ``data`` replace the training run's data
    sources; by default it fine-tunes on what the model was trained on.  The
    AAM head starts from the trained one (``use_trained_head``).
    """

    produces: ClassVar[tuple[str, ...]] = ("wrapped", "plain", "source_model", "train_config", "head")
    needs: ClassVar[dict[str, str]] = {"model": "wrapped", "corpus": "corpus"}

    model: str = "quantize"
    epochs: int = bounded(1, 1)
    objective: str = "aam"
    lr_scale: float = bounded(0.1, 0.0, above=True)
    refresh_steps: int = bounded(100, 1)
    steps_per_epoch: int | None = bounded(None, 1)
    corpus: str | None = None
    data: DataConfig | None = None
    use_trained_head: bool = True
    inputs: str | None = None  # an .npy array of model inputs (distill; a model of another input)

    def __post_init__(self) -> None:
        from tfadvq.objectives import parse_objective

        parse_objective(self.objective)
        if self.corpus is not None and self.data is not None:
            raise ConfigError("finetune: give corpus or data, not both")

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("corpus", self.corpus)) if v}

    def lineage(self, ctx: StageContext) -> Lineage:
        """The quantized model's lineage: its source FP32 model, and the training config and AAM head the
        fine-tune follows (:meth:`~tfadvq.stages.lineage.Lineage.followed`)."""
        made = lineage(ctx, self.model)
        made.quantized(ctx.name, " (use a quantize or finetune stage)")
        return made

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        config, head = self.lineage(ctx).followed(ctx.name, "the fine-tune")
        return {"train_config": rundir.file_sha256(config),
                "head": rundir.file_sha256(head) if head else None}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.model_io import load_model
        from tfadvq.objectives import Objective
        from tfadvq.quant import outputs
        from tfadvq.quant.finetune import FinetuneSettings, finetune_run

        made = self.lineage(ctx)
        source, wrapped_path, front_end = made.source_model, made.wrapped, made.front_end()
        config_file, head_file = made.followed(ctx.name, "the fine-tune")
        train_config = frontend.follow(load_yaml(TrainConfig, config_file), front_end)
        data, utterances = replaced_data(ctx, self.corpus, self.data)
        settings = FinetuneSettings(self.epochs, Objective(self.objective), self.lr_scale, self.refresh_steps,
                                    self.steps_per_epoch, data, self.use_trained_head)
        wrapped = ctx.cache.pop(f"wrapped:{wrapped_path}", None) or load_model(wrapped_path)
        head = rundir.load_head(head_file) if head_file else None
        teacher = load_keras_model(ctx, source) if settings.objective is Objective.DISTILL else None
        result = finetune_run(wrapped, train_config, settings, teacher=teacher, head_weights=head,
                              utterances=utterances, inputs=self.inputs)
        out = rundir.QuantDir(ctx.out)
        front_end = frontend.for_input(front_end, wrapped.input_shape, str(wrapped_path))
        saved = outputs.save(wrapped, out, front_end=front_end, finetuned=result, source_model=str(source),
                             settings=to_dict(self))
        produced = {"wrapped": str(out.wrapped), "plain": str(out.plain), "source_model": str(source),
                    "train_config": str(out.train_config), **frontend_output(out.path)}
        if result.head_weights is not None:
            produced["head"] = str(out.head)
        ctx.cache[f"wrapped:{out.wrapped}"] = wrapped
        return StageResult(outputs=produced, metrics={"finetune": result.row,
                                                      "size_bytes": saved.size.size_bytes},
                           summary=quantize_summary("KMQAT fine-tuned", saved, result.row))
