"""Full-precision baseline: the demo model's EER/minDCF on the generated test trials, and what
training it costs on this machine (utterances/s, step time, peak memory).

Trains ``tfadvq/configs/demo.yaml`` from scratch on the demo corpus (generated if missing, else
reused from ``--corpus``), evaluates it, prints a table and writes
``benchmarks/results/fp_baseline.json`` (format: /work/shared/benchmarks.md).

    .venv/bin/python benchmarks/fp_baseline.py [--corpus runs/demo/corpus] [--epochs N]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from tfadvq.compat import keras
from tfadvq.config import to_dict
from tfadvq import rundir
from tfadvq.evaluation import evaluate, write_outputs
from tfadvq.model_io import load_model
from tfadvq.report import machine_description, print_table
from tfadvq.train_config import load_config, packaged_config
from tfadvq.training import train

RESULTS = Path(__file__).parent / "results" / "fp_baseline.json"


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step and every epoch."""

    def __init__(self):
        super().__init__()
        self.steps: list[float] = []
        self.epochs: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._step = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(time.perf_counter() - self._step)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.perf_counter() - self._epoch)


def load_or_make_corpus(directory: Path):
    """The corpus at ``directory``, generated there first (default size) when it is not complete."""
    from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
    from tfadvq.errors import TfadvqError
    from tfadvq.voxceleb import load_corpus

    try:
        return load_corpus(directory)
    except TfadvqError:
        synthesize_corpus(directory, SynthConfig())
        return load_corpus(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("runs/demo/corpus"))
    parser.add_argument("--epochs", type=int, help="override the demo config's epochs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    corpus = load_or_make_corpus(args.corpus)
    config = load_config(packaged_config("demo"))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, corpus=str(args.corpus)))
    if args.epochs:
        config = dataclasses.replace(config, epochs=args.epochs)

    load_before = os.getloadavg()
    timer = StepTimer()
    with tempfile.TemporaryDirectory(prefix="fp_baseline-") as workdir:
        start = time.perf_counter()
        model_path = train(config, Path(workdir) / "model", callbacks=[timer], verbose=2).model
        train_seconds = time.perf_counter() - start
        model = load_model(model_path)
        start = time.perf_counter()
        result = evaluate(model, corpus.trials, corpus.test)
        eval_seconds = time.perf_counter() - start
        write_outputs(result, corpus.trials, rundir.EvalDir(args.corpus.parent / "fp_baseline_eval"),
                      title="FP32 demo model, generated test trials")
    load_after = os.getloadavg()

    batch = config.pipeline.batch_size
    steady = np.array(timer.steps[len(timer.steps) // len(timer.epochs):])  # skip epoch 1 (tracing)
    step_seconds = float(np.median(steady))
    row = {
        "method": "fp32",
        "bits": 32,
        "model": f"{config.model}({', '.join(f'{k}={v}' for k, v in config.model_args.items())})",
        "params": int(model.count_params()),
        "size_bytes": int(model.count_params()) * 4,
        "eer": round(result.eer, 3),
        "min_dcf": round(result.min_dcf[0.01], 4),
        "min_dcf_0.05": round(result.min_dcf[0.05], 4),
        "trials": int(result.labels.size),
        "step_seconds": round(step_seconds, 4),
        "utts_per_second": round(batch / step_seconds, 1),
        "utts_per_second_incl_pipeline": round(
            batch * len(timer.steps) / sum(timer.epochs), 1),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    report = {
        "benchmark": "fp_baseline",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {
            "train": to_dict(config),
            "corpus": {"dir": str(args.corpus), "train_speakers": len({u.speaker for u in corpus.train}),
                       "train_utts": len(corpus.train), "test_utts": len(corpus.test),
                       "trials": len(corpus.trials)},
            "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "note": "CPU shared with other jobs; times are only comparable within one run",
        },
        "rows": [row],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_table([row], title=f"fp_baseline -> {args.out}")


if __name__ == "__main__":
    main()
