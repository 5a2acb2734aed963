"""``tfadvq quantize --model M --bits 4 --out Q``: k-means weight quantization, PTQ or QAT.

Writes a quantization run directory: the tfmot-wrapped model (``model.h5``,
reload with ``tfadvq.load_model``), the centroid-valued plain Keras model
(what the converter takes), the tables and indices, and ``summary.json``
(per-layer rows, size, the source model and every setting used); ``--plots``
adds per-layer histograms.  With ``--finetune-epochs E`` the wrapped model is
fine-tuned with codebook refresh, following the training config stored with
the model (``train.yaml`` of its train directory; ``--train-config`` only for a
model trained elsewhere), on the model's own training data unless ``--corpus``
is given, starting the AAM head from the trained one; the fine-tuned head and
config are kept beside the result.

The best post-training path is the default whenever there is data (``--corpus``,
``--inputs``, or the model's own training data, its ``train.yaml`` or
``--train-config``): every codebook is fitted to the diagonal Fisher of the
distillation objective (sensitivity-weighted k-means) on ``--fisher-batches``
batches, and each quantized layer's output-mean shift is removed afterwards
(bias correction).  ``--no-weighted`` / ``--no-bias-correction`` opt out;
``--weighted`` / ``--bias-correction`` demand data.  Without data the codebooks
are plain k-means and one warning says so; the summary (``ptq`` in
``summary.json``) says which path ran.  ``--per-channel auto`` keeps per-channel
tables where they pay.  The data (and a distillation fine-tune's) follows the
model's input: ``--corpus`` audio through our fbank pipeline for a model taking
our features, as waveform crops for a model taking audio, or ``--inputs X.npy``
(an array of model inputs) for anything else; a model whose input fits none of
them is refused before any work, saying what it wants.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tfadvq.cli import per_channel_flag
from tfadvq.config import number
from tfadvq.quant.bits import MAX_BITS, MIN_BITS


@dataclasses.dataclass
class QuantizeArgs:
    """What ``tfadvq quantize`` was asked (typed; see ``--help``)."""

    model: Path
    out: Path
    bits: int = 4
    bits_per_layer: Path | None = None
    per_channel: bool = False
    activation_bits: int | None = None
    finetune_epochs: int = 0
    corpus: Path | None = None
    objective: str = "aam"
    train_config: str | None = None
    lr_scale: float = 0.1
    refresh_steps: int = 100
    new_head: bool = False
    plots: bool = False
    force: bool = False
    weighted: bool | None = None  # None: when data is available (PTQSettings)
    fisher_batches: int = 8
    bias_correction: bool | None = None
    inputs: Path | None = None
    binary: str | None = None
    binary_clip: float | None = 1.0
    end_bits: int | None = None
    rounding: str = "nearest"

    def ptq_settings(self):
        """The post-training part, as the recipe's ``quantize`` stage takes it (one flow for both)."""
        from tfadvq.cli import from_flags
        from tfadvq.quant.post_training import PTQSettings

        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(PTQSettings)}
        values["bits_per_layer"] = str(self.bits_per_layer) if self.bits_per_layer else None
        return from_flags(PTQSettings, values, "quantize")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="k-means quantize a model's weights (post-training or with fine-tuning)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path,
                        help="FP32 embedding model: .keras (tf-keras or Keras 3), .h5, SavedModel or a run folder")
    parser.add_argument("--bits", type=number(int, MIN_BITS, MAX_BITS), default=4,
                        help=f"bits for every supported layer ({MIN_BITS}..{MAX_BITS})")
    parser.add_argument("--bits-per-layer", type=Path,
                        help="YAML bits spec (default/classes/layers); overrides --bits")
    parser.add_argument("--per-channel", nargs="?", const=True, default=False, type=per_channel_flag,
                        help="one codebook per output channel; 'auto': only where the tables pay")
    parser.add_argument("--activation-bits", type=int, choices=[8], help="8-bit fake-quantized outputs")
    parser.add_argument("--finetune-epochs", type=number(int, 0), default=0, help="QAT epochs (0: post-training)")
    parser.add_argument("--corpus", type=Path, help="fine-tune on this corpus instead of the training data")
    parser.add_argument("--objective", choices=["aam", "distill"], default="aam")
    parser.add_argument("--train-config",
                        help="training YAML or packaged name, only for a model without its train.yaml")
    parser.add_argument("--lr-scale", type=number(float, 0.0, above=True), default=0.1,
                        help="fine-tune peak lr = training config lr x this (default 0.1)")
    parser.add_argument("--new-head", action="store_true",
                        help="aam: start from a new random head instead of the trained one")
    parser.add_argument("--refresh-steps", type=number(int, 1), default=100, help="codebook refresh period in steps")
    parser.add_argument("--plots", action="store_true", help="write per-layer histograms to Q/plots")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--force", action="store_true",
                        help="replace a finished quantization in --out, or write into a directory holding other files")
    parser.add_argument("--weighted", action=argparse.BooleanOptionalAction, default=None,
                        help="Fisher-weighted k-means (distillation objective); default: on when there is data "
                             "(--corpus, --inputs or the model's training data)")
    parser.add_argument("--fisher-batches", type=number(int, 1), default=8, help="batches the Fisher is estimated on")
    parser.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                        help="correct each quantized layer's output-mean shift on a few batches; "
                             "default: on when there is data")
    parser.add_argument("--inputs", type=Path,
                        help=".npy array [N, ...] of model inputs (a model whose input is not our fbank)")
    parser.add_argument("--binary", choices=["static", "adaptive"],
                        help="quantizer of the 1-bit layers: static (alpha*sign) or adaptive (two fitted values)")
    parser.add_argument("--binary-clip", type=number(float, 0.0, above=True), default=1.0,
                        help="binary: latent weights clipped (and their gradient cancelled) beyond this (default 1)")
    parser.add_argument("--end-bits", type=number(int, MIN_BITS, MAX_BITS),
                        help="keep the first and last quantizable layers (first conv, embedding) at this width")
    parser.add_argument("--rounding", choices=["nearest", "adaptive"], default="nearest",
                        help="adaptive: each weight takes the centroid below or above it that best reconstructs "
                             "its layer's output on the data (same codebooks; needs data like --weighted)")
    parser.set_defaults(func=lambda a: run(QuantizeArgs(
        **{f.name: getattr(a, f.name) for f in dataclasses.fields(QuantizeArgs)})))


def run(args: QuantizeArgs) -> int:
    from tfadvq import rundir

    with rundir.claim_dir(args.out, rundir.QuantDir, force=args.force, command="tfadvq quantize"):
        return _run(args)


def _run(args: QuantizeArgs) -> int:
    from tfadvq import frontend, rundir
    from tfadvq.config import load_yaml, to_dict
    from tfadvq.errors import ConfigError
    from tfadvq.model_io import open_model
    from tfadvq.objectives import Objective
    from tfadvq.quant import api, outputs
    from tfadvq.quant.finetune import FinetuneSettings, finetune_run
    from tfadvq.quant.post_training import post_training
    from tfadvq.report import print_table
    from tfadvq.stages.lineage import Lineage
    from tfadvq.train_config import DataConfig, TrainConfig, resolve_config

    out = rundir.QuantDir(args.out)
    if out.summary.is_file() and not args.force:
        raise ConfigError(f"--out {args.out}: holds a finished quantization; pass --force to replace it "
                          "or choose another directory")
    settings = args.ptq_settings()  # checked before any work, the data included
    source = Lineage.of_model(args.model)
    config = None
    if args.finetune_epochs:  # checked before any work: the fine-tune follows the model's own recipe
        if source.train_config is not None:
            config = load_yaml(TrainConfig, source.train_config)
        elif args.train_config:
            config = resolve_config(args.train_config)
        else:
            raise ConfigError(f"--finetune-epochs: {source.expected_config} is missing (the model was not trained by "
                              "tfadvq train); pass --train-config and --corpus")
    loaded = open_model(args.model)
    model = loaded.model
    front_end = frontend.for_input(frontend.resolve(loaded.file), model.input_shape, str(loaded.file))
    config = None if config is None else frontend.follow(config, front_end)
    data = _ptq_data(args, settings, model, source, config)  # checked before any fitting: what the model eats
    ptq = post_training(model, settings, data)
    quantized, corrected, result = ptq.wrapped, ptq.corrections, None
    if config is not None:
        tuning = FinetuneSettings(args.finetune_epochs, Objective(args.objective), args.lr_scale,
                                  args.refresh_steps, None,
                                  DataConfig(corpus=str(args.corpus)) if args.corpus else None,
                                  use_trained_head=not args.new_head)
        head = rundir.load_head(source.head) if source.head is not None and not args.new_head else None
        result = finetune_run(quantized, config, tuning, head_weights=head,
                              teacher=model if tuning.objective is Objective.DISTILL else None,
                              inputs=str(args.inputs) if args.inputs else None)
    saved = outputs.save(quantized, out, front_end=front_end, finetuned=result, source_model=str(source.model),
                         source=loaded.row(), settings=to_dict(args), ptq=ptq.path)
    if args.plots:
        from tfadvq.plots import plot_model

        floats = {(w.layer.name, t.weight): q.source.numpy()
                  for (w, q), t in zip(api.quantized_weights(quantized), saved.records.tensors)}
        plot_model(floats, saved.records.tensors, out.plots)
    print_table(saved.rows, title=f"tfadvq quantize: {loaded.describe()}")
    if result is not None:
        print_table([{k: v for k, v in result.row.items() if k not in ("data", "loss_curve")}], title="fine-tuning")
    if ptq.rounding:
        print_table(ptq.rounding, title="adaptive rounding (layer output error / float output power)")
    if corrected:
        print_table(corrected, title="bias correction (largest per-channel output-mean shift)")
    print_table([{**ptq.path, "size_bytes": saved.size.size_bytes, "fp32_bytes": saved.size.fp32_bytes,
                  "compression": saved.size.compression, "out": str(args.out)}])
    return 0


def _ptq_data(args: QuantizeArgs, settings, model, source, config):
    """The batches of the Fisher and the bias correction (None: not wanted, or no data), and the input check.

    Data: ``--inputs``, else ``--corpus``, else the model's own training data
    (its ``train.yaml``, or ``--train-config``); a fine-tune on the corpus is
    checked here too, so a model with another input is refused before any
    codebook is fitted.  Without any of them the defaults fall back to plain
    k-means (:func:`tfadvq.quant.post_training.post_training` says so), and an
    explicit ``--weighted``/``--bias-correction`` is refused.
    """
    from tfadvq.errors import ConfigError, DataError
    from tfadvq.quant.finetune import model_inputs
    from tfadvq.train_config import DataConfig, model_config

    given = bool(args.corpus or args.inputs)
    available = given or source.train_config is not None or args.train_config is not None
    wanted = settings.needs_data or settings.wants_data and available
    if not wanted and config is None:
        return None
    base = config or model_config(source.expected_config, args.train_config, data_given=given,
                                  what="--weighted/--bias-correction (pass --corpus or --inputs)")
    if args.corpus:
        base = dataclasses.replace(base, data=DataConfig(corpus=str(args.corpus)))
    try:
        data = model_inputs(model, base, inputs=str(args.inputs) if args.inputs else None)
    except (ConfigError, DataError) as exc:
        if given or settings.needs_data or config is not None:
            raise
        raise ConfigError(f"{exc}\n(the default Fisher-weighted codebooks and bias correction read the model's "
                          f"training data, {source.expected_config}: pass --corpus or --inputs, or --no-weighted "
                          "--no-bias-correction for plain k-means)") from None
    return data if wanted else None
