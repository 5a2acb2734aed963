"""The paper's four claims on the evidence test bed, each difference with its paired interval over speakers.

Claims (issue 21), each ``A <= B`` tested as the paired Delta = A - B (EER points, minDCF):

* (a) KMQAT vs tfmot clustering and vs uniform QAT, at each width, post-training and fine-tuned;
* (b) mixed precision (HAWQ-V2 bits within the *converted* bytes of uniform b-bit KMQAT) vs uniform KMQAT;
* (c) MSFT vs one-shot QAT of the same mixed bits, at equal total steps (MSFT: ``stages`` x steps/stages);
* (d) 1 bit: adaptive vs static binary, static vs plain sign (larq ``ste_sign``);
* ``a_why`` (only when asked): the ablation that explains (a) vs tfmot clustering, KMQAT variants in :data:`KMQAT`
  (the codebook trained by the loss, refit cadence, tfmot's layers only).  tfmot leaves ``DepthwiseConv2D`` float
  (:func:`tfmot_bits`), so its model's bytes count them at 32 bits and the ``*_tfmot_layers`` variants match them.

Everything runs the library's own calls: the FP32 model is :func:`tfadvq.training.train` of
``tfadvq/configs/demo.yaml`` on the test bed's training speakers; KMQAT and binary models come from
:func:`tfadvq.quant.post_training.post_training`; the mixed bits from :func:`tfadvq.quant.allocate.plan`
and :func:`tfadvq.quant.mixed_run.quantize_within` (what ``tfadvq mixed`` runs: the converted file within the
target); MSFT is :func:`tfadvq.quant.msft.msft`; every fine-tune is :func:`tfadvq.quant.finetune.finetune`
(AAM from the trained head, loss every step); models are scored stripped, the device's way
(:func:`tfadvq.scoring.embed_utterances`, 200-frame windows).

Budgets: per seed, ``--steps`` batches are drawn once from the training pipeline (``pipeline.seed`` =
the seed) and stored; every method of that seed trains on exactly those batches in that order (MSFT's
stages continue through them: stage k gets batches (k-1)*S/K .. k*S/K).  Seeds change the batches.

A *cell* is one method x width x seed (or the post-training model, ``ptq``): its test-utterance embeddings
and record are kept in ``WORKDIR/cells/<cell>/``, so a re-run (after an interruption, or to add a method)
reuses every finished cell and adding a method costs its fine-tunes plus one embedding pass each.  The
report is rebuilt from whatever cells exist: ``claims.json`` says per claim and width which cells ran.

Statistics (:mod:`tfadvq.metrics`): per method and seed, EER and minDCF with 95 % intervals from a
bootstrap over test speakers; per compared pair, the paired Delta over the same speaker draws, (i) per
seed (both methods trained on the same batches) and (ii) pooled: the Delta of the seed-mean EER, each
draw also resampling each method's seeds.  A claim is "holds" only when the pooled interval of Delta
EER lies below 0, "fails" when above, else "not resolved".

Run: ``nice -n 10 .venv/bin/python benchmarks/claims.py --workdir DIR`` (corpus and FP32 model are made
there when missing; ``--corpus``/``--model`` reuse others); ``--quick`` runs everything on a tiny corpus
and model with 2 steps (the smoke test).  Writes ``benchmarks/results/claims.json`` (``--out``) and the
figures beside it.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tfadvq
from tfadvq import metrics, rundir
from tfadvq.compat import keras, tf
from tfadvq.config import dump_yaml, load_yaml, to_dict
from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
from tfadvq.model_io import load_model
from tfadvq.quant import allocate, sensitivity, spec
from tfadvq.quant.finetune import Finetuned, finetune, finetune_config
from tfadvq.quant.msft import MSFTSettings, msft
from tfadvq.quant.post_training import PTQSettings, post_training
from tfadvq.report import print_table
from tfadvq.scoring import embed_utterances, keras_embedder
from converters import ConvertedSizes
from tfadvq.quant.mixed_run import quantize_within
from tfadvq.train_config import TrainConfig, load_config, packaged_config
from tfadvq.training import TrainingData, fit_embedding_model, train, training_data
from tfadvq.voxceleb import load_corpus
from tfadvq.windows import ScoringConfig

import testbed  # noqa: E402,I001  (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
QUICK_CORPUS = SynthConfig(speakers=8, test_speakers=6, utts=4, seed=0)


@dataclasses.dataclass(frozen=True)
class Kmqat:
    """A KMQAT variant of the (a) ablation: what trains the codebook, which layers, how often it is re-fitted."""

    train_codebook: bool = False  # KMeansQuantizer(train_codebook=...): the loss moves the table, no refits
    tfmot_layers: bool = False  # only the layers tfmot clusters (:func:`tfmot_bits`): the same bytes as tfmot
    refresh_steps: int | None = None  # None: --refresh-steps (0: only after the last step; -1: never)


KMQAT = {"kmqat": Kmqat(), "kmqat_tfmot_layers": Kmqat(tfmot_layers=True),
         "kmqat_trained": Kmqat(train_codebook=True),
         "kmqat_trained_tfmot_layers": Kmqat(train_codebook=True, tfmot_layers=True),
         "kmqat_refresh_end": Kmqat(refresh_steps=0), "kmqat_refresh5": Kmqat(refresh_steps=5),
         "kmqat_frozen": Kmqat(refresh_steps=-1)}
"""KMQAT as the claims run it: ``kmqat`` is the library's default quantizer (k-means refits every
``--refresh-steps``); ``kmqat_trained`` the codebook trained by the loss from its k-means start, which fixed (a) vs
tfmot (README, claims; ``a_why`` is the ablation that found it)."""


@dataclasses.dataclass(frozen=True)
class Claim:
    key: str
    statement: str
    widths: tuple[int, ...]
    methods: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]  # (A, B): the claim is A <= B
    ptq: bool  # also compare the post-training models


CLAIMS = {
    "d": Claim("d", "1 bit: adaptive < static < sign", (1,), ("binary_adaptive", "binary_static", "sign"),
               (("binary_adaptive", "binary_static"), ("binary_static", "sign")), True),
    "b": Claim("b", "mixed <= uniform KMQAT at equal converted bytes", (2, 3), ("mixed", "kmqat"),
               (("mixed", "kmqat"),), True),
    "c": Claim("c", "MSFT <= one-shot QAT of the same bits at equal steps", (2, 3), ("mixed_msft", "mixed"),
               (("mixed_msft", "mixed"),), False),
    "a": Claim("a", "KMQAT <= tfmot clustering and <= uniform QAT", (2, 3, 4, 6, 8),
               ("kmqat_trained", "kmqat_trained_tfmot_layers", "kmqat", "kmqat_tfmot_layers", "tfmot_cluster",
                "uniform_qat"),
               (("kmqat_trained", "tfmot_cluster"), ("kmqat_trained_tfmot_layers", "tfmot_cluster"),
                ("kmqat_trained", "uniform_qat"), ("kmqat", "tfmot_cluster"), ("kmqat_tfmot_layers", "tfmot_cluster"),
                ("kmqat", "uniform_qat")), True),
}

VARIANTS = tuple(m for m in KMQAT if m != "kmqat")
CLAIMS["a_why"] = Claim("a_why", "ablation of (a) vs tfmot clustering: KMQAT variants", (2,),
                        ("kmqat", "tfmot_cluster", *VARIANTS),
                        tuple((m, "tfmot_cluster") for m in VARIANTS) + tuple((m, "kmqat") for m in VARIANTS), True)
PRIORITY = ("d", "b", "c", "a")  # where quantization hurts first (the ablation runs only when asked)
# Methods without a post-training model of their own: MSFT quantizes as it trains, and these variants start from
# exactly kmqat's (their difference is in the fine-tune).
SAME_PTQ = {"mixed_msft", "kmqat_trained", "kmqat_trained_tfmot_layers", "kmqat_refresh_end", "kmqat_refresh5",
            "kmqat_frozen"}
# Plain k-means codebooks for every post-training model (what was measured; the recipes' QAT path too): the
# fine-tune that follows is what is compared, and every method starts from the same kind of codebook.
PLAIN = {"weighted": False, "bias_correction": False}


@dataclasses.dataclass(frozen=True)
class Cell:
    method: str
    bits: int
    seed: int | None  # None: the post-training model (no fine-tune)

    @property
    def name(self) -> str:
        return f"{self.method}_b{self.bits}_" + ("ptq" if self.seed is None else f"s{self.seed}")


def plan_cells(claims: list[str], widths: dict[str, tuple[int, ...]], seeds: list[int]) -> list[Cell]:
    """Every cell the claims need, in run order: claim by claim, width by width, seed 0 of every method
    first (then the post-training models, then the other seeds), so a cut run still compares methods."""
    cells: list[Cell] = []
    for key in claims:
        claim = CLAIMS[key]
        for bits in widths.get(key, claim.widths):
            tuned = [[Cell(m, bits, s) for m in claim.methods] for s in seeds]
            ptq = [Cell(m, bits, None) for m in claim.methods if claim.ptq and m not in SAME_PTQ]
            for cell in [*tuned[0], *ptq, *itertools.chain(*tuned[1:])]:
                if cell not in cells:
                    cells.append(cell)
    return cells


# --------------------------------------------------------------------------- set-up


@dataclasses.dataclass
class Context:
    args: argparse.Namespace
    bed: testbed.TestBed
    train_utterances: list  # the fine-tune data: the training part of --train-corpus (default: the test bed's)
    model_dir: Path
    fp: keras.Model
    train_config: TrainConfig  # the FP32 model's own
    config: TrainConfig  # its fine-tune: ``args.steps`` steps, lr x ``args.lr_scale``
    head: list[np.ndarray]
    num_classes: int
    mixed: allocate.MixedSettings
    scoring: ScoringConfig


def corpus_dir(args: argparse.Namespace) -> Path:
    """The test bed's corpus: ``--corpus``, else made (or completed) in the work directory."""
    if args.corpus is not None:
        return args.corpus
    out = args.workdir / "corpus"
    if not (out / "corpus.json").is_file() or not json.loads((out / "corpus.json").read_text())["complete"]:
        config = QUICK_CORPUS if args.quick else testbed.CORPUS
        synthesize_corpus(out, config, progress=not args.quick).require_complete()
    return out


def model_recipe(args: argparse.Namespace, corpus: Path) -> TrainConfig:
    """demo.yaml on the test bed (quick: one epoch of 2 steps of 8 crops, a narrower network)."""
    config = load_config(packaged_config("demo"))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, corpus=str(corpus)))
    if args.quick:
        config = dataclasses.replace(config, epochs=1, steps_per_epoch=2,
                                     model_args={**config.model_args, "base_width": 4, "embed_dim": 16},
                                     pipeline=dataclasses.replace(config.pipeline, batch_size=8))
    return config


def setup(args: argparse.Namespace) -> Context:
    corpus = corpus_dir(args)
    bed = testbed.load(corpus, per_pair=args.per_pair)
    model_dir = args.model or args.workdir / "model"
    run = rundir.TrainDir(model_dir)
    if not run.model.is_file():
        train(model_recipe(args, corpus), model_dir, verbose=0 if args.quick else 2)
    train_config = load_yaml(TrainConfig, run.config)
    batch = 8 if args.quick else args.batch_size
    base = dataclasses.replace(train_config, pipeline=dataclasses.replace(train_config.pipeline, batch_size=batch),
                               data=dataclasses.replace(train_config.data, corpus=str(args.train_corpus or corpus)))
    config = finetune_config(base, 1, args.lr_scale, args.steps)
    head = run.load_head()
    mixed = allocate.MixedSettings(batches=1 if args.quick else args.trace_batches,
                                   probes=2 if args.quick else args.probes)
    train_corpus = args.train_corpus or corpus
    return Context(args, bed, load_corpus(train_corpus).train, model_dir, load_model(model_dir), base, config,
                   head, int(np.shape(head[0])[1]), mixed, ScoringConfig(window_frames=args.window_frames))


def seed_batches(ctx: Context, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``--steps`` fine-tune batches of ``seed`` (drawn once from the training pipeline, then stored)."""
    path = ctx.args.workdir / "data" / f"seed{seed}_steps{ctx.args.steps}_batch{ctx.config.pipeline.batch_size}.npz"
    if not path.is_file():
        pipeline = dataclasses.replace(ctx.config.pipeline, seed=seed)
        config = dataclasses.replace(ctx.config, seed=seed, pipeline=pipeline)
        data = training_data(config, ctx.train_utterances)
        batches = list(data.dataset.take(ctx.args.steps).as_numpy_iterator())
        path.parent.mkdir(parents=True, exist_ok=True)
        x, y = np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches])
        rundir.atomic_save_with(path, lambda tmp: _save(tmp, np.savez, x=x, y=y))
    with np.load(path) as stored:
        return stored["x"], stored["y"]


def _save(path: Path, writer, *args, **kwargs) -> None:
    """numpy's writers add their suffix to a file name; given an open file they write where asked."""
    with open(path, "wb") as f:
        writer(f, *args, **kwargs)


def continuing(x: np.ndarray, y: np.ndarray, num_classes: int, per_fit: int) -> tuple[TrainingData, Any]:
    """The stored batches as training data whose k-th ``fit`` starts at batch ``k * per_fit``: a one-shot
    fine-tune (one fit) reads batches 0..S-1; MSFT's stages (one ``fit`` each, ``per_fit`` steps) read the
    same batches in the same order, not the first S/K again.  (Counting consumed batches instead would
    drift: every ``fit`` reads a few batches ahead that it never trains on.)"""
    fits = itertools.count()

    def batches():
        start = next(fits) * per_fit
        for i in itertools.count(start):
            yield x[i % len(x)], y[i % len(x)]

    dataset = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec(x.shape[1:], tf.float32), tf.TensorSpec(y.shape[1:], tf.int32)))
    return TrainingData(dataset, {}, num_classes, len(x)), fits  # fits: how many fits read it


def mixed_plan(ctx: Context, bits: int) -> dict[str, Any]:
    """The mixed allocation within the converted bytes of uniform ``bits``-bit KMQAT (made once, stored)."""
    path = ctx.args.workdir / "plans" / f"mixed_b{bits}.json"
    while not path.is_file() and not _hold(path.with_suffix(".worker")):
        time.sleep(10)  # another worker is planning it
    if path.is_file():
        return json.loads(path.read_text())
    x, _ = seed_batches(ctx, 0)
    started = time.perf_counter()
    batches = sensitivity.objective_batches(tf.data.Dataset.from_tensor_slices(x), ctx.mixed.batches)
    if ctx.args.quick:  # no conversion (the converter's TFLM check takes ~30 s a model): the average bits
        target, sizes = None, None
        plan = allocate.plan(ctx.fp, batches, ctx.mixed, avg_bits=float(bits))
    else:
        sizes = ConvertedSizes(ctx.scoring.window_frames)
        uniform = post_training(ctx.fp, PTQSettings(bits=bits, **PLAIN), None, progress=False).wrapped
        target = sizes.lut_bytes(uniform)
        plan = allocate.plan(ctx.fp, batches, ctx.mixed, target_bytes=target,
                             float_tflite_bytes=sizes.float_bytes(ctx.fp))
    plan, _, tflite, rounds = quantize_within(ctx.fp, plan, ctx.mixed, target, sizes)
    spec_path = path.with_suffix(".yaml")
    rundir.atomic_save_with(spec_path, lambda tmp: dump_yaml(plan.allocation.spec(), tmp))
    record = {"target_tflite_bytes": target, "uniform_tflite_bytes": target, "mixed_tflite_bytes": tflite,
              "planned_bytes": plan.allocation.planned_bytes, "avg_bits": round(plan.allocation.avg_bits, 3),
              "size_rounds": rounds, "layer_bits": plan.allocation.bits, "sensitivities": plan.chosen(),
              "spec": str(spec_path), "seconds": round(time.perf_counter() - started, 1),
              "settings": to_dict(ctx.mixed)}
    rundir.write_json(path, record)
    return record


# --------------------------------------------------------------------------- methods


def quantized(ctx: Context, cell: Cell) -> keras.Model:
    """The post-training model of ``cell``'s method (tfadvq-wrapped, or tfmot-clustered)."""
    m, b = cell.method, cell.bits
    if m == "kmqat":
        return post_training(ctx.fp, PTQSettings(bits=b, **PLAIN), None, progress=False).wrapped
    if m in KMQAT:  # the same plain k-means codebooks, per tensor; the variant's coverage and codebook training
        v = KMQAT[m]
        return tfadvq.quantize(ctx.fp, tfmot_bits(ctx.fp, b) if v.tfmot_layers else b, per_channel=False,
                               quantizer={"name": "kmeans", "train_codebook": v.train_codebook}, progress=False)
    if m in ("binary_static", "binary_adaptive"):
        settings = PTQSettings(bits=1, per_channel=True, binary=m.removeprefix("binary_"), **PLAIN)
        return post_training(ctx.fp, settings, None, progress=False).wrapped
    if m == "sign":
        import binary  # noqa: F401  (registers larq's ste_sign as the "larq_sign" table quantizer)

        return tfadvq.ptq(ctx.fp, 1, binary="larq_sign", per_channel=True, progress=False)
    if m == "uniform_qat":
        return tfadvq.quantize(ctx.fp, b, quantizer="uniform", per_channel=True, progress=False)
    if m in ("mixed", "mixed_msft"):
        plan = mixed_plan(ctx, b)
        bits = spec.load_spec(Path(plan["spec"]))
        binary = ctx.mixed.binary if 1 in plan["layer_bits"].values() else None
        return tfadvq.quantize(ctx.fp, bits, per_channel=ctx.mixed.per_channel, quantizer=ctx.mixed.quantizer,
                               binary=binary, progress=False)
    if m == "tfmot_cluster":
        import tensorflow_model_optimization as tfmot

        cluster = tfmot.clustering.keras
        targets = {name for name, w in tfmot_bits(ctx.fp, b).items() if w is not None}
        init = cluster.CentroidInitialization.KMEANS_PLUS_PLUS

        def wrap(layer):
            return (cluster.cluster_weights(layer, number_of_clusters=2 ** b, cluster_centroids_init=init)
                    if layer.name in targets else layer)

        copy = keras.models.clone_model(ctx.fp)
        copy.set_weights(ctx.fp.get_weights())
        return keras.models.clone_model(copy, clone_function=wrap)
    raise ValueError(f"unknown method {m!r}")


def tfmot_bits(fp: keras.Model, bits: int) -> dict[str, int | None]:
    """The bits spec of what tfmot clustering quantizes: ``bits`` for the layers whose class tfmot's clustering
    registry lists weights for, float for the rest.  tfmot 0.8.1 lists none for DepthwiseConv2D ("non-clusterable
    due to big unrecoverable accuracy loss"), so a tfmot-clustered model keeps those float: its bytes count them
    at 32 bits, and the equal-coverage KMQAT variant leaves them float too."""
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import ClusteringRegistry

    clusterable = ClusteringRegistry._LAYERS_WEIGHTS_MAP  # noqa: SLF001 (tfmot's own table; no public accessor)
    return {name: b if b is not None and clusterable.get(type(fp.get_layer(name))) else None
            for name, b in spec.resolve(fp, bits).items()}


def plain_of(cell: Cell, model: keras.Model) -> keras.Model:
    """What the device gets: the stripped model."""
    if cell.method == "tfmot_cluster":
        import tensorflow_model_optimization as tfmot

        return tfmot.clustering.keras.strip_clustering(model)
    return tfadvq.strip(model)[0]


def tune(ctx: Context, cell: Cell, model: keras.Model, cell_dir: Path) -> tuple[keras.Model, dict[str, Any]]:
    """Fine-tune ``model`` on the seed's batches (MSFT: from the FP32 model, stage by stage)."""
    x, y = seed_batches(ctx, cell.seed)
    refresh, stages = ctx.args.refresh_steps, ctx.args.stages
    per_stage = max(1, ctx.args.steps // stages)
    data, fits = continuing(x, y, ctx.num_classes, per_stage if cell.method == "mixed_msft" else len(x))
    if cell.method == "mixed_msft":
        plan = mixed_plan(ctx, cell.bits)
        settings = MSFTSettings(steps_per_stage=per_stage, stages=stages, objective="aam",
                                lr_scale=ctx.args.lr_scale, refresh_steps=refresh,
                                per_channel=ctx.mixed.per_channel, quantizer=ctx.mixed.quantizer)
        result = msft(ctx.fp, spec.load_spec(Path(plan["spec"])), data, ctx.train_config, settings,
                      out=cell_dir / "msft", head_weights=ctx.head, sensitivities=plan["sensitivities"])
        record = {"steps": sum(r["steps"] for r in result.rows), "stages": len(result.rows),
                  "stage_rows": [{k: v for k, v in r.items() if k != "bits"} for r in result.rows],
                  "loss_curve": [p for r in result.rows for p in r["loss_curve"]]}
        return result.model, {**record, "fits": next(fits)}
    if cell.method in KMQAT and KMQAT[cell.method].refresh_steps is not None:
        refresh = KMQAT[cell.method].refresh_steps
    if cell.method == "tfmot_cluster" or refresh < 0:  # no codebook refresh at all (tfmot: its own update)
        from tfadvq.callbacks import StepLosses

        steps = StepLosses()
        fit_embedding_model(model, data.dataset, data.num_classes, ctx.config, "aam", head_weights=ctx.head,
                            steps_per_epoch=data.steps_per_epoch, callbacks=[steps], verbose=0)
        record = Finetuned(steps.losses, None).record()
    else:
        record = finetune(model, data, ctx.config, "aam", head_weights=ctx.head, refresh_steps=refresh,
                          verbose=0).record()
    return model, {**record, "fits": next(fits)}


def run_cell(ctx: Context, cell: Cell) -> dict[str, Any]:
    """Build, fine-tune and embed one cell; its record (also stored, last, in the cell's directory)."""
    cell_dir = ctx.args.workdir / "cells" / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if cell.method == "fp32":
        model, record = ctx.fp, {}
        size = tfadvq.model_size(ctx.fp)
    elif cell.method == "mixed_msft":
        model, record = tune(ctx, cell, None, cell_dir)
        size = tfadvq.model_size(model)
    else:
        model, record = quantized(ctx, cell), {}
        if cell.seed is not None:
            model, record = tune(ctx, cell, model, cell_dir)
    tuned_seconds = time.perf_counter() - started
    plain = model if cell.method == "fp32" else plain_of(cell, model)
    if cell.method == "tfmot_cluster":  # b-bit indices into the clustered values; its depthwise kernels float
        size = tfadvq.model_size(plain, tfmot_bits(ctx.fp, cell.bits))
    elif cell.method not in ("fp32", "mixed_msft"):
        size = tfadvq.model_size(model)
    embedded = embed_utterances(keras_embedder(plain), ctx.bed.corpus.test, ctx.scoring, progress=False)
    matrix = np.stack([embedded[k] for k in ctx.bed.trials.keys]).astype(np.float32)
    rundir.atomic_save_with(cell_dir / "embeddings.npy", lambda tmp: _save(tmp, np.save, matrix))
    record = {"method": cell.method, "bits": cell.bits, "seed": cell.seed, "size_bytes": size.size_bytes,
              **record, "seconds_build_tune": round(tuned_seconds, 1),
              "seconds_embed": round(time.perf_counter() - started - tuned_seconds, 1)}
    rundir.write_json(cell_dir / "record.json", record)
    return record


def take(ctx: Context, cell: Cell) -> bool:
    """Claim ``cell`` for this process (several workers may share a work directory)."""
    return _hold(ctx.args.workdir / "cells" / cell.name / ".worker")


def _hold(lock: Path) -> bool:
    """Whether this process holds ``lock`` (taken now if free): False when another live process holds it.
    A holder that died (its pid gone) loses it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or 0)
                os.kill(holder, 0)
                return holder == os.getpid()
            except (ProcessLookupError, ValueError):
                lock.unlink(missing_ok=True)  # a dead worker's claim
                continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def finished(ctx: Context, cell: Cell) -> dict[str, Any] | None:
    path = ctx.args.workdir / "cells" / cell.name / "record.json"
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------- report


def scores_of(ctx: Context, cell: Cell) -> np.ndarray:
    return ctx.bed.trials.scores(np.load(ctx.args.workdir / "cells" / cell.name / "embeddings.npy"))


def method_row(ctx: Context, method: str, bits: int, seeds: list, records: dict[Cell, dict]) -> dict[str, Any]:
    """One method at one width: per-seed EER/minDCF with speaker-level intervals, seed mean and spread."""
    t = ctx.bed.trials
    done = [s for s in seeds if Cell(method, bits, s) in records]
    name = method if seeds != [None] or method == "fp32" else f"{method}_ptq"
    row: dict[str, Any] = {"method": name, "bits": bits,
                           "seeds_run": done, "seeds_missing": [s for s in seeds if s not in done]}
    if not done:
        return {**row, "status": "not run"}
    per_seed = []
    for s in done:
        boot = metrics.bootstrap(scores_of(ctx, Cell(method, bits, s)), t.labels, t.groups,
                                 ctx.args.resamples)
        per_seed.append({"seed": s, "eer": boot.eer.rounded(), "min_dcf": boot.min_dcf.rounded(4)})
    eers = [p["eer"]["value"] for p in per_seed]
    first = records[Cell(method, bits, done[0])]
    hard = {kind: round(float(np.mean([metrics.compute_eer(scores_of(ctx, Cell(method, bits, s))[t.subset(kind)],
                                                             t.labels[t.subset(kind)])[0] for s in done])), 3)
            for kind in testbed.KINDS[1:] if np.any(t.kinds == testbed.KINDS.index(kind))}
    return {**row, "status": "run" if not row["seeds_missing"] else "partial",
            "eer": round(float(np.mean(eers)), 3), "eer_seed_std": round(float(np.std(eers)), 3),
            "min_dcf": round(float(np.mean([p["min_dcf"]["value"] for p in per_seed])), 4),
            "eer_ci95_seed0": [per_seed[0]["eer"]["low"], per_seed[0]["eer"]["high"]],
            "size_bytes": first["size_bytes"], "per_seed": per_seed, "eer_by_nontarget_kind": hard,
            "loss": [{"seed": s, **{k: records[Cell(method, bits, s)].get(k) for k in
                                    ("steps", "first_loss", "last_loss", "fits")}} for s in done]}


def pair_row(ctx: Context, a: str, b: str, bits: int, seeds: list, records: dict[Cell, dict]) -> dict[str, Any]:
    """Paired Delta (A - B) per seed and pooled over seeds, over the same speaker draws."""
    t = ctx.bed.trials
    common = [s for s in seeds if Cell(a, bits, s) in records and Cell(b, bits, s) in records]
    row: dict[str, Any] = {"a": a, "b": b, "bits": bits, "stage": "ptq" if seeds == [None] else "finetuned",
                           "seeds": common}
    if not common:
        return {**row, "status": "not run"}
    sa = np.stack([scores_of(ctx, Cell(a, bits, s)) for s in common])
    sb = np.stack([scores_of(ctx, Cell(b, bits, s)) for s in common])
    pooled = metrics.paired_bootstrap(sa, sb, t.labels, t.groups, ctx.args.resamples)
    per_seed = [{"seed": s, "delta_eer": d.eer.rounded(), "delta_min_dcf": d.min_dcf.rounded(4)}
                for s, d in ((s, pooled if len(common) == 1 else
                              metrics.paired_bootstrap(sa[i], sb[i], t.labels, t.groups, ctx.args.resamples))
                             for i, s in enumerate(common))]
    verdict = ("holds" if pooled.eer.high < 0 else "fails" if pooled.eer.low > 0 else "not resolved")
    return {**row, "status": "run" if len(common) == len(seeds) else "partial",
            "delta_eer": pooled.eer.rounded(), "delta_min_dcf": pooled.min_dcf.rounded(4),
            "verdict": verdict, "per_seed": per_seed, "speakers": pooled.groups}


def report(ctx: Context, cells: list[Cell], started: float, partial: bool) -> dict[str, Any]:
    records = {c: r for c in cells if (r := finished(ctx, c)) is not None}
    fp = Cell("fp32", 32, None)
    claims = {}
    for key in ctx.args.claims:
        claim = CLAIMS[key]
        widths = []
        for bits in ctx.args.widths.get(key, claim.widths):
            stages = [("finetuned", ctx.args.seeds)] + ([("ptq", [None])] if claim.ptq else [])
            methods = [method_row(ctx, m, bits, seeds, records) for _, seeds in stages for m in claim.methods
                       if not (seeds == [None] and m in SAME_PTQ)]
            pairs = [pair_row(ctx, a, b, bits, seeds, records) for _, seeds in stages for a, b in claim.pairs
                     if not (seeds == [None] and SAME_PTQ & {a, b})]
            extra = {}
            if key in "bc" and (plan := ctx.args.workdir / "plans" / f"mixed_b{bits}.json").is_file():
                extra["mixed_plan"] = {k: v for k, v in json.loads(plan.read_text()).items()
                                       if k not in ("sensitivities", "spec")}
            widths.append({"bits": bits, "methods": methods, "deltas": pairs, **extra})
        claims[key] = {"statement": claim.statement, "widths": widths}
    fp_row = method_row(ctx, "fp32", 32, [None], records) if fp in records else {"status": "not run"}
    a = ctx.args
    report = {
        **header(),
        "config": {
            "corpus": str(corpus_dir(a)), "trials": ctx.bed.trials.counts(),
            "trial_design": "benchmarks/testbed.py: all target pairs; 8 random utterance pairs per pair of test "
                            "speakers, all pairs for speakers sharing a base TTS voice; group = test speaker",
            "fp_model": str(ctx.model_dir), "fp_recipe": to_dict(ctx.train_config),
            "train_corpus": str(a.train_corpus or corpus_dir(a)), "scoring": to_dict(ctx.scoring),
            "finetune": {"objective": "aam", "head": "trained (head.npz)", "steps": a.steps,
                         "batch_size": ctx.config.pipeline.batch_size, "optimizer": ctx.config.optimizer.name.value,
                         "peak_lr": ctx.config.optimizer.lr, "lr_scale": a.lr_scale,
                         "schedule": ctx.config.schedule.decay.value, "codebook_refresh_steps": a.refresh_steps,
                         "msft_stages": a.stages, "msft_steps_per_stage": max(1, a.steps // a.stages),
                         "data": "per seed: --steps batches of the training pipeline (pipeline.seed = seed), "
                                 "stored; every method of a seed reads them in the same order"},
            "post_training": {"kmqat_binary": to_dict(PTQSettings(bits=2, **PLAIN)) | {"bits": "per cell"},
                              "mixed": "allocate.plan + quant.mixed_run.quantize_within (MixedSettings in mixed_plan)"},
            "seeds": a.seeds, "resamples": a.resamples,
            "statistics": "tfadvq.metrics.bootstrap / paired_bootstrap over test speakers (95 %); pooled delta = "
                          "mean over seeds of A minus mean over seeds of B, each draw resampling speakers and each "
                          "method's seeds; per_seed deltas pair the two methods trained on the same batches",
            "quick": a.quick, "partial": partial, "seconds": round(time.perf_counter() - started, 1),
            "cells_run": sorted(c.name for c in records), "cells_not_run": sorted(c.name for c in cells
                                                                                  if c not in records)},
        "fp32": fp_row,
        "claims": claims,
    }
    rundir.write_json(a.out, report)
    return report


def header() -> dict[str, str]:
    from bench_common import header as common

    return common("claims")


def draw(ctx: Context, result: dict[str, Any], cells: list[Cell]) -> list[str]:
    """EER vs bytes (seed-mean EER, bars: seed-0 speaker interval) and the loss curves of every fine-tune."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfadvq.plots.mixed import plot_eer_vs_size

    out = []
    rows = [{**m, "eer_ci95": m.get("eer_ci95_seed0")} for c in result["claims"].values() for w in c["widths"]
            for m in w["methods"] if m.get("status") != "not run"]
    if rows:
        path = ctx.args.out.with_name(ctx.args.out.stem + "_eer_vs_bytes.png")
        plot_eer_vs_size(rows, path, title="EER (seed mean; bars: 95 % over speakers, seed 0) vs model bytes")
        out.append(str(path))
    curves = [(c, r) for c in cells if c.seed is not None and (r := finished(ctx, c)) and r.get("loss_curve")]
    if curves:
        fig, ax = plt.subplots(figsize=(8, 5))
        names = sorted({(c.method, c.bits) for c, _ in curves})
        for c, r in curves:
            steps, loss = zip(*r["loss_curve"])
            if c.method == "mixed_msft":  # stage curves restart their step count
                steps = np.arange(1, len(loss) + 1) * (r["steps"] / len(loss))
            ax.plot(steps, loss, color=f"C{names.index((c.method, c.bits)) % 10}", lw=1,
                    label=f"{c.method} {c.bits} bit" if c.seed == ctx.args.seeds[0] else None)
        ax.set_xlabel("fine-tune step")
        ax.set_ylabel("AAM loss (window mean)")
        ax.legend(fontsize=7)
        path = ctx.args.out.with_name(ctx.args.out.stem + "_loss_curves.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(str(path))
    return out


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, claim in result["claims"].items():
        for w in claim["widths"]:
            for d in w["deltas"]:
                rows.append({"claim": key, "bits": w["bits"], "stage": d["stage"], "A - B": f"{d['a']} - {d['b']}",
                             "seeds": len(d.get("seeds", [])),
                             "dEER": d["delta_eer"]["value"] if "delta_eer" in d else None,
                             "dEER 95%": (f"[{d['delta_eer']['low']:.2f}, {d['delta_eer']['high']:.2f}]"
                                          if "delta_eer" in d else None),
                             "verdict": d.get("verdict", d["status"])})
    return rows


def markdown(result: dict[str, Any]) -> str:
    """The README's evidence table: every compared pair, its EERs and the paired deltas with intervals."""
    lines = ["| claim | bits | stage | A - B | seeds | EER A | EER B | Delta EER [95 %] | Delta minDCF [95 %] "
             "| verdict |", "| --- " * 10 + "|"]
    for key, claim in result["claims"].items():
        for w in claim["widths"]:
            eer = {m["method"]: m.get("eer") for m in w["methods"]}
            for d in w["deltas"]:
                suffix = "_ptq" if d["stage"] == "ptq" else ""
                if "delta_eer" not in d:
                    lines.append(f"| ({key}) | {w['bits']} | {d['stage']} | {d['a']} - {d['b']} | 0 | | | not run "
                                 "| | |")
                    continue
                e, m = d["delta_eer"], d["delta_min_dcf"]
                lines.append(f"| ({key}) | {w['bits']} | {d['stage']} | {d['a']} - {d['b']} | {len(d['seeds'])} | "
                             f"{eer[d['a'] + suffix]:.2f} | {eer[d['b'] + suffix]:.2f} | "
                             f"{e['value']:+.2f} [{e['low']:+.2f}, {e['high']:+.2f}] | "
                             f"{m['value']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}] | {d['verdict']} |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("runs/claims"), help="cells, data, plans (resumable)")
    p.add_argument("--corpus", type=Path, default=None, help="test bed corpus (default: made in WORKDIR)")
    p.add_argument("--model", type=Path, default=None, help="FP32 train directory (default: trained in WORKDIR)")
    p.add_argument("--train-corpus", type=Path, default=None,
                   help="corpus whose training part the fine-tunes read (default: the test bed's; give the "
                        "one --model was trained on)")
    p.add_argument("--window-frames", type=int, default=200, help="scoring window (the deployed input)")
    p.add_argument("--claims", nargs="+", default=list(PRIORITY), choices=list(CLAIMS))
    p.add_argument("--widths", nargs="+", default=[], metavar="CLAIM=B[,B]",
                   help="widths per claim, e.g. a=2,4 b=2 (default: each claim's own)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="fine-tune seeds (default 0 1 2)")
    p.add_argument("--steps", type=int, default=100, help="fine-tune steps, every method (MSFT in total)")
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr-scale", type=float, default=0.5)
    p.add_argument("--refresh-steps", type=int, default=25)
    p.add_argument("--trace-batches", type=int, default=2)
    p.add_argument("--probes", type=int, default=8)
    p.add_argument("--per-pair", type=int, default=8, help="non-target utterance pairs per speaker pair")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--max-cells", type=int, default=None, help="stop after running this many new cells")
    p.add_argument("--report-only", action="store_true", help="rebuild claims.json from the finished cells")
    p.add_argument("--markdown", action="store_true", help="also print the README's table")
    p.add_argument("--quick", action="store_true", help="tiny corpus/model, 2 steps, 2 seeds: a smoke test")
    p.add_argument("--out", type=Path, default=RESULTS / "claims.json")
    args = p.parse_args(argv)
    args.widths = {k: tuple(int(b) for b in v.split(",")) for k, v in (w.split("=") for w in args.widths)}
    if args.quick:
        args.steps, args.stages, args.resamples = 2, 2, 50
    args.seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    started = time.perf_counter()
    ctx = setup(args)
    cells = [Cell("fp32", 32, None), *plan_cells(args.claims, args.widths, args.seeds)]
    todo = [c for c in cells if finished(ctx, c) is None]
    tqdm.write(f"claims: {len(cells) - len(todo)} of {len(cells)} cells finished in {args.workdir}; "
               f"{ctx.bed.trials.counts()}")
    ran = 0
    if not args.report_only:
        bar = tqdm(todo, desc="cells", unit="cell")
        for cell in bar:
            if args.max_cells is not None and ran >= args.max_cells:
                break
            if finished(ctx, cell) is not None or not take(ctx, cell):
                continue  # done or being done by another worker on the same work directory
            bar.set_postfix_str(cell.name)
            record = run_cell(ctx, cell)
            ran += 1
            t = ctx.bed.trials
            eer = metrics.compute_eer(scores_of(ctx, cell), t.labels)[0]
            tqdm.write(f"{cell.name}: EER {eer:.2f} %, {record['seconds_build_tune']} s build/tune, "
                       f"{record['seconds_embed']} s embed, last loss {record.get('last_loss')}")
    result = report(ctx, cells, started, partial=any(finished(ctx, c) is None for c in cells))
    result["config"]["figures"] = draw(ctx, result, cells)
    rundir.write_json(args.out, result)
    print_table(table(result), title=f"claims ({len(result['config']['cells_run'])} of {len(cells)} cells run)")
    if args.markdown:
        print(markdown(result))
    return result


if __name__ == "__main__":
    main()
