"""``tfadvq train --config X.yaml [--out DIR]``: train an embedding model from a YAML recipe.

Re-running the same command after an interruption resumes from the last
finished epoch (the backup lives in the run directory); a changed config or a
finished run is refused unless ``--force``.  With ``data.trials`` in the
config, the model is evaluated on them afterwards and its threshold stored.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tfadvq.config import number


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
    parser.add_argument("--epochs", type=number(int, 1), help="override the number of epochs")
    parser.add_argument("--steps-per-epoch", type=number(int, 1), help="override the epoch length in steps")
    parser.add_argument("--batch-size", type=number(int, 1), help="override the training batch size")
    parser.add_argument("--force", action="store_true", help="train again over a finished or other run")
    parser.set_defaults(func=lambda args: run(args.config, args.out, args.corpus, args.strategy, args.epochs,
                                              args.force, args.steps_per_epoch, args.batch_size))


def run(config_name: str, out: Path | None, corpus: str | None = None, strategy: str | None = None,
        epochs: int | None = None, force: bool = False, steps_per_epoch: int | None = None,
        batch_size: int | None = None) -> int:
    """Train (the overrides by the recipe's ``train`` stage rule, :func:`tfadvq.train_config.overridden`),
    print the summary, then evaluate on the config's trials if it names any."""
    from tfadvq.report import print_table
    from tfadvq.train_config import overridden, resolve_config
    from tfadvq.training import train

    config = overridden(resolve_config(config_name), corpus=corpus, epochs=epochs, steps_per_epoch=steps_per_epoch,
                        batch_size=batch_size, strategy=strategy)
    evaluation = config.data.evaluation()  # a config that names trials wrongly is refused before training
    out = out or Path("runs") / Path(config_name).stem
    start = time.perf_counter()
    run_dir = train(config, out, force=force)
    history = run_dir.load_history()
    rows = [{"model": config.model, "epochs": config.epochs, "strategy": config.strategy.value,
             "final_loss": history.get("loss", [float("nan")])[-1],
             "final_acc": history.get("acc", [float("nan")])[-1],
             "minutes": (time.perf_counter() - start) / 60, "saved": str(run_dir.model)}]
    bad = run_dir.bad.read_text().splitlines() if run_dir.bad.is_file() else []
    rows[0]["skipped_files"] = len(bad)
    print_table(rows, title="tfadvq train")
    if bad:
        print_table([dict(zip(("file", "reason"), line.split("\t", 1))) for line in bad[:20]],
                    title=f"skipped files ({len(bad)}; all in {run_dir.bad})")
    if evaluation is not None:  # the evaluation `tfadvq eval` runs, into <out>/eval_<trials name>/
        from tfadvq.evaluation import evaluate_model, load_trials
        from tfadvq.windows import ScoringConfig

        done = evaluate_model(run_dir.path, load_trials(*evaluation), ScoringConfig())
        print_table([done.row()], title=f"tfadvq train: evaluation of {done.model}")
        for rows, title in done.details():
            print_table(rows, title=title)
    return 0
