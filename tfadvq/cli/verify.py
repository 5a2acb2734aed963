"""``tfadvq verify --model M --enroll a.wav [b.wav ...] --test c.wav [--threshold t]``.

Enrolls a speaker from one or more recordings (mean of unit embeddings, each by
the device's scoring schedule), scores the test recording by cosine and accepts
it when the score reaches the threshold: ``--threshold`` if given, else the
one stored in ``--threshold-from`` (an evaluation directory), else, of the
model's evaluations in their default places (``<model dir>/eval_<trials>/``,
as ``tfadvq eval`` writes them), the threshold calibrated for this very model
(its hash is checked) on the most trials.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfadvq.config import number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="accept or reject a test recording against enrollment recordings",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="model file or a run folder (train, quantize, ...)")
    parser.add_argument("--enroll", required=True, nargs="+", type=Path, help="enrollment recordings")
    parser.add_argument("--test", required=True, type=Path, help="recording to verify")
    parser.add_argument("--threshold", type=number(float, -1.0, 1.0),
                        help="cosine-score threshold in [-1, 1] (default: stored)")
    parser.add_argument("--threshold-from", type=Path, metavar="EVAL_DIR",
                        help="use the threshold `tfadvq eval --out EVAL_DIR` stored (default: the model's "
                             "evaluation from the most trials)")
    parser.add_argument("--frames", type=number(int, 1),
                        help="scoring window (default: the stored threshold's, else 200)")
    parser.set_defaults(func=lambda a: run(a.model, a.enroll, a.test, a.threshold, a.frames, a.threshold_from))


def run(model_path: Path, enroll: list[Path], test: Path, threshold: float | None = None,
        frames: int | None = None, threshold_from: Path | None = None) -> int:
    from tfadvq import frontend, rundir
    from tfadvq.config import from_dict
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import check_threshold, load_threshold, model_threshold, verify
    from tfadvq.model_io import open_model
    from tfadvq.report import print_table
    from tfadvq.scoring import keras_embedder
    from tfadvq.windows import ScoringConfig

    run_dir = rundir.TrainDir.of_model(model_path)
    loaded = open_model(model_path)  # a model that does not load is said before a threshold is looked for
    scoring, source = ScoringConfig(), "--threshold"
    if threshold is not None and threshold_from is not None:
        raise ConfigError("--threshold and --threshold-from: give one of them")
    if threshold is None:
        if threshold_from is not None:
            path = rundir.EvalDir(threshold_from).threshold
            stored = load_threshold(path, run_dir.model)
            if stored is None:
                raise ConfigError(f"--threshold-from {threshold_from}: no {path.name} there (an evaluation "
                                  "directory `tfadvq eval --out` wrote)")
        else:
            chosen = model_threshold(run_dir)
            if chosen is None:
                raise ConfigError(f"--threshold: none given and none stored in the evaluations of "
                                  f"{run_dir.model}; run `tfadvq eval` on a trial list first, or pass "
                                  "--threshold or --threshold-from")
            path, stored = chosen
        threshold, scoring = stored.threshold, from_dict(ScoringConfig, stored.scoring)
        source = f"stored ({stored.num_trials} trials of {stored.trials}; {path})"
    check_threshold(threshold)
    if frames is not None:
        scoring = ScoringConfig(window_frames=frames)
    embed = keras_embedder(loaded.model, frontend.resolve(loaded.file))
    result = verify(embed, enroll, test, threshold, scoring)
    print_table([{"enroll": len(enroll), "test": str(test), **result, "threshold_from": source}],
                title=f"tfadvq verify: {loaded.describe()}")
    return 0
