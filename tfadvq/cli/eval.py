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


def cohort_utterances(path: Path):
    """A corpus directory (its training speakers) or a VoxCeleb-style tree."""
    from tfadvq.rundir import CorpusDir
    from tfadvq.voxceleb import load_corpus, scan_tree

    return load_corpus(path).train if CorpusDir(path).lists.is_dir() else scan_tree(path)


def run(model_path: Path, trials_path: Path | None = None, corpus: Path | None = None,
        wav_root: Path | None = None, as_norm: bool = False, cohort: Path | None = None, top_n: int = 300,
        frames: int = 200, out: Path | None = None, force: bool = False) -> int:
    from tfadvq import frontend, rundir
    from tfadvq.errors import ConfigError
    from tfadvq.evaluation import evaluate, model_threshold, store_threshold, write_outputs
    from tfadvq.model_io import open_model
    from tfadvq.report import print_table
    from tfadvq.scoring import keras_embedder
    from tfadvq.voxceleb import corpus_trials_path, load_corpus, read_trials, scan_tree
    from tfadvq.windows import ScoringConfig

    if as_norm != (cohort is not None):
        raise ConfigError("--as-norm and --cohort go together: AS-norm needs an imposter cohort")
    if corpus is not None:
        utterances = load_corpus(corpus).test
        trials_path = trials_path or corpus_trials_path(corpus)
    else:
        if trials_path is None:
            raise ConfigError("--trials is required with --wav-root")
        utterances = scan_tree(wav_root)
    trials = read_trials(trials_path)
    run_dir = rundir.TrainDir.of_model(model_path)
    loaded = open_model(model_path)
    embed = keras_embedder(loaded.model, frontend.resolve(loaded.file))
    scoring = ScoringConfig(window_frames=frames)
    eval_dir = rundir.EvalDir(out) if out else run_dir.evaluation(trials_path)
    if eval_dir.summary.is_file() and not force:  # said before minutes of scoring, not after
        kept = rundir.read_json(eval_dir.threshold).get("num_trials") if eval_dir.threshold.is_file() else None
        found = f"; its threshold is from {kept} trials" if kept is not None else ""
        raise ConfigError(f"--out {eval_dir.path}: holds an evaluation already ({eval_dir.summary.name}{found}); "
                          "pass --force to replace it or choose another --out")
    result = evaluate(embed, trials, utterances, scoring, cohort_utterances(cohort) if cohort else None, top_n)
    with rundir.claim_dir(eval_dir.path, rundir.EvalDir, force=force, flag="--out", command="tfadvq eval"):
        threshold_file = store_threshold(eval_dir.threshold, result, trials_path, run_dir.model, scoring,
                                         force=force)
        write_outputs(result, trials, eval_dir, title=f"{run_dir.model} on {trials_path.name}")
    try:
        chosen = model_threshold(run_dir)
        verify_uses = "none: pass --threshold-from" if chosen is None else \
            f"{chosen[0]} ({chosen[1].num_trials} trials, threshold {chosen[1].threshold:.4g})"
    except ConfigError as exc:  # the evaluation itself succeeded; say why verify would refuse
        verify_uses = f"none usable ({exc})"
    print_table([{**result.row(), "det": str(eval_dir.det), "scores": str(eval_dir.scores),
                  "threshold_file": str(threshold_file),
                  "verify_uses": verify_uses,
                  "front_end": f"{embed.front_end.fbank.num_mel_bins} mel bins from {embed.front_end.source}"}],
                title=f"tfadvq eval: {loaded.describe()}")
    if corpus is not None and trials_path == corpus_trials_path(corpus):
        from tfadvq.corpus.real import report_by_source

        rows = report_by_source(result, trials, corpus, eval_dir)
        if rows:
            print_table(rows, title=f"EER by source, speaker-level 95 % intervals ({eval_dir.by_source})")
    if result.bad:
        print_table([{"file": p, "reason": r} for p, r in result.bad[:20]],
                    title=f"skipped files ({len(result.bad)}; all in {eval_dir.bad})")
    return 0
