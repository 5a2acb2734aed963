"""``tfadvq quantize --model M.keras --bits 4 --out Q``: k-means weight quantization, PTQ or QAT.

Writes ``Q/model.h5`` (the tfmot-wrapped model: reload with
``tfadvq.quant.load_model``), ``Q/plain.keras`` (centroid-valued plain Keras
model, what the converter takes), ``Q/quantized_weights.npz`` (tables and
indices) and ``Q/summary.json``; ``--plots`` adds per-layer histograms.
With ``--finetune-epochs E --corpus DIR`` the wrapped model is fine-tuned
(``--objective aam`` with the corpus speaker labels, or ``distill`` from the
FP32 model, which needs no labels) with codebook refresh, then stripped;
``--head-weights DIR/head.npz`` starts the aam head from the trained one.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "quantize", help="k-means quantize a model's weights (post-training or with fine-tuning)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="FP32 embedding model (.keras or a train dir)")
    parser.add_argument("--bits", type=int, default=4, help="bits for every supported layer (1..8)")
    parser.add_argument("--bits-per-layer", type=Path,
                        help="YAML bits spec (default/classes/layers); overrides --bits")
    parser.add_argument("--per-channel", action="store_true", help="one codebook per output channel")
    parser.add_argument("--activation-bits", type=int, choices=[8], help="8-bit fake-quantized outputs")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="QAT epochs (0: post-training)")
    parser.add_argument("--corpus", type=Path, help="generated/VoxCeleb-like corpus for fine-tuning")
    parser.add_argument("--objective", choices=["aam", "distill"], default="aam")
    parser.add_argument("--train-config", default="demo",
                        help="training YAML or packaged name for optimizer/pipeline (default: demo)")
    parser.add_argument("--lr-scale", type=float, default=0.1,
                        help="fine-tune peak lr = training config lr x this (default 0.1)")
    parser.add_argument("--head-weights", type=Path,
                        help="trained AAM head (head.npz of the train dir) for --objective aam; "
                             "default: a new random head")
    parser.add_argument("--refresh-steps", type=int, default=100, help="codebook refresh period in steps")
    parser.add_argument("--plots", action="store_true", help="write per-layer histograms to Q/plots")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import load_embedding_model
    from tfadvq.quant import api, load_spec, outputs
    from tfadvq.report import print_table

    if args.finetune_epochs and args.corpus is None:
        raise ConfigError("--finetune-epochs: pass --corpus DIR with the fine-tuning speech")
    if args.head_weights and args.objective != "aam":
        raise ConfigError("--head-weights: only the aam objective has a head")
    model = load_embedding_model(args.model)
    bits = load_spec(args.bits_per_layer) if args.bits_per_layer else args.bits
    quantized = api.quantize(model, bits, per_channel=args.per_channel,
                             activation_bits=args.activation_bits)
    tuned = _finetune(quantized, model, args) if args.finetune_epochs else None
    saved = outputs.save(quantized, args.out, finetune=tuned)
    if args.plots:
        from tfadvq.quant.plots import plot_model

        floats = {(w.layer.name, t.weight): q.source.numpy()
                  for (w, q), t in zip(api.quantized_weights(quantized), saved.records.tensors)}
        plot_model(floats, saved.records.tensors, args.out / "plots")
    print_table(saved.rows, title=f"tfadvq quantize: {args.model}")
    if tuned:
        print_table([tuned], title="fine-tuning")
    print_table([{"size_bytes": saved.size.size_bytes, "fp32_bytes": saved.size.fp32_bytes,
                  "compression": saved.size.compression, "out": str(args.out)}])
    return 0


def _finetune(quantized, teacher, args: argparse.Namespace) -> dict:
    """QAT through the training engine with codebook refresh; returns a summary row."""
    from tfadvq import voxceleb
    from tfadvq.quant.finetune import finetune_utterances
    from tfadvq.training import load_config, packaged_config

    path = Path(args.train_config)
    config = load_config(path if path.is_file() else packaged_config(args.train_config))
    return finetune_utterances(quantized, voxceleb.load_corpus(args.corpus).train, config,
                               args.finetune_epochs, args.objective, lr_scale=args.lr_scale,
                               teacher=teacher if args.objective == "distill" else None,
                               head_weights=args.head_weights, refresh_steps=args.refresh_steps)
