"""``tfadvq eval --model M --trials T [--corpus DIR | --wav-root R] [--as-norm --cohort C]``.

Embeds every utterance the trials mention by the device's scoring schedule
(windows of ``--frames``, averaged), scores them by cosine (optionally AS-norm
against an imposter cohort) and reports EER and minDCF (p_target 0.01 and
0.05, C_miss = C_fa = 1; EER in percent); on a real-speech corpus (``tfadvq data real``) also
on its same-source trials and per source, with speaker-level intervals.  Writes scores, a DET plot, a
summary and the calibrated threshold (with the model's hash and the trials it
came from) into ``--out`` (default ``<model dir>/eval_<trials name>``): the
threshold's one home.  A threshold there from more trials is kept unless
``--force``.  The summary says which threshold ``tfadvq verify`` will use:
of the model's evaluations in their default places, the one from the most trials.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfadvq.config import number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="EER/minDCF of a model on a trial list, with a DET plot",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="model file or a run folder (train, quantize, ...)")
    parser.add_argument("--trials", type=Path,
                        help="trial list (VoxCeleb '1 enroll test' or Kaldi format); "
                             "default with --corpus: the corpus's test trials")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="generated corpus dir (its test part)")
    source.add_argument("--wav-root", type=Path,
                        help="VoxCeleb-style tree <root>/<spk>/<video>/<utt>.wav the trial keys are relative to")
    parser.add_argument("--as-norm", action="store_true", help="adaptive score normalisation")
    parser.add_argument("--cohort", type=Path,
                        help="imposter cohort for --as-norm: a corpus dir (its training part) or a wav tree")
    parser.add_argument("--top-n", type=number(int, 1), default=300, help="AS-norm: closest cohort entries used")
    parser.add_argument("--frames", type=number(int, 1), default=200, help="scoring window in frames (the device's)")
    parser.add_argument("--out", type=Path, help="output dir (default: <model dir>/eval_<trials name>)")
    parser.add_argument("--force", action="store_true",
                        help="replace a threshold in --out calibrated on more trials than this evaluation's")
    parser.set_defaults(func=lambda a: run(a.model, a.trials, a.corpus, a.wav_root, a.as_norm, a.cohort,
                                           a.top_n, a.frames, a.out, a.force))


def run(model_path: Path, trials_path: Path | None = None, corpus: Path | None = None,
        wav_root: Path | None = None, as_norm: bool = False, cohort: Path | None = None, top_n: int = 300,
        frames: int = 200, out: Path | None = None, force: bool = False) -> int:
    """Check the flags, evaluate by :func:`tfadvq.evaluation.evaluate_model` (what ``tfadvq train``'s
    evaluation and the ``evaluate`` stage run too) and print the summary."""
    from tfadvq import rundir
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import cohort_utterances, evaluate_model, load_trials, threshold_in_use
    from tfadvq.report import print_table
    from tfadvq.windows import ScoringConfig

    if as_norm != (cohort is not None):
        raise ConfigError("--as-norm and --cohort go together: AS-norm needs an imposter cohort")
    if corpus is None and trials_path is None:
        raise ConfigError("--trials is required with --wav-root")
    done = evaluate_model(model_path, load_trials(corpus, trials_path, wav_root), ScoringConfig(window_frames=frames),
                          out=rundir.EvalDir(out) if out else None,
                          cohort=cohort_utterances(cohort) if cohort else None, top_n=top_n, force=force)
    print_table([{**done.row(), "verify_uses": threshold_in_use(rundir.TrainDir.of_model(model_path))}],
                title=f"tfadvq eval: {done.model}")
    for rows, title in done.details():
        print_table(rows, title=title)
    return 0
