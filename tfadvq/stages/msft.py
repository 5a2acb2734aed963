"""The ``msft`` stage: multi-stage fine-tuning (:mod:`tfadvq.quant.msft`) of an FP32 model.

Like ``finetune`` it follows the model's own training config (``train.yaml``
of its train directory) and starts from the trained AAM head, and it hands on
what the next stage needs: the wrapped model (``convert``, ``evaluate``, a
further ``finetune``), the source model, the config followed and the head it
ended with.  The bits come from ``bits`` (every supported layer),
``bits_per_layer`` (a bits spec YAML file) or a ``mixed`` stage (its bits spec
and its sensitivities, which the default sensitivity order needs; the FP32
model is then the mixed stage's own unless ``model`` names one).  Interrupted,
it resumes after its last finished stage when re-run with the same settings.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tfadvq import frontend, rundir
from tfadvq.config import bounded, to_dict
from tfadvq.errors import ConfigError
from tfadvq.quant.bits import MAX_BITS, MIN_BITS
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage
from tfadvq.stages.lineage import Lineage, lineage
from tfadvq.stages.modelling import frontend_output, load_keras_model, replaced_data
from tfadvq.stages.quantization import quantize_summary
from tfadvq.train_config import DataConfig

if TYPE_CHECKING:
    from tfadvq.quant.msft import MSFTSettings
    from tfadvq.quant.spec import BitsLike


@register_stage("msft")
@dataclasses.dataclass
class MSFTStage(StageBase):
    """Quantize and fine-tune group by group (see :class:`~tfadvq.quant.msft.MSFTSettings`).

    ``model``: a train or model stage (the FP32 model); ``corpus`` or ``data``
    replace the training run's data sources.
    """

    produces: ClassVar[tuple[str, ...]] = ("wrapped", "plain", "source_model", "train_config", "msft", "head")
    needs: ClassVar[dict[str, str]] = {"corpus": "corpus", "mixed": "bits_spec"}

    model: str | None = None
    mixed: str | None = None
    bits: int | None = bounded(None, MIN_BITS, MAX_BITS)
    bits_per_layer: str | None = None
    steps_per_stage: int = bounded(100, 1)
    stages: int = bounded(4, 1)
    order: str = "sensitivity"
    groups: list[list[str]] | None = None
    objective: str = "aam"
    lr_scale: float = bounded(0.1, 0.0, above=True)
    refresh_steps: int = bounded(100, 1)
    per_channel: bool = False
    use_trained_head: bool = True
    corpus: str | None = None
    data: DataConfig | None = None

    def __post_init__(self) -> None:
        sources = [self.mixed is not None, self.bits is not None, self.bits_per_layer is not None]
        if sum(sources) != 1:
            raise ConfigError("msft: give exactly one of bits, bits_per_layer or mixed (a mixed stage)")
        if self.model is None and self.mixed is None:
            raise ConfigError("msft: give model (a train or model stage) or mixed")
        if self.corpus is not None and self.data is not None:
            raise ConfigError("msft: give corpus or data, not both")
        self.settings()  # checks every value now, at parse time

    def settings(self) -> MSFTSettings:
        """The typed :class:`~tfadvq.quant.msft.MSFTSettings` of this stage (values checked)."""
        from tfadvq.config import from_dict
        from tfadvq.quant.msft import MSFTSettings

        fields = {f.name for f in dataclasses.fields(MSFTSettings)}
        return from_dict(MSFTSettings, {k: v for k, v in to_dict(self).items() if k in fields}, where="msft")

    def uses(self) -> dict[str, str]:
        return {k: v for k, v in (("model", self.model), ("mixed", self.mixed), ("corpus", self.corpus)) if v}

    def _lineage(self, ctx: StageContext) -> Lineage:
        """The FP32 model's lineage: ``model``'s, else the mixed stage's (its training run's config and head)."""
        return lineage(ctx, self.model or self.mixed)

    def _source(self, ctx: StageContext) -> Path:
        if self.model is not None:
            return self._lineage(ctx).keras_model(ctx.name)
        return Path(ctx.output(self.mixed, "source_model"))

    def _bits(self, ctx: StageContext) -> BitsLike:
        from tfadvq.quant import load_spec

        if self.mixed is not None:
            return load_spec(ctx.output(self.mixed, "bits_spec"))
        return load_spec(self.bits_per_layer) if self.bits_per_layer else self.bits

    def _sensitivities(self, ctx: StageContext) -> dict[str, float] | None:
        found = lineage(ctx, self.mixed).sensitivities if self.mixed is not None else None
        return {k: float(v) for k, v in rundir.read_json(found).items()} if found is not None else None

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        config, head = self._lineage(ctx).followed(ctx.name, "msft")
        return {"train_config": rundir.file_sha256(config),
                "head": rundir.file_sha256(head) if head else None,
                "bits_spec": rundir.file_sha256(self.bits_per_layer) if self.bits_per_layer else None}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.config import dump_yaml, load_yaml
        from tfadvq.objectives import Objective
        from tfadvq.quant import outputs
        from tfadvq.quant.msft import msft
        from tfadvq.train_config import TrainConfig
        from tfadvq.training import training_data

        settings = self.settings()
        made, source = self._lineage(ctx), self._source(ctx)
        config_file, head_file = made.followed(ctx.name, "msft")
        train_config = load_yaml(TrainConfig, config_file)
        data, utterances = replaced_data(ctx, self.corpus, self.data)
        if data is not None:
            train_config = dataclasses.replace(train_config, data=data)
        model = load_keras_model(ctx, source)
        aam = settings.objective is Objective.AAM
        head = rundir.load_head(head_file) if aam and head_file else None
        front_end = frontend.for_input(made.front_end(source), model.input_shape, str(source))
        result = msft(model, self._bits(ctx), training_data(train_config, utterances), train_config, settings,
                      out=ctx.out, teacher=None if aam else model, head_weights=head,
                      sensitivities=self._sensitivities(ctx), front_end=front_end)
        out = rundir.MSFTDir(ctx.out)
        rundir.atomic_save_with(out.train_config, lambda tmp: dump_yaml(result.config, tmp))
        saved = outputs.derive(result.model)
        produced = {"wrapped": str(out.wrapped), "plain": str(out.plain), "source_model": str(source),
                    "train_config": str(out.train_config), "msft": str(out.state), **frontend_output(out.path)}
        if result.head_weights is not None:
            produced["head"] = str(out.head)
        ctx.cache[f"wrapped:{out.wrapped}"] = result.model
        last = result.rows[-1]
        tuned = {"steps": settings.steps_per_stage * len(result.rows), "last_loss": last["loss_after"]}
        return StageResult(outputs=produced,
                           metrics={"stages": result.rows, "size_bytes": saved.size.size_bytes},
                           summary=quantize_summary(f"MSFT {len(result.rows)} stages", saved, tuned))
