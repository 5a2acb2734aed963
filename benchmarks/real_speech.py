"""The demo's device model on real people: EER on the real-speech corpus beside the synthetic one.

Scores the models a finished ``tfadvq demo`` (``--workdir``, default runs/demo) left -- the FP32
McuDFResNet (stage ``train``), its 4-bit KMQAT fine-tune in Keras (``finetune``) and the converted
LUT ``.tflite`` with int8 activations under the TFLM interpreter (``calibrate``) -- on the trials of a
corpus built by ``tfadvq data real --out DIR`` (``--corpus``, one or more: e.g. the default sources and
the opt-in amazon-queen), with the recipe's scoring schedule.
Each row gives the EER on all real trials and on the same-source trials (the source/language
groups with two or more speakers; see tfadvq/corpus/real.py) with speaker-level 95 % bootstrap
intervals, the EER of each such group, and the model's EER on the demo's synthetic test trials
(from the demo's own records) for comparison.  A reference row without any model, ``fbank_stats``
(each scoring window's per-band standard deviation of the same mean-normalised log-mel features the
models see), is scored the same way on both sets: what a fixed statistic of the input already gives.
Nothing is trained.

    python benchmarks/real_speech.py --workdir runs/demo --corpus data/real data/real_queen
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tfadvq import rundir
from tfadvq.config import from_dict
from tfadvq.corpus.real import read_trial_sources, source_report
from tfadvq.evaluation import evaluate
from tfadvq.model_io import load_model
from tfadvq.report import print_table
from converters.tflm import tflm_embedder
from tfadvq.scoring import keras_embedder
from tfadvq.voxceleb import load_corpus
from tfadvq.windows import ScoringConfig

try:
    from bench_common import header
except ImportError:  # run as a module from the repository root
    from benchmarks.bench_common import header

RESULTS = Path(__file__).resolve().parent / "results" / "real_speech.json"
# method, bits, embedder, the demo stage holding the model (and its output key), the stage whose
# record holds its EER on the synthetic test trials (and that metric's name)
MODELS = (("fp32", 32, "keras", "train", "model", "evaluate", "eer"),
          ("kmqat", 4, "keras", "finetune", "plain", "evaluate_quantized", "eer"),
          ("kmqat_int8_tflm", 4, "tflm", "calibrate", "tflite", "calibrate", "device_eer_percent"))


def fbank_stats(windows: np.ndarray) -> np.ndarray:
    """The reference embedder: per-band standard deviation over each window's frames."""
    return np.asarray(windows, np.float32).std(axis=1)


def record(workdir: Path, stage: str) -> dict:
    return rundir.read_json(rundir.RunDir(workdir / stage).record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"), help="a finished `tfadvq demo` run")
    parser.add_argument("--corpus", type=Path, nargs="+", default=[Path("data/real")],
                        help="`tfadvq data real` corpora")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap draws per interval")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    scoring = from_dict(ScoringConfig, json.loads((args.workdir / "recipe.json").read_text())["scoring"])
    models = []
    for method, bits, kind, stage, key, synthetic_stage, synthetic_key in MODELS:
        path = Path(record(args.workdir, stage)["outputs"][key])
        embed = tflm_embedder(path.read_bytes()) if kind == "tflm" else keras_embedder(load_model(path))
        synthetic = round(record(args.workdir, synthetic_stage)["metrics"][synthetic_key], 3)
        models.append((method, bits, kind, path, embed, synthetic))
    synthetic_corpus = load_corpus(record(args.workdir, "corpus")["outputs"]["corpus"])
    reference = evaluate(fbank_stats, synthetic_corpus.trials, synthetic_corpus.test, scoring)
    models.append(("fbank_stats", 0, "statistic", "", fbank_stats, round(reference.eer, 3)))
    rows, by_source, corpora = [], {}, {}
    for corpus_dir in args.corpus:
        corpus = load_corpus(corpus_dir)
        manifest = rundir.read_json(rundir.CorpusDir(corpus_dir).manifest)
        corpora[str(corpus_dir)] = {"settings": manifest["settings"],
                                    "sources": {name: {k: v for k, v in s.items() if k != "labels"}
                                                for name, s in manifest["sources"].items()}}
        for method, bits, kind, path, embed, synthetic in models:
            start = time.perf_counter()
            result = evaluate(embed, corpus.trials, corpus.test, scoring)
            scored = corpus.trials.select(result.kept)
            report = source_report(result.scores, result.labels, scored, read_trial_sources(corpus_dir, scored),
                                   args.resamples)
            subsets = {r["trials"]: r for r in report}
            rows.append({
                "corpus": "+".join(manifest["settings"]["sources"]), "method": method, "bits": bits,
                "embedder": kind, "model": str(path),
                "eer": subsets["all"]["eer"], "eer_ci95": subsets["all"]["eer_ci95"],
                "eer_same_source": subsets["same-source"].get("eer"),  # none without a 2-speaker group
                "eer_same_source_ci95": subsets["same-source"].get("eer_ci95"),
                "min_dcf": round(result.min_dcf[0.01], 4), "synthetic_eer": synthetic,
                "trials": subsets["all"]["count"], "same_source_trials": subsets["same-source"]["count"],
                "bad_files": len(result.bad), "seconds": round(time.perf_counter() - start, 1),
            })
            by_source[f"{rows[-1]['corpus']}/{method}"] = report
            print_table(report, title=f"{method} ({kind}) on {corpus_dir}")
    print_table([{k: v for k, v in r.items() if k != "model"} for r in rows],
                title="real speech vs synthetic (EER %, speaker-level 95 % intervals)")
    result_json = {
        **header("real_speech"),
        "config": {"workdir": str(args.workdir), "scoring": vars(scoring), "resamples": args.resamples,
                   "corpora": corpora,
                   "same_source": "trials of the source/language groups with two or more speakers",
                   "interval": "95 % bootstrap over speakers (a trial belongs to its test clip's speaker)"},
        "rows": rows,
        "by_source": by_source,
    }
    if args.out.is_file() and "ablation" in rundir.read_json(args.out):  # benchmarks/real_speech_levers.py's
        result_json["ablation"] = rundir.read_json(args.out)["ablation"]
    rundir.write_json(args.out, result_json)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
