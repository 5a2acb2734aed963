"""Kill -9 at random points (corpus synthesis, training, quantization, conversion, a recipe's
calibrate stage), and damage to a recipe's stage outputs between runs; then re-run.

Each job is a real ``tfadvq`` command on tiny settings.  It is first run once
uninterrupted to learn how long it takes; then, ``--cases`` times, it is
started in a fresh directory (or, for training, resumed in the same one),
killed with SIGKILL at a random moment within that duration, and started again
with the same command.  A case is *recovered* when the re-run exits 0 -- or
refuses with exit 2 because the killed run had already finished or left files
(then, as its message says, it is run once more with ``--force``) -- and every
output loads (the corpus with its lists and trials, the Keras model, the
quantized model, the ``.tflite`` under TFLM, the calibrated thresholds);
otherwise it is *lost*.

The damage cases run a recipe (model -> quantize -> convert -> calibrate) to
the end, then damage one stage's output as a user or a failing disk might
(truncate ``quantize/model.h5`` to 100 bytes, overwrite ``convert/model.tflite``
with random bytes of the same size, delete ``calibrate/model.json``, touch
``quantize/model.h5`` without changing it) and run the recipe again: the
damaged stage must re-run (and only when something changed), and the outputs
must load afterwards.  Prints a table and writes ``benchmarks/results/faults.json``.

    .venv/bin/python benchmarks/faults.py [--cases 4] [--seed 0] [--jobs convert,calibrate,damage]
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
    from tfadvq.model_io import load_model

    load_model(out)


def check_quantized(out: Path) -> None:
    from tfadvq.quant import outputs

    outputs.load(out)


def check_tflite(out: Path) -> None:
    from converters.metadata import read_json
    from converters.tflm import run_tflm

    metadata = read_json(out.with_suffix(".json"))
    run_tflm(out.read_bytes(), np.zeros((1, metadata.input_frames, metadata.num_mel_bins), np.float32))


def check_calibrated(out: Path) -> None:
    """The calibrate stage's model runs under TFLM and its metadata holds thresholds."""
    from converters.metadata import read_json

    check_tflite(out)
    assert read_json(out.with_suffix(".json")).thresholds is not None, "no calibrated thresholds"


RECIPE = """scoring: {window_frames: 100}
stages:
  - {type: corpus, path: CORPUS}
  - {type: model, path: FP}
  - {type: quantize, model: model, bits: 4}
  - {type: convert, model: quantize}
  - {type: calibrate, model: convert, corpus: corpus}
"""


def finished(workdir: Path) -> dict[str, str]:
    """``{stage: when its record says it finished}`` (a re-run stage gets a new one)."""
    return {record.parent.name: json.loads(record.read_text())["finished"]
            for record in workdir.glob("*/record.json")}


DAMAGE = {  # what is done to a finished recipe's outputs, and the stages that must re-run
    "truncate quantize/model.h5": (lambda w: _truncate(w / "quantize" / "model.h5"), {"quantize"}),
    "random bytes over convert/model.tflite": (lambda w: _scramble(w / "convert" / "model.tflite"), {"convert"}),
    "delete calibrate/model.json": (lambda w: (w / "calibrate" / "model.json").unlink(), {"calibrate"}),
    "touch quantize/model.h5 (unchanged)": (lambda w: os.utime(w / "quantize" / "model.h5"), set()),
}


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(100)


def _scramble(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))


def damage_case(name: str, recipe: Path, workdir: Path) -> dict:
    """Run the recipe, damage one output, run it again: the damaged stage re-runs, the outputs load."""
    first = run(["run", str(recipe), "--workdir", str(workdir)])
    if first.returncode != 0:
        raise SystemExit(f"damage {name}: the recipe failed: {first.stderr[-2000:]}")
    before = finished(workdir)
    time.sleep(1.1)  # "finished" has one-second resolution
    damage, expected = DAMAGE[name]
    damage(workdir)
    done = run(["run", str(recipe), "--workdir", str(workdir)])
    after = finished(workdir)
    rerun = {stage for stage in after if after[stage] != before.get(stage)}
    row = {"job": f"damage: {name}", "rerun_exit": done.returncode, "rerun_stages": sorted(rerun)}
    try:
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
        if not expected <= rerun:
            raise RuntimeError(f"damaged stage(s) {sorted(expected - rerun)} reused")
        if not expected and rerun:
            raise RuntimeError(f"nothing changed but {sorted(rerun)} re-ran")
        check_calibrated(workdir / "calibrate" / "model.tflite")
        row.update(recovered=True, note="")
    except Exception as exc:
        row.update(recovered=False, note=f"{type(exc).__name__}: {exc}"[:300])
    return row


class Job:
    """One kind of work: how to prepare a case, the command, and how to check its outputs.

    ``prepare`` (optional) runs uninterrupted in a case's directory before the
    timed or killed command (the recipe's stages before calibrate);
    ``forceable``: the command takes ``--force`` (a refusal to replace files a
    killed run left is then answered with it, as its message says).
    """

    def __init__(self, name: str, argv: Callable[[Path], list[str]], out: Callable[[Path], Path],
                 check: Callable[[Path], None], prepare: Callable[[Path], list[str]] | None = None,
                 forceable: bool = False):
        self.name, self.argv, self.out, self.check = name, argv, out, check
        self.prepare, self.forceable = prepare, forceable


def job_dir(work: Path, name: str, job: Job | None = None) -> Path:
    """A fresh directory for one run of a job, with the shared inputs linked in (and prepared)."""
    directory = work / name
    directory.mkdir()
    shutil.copy(work / "tiny.yaml", directory / "tiny.yaml")
    for needed in ("fp", "fp_q", "recipe.yaml"):
        os.symlink(work / needed, directory / needed)
    if job is not None and job.prepare is not None:
        done = run(job.prepare(directory))
        if done.returncode != 0:
            raise SystemExit(f"{job.name}: preparation failed: {done.stderr[-2000:]}")
    return directory


def case(job: Job, workdir: Path, kill_after: float) -> dict:
    """Kill, re-run, check: one row."""
    run_killed(job.argv(workdir), kill_after)
    done = run(job.argv(workdir))
    refused = done.returncode == 2 and ("finished" in done.stderr or "--force" in done.stderr)
    note = "refused: finished already" if refused else ""
    if refused and job.forceable and "already exist" in done.stderr:  # files of the killed run
        done = run(job.argv(workdir) + ["--force"])
        refused, note = False, "refused the killed run's files; re-run with --force"
    row = {"job": job.name, "kill_after_s": round(kill_after, 2), "rerun_exit": done.returncode}
    try:
        if done.returncode != 0 and not refused:
            raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
        job.check(job.out(workdir))
        row.update(recovered=True, note=note)
    except Exception as exc:  # any failure to re-run or to load is a lost case
        row.update(recovered=False, note=f"{type(exc).__name__}: {exc}"[:300])
    return row


def main() -> None:
    from tfadvq.report import machine_description, print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4, help="kills per job")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--jobs", help="comma-separated subset of: corpus_synthesis, training, quantize, "
                                       "convert, calibrate, damage (default: all)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="tfadvq-faults-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        synth = ["data", "synth", "--speakers", "6", "--test-speakers", "3", "--utts", "4", "--seed", "0"]
        (work / "tiny.yaml").write_text(TINY_TRAIN.replace("CORPUS", str(corpus)))
        (work / "recipe.yaml").write_text(RECIPE.replace("CORPUS", str(corpus)).replace("FP", str(work / "fp")))
        recipe = ["run", str(work / "recipe.yaml"), "--workdir"]
        jobs = [
            Job("corpus_synthesis", lambda w: synth + ["--out", str(w / "synth")], lambda w: w / "synth",
                check_corpus),
            Job("training", lambda w: ["train", "--config", str(w / "tiny.yaml"), "--out", str(w / "run")],
                lambda w: w / "run", check_model),
            Job("quantize", lambda w: ["quantize", "--model", str(w / "fp"), "--bits", "4", "--out",
                                       str(w / "q")], lambda w: w / "q", check_quantized),
            Job("convert", lambda w: ["convert", "--model", str(w / "fp_q" / "model.h5"), "--out",
                                      str(w / "tfl" / "model.tflite"), "--frames", "100"],
                lambda w: w / "tfl" / "model.tflite", check_tflite, forceable=True),
            Job("calibrate", lambda w: recipe + [str(w / "work")],
                lambda w: w / "work" / "calibrate" / "model.tflite", check_calibrated,
                prepare=lambda w: recipe + [str(w / "work"), "--to", "convert"]),
        ]
        wanted = set(args.jobs.split(",")) if args.jobs else {j.name for j in jobs} | {"damage"}
        jobs = [job for job in jobs if job.name in wanted]
        # inputs the later jobs need, made once without interruption
        prepared = [run(synth + ["--out", str(corpus)]),
                    run(["train", "--config", str(work / "tiny.yaml"), "--out", str(work / "fp")]),
                    run(["quantize", "--model", str(work / "fp"), "--bits", "4", "--out", str(work / "fp_q")])]
        for done in prepared:
            if done.returncode != 0:
                raise SystemExit(f"preparation failed: {done.stderr[-2000:]}")
        rows, durations = [], {}
        for job in jobs:
            reference_dir = job_dir(work, f"ref_{job.name}", job)
            start = time.perf_counter()
            reference = run(job.argv(reference_dir))
            durations[job.name] = time.perf_counter() - start
            if reference.returncode != 0:
                raise SystemExit(f"{job.name}: the uninterrupted run failed: {reference.stderr[-2000:]}")
            for i in range(args.cases):
                # most of a short command is start-up: kill within its last three quarters
                duration = durations[job.name]
                kill_after = float(rng.uniform(0.25 * duration, duration))
                row = case(job, job_dir(work, f"{job.name}_{i}", job), kill_after)
                rows.append(row)
                print(json.dumps(row), flush=True)
        if "damage" in wanted:
            for i, name in enumerate(DAMAGE):
                row = damage_case(name, work / "recipe.yaml", job_dir(work, f"damage_{i}") / "work")
                rows.append(row)
                print(json.dumps(row), flush=True)

    summary = {"cases": len(rows), "recovered": sum(r["recovered"] for r in rows),
               "lost": sum(not r["recovered"] for r in rows)}
    print_table(rows, title=f"kill -9 and re-run: {summary}")
    report = {"benchmark": "faults", "date": datetime.date.today().isoformat(), "machine": machine_description(),
              "config": {"cases_per_job": args.cases, "seed": args.seed, "jobs": sorted(wanted),
                         "uninterrupted_seconds": {k: round(v, 1) for k, v in durations.items()},
                         "kill": "SIGKILL at a uniform random time in [0.25, 1] x the uninterrupted duration"},
              **summary, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
