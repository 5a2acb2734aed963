"""Issue 20's levers on real people, one at a time: the demo's device model against one change each.

The baseline is the FP32 McuDFResNet of a finished ``tfadvq demo`` (``--workdir``, stage ``train``);
each ``--lever NAME=TRAIN_DIR`` is a ``tfadvq train`` run of the same config (tfadvq/configs/mcu.yaml)
with one thing changed -- what changed is read from the two runs' train.yaml and recorded, e.g.
``data.extra_corpora`` (training on real speakers beside the synthetic ones: ``tfadvq data real
--train-speakers``), ``steps_per_epoch`` or ``epochs`` (longer training), ``pipeline.noise_prob``
(more channel simulation).  Every model is scored with the recipe's schedule on the same trials of
each ``--corpus`` (``tfadvq data real``; a corpus with a training part is scored on its test
speakers only, so a lever trained on its dev speakers is still measured on held-out people; the
demo's synthetic corpus too, one source, so that what a lever costs there shows), and
each lever is compared with the baseline on those trials by :func:`tfadvq.metrics.paired_bootstrap`
over test speakers (Delta EER = lever minus baseline; negative is better), on all trials and on the
same-source ones.  One training run per lever: the intervals cover speaker sampling, not training
seed noise (a run of the baseline recipe with only the step count changed shows its size).
``--timing`` is a JSON file ``{NAME: {"wall_seconds": .., "cpu_seconds": .., "note": ..}}`` measured
around each training (e.g. by /usr/bin/time); it is copied into the results as given.

The rows go into the ``ablation`` section of benchmarks/results/real_speech.json (the rest of that
file, written by benchmarks/real_speech.py, is kept).

    python benchmarks/real_speech_levers.py --workdir runs/demo --lever mix=runs/mix steps=runs/steps \\
        --corpus data/real data/real_queen_split --timing timing.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tfadvq import metrics, rundir
from tfadvq.config import from_dict, load_yaml
from tfadvq.corpus.real import read_trial_sources, source_report, trial_speakers, trial_subsets
from tfadvq.evaluation import evaluate
from tfadvq.model_io import load_model
from tfadvq.report import print_table
from tfadvq.scoring import keras_embedder
from tfadvq.train_config import TrainConfig
from tfadvq.training import config_differences, load_training_utterances
from tfadvq.voxceleb import load_corpus
from tfadvq.windows import ScoringConfig

try:
    from bench_common import header
except ImportError:  # run as a module from the repository root
    from benchmarks.bench_common import header

RESULTS = Path(__file__).resolve().parent / "results" / "real_speech.json"
BASELINE = "demo"


def training(train_dir: Path, baseline: TrainConfig | None) -> dict:
    """What a run trained on and how long: its speakers, utterances, steps, and the config changes."""
    config = load_yaml(TrainConfig, rundir.TrainDir(train_dir).config)
    utterances = load_training_utterances(config.data)
    steps = config.steps_per_epoch or max(len(utterances) // config.pipeline.batch_size, 1)
    changes = [] if baseline is None else [d for d in config_differences(baseline, config)
                                           if not d.startswith("data.corpus:")]
    return {"train_dir": str(train_dir), "changes": changes, "speakers": len({u.speaker for u in utterances}),
            "utterances": len(utterances), "epochs": config.epochs, "steps": steps * config.epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="a finished `tfadvq demo` run")
    parser.add_argument("--lever", nargs="+", required=True, metavar="NAME=TRAIN_DIR",
                        help="`tfadvq train` runs of the demo's config with one change each")
    parser.add_argument("--corpus", type=Path, nargs="+", required=True, help="`tfadvq data real` corpora")
    parser.add_argument("--timing", type=Path, help="JSON {name: {wall_seconds, cpu_seconds, ...}} per training")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap draws per interval")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    scoring = from_dict(ScoringConfig, json.loads((args.workdir / "recipe.json").read_text())["scoring"])
    train_record = rundir.read_json(rundir.RunDir(args.workdir / "train").record)
    base_dir = Path(train_record["outputs"]["train_dir"])
    base_dir = base_dir if base_dir.is_dir() else args.workdir / "train"
    base_config = load_yaml(TrainConfig, rundir.TrainDir(base_dir).config)
    timing = json.loads(args.timing.read_text()) if args.timing else {}
    runs = {BASELINE: base_dir, **{n: Path(d) for n, d in (lever.split("=", 1) for lever in args.lever)}}
    trained = {name: training(path, None if name == BASELINE else base_config) for name, path in runs.items()}
    trained[BASELINE]["timing"] = {"wall_seconds": round(train_record["seconds"], 1),
                                   "note": "the demo's train stage (its record), on the machine and load of that run"}
    for name, measured in timing.items():
        trained[name]["timing"] = measured
    rows, settings = [], {}
    for corpus_dir in args.corpus:
        corpus = load_corpus(corpus_dir)
        sourced = rundir.CorpusDir(corpus_dir).trial_sources.is_file()  # a real corpus; else the synthetic one
        manifest = rundir.read_json(rundir.CorpusDir(corpus_dir).manifest)
        name_of_corpus = "+".join(manifest["settings"]["sources"]) if sourced else "synthetic"
        settings[str(corpus_dir)] = manifest["settings"]  # e.g. which speakers a split trained on
        results = {}
        for name, path in runs.items():
            start = time.perf_counter()
            results[name] = evaluate(keras_embedder(load_model(rundir.TrainDir(path).model)), corpus.trials,
                                     corpus.test, scoring)
            print(f"{name} on {corpus_dir}: {time.perf_counter() - start:.0f} s")
        kept = np.logical_and.reduce([r.kept if r.kept is not None else np.ones(len(corpus.trials), bool)
                                      for r in results.values()])
        trials = corpus.trials.select(kept)
        groups = read_trial_sources(corpus_dir, trials) if sourced else [("synthetic", "-")] * len(trials)
        labels = np.asarray(trials.labels, np.int8)
        speakers = trial_speakers(trials)
        subsets = dict(trial_subsets(labels, groups))
        scores = {n: (r.scores if r.kept is None else r.scores[kept[r.kept]]) for n, r in results.items()}
        for name in runs:
            report = {r["trials"]: r for r in source_report(scores[name], labels, trials, groups, args.resamples)}
            row = {"lever": name, "corpus": name_of_corpus, "test_speakers": int(len(set(speakers))),
                   "trials": int(labels.size), "same_source_trials": int(subsets["same-source"].sum()),
                   "eer": report["all"]["eer"], "eer_ci95": report["all"]["eer_ci95"],
                   "eer_same_source": report["same-source"].get("eer"),
                   "eer_same_source_ci95": report["same-source"].get("eer_ci95")}
            if name != BASELINE:
                for subset, key in (("all", "delta_eer"), ("same-source", "delta_eer_same_source")):
                    mask = subsets[subset]
                    if 0 < labels[mask].sum() < mask.sum():
                        d = metrics.paired_bootstrap(scores[name][mask], scores[BASELINE][mask], labels[mask],
                                                     speakers[mask], args.resamples).eer.rounded()
                        row[key], row[f"{key}_ci95"] = d["value"], [d["low"], d["high"]]
            rows.append(row)
    print_table(rows, title="levers on real speech (FP32 EER %, speaker-level 95 % intervals; delta = lever - demo)")
    print_table([{"lever": n, **{k: v for k, v in t.items() if k not in ("train_dir", "timing")},
                  "wall_s": t.get("timing", {}).get("wall_seconds")} for n, t in trained.items()],
                title="what each lever trained")
    existing = rundir.read_json(args.out) if args.out.is_file() else {**header("real_speech")}
    existing["ablation"] = {
        **{k: v for k, v in header("real_speech_levers").items() if k != "benchmark"},
        "config": {"workdir": str(args.workdir), "scoring": vars(scoring), "resamples": args.resamples,
                   "corpora": settings,
                   "baseline": f"{BASELINE}: the FP32 model of {args.workdir}'s train stage",
                   "delta": "lever minus baseline on the same trials, paired 95 % bootstrap over test speakers "
                            "(tfadvq.metrics.paired_bootstrap); one training run per lever"},
        "training": trained,
        "rows": rows,
    }
    rundir.write_json(args.out, existing)
    print(f"wrote the ablation section of {args.out}")


if __name__ == "__main__":
    main()
