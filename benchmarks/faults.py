"""Kill -9 at random points: corpus synthesis, training, quantization and conversion, then re-run.

Each job is a real ``tfadvq`` command on tiny settings.  It is first run once
uninterrupted to learn how long it takes; then, ``--cases`` times, it is
started in a fresh directory (or, for training, resumed in the same one),
killed with SIGKILL at a random moment within that duration, and started again
with the same command.  A case is *recovered* when the re-run exits 0 -- or
refuses with exit 2 because the killed run had already finished -- and every
output loads (the corpus with its lists and trials, the Keras model, the
quantized model, the ``.tflite`` under TFLM); otherwise it is *lost*.  Prints a
table and writes ``benchmarks/results/faults.json``.

    .venv/bin/python benchmarks/faults.py [--cases 4] [--seed 0]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "faults.json"
TFADVQ = [sys.executable, "-c", "import sys; from tfadvq.cli import main; sys.exit(main())"]
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
TINY_TRAIN = """model: TinyResNet
model_args: {feat_dim: 80, embed_dim: 32, base_width: 16}
data: {corpus: CORPUS}
pipeline: {batch_size: 8, crop_seconds: 1.0, noise_prob: 0.0, reverb_prob: 0.0, spec_augment: false}
optimizer: {name: adamw, lr: 0.003}
schedule: {warmup_epochs: 0, decay: constant}
epochs: 4
steps_per_epoch: 3
"""


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(TFADVQ + argv, env=ENV, capture_output=True, text=True, timeout=timeout)


def run_killed(argv: list[str], after: float) -> None:
    """Start ``argv`` and SIGKILL it ``after`` seconds later (if it is still running)."""
    process = subprocess.Popen(TFADVQ + argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()


def check_corpus(out: Path) -> None:
    from tfadvq.voxceleb import load_corpus

    corpus = load_corpus(out)
    assert corpus.train and corpus.test and len(corpus.trials)


def check_model(out: Path) -> None:
    from tfadvq.evaluation import load_embedding_model

    load_embedding_model(out)


def check_quantized(out: Path) -> None:
    from tfadvq.quant import outputs

    outputs.load(out)


def check_tflite(out: Path) -> None:
    from converters.metadata import read_json
    from converters.tflm import run_tflm

    metadata = read_json(out.with_suffix(".json"))
    run_tflm(out.read_bytes(), np.zeros((1, metadata.input_frames, metadata.num_mel_bins), np.float32))


class Job:
    """One kind of work: how to prepare a case, the command, and how to check its outputs."""

    def __init__(self, name: str, argv: Callable[[Path], list[str]], out: Callable[[Path], Path],
                 check: Callable[[Path], None]):
        self.name, self.argv, self.out, self.check = name, argv, out, check


def job_dir(work: Path, name: str) -> Path:
    """A fresh directory for one run of a job, with the shared inputs linked in."""
    directory = work / name
    directory.mkdir()
    shutil.copy(work / "tiny.yaml", directory / "tiny.yaml")
    for needed in ("fp", "fp_q"):
        os.symlink(work / needed, directory / needed)
    return directory


def case(job: Job, workdir: Path, kill_after: float) -> dict:
    """Kill, re-run, check: one row."""
    run_killed(job.argv(workdir), kill_after)
    done = run(job.argv(workdir))
    refused_finished = done.returncode == 2 and ("finished" in done.stderr or "--force" in done.stderr)
    row = {"job": job.name, "kill_after_s": round(kill_after, 2), "rerun_exit": done.returncode}
    try:
        if done.returncode != 0 and not refused_finished:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
        job.check(job.out(workdir))
        row.update(recovered=True, note="refused: finished already" if refused_finished else "")
    except Exception as exc:  # any failure to re-run or to load is a lost case
        row.update(recovered=False, note=f"{type(exc).__name__}: {exc}"[:300])
    return row


def main() -> None:
    from tfadvq.report import machine_description, print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4, help="kills per job")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="tfadvq-faults-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        synth = ["data", "synth", "--speakers", "6", "--test-speakers", "3", "--utts", "4", "--seed", "0"]
        (work / "tiny.yaml").write_text(TINY_TRAIN.replace("CORPUS", str(corpus)))
        jobs = [
            Job("corpus_synthesis", lambda w: synth + ["--out", str(w / "synth")], lambda w: w / "synth",
                check_corpus),
            Job("training", lambda w: ["train", "--config", str(w / "tiny.yaml"), "--out", str(w / "run")],
                lambda w: w / "run", check_model),
            Job("quantize", lambda w: ["quantize", "--model", str(w / "fp"), "--bits", "4", "--out",
                                       str(w / "q")], lambda w: w / "q", check_quantized),
            Job("convert", lambda w: ["convert", "--model", str(w / "fp_q" / "model.h5"), "--out",
                                      str(w / "tfl" / "model.tflite"), "--frames", "100"],
                lambda w: w / "tfl" / "model.tflite", check_tflite),
        ]
        # inputs the later jobs need, made once without interruption
        prepared = [run(synth + ["--out", str(corpus)]),
                    run(["train", "--config", str(work / "tiny.yaml"), "--out", str(work / "fp")]),
                    run(["quantize", "--model", str(work / "fp"), "--bits", "4", "--out", str(work / "fp_q")])]
        for done in prepared:
            if done.returncode != 0:
                raise SystemExit(f"preparation failed: {done.stderr[-2000:]}")
        rows, durations = [], {}
        for job in jobs:
            start = time.perf_counter()
            reference = run(job.argv(job_dir(work, f"ref_{job.name}")))
            durations[job.name] = time.perf_counter() - start
            if reference.returncode != 0:
                raise SystemExit(f"{job.name}: the uninterrupted run failed: {reference.stderr[-2000:]}")
            for i in range(args.cases):
                # most of a short command is start-up: kill within its last three quarters
                duration = durations[job.name]
                row = case(job, job_dir(work, f"{job.name}_{i}"), float(rng.uniform(0.25 * duration, duration)))
                rows.append(row)
                print(json.dumps(row), flush=True)

    summary = {"cases": len(rows), "recovered": sum(r["recovered"] for r in rows),
               "lost": sum(not r["recovered"] for r in rows)}
    print_table(rows, title=f"kill -9 and re-run: {summary}")
    report = {"benchmark": "faults", "date": datetime.date.today().isoformat(), "machine": machine_description(),
              "config": {"cases_per_job": args.cases, "seed": args.seed,
                         "uninterrupted_seconds": {k: round(v, 1) for k, v in durations.items()},
                         "kill": "SIGKILL at a uniform random time in [0.25, 1] x the uninterrupted duration"},
              **summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
