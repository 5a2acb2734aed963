"""Device scoring vs Keras scoring: the same trials through the one scoring function, Keras and TFLM.

Takes a demo run (``tfadvq demo`` / ``tfadvq run demo``: its ``convert`` stage's
LUT ``.tflite`` and the quantized Keras model it came from) and scores every
test trial of the corpus twice through :func:`tfadvq.scoring.utterance_embedding`
-- with the Keras model and with the converted model under the TFLite-Micro
interpreter -- and reports each one's EER (with a 95 % bootstrap interval),
minDCF, the largest score difference (``device_scoring_max_abs_diff``) and how
many decisions differ at each one's own EER threshold.  Prints a table and
writes ``benchmarks/results/scoring.json`` (format: /work/shared/benchmarks.md).

    .venv/bin/python benchmarks/scoring.py [--workdir runs/demo] [--convert-stage convert]
"""
from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np

from converters.metadata import read_json
from tfadvq import metrics, rundir
from tfadvq.errors import ConfigError
from tfadvq.evaluation import evaluate
from tfadvq.model_io import load_model
from tfadvq.report import machine_description, print_table
from converters.tflm import tflm_embedder
from tfadvq.scoring import keras_embedder
from tfadvq.voxceleb import load_corpus

RESULTS = Path(__file__).parent / "results" / "scoring.json"


def stage_outputs(workdir: Path, stage: str) -> dict[str, str]:
    record = rundir.RunDir(workdir / stage).record
    if not record.is_file():
        raise ConfigError(f"{workdir}: no finished {stage!r} stage; run `tfadvq demo --workdir {workdir}` first")
    return rundir.read_json(record)["outputs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--convert-stage", default="convert")
    parser.add_argument("--corpus-stage", default="corpus")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    converted = stage_outputs(args.workdir, args.convert_stage)
    corpus_dir = Path(stage_outputs(args.workdir, args.corpus_stage)["corpus"])
    corpus = load_corpus(corpus_dir)
    metadata = read_json(converted["metadata"])
    scoring = metadata.scoring
    embedders = {"keras": keras_embedder(load_model(converted["plain"])),
                 "tflm": tflm_embedder(Path(converted["tflite"]).read_bytes())}
    results, seconds = {}, {}
    for name, embed in embedders.items():
        start = time.perf_counter()
        results[name] = evaluate(embed, corpus.trials, corpus.test, scoring)
        seconds[name] = time.perf_counter() - start
    keras, tflm = results["keras"], results["tflm"]
    diff = float(np.max(np.abs(keras.scores - tflm.scores)))
    decisions = {name: r.scores >= r.eer_threshold for name, r in results.items()}
    rows = []
    for name, result in results.items():
        low, high = metrics.eer_ci95(result.scores, result.labels)
        rows.append({"method": f"kmqat_{name}", "scoring": name,
                     "bits": sorted(set(metadata.bits_per_layer.values())),
                     "eer": round(result.eer, 3), "eer_ci95": [round(low, 3), round(high, 3)],
                     "min_dcf": round(result.min_dcf[0.01], 4), "eer_threshold": result.eer_threshold,
                     "device_scoring_max_abs_diff": diff,
                     "decisions_differ": int(np.sum(decisions[name] != decisions["keras"])),
                     "seconds_ratio_vs_keras": round(seconds[name] / seconds["keras"], 2)})
    print_table(rows, title=f"Keras vs TFLM scoring, {len(corpus.trials)} trials, windows of "
                            f"{scoring.window_frames} frames (hop {scoring.hop})")
    report = {
        "benchmark": "scoring",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {"workdir": str(args.workdir), "tflite": converted["tflite"], "model": converted["plain"],
                   "activations": metadata.activations, "scoring": {"window_frames": scoring.window_frames,
                                                                    "hop_frames": scoring.hop},
                   "trials": len(corpus.trials), "test_utterances": len(corpus.test),
                   "note": "both rows score the same trials through tfadvq.scoring.utterance_embedding; "
                           "eer_ci95: bootstrap over trials (1000 resamples)"},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
