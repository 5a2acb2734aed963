"""``tfadvq eval --model M --trials T [--corpus DIR | --wav-root R] [--as-norm --cohort C]``.

Embeds every utterance the trials mention (whole utterances), scores them by
cosine (optionally AS-norm against an imposter cohort) and reports EER and
minDCF (p_target 0.01 and 0.05, C_miss = C_fa = 1).  Writes scores, a DET plot
and a summary into ``--out`` and stores the calibrated threshold beside the
model for ``tfadvq verify``.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="EER/minDCF of a model on a trial list, with a DET plot",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help=".keras model or its directory")
    parser.add_argument("--trials", type=Path,
                        help="trial list (VoxCeleb '1 enroll test' or Kaldi format); "
                             "default with --corpus: DIR/trials/test.txt")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="generated corpus dir (its test part)")
    source.add_argument("--wav-root", type=Path,
                        help="VoxCeleb-style tree <root>/<spk>/<video>/<utt>.wav the trial keys are relative to")
    parser.add_argument("--as-norm", action="store_true", help="adaptive score normalisation")
    parser.add_argument("--cohort", type=Path,
                        help="imposter cohort for --as-norm: a corpus dir (its training part) or a wav tree")
    parser.add_argument("--top-n", type=int, default=300, help="AS-norm: closest cohort entries used")
    parser.add_argument("--out", type=Path, help="output dir (default: <model dir>/eval_<trials name>)")
    parser.set_defaults(func=run)


def cohort_utterances(path: Path):
    """A corpus directory (its training speakers) or a VoxCeleb-style tree."""
    from tfadvq.voxceleb import load_corpus, scan_tree

    return load_corpus(path).train if (path / "lists").is_dir() else scan_tree(path)


def run(args: argparse.Namespace) -> int:
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import evaluate, load_embedding_model, model_file, store_threshold, write_outputs
    from tfadvq.report import print_table
    from tfadvq.voxceleb import load_corpus, read_trials, scan_tree

    if args.as_norm != (args.cohort is not None):
        raise ConfigError("--as-norm and --cohort go together: AS-norm needs an imposter cohort")
    if args.corpus is not None:
        utterances = load_corpus(args.corpus).test
        trials_path = args.trials or args.corpus / "trials" / "test.txt"
    else:
        if args.trials is None:
            raise ConfigError("--trials is required with --wav-root")
        utterances, trials_path = scan_tree(args.wav_root), args.trials
    trials = read_trials(trials_path)
    model = load_embedding_model(args.model)
    cohort = cohort_utterances(args.cohort) if args.cohort else None
    result = evaluate(model, trials, utterances, cohort, args.top_n)
    out = args.out or model_file(args.model).parent / f"eval_{trials_path.stem}"
    files = write_outputs(result, trials, out, title=f"{model_file(args.model)} on {trials_path.name}")
    threshold_file = store_threshold(args.model, result, trials_path)
    print_table([{**result.row(), "det": str(files["det.png"]), "scores": str(files["scores.txt"]),
                  "threshold_file": str(threshold_file)}], title="tfadvq eval")
    return 0
