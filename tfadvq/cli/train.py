"""``tfadvq train --config X.yaml [--out DIR]``: train an embedding model from a YAML recipe.

Re-running the same command after an interruption resumes from the last
finished epoch (the backup lives in ``DIR/backup``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a speaker-embedding model from a YAML config",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True,
                        help="YAML file, or a packaged config name: demo, resnet34_vox2, "
                             "dfresnet56_vox2, dfresnet233_vox2")
    parser.add_argument("--out", type=Path, help="output directory (default: runs/<config name>)")
    parser.add_argument("--corpus", help="override data: train on this generated/VoxCeleb-like corpus dir")
    parser.add_argument("--strategy", choices=["none", "mirrored", "multi_worker"],
                        help="override the config's tf.distribute strategy")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.training import StrategyName, load_config, packaged_config, train
    from tfadvq.report import print_table

    path = Path(args.config) if Path(args.config).is_file() else packaged_config(args.config)
    config = load_config(path)
    if args.corpus:
        data = dataclasses.replace(config.data, corpus=args.corpus, wav_scp=None, utt2spk=None,
                                   wav_root=None)
        config = dataclasses.replace(config, data=data)
    if args.strategy:
        config = dataclasses.replace(config, strategy=StrategyName(args.strategy))
    if args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs)
    out = args.out or Path("runs") / path.stem
    start = time.perf_counter()
    model_path = train(config, out)
    history = json.loads((model_path.parent / "history.json").read_text()) \
        if (model_path.parent / "history.json").is_file() else {}
    print_table([{
        "model": config.model,
        "epochs": config.epochs,
        "strategy": config.strategy.value,
        "final_loss": history.get("loss", [float("nan")])[-1],
        "final_acc": history.get("acc", [float("nan")])[-1],
        "minutes": (time.perf_counter() - start) / 60,
        "saved": str(model_path),
    }], title="tfadvq train")
    return 0
