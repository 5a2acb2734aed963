"""``tfadvq quantize --model M --bits 4 --out Q``: k-means weight quantization, PTQ or QAT.

Writes a quantization run directory: the tfmot-wrapped model (``model.h5``,
reload with ``tfadvq.quant.load_model``), the centroid-valued plain Keras model
(what the converter takes), the tables and indices, and ``summary.json``
(per-layer rows, size, the source model and every setting used); ``--plots``
adds per-layer histograms.  With ``--finetune-epochs E`` the wrapped model is
fine-tuned with codebook refresh, following the training config stored with
the model (``train.yaml`` of its train directory; ``--train-config`` only for a
model trained elsewhere), on the model's own training data unless ``--corpus``
is given, starting the AAM head from the trained one; the fine-tuned head and
config are kept beside the result.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


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
    binary: str | None = None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="k-means quantize a model's weights (post-training or with fine-tuning)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="FP32 embedding model (.keras or a train dir)")
    parser.add_argument("--bits", type=int, default=4, help="bits for every supported layer (1..8)")
    parser.add_argument("--bits-per-layer", type=Path,
                        help="YAML bits spec (default/classes/layers); overrides --bits")
    parser.add_argument("--per-channel", action="store_true", help="one codebook per output channel")
    parser.add_argument("--activation-bits", type=int, choices=[8], help="8-bit fake-quantized outputs")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="QAT epochs (0: post-training)")
    parser.add_argument("--corpus", type=Path, help="fine-tune on this corpus instead of the training data")
    parser.add_argument("--objective", choices=["aam", "distill"], default="aam")
    parser.add_argument("--train-config",
                        help="training YAML or packaged name, only for a model without its train.yaml")
    parser.add_argument("--lr-scale", type=float, default=0.1,
                        help="fine-tune peak lr = training config lr x this (default 0.1)")
    parser.add_argument("--new-head", action="store_true",
                        help="aam: start from a new random head instead of the trained one")
    parser.add_argument("--refresh-steps", type=int, default=100, help="codebook refresh period in steps")
    parser.add_argument("--plots", action="store_true", help="write per-layer histograms to Q/plots")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--force", action="store_true", help="replace a finished quantization in --out")
    parser.add_argument("--binary", choices=["static", "adaptive"],
                        help="quantizer of the 1-bit layers: static (alpha*sign) or adaptive (two fitted values)")
    parser.set_defaults(func=lambda a: run(QuantizeArgs(
        a.model, a.out, a.bits, a.bits_per_layer, a.per_channel, a.activation_bits, a.finetune_epochs,
        a.corpus, a.objective, a.train_config, a.lr_scale, a.refresh_steps, a.new_head, a.plots, a.force,
        a.binary)))


def run(args: QuantizeArgs) -> int:
    from tfadvq import rundir

    with rundir.locked(args.out):
        return _run(args)


def _run(args: QuantizeArgs) -> int:
    from tfadvq import rundir
    from tfadvq.config import load_yaml, to_dict
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import load_embedding_model
    from tfadvq.objectives import Objective
    from tfadvq.quant import api, load_spec, outputs
    from tfadvq.quant.finetune import FinetuneSettings, finetune_run
    from tfadvq.report import print_table
    from tfadvq.train_config import DataConfig, TrainConfig, resolve_config

    out = rundir.QuantDir(args.out)
    if out.summary.is_file() and not args.force:
        raise ConfigError(f"--out {args.out}: holds a finished quantization; pass --force to replace it "
                          "or choose another directory")
    source = rundir.TrainDir.of_model(args.model)
    config = None
    if args.finetune_epochs:  # checked before any work: the fine-tune follows the model's own recipe
        if source.config.is_file():
            config = load_yaml(TrainConfig, source.config)
        elif args.train_config:
            config = resolve_config(args.train_config)
        else:
            raise ConfigError(f"--finetune-epochs: {source.config} is missing (the model was not trained by "
                              "tfadvq train); pass --train-config and --corpus")
    model = load_embedding_model(args.model)
    bits = load_spec(args.bits_per_layer) if args.bits_per_layer else args.bits
    quantized = api.quantize(model, bits, per_channel=args.per_channel, binary=args.binary,
                             activation_bits=args.activation_bits)
    tuned = None
    if config is not None:
        settings = FinetuneSettings(args.finetune_epochs, Objective(args.objective), args.lr_scale,
                                    args.refresh_steps, None,
                                    DataConfig(corpus=str(args.corpus)) if args.corpus else None,
                                    use_trained_head=not args.new_head)
        head = source.load_head() if source.head.is_file() and not args.new_head else None
        result = finetune_run(quantized, config, settings, head_weights=head,
                              teacher=model if settings.objective is Objective.DISTILL else None)
        tuned = result.row
    saved = outputs.save(quantized, out, source_model=str(source.model), settings=to_dict(args),
                         finetune=tuned)
    if tuned:
        from tfadvq.config import dump_yaml

        rundir.atomic_save_with(out.train_config, lambda tmp: dump_yaml(result.config, tmp))
        if result.head_weights is not None:
            rundir.TrainDir(out.path).save_head(result.head_weights)
    if args.plots:
        from tfadvq.plots import plot_model

        floats = {(w.layer.name, t.weight): q.source.numpy()
                  for (w, q), t in zip(api.quantized_weights(quantized), saved.records.tensors)}
        plot_model(floats, saved.records.tensors, out.plots)
    print_table(saved.rows, title=f"tfadvq quantize: {args.model}")
    if tuned:
        print_table([{k: v for k, v in tuned.items() if k != "data"}], title="fine-tuning")
    print_table([{"size_bytes": saved.size.size_bytes, "fp32_bytes": saved.size.fp32_bytes,
                  "compression": saved.size.compression, "out": str(args.out)}])
    return 0
