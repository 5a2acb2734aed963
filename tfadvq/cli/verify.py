"""``tfadvq verify --model M --enroll a.wav [b.wav ...] --test c.wav [--threshold t]``.

Enrolls a speaker from one or more recordings (mean of L2-normalised
embeddings), scores the test recording by cosine and accepts it when the score
reaches the threshold: ``--threshold`` if given, otherwise the one calibrated
by ``tfadvq eval`` (or training with trials) and stored beside the model.
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
    parser.add_argument("--threshold", type=float, help="cosine-score threshold (default: stored)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import load_embedding_model, stored_threshold, verify
    from tfadvq.report import print_table

    threshold, source = args.threshold, "--threshold"
    if threshold is None:
        threshold, source = stored_threshold(args.model), "stored by eval"
    if threshold is None:
        raise ConfigError(f"--threshold: none given and none stored beside {args.model}; "
                          "run `tfadvq eval` on a trial list first or pass --threshold")
    result = verify(load_embedding_model(args.model), args.enroll, args.test, threshold)
    print_table([{"enroll": len(args.enroll), "test": str(args.test), **result,
                  "threshold_from": source}], title="tfadvq verify")
    return 0
