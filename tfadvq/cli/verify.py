"""``tfadvq verify --model M --enroll a.wav [b.wav ...] --test c.wav [--threshold t]``.

Enrolls a speaker from one or more recordings (mean of unit embeddings, each by
the device's scoring schedule), scores the test recording by cosine and accepts
it when the score reaches the threshold: ``--threshold`` if given, otherwise
the one ``tfadvq eval`` calibrated for this very model (its hash is checked)
and stored beside it.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="accept or reject a test recording against enrollment recordings",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help=".keras model or its directory")
    parser.add_argument("--enroll", required=True, nargs="+", type=Path, help="enrollment recordings")
    parser.add_argument("--test", required=True, type=Path, help="recording to verify")
    parser.add_argument("--threshold", type=float, help="cosine-score threshold in [-1, 1] (default: stored)")
    parser.add_argument("--frames", type=int, help="scoring window (default: the stored threshold's, else 200)")
    parser.set_defaults(func=lambda a: run(a.model, a.enroll, a.test, a.threshold, a.frames))


def run(model_path: Path, enroll: list[Path], test: Path, threshold: float | None = None,
        frames: int | None = None) -> int:
    from tfadvq import frontend, rundir
    from tfadvq.config import from_dict
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import check_threshold, load_embedding_model, load_threshold, verify
    from tfadvq.report import print_table
    from tfadvq.scoring import keras_embedder
    from tfadvq.windows import ScoringConfig

    run_dir = rundir.TrainDir.of_model(model_path)
    scoring, source = ScoringConfig(), "--threshold"
    if threshold is None:
        stored = load_threshold(run_dir.threshold, run_dir.model)
        if stored is None:
            raise ConfigError(f"--threshold: none given and none stored beside {run_dir.model}; "
                              "run `tfadvq eval` on a trial list first or pass --threshold")
        threshold, scoring = stored.threshold, from_dict(ScoringConfig, stored.scoring)
        source = f"stored ({stored.num_trials} trials of {stored.trials})"
    check_threshold(threshold)
    if frames is not None:
        scoring = ScoringConfig(window_frames=frames)
    embed = keras_embedder(load_embedding_model(model_path), frontend.resolve(run_dir.model))
    result = verify(embed, enroll, test, threshold, scoring)
    print_table([{"enroll": len(enroll), "test": str(test), **result, "threshold_from": source}],
                title="tfadvq verify")
    return 0
