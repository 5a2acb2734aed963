"""Multi-stage fine-tuning (MSFT): quantize a network group by group, fine-tuning after each group.

The layers a bit spec quantizes are split into ordered *groups*.  Stage k
wraps the float model with the bits of groups 1..k (groups k+1.. stay float),
fits the codebooks on the current weights, and fine-tunes ``steps_per_stage``
steps with :func:`tfadvq.quant.finetune.finetune` (the training engine with
codebook refresh: no second training loop).  What is carried to the next stage
is the *latent* float model -- the float shadow weights of every quantized
layer (the straight-through estimator trains them, not the centroids), plus
every other weight (BatchNorm, biases) -- and the AAM head; the centroids are
re-fitted on those latent weights when stage k+1 wraps again.  The last
stage's wrapped model (every group quantized) is the result: :func:`tfadvq.quant.api.strip`
and the converter take it as any other.  Liu, Wang, Qian, "Towards
Lightweight Speaker Verification via Adaptive Neural Network Quantization"
(2024) use MSFT "to progressively quantize and fine-tune [the] network in a
specific order" after the mixed-precision bit allocation (the order itself is
taken from HAWQ here: only the paper's abstract could be consulted).

Default order (``order="sensitivity"``): most sensitive group first, as in
HAWQ (Dong et al., ICCV 2019, multi-stage fine-tuning in descending order of
``Omega_i = lambda_i * ||Q(W_i) - W_i||^2``).  The reasons: the group quantized
first is fine-tuned *as quantized* in every later stage (``stages x
steps_per_stage`` steps, the last group only ``steps_per_stage``), so the
layers whose quantization hurts most get the longest adaptation; and while
they are quantized, most of the network is still float and can compensate for
their error -- quantizing the sensitive layers last would leave them one short
stage and nothing float to absorb the damage.  Sensitivities are the HAWQ-V2
values of :mod:`tfadvq.quant.sensitivity` at the chosen bits (``{name or
"layer/weight": value}``; a layer's weights add up).  Alternatives:
``"depth"`` (input to output; shallow layers are the more sensitive ones in
ResNet speaker models, Wang et al., ICASSPW 2023, so this is the cheap proxy
when no sensitivities are at hand), ``"reverse_depth"``, ``"size"`` (most
quantized parameters first), or explicit ``groups``.

Checkpoints and resume: after every stage the wrapped model and the AAM head
go to ``MSFTDir.stage(k)`` and then the stage row to :attr:`MSFTDir.state`
(atomic writes, in that order), so a ``kill -9`` at any point loses at most
the stage that was running; calling :func:`msft` again with the same ``out``
continues after the last finished stage (refused, naming what differs, when
the groups, bits or settings changed).  The final model is written as a
:class:`~tfadvq.rundir.QuantDir` (:func:`tfadvq.quant.outputs.save`) and the
stage checkpoints are removed.

Distribution: everything that creates variables or trains runs in the
``tf.distribute`` strategy of the training config (or the one passed), as
:func:`tfadvq.training.train` does; only the chief writes files (a
multi-worker resume needs ``out`` on a filesystem every worker reads).  Each stage
starts a fresh optimizer and its own learning-rate schedule (a chain of
fine-tunes, :func:`~tfadvq.quant.finetune.finetune_config`).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq import model_io, rundir
from tfadvq.compat import keras, tf
from tfadvq.config import to_dict
from tfadvq.errors import ConfigError
from tfadvq.frontend import FrontEnd
from tfadvq.objectives import Objective
from tfadvq.quant import api, layer_rules, outputs, spec
from tfadvq.quant.finetune import DEFAULT_LR_SCALE, finetune, finetune_config
from tfadvq.strategies import is_chief, make_strategy
from tfadvq.train_config import TrainConfig
from tfadvq.training import TrainingData

log = logging.getLogger(__name__)


class Order(str, enum.Enum):
    """How the quantized layers are ordered into stages (module doc)."""

    SENSITIVITY = "sensitivity"
    DEPTH = "depth"
    REVERSE_DEPTH = "reverse_depth"
    SIZE = "size"


@dataclasses.dataclass
class MSFTSettings:
    """How to run MSFT (YAML-able).

    ``stages`` groups of about equal layer count are cut from the ``order``
    (fewer when fewer layers are quantized); ``groups`` (lists of layer names
    or ``"layer/weight"`` keys) replaces both.  ``steps_per_stage`` training
    steps per stage; ``objective``, ``lr_scale``, ``refresh_steps``,
    ``use_trained_head`` as for :class:`~tfadvq.quant.finetune.FinetuneSettings`;
    ``per_channel``/``quantizer`` as for :func:`tfadvq.quant.api.quantize`.
    """

    steps_per_stage: int = 100
    stages: int = 4
    order: Order = Order.SENSITIVITY
    groups: list[list[str]] | None = None
    objective: Objective = Objective.AAM
    lr_scale: float = DEFAULT_LR_SCALE
    refresh_steps: int = 100
    use_trained_head: bool = True
    per_channel: bool = False
    quantizer: str = "kmeans"

    def __post_init__(self) -> None:
        from tfadvq.objectives import parse_objective

        self.objective = parse_objective(self.objective)
        try:
            self.order = Order(self.order)
        except ValueError:
            raise ConfigError(f"msft order: {self.order!r}; accepted: {[o.value for o in Order]}") from None
        if self.steps_per_stage < 1:
            raise ConfigError(f"msft steps_per_stage: {self.steps_per_stage}; accepted: >= 1")
        if self.stages < 1:
            raise ConfigError(f"msft stages: {self.stages}; accepted: >= 1")
        if self.refresh_steps < 0:
            raise ConfigError(f"msft refresh_steps: {self.refresh_steps}; accepted: >= 0 (0: stage ends only)")


@dataclasses.dataclass
class MSFTResult:
    """The final wrapped model (every group quantized), one row per stage, the groups, the AAM head,
    and the fine-tune config every stage followed."""

    model: keras.Model
    rows: list[dict[str, Any]]
    groups: list[list[str]]
    head_weights: list[np.ndarray] | None
    config: TrainConfig


# --------------------------------------------------------------------------- planning


def plan_groups(model: keras.Model, bits: spec.BitsLike, settings: MSFTSettings,
                sensitivities: Mapping[str, float] | None = None) -> list[list[str]]:
    """The stage groups: lists of layer names, every layer ``bits`` quantizes in exactly one.

    Layers are the unit of a stage (a layer's weights are wrapped together);
    ``"layer/weight"`` keys in explicit groups name their layer.
    """
    quantized = [name for name, b in spec.resolve(model, bits).items() if b is not None]
    if not quantized:
        raise ConfigError(f"msft: bits quantize no layer of model {model.name!r}")
    if settings.groups is not None:
        return _explicit_groups(model, settings.groups, quantized)
    ordered = _ordered(model, quantized, settings.order, sensitivities)
    count = min(settings.stages, len(ordered))
    if count < settings.stages:
        log.warning("msft: %d stages asked, %d layers quantized: running %d stages", settings.stages,
                    len(ordered), count)
    return [list(chunk) for chunk in np.array_split(np.array(ordered, dtype=object), count)]


def _layer_of(model: keras.Model, key: str, where: str) -> str:
    names = {layer.name for layer in model.layers}
    if key in names:
        return key
    layer, _, weight = key.rpartition("/")
    if layer in names:
        rule = layer_rules.rule_for(model.get_layer(layer))
        if rule is not None and weight in [a.split(".")[-1] for a in rule.weights]:
            return layer
    raise ConfigError(f"{where}: {key!r} is neither a layer nor a quantizable 'layer/weight' key of "
                      f"model {model.name!r}")


def _explicit_groups(model: keras.Model, groups: Sequence[Sequence[str]], quantized: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    owner: dict[str, int] = {}
    for i, group in enumerate(groups):
        if not group:
            raise ConfigError(f"msft groups[{i}]: empty group")
        layers: list[str] = []
        for key in group:
            layer = _layer_of(model, key, f"msft groups[{i}]")
            if layer not in quantized:
                raise ConfigError(f"msft groups[{i}]: {key!r} is not quantized by the bits spec "
                                  f"(quantized: {quantized})")
            if owner.get(layer, i) != i:
                raise ConfigError(f"msft groups: layer {layer!r} is in groups {owner[layer]} and {i}; the "
                                  "weights of one layer are quantized in one stage")
            owner[layer] = i
            if layer not in layers:
                layers.append(layer)
        out.append(layers)
    missing = [name for name in quantized if name not in owner]
    if missing:
        raise ConfigError(f"msft groups: quantized layer(s) {missing} are in no group; add them to one "
                          "(or keep them float in the bits spec)")
    return out


def _ordered(model: keras.Model, quantized: list[str], order: Order,
             sensitivities: Mapping[str, float] | None) -> list[str]:
    order = Order(order)
    if order is Order.DEPTH:
        return list(quantized)
    if order is Order.REVERSE_DEPTH:
        return list(reversed(quantized))
    if order is Order.SIZE:
        size = {name: sum(int(np.prod(layer_rules.get_attr(model.get_layer(name), a).shape))
                          for a in layer_rules.rule_for(model.get_layer(name)).weights) for name in quantized}
        return sorted(quantized, key=lambda name: -size[name])  # stable: ties keep depth order
    if sensitivities is None:
        raise ConfigError("msft order sensitivity: pass the sensitivities (tfadvq.quant.sensitivity, or the "
                          "mixed stage), or choose order depth, reverse_depth or size")
    per_layer: dict[str, float] = {}
    for key, value in sensitivities.items():
        layer = _layer_of(model, key, "msft sensitivities")
        per_layer[layer] = per_layer.get(layer, 0.0) + float(value)
    missing = [name for name in quantized if name not in per_layer]
    if missing:
        raise ConfigError(f"msft sensitivities: no value for quantized layer(s) {missing}")
    return sorted(quantized, key=lambda name: -per_layer[name])


def stage_bits(bits: spec.BitsLike, active: set[str], model: keras.Model) -> spec.BitsSpec:
    """``bits`` restricted to the ``active`` layers (every other layer float), per-weight keys (bits and
    granularity) kept for the active layers."""
    base = spec.as_spec(bits)
    floats = {layer.name: None for layer in model.layers
              if layer.weights and layer_rules.rule_for(layer) is not None and layer.name not in active}
    changes: dict[str, Any] = {"layers": {**base.layers, **floats}}
    if hasattr(base, "weights"):  # per-weight keys (``layer/weight``): only the active layers' ones
        changes["weights"] = {k: b for k, b in base.weights.items() if k.rpartition("/")[0] in active}
        changes["per_channel"] = {k: c for k, c in base.per_channel.items() if k.rpartition("/")[0] in active}
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------- running


def copy_latent(wrapped: keras.Model, latent: keras.Model) -> None:
    """Set ``latent`` (a float model of the same layers) to ``wrapped``'s float weights.

    Quantized layers give their float shadow kernels (not the centroids);
    codebooks and tfmot's step counters have no float twin and are left out.
    """
    sources = {getattr(layer, "layer", layer).name: layer for layer in wrapped.layers}
    for target in latent.layers:
        if not target.weights:
            continue
        values = {_short(v.name): v for v in sources[target.name].weights}
        target.set_weights([values[_short(v.name)].numpy() for v in target.weights])


def _short(name: str) -> str:
    return name.split(":")[0].split("/")[-1]


def _state_key(groups: list[list[str]], bits: spec.BitsLike, settings: MSFTSettings) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the checkpoints."""
    return {"groups": groups, "bits": to_dict(spec.as_spec(bits)),
            "settings": {k: v for k, v in to_dict(settings).items() if k not in ("stages", "order", "groups")}}


def _read_state(run: rundir.MSFTDir, key: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The rows of the finished stages of an earlier attempt in ``run`` and whether it finished."""
    if not run.state.is_file():
        return [], False
    state = rundir.read_json(run.state)
    if state.get("key") != key:
        old, new = state.get("key", {}), key
        differs = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ConfigError(f"{run.path}: holds an MSFT run with other {', '.join(differs)}; resume it with its "
                          "own settings or choose another output directory")
    return list(state["rows"]), bool(state.get("finished"))


def msft(model: keras.Model, bits: spec.BitsLike, data: TrainingData, train_config: TrainConfig,
         settings: MSFTSettings, *, out: str | Path, teacher: keras.Model | None = None,
         head_weights: Sequence[np.ndarray] | None = None, sensitivities: Mapping[str, float] | None = None,
         strategy: tf.distribute.Strategy | None = None, verbose: int | str = 0,
         front_end: FrontEnd | None = None) -> MSFTResult:
    """Multi-stage fine-tuning of the float ``model`` to ``bits`` (module doc); files into ``out``.

    ``data``: :func:`tfadvq.training.training_data`; ``train_config``: the
    model's own training config (each stage is a :func:`finetune_config` of it,
    ``steps_per_stage`` steps); ``teacher``: the FP32 model (``distill``);
    ``head_weights``: the trained AAM head (``aam`` with ``use_trained_head``);
    ``sensitivities``: for ``order="sensitivity"``; ``front_end``: ``model``'s
    (:mod:`tfadvq.frontend`), recorded with the result.  ``model`` itself is not
    changed (it may be the ``teacher``).  ``strategy`` defaults to ``train_config.strategy``; build
    the models in its scope.  The caller holds ``out`` (:func:`tfadvq.rundir.locked`, as the CLI and
    recipes do): this function does not lock it, so a command that locked it can call it.
    """
    aam = settings.objective is Objective.AAM
    if not aam and teacher is None:
        raise ConfigError("msft objective distill: the FP32 teacher model is needed")
    groups = plan_groups(model, bits, settings, sensitivities)
    config = finetune_config(train_config, 1, settings.lr_scale, settings.steps_per_stage)
    data = dataclasses.replace(data, steps_per_epoch=settings.steps_per_stage)  # finetune counts steps by it
    run = rundir.MSFTDir(out)
    strategy = strategy or make_strategy(train_config.strategy)
    chief = is_chief(strategy)
    key = _state_key(groups, bits, settings)
    rows, finished = _read_state(run, key)
    head = list(head_weights) if aam and settings.use_trained_head and head_weights is not None else None
    with strategy.scope():
        if finished:  # done before: the final outputs are the result
            log.info("msft: %s holds the finished run", run.path)
            return MSFTResult(model_io.load_model(run.wrapped), rows, groups,
                              rundir.TrainDir(run.path).load_head() if run.head.is_file() else None, config)
        latent = keras.models.clone_model(model)
        latent.set_weights(model.get_weights())
        wrapped = None
        if rows:
            log.info("msft: resuming after stage %d of %d in %s", len(rows), len(groups), run.path)
            checkpoint = run.stage(len(rows))
            wrapped = model_io.load_model(checkpoint.wrapped)
            copy_latent(wrapped, latent)
            head = rundir.TrainDir(checkpoint.path).load_head() if checkpoint.head.is_file() else head
        for k in range(len(rows) + 1, len(groups) + 1):
            start = time.perf_counter()
            active = {name for group in groups[:k] for name in group}
            wrapped = api.quantize(latent, stage_bits(bits, active, latent), per_channel=settings.per_channel,
                                   quantizer=settings.quantizer, progress=False)
            tuned = finetune(wrapped, data, config, settings.objective.value,
                             teacher=None if aam else teacher, head_weights=head,
                             refresh_steps=settings.refresh_steps, verbose=verbose)
            head = tuned.head_weights if aam else None
            copy_latent(wrapped, latent)
            group = set(groups[k - 1])
            rows.append({"stage": k, "group": groups[k - 1],
                         "bits": {f"{r['layer']}/{r['weight']}": r["bits"] for r in api.summary(wrapped)
                                  if r["layer"] in group},
                         "steps": len(tuned.losses), "loss_before": tuned.window(last=False),
                         "loss_after": tuned.window(last=True), "loss_curve": tuned.curve(),
                         "replicas": strategy.num_replicas_in_sync,
                         "seconds": round(time.perf_counter() - start, 2)})
            _checkpoint(run, k, wrapped, head, key, rows, chief)
    if chief:
        saved = outputs.save(wrapped, run, front_end=front_end, msft={"groups": groups, "stages": rows})
        if head is not None:
            rundir.TrainDir(run.path).save_head(head)
        rundir.write_json(run.state, {"key": key, "rows": rows, "finished": True})
        shutil.rmtree(run.checkpoints, ignore_errors=True)
        log.info("msft: %d stages, %.1f KiB", len(groups), saved.size.size_bytes / 1024)
    return MSFTResult(wrapped, rows, groups, head, config)


def _checkpoint(run: rundir.MSFTDir, k: int, wrapped: keras.Model, head: list[np.ndarray] | None,
                key: dict[str, Any], rows: list[dict[str, Any]], chief: bool) -> None:
    """Stage ``k``'s model and head, then its row (the row says the stage is done); older stages go."""
    if not chief:  # saving reads BatchNorm statistics collectively: every worker saves
        with tempfile.TemporaryDirectory(prefix="tfadvq-worker-") as scratch:
            wrapped.save(Path(scratch) / rundir.QuantDir.wrapped.name)
        return
    checkpoint = run.stage(k)
    rundir.atomic_save_model(wrapped, checkpoint.wrapped)
    if head is not None:
        rundir.TrainDir(checkpoint.path).save_head(head)
    rundir.write_json(run.state, {"key": key, "rows": rows, "finished": False})
    if k > 1:
        shutil.rmtree(run.stage(k - 1).path, ignore_errors=True)
