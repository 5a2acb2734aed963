"""Mixed precision from Hessian sensitivity vs uniform KMQAT at equal converted size; MSFT vs one-shot.

One FP32 model (the trained demo TinyResNet, a ``TrainDir``), one corpus,
every test trial, one fine-tune budget.  Sizes are those of the converted
LUT ``.tflite`` (:func:`converters.convert_model`, float activations,
verified under the TFLM interpreter):

* ``kmqat``: uniform 2-, 3-, 4-bit KMQAT (every quantizable layer at b bits),
  fine-tuned; its ``.tflite`` size is the *target* of that width
  (``target_bits``);
* ``mixed``: bits per layer from the HAWQ-V2 sensitivities (Hutchinson
  traces of the distillation objective at the FP32 point, on unlabeled
  batches), allocated exactly (:mod:`tfadvq.quant.allocate`) so its converted
  file does not exceed that target (:func:`tfadvq.quant.mixed_run.quantize_within`),
  then one-shot QAT with the same steps;
* ``mixed_msft``: the same bits, fine-tuned by MSFT (:func:`tfadvq.quant.msft.msft`,
  most sensitive group first, ``stages`` stages sharing the same total steps);
* ``*_ptq``: the same models before fine-tuning.

Fine-tuning: the model's own training config through
:func:`tfadvq.quant.finetune_config`, AAM from the trained head, ``--steps``
steps on the same cached batches for every method, codebook refresh every
``--refresh-steps``.  Every model is evaluated stripped (the weights the
device gets) through :func:`tfadvq.evaluation.evaluate` with the device's
200-frame window schedule, on all test trials, with a 95 % bootstrap
interval over trials (:func:`tfadvq.metrics.eer_ci95`, in percent like ``eer``).

Also: the Hessian-trace cost in seconds for the demo model (the run's own
traces) and for a full-size ResNet34 (random weights, one batch), and the
sensitivity ranking.  Draws ``docs/mixed_precision.png`` (EER vs size with
the allocation's Pareto front).

Run: ``nice -n 10 .venv/bin/python benchmarks/mixed_precision.py``; writes
``benchmarks/results/mixed_precision.json`` (re-written after every row).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tfadvq
from converters import ConvertedSizes, convert_model
from tfadvq import metrics, rundir
from tfadvq.compat import tf
from tfadvq.evaluation import evaluate
from tfadvq.plots import plot_eer_vs_size
from tfadvq.quant import allocate, sensitivity
from tfadvq.quant.finetune import finetune
from tfadvq.quant.msft import MSFTSettings, msft
from tfadvq.report import print_table

from tfadvq.quant.mixed_run import quantize_within
from tfadvq.train_config import TrainConfig
from tfadvq.windows import ScoringConfig

from bench_common import finetune_budget, finetune_setup, header  # noqa: E402,I001  (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
FIGURE = ROOT / "docs" / "mixed_precision.png"


def resnet34_trace_seconds(batch: int, probes: int) -> dict:
    """Seconds of Hutchinson traces of a full-size ResNet34 (random weights) on one random batch."""
    from tfadvq.models import ResNet34

    model = ResNet34(feat_dim=80, embed_dim=256, base_width=32)
    x = np.random.default_rng(0).normal(size=(batch, 200, 80)).astype(np.float32)
    batches = sensitivity.objective_batches(tf.data.Dataset.from_tensors(x), 1)
    start = time.perf_counter()
    traces = sensitivity.hessian_traces(model, batches, probes=probes)
    seconds = time.perf_counter() - start
    return {"model": "ResNet34 (base 32, 80 mel, 256-d, random weights)", "params": int(model.count_params()),
            "tensors": len(traces), "batch": batch, "frames": 200, "probes": probes,
            "seconds": round(seconds, 1), "seconds_per_hvp": round(seconds / probes, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("/work/scratch/model"), help="FP32 train dir")
    parser.add_argument("--corpus", type=Path, default=Path("/work/scratch/corpus"))
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 3, 4], help="uniform widths to match")
    parser.add_argument("--steps", type=int, default=100, help="fine-tune steps, the same for every method")
    parser.add_argument("--stages", type=int, default=4, help="MSFT stages (steps / stages each)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr-scale", type=float, default=0.5, help="fine-tune peak lr / training lr")
    parser.add_argument("--refresh-steps", type=int, default=25)
    parser.add_argument("--trace-batches", type=int, default=2)
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--resnet34-probes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "mixed_precision.json")
    args = parser.parse_args()

    setup = finetune_setup(args)
    fp, corpus, config, data, head, fp_size = (setup.fp, setup.corpus, setup.config, setup.data, setup.head,
                                               setup.fp_size)
    scoring = ScoringConfig()
    frames = scoring.window_frames
    started = time.perf_counter()
    rows: list[dict] = []
    info: dict = {}

    def measure(method: str, target_bits: int | None, wrapped, seconds: float, **extra) -> dict:
        plain, records = tfadvq.strip(wrapped)
        result = evaluate(plain, corpus.trials, corpus.test, scoring)
        low, high = metrics.eer_ci95(result.scores, result.labels)
        converted = convert_model(plain, records.bits_by_layer(), frames)
        size = tfadvq.model_size(wrapped)
        params = sum(t.indices.size for t in records.tensors)
        row = {"method": method, "target_bits": target_bits,
               "bits": round(sum(t.indices.size * t.bits for t in records.tensors) / params, 3),
               "eer": round(result.eer, 3), "eer_ci95": [round(low, 3), round(high, 3)],
               "min_dcf": round(result.min_dcf[0.01], 4), "size_bytes": size.size_bytes,
               "compression": round(fp_size.size_bytes / size.size_bytes, 2),
               "tflite_bytes": len(converted.model), "seconds": round(seconds, 1), **extra}
        tqdm.write(str(row))
        rows.append(row)
        write(args, rows, info, config, corpus, started, partial=True)
        return row

    def tune(wrapped) -> dict:
        return finetune(wrapped, data, config, "aam", head_weights=head, refresh_steps=args.refresh_steps,
                        verbose=0).record()

    fp_eval = evaluate(fp, corpus.trials, corpus.test, scoring)
    low, high = metrics.eer_ci95(fp_eval.scores, fp_eval.labels)
    rows.append({"method": "fp32", "target_bits": None, "bits": 32, "eer": round(fp_eval.eer, 3),
                 "eer_ci95": [round(low, 3), round(high, 3)], "min_dcf": round(fp_eval.min_dcf[0.01], 4),
                 "size_bytes": fp_size.size_bytes, "compression": 1.0, "tflite_bytes": None})

    # Sensitivities once, on unlabeled batches of the fine-tune data (distillation at the FP32 point).
    settings = allocate.MixedSettings(batches=args.trace_batches, probes=args.probes)
    batches = sensitivity.objective_batches(data, settings.batches)
    began = time.perf_counter()
    plan = allocate.plan(fp, batches, settings, avg_bits=8.0, float_tflite_bytes=ConvertedSizes(frames).float_bytes(fp))
    info["demo_hessian"] = {"seconds": round(plan.trace_seconds, 1), "batches": settings.batches,
                            "batch_size": args.batch_size, "probes": settings.probes,
                            "hvps": settings.batches * len(next(iter(plan.traces.values())).running),
                            "tensors": len(plan.traces),
                            "plan_seconds": round(time.perf_counter() - began, 1), "objective": settings.objective}
    ranking = sorted(plan.traces, key=lambda k: plan.traces[k].mean_trace, reverse=True)
    info["sensitivity_ranking"] = [{"tensor": k, "params": plan.traces[k].params,
                                    "trace_per_param": plan.traces[k].mean_trace,
                                    "trace_stderr": plan.traces[k].stderr,
                                    "sensitivity_2bit": plan.sensitivity[k][2]} for k in ranking]
    info["front"] = [(p.planned_bytes, p.sensitivity) for p in plan.front]

    for bits in tqdm(args.bits, desc="uniform widths"):
        began = time.perf_counter()
        uniform = tfadvq.quantize(fp, bits, progress=False)
        measure("kmqat_ptq", bits, uniform, time.perf_counter() - began)
        tuned = tune(uniform)
        target = measure("kmqat", bits, uniform, time.perf_counter() - began, **tuned)["tflite_bytes"]

        began = time.perf_counter()
        mine, wrapped, tflite, rounds = quantize_within(fp, plan.replan(target_bytes=target), settings, target,
                                                        ConvertedSizes(frames))
        chosen = mine.allocation
        common = {"target_tflite_bytes": target, "planned_bytes": chosen.planned_bytes, "size_rounds": rounds,
                  "layer_bits": chosen.bits, "total_sensitivity": chosen.sensitivity}
        measure("mixed_ptq", bits, wrapped, time.perf_counter() - began, **common)
        tuned = tune(wrapped)
        measure("mixed", bits, wrapped, time.perf_counter() - began, **common, **tuned)

        began = time.perf_counter()
        staged = MSFTSettings(steps_per_stage=max(1, args.steps // args.stages), stages=args.stages,
                              objective="aam", lr_scale=args.lr_scale, refresh_steps=args.refresh_steps)
        with tempfile.TemporaryDirectory(prefix="mixed-msft-") as scratch:
            result = msft(fp, chosen.spec(), data, setup.train_config, staged, out=scratch, head_weights=head,
                          sensitivities=mine.chosen())
        measure("mixed_msft", bits, result.model, time.perf_counter() - began, **common,
                msft_groups=result.groups, last_loss=result.rows[-1]["loss_after"])

    info["resnet34_hessian"] = resnet34_trace_seconds(8, args.resnet34_probes)
    info["figure"] = draw(rows, info, f"{fp.name}: EER vs converted size (all {len(corpus.trials)} test trials)")
    write(args, rows, info, config, corpus, started, partial=False)
    print_table([{k: v for k, v in r.items() if k not in ("layer_bits", "msft_groups")} for r in rows],
                title="mixed precision vs uniform KMQAT")
    print_table(targets(rows), title="targets")


def draw(rows: list[dict], info: dict, title: str) -> str:
    """The EER-vs-size figure of the converted rows, with the allocation's Pareto front; its repository path."""
    figure = plot_eer_vs_size([r for r in rows if r["tflite_bytes"]], FIGURE, front=info["front"], title=title)
    return str(figure.relative_to(ROOT))


def targets(rows: list[dict]) -> list[dict]:
    """mixed <= uniform EER at equal bytes, MSFT <= one-shot, converted within 2 % of (and under) the target."""
    out = []
    by = {(r["method"], r["target_bits"]): r for r in rows}
    for bits in sorted({r["target_bits"] for r in rows if r["method"] == "kmqat"}):
        uniform, mixed, staged = by.get(("kmqat", bits)), by.get(("mixed", bits)), by.get(("mixed_msft", bits))
        if not (uniform and mixed):
            continue
        target = uniform["tflite_bytes"]
        row = {"target_bits": bits, "target_tflite_bytes": target, "mixed_tflite_bytes": mixed["tflite_bytes"],
               "within_2pct_and_under": 0.98 * target <= mixed["tflite_bytes"] <= target,
               "eer_kmqat": uniform["eer"], "eer_mixed": mixed["eer"],
               "mixed_le_uniform": mixed["eer"] <= uniform["eer"],
               "mixed_beyond_ci": mixed["eer_ci95"][1] < uniform["eer_ci95"][0]}
        if staged:
            row.update(eer_msft=staged["eer"], msft_le_oneshot=staged["eer"] <= mixed["eer"])
        out.append(row)
    return out


def write(args, rows, info, config: TrainConfig, corpus, started: float, partial: bool) -> None:
    report = {
        **header("mixed_precision"),
        "config": {
            "fp_model": str(args.model), "corpus": str(args.corpus), "trials": len(corpus.trials),
            "test_utterances": len(corpus.test), "scoring": "tfadvq.evaluation.evaluate, 200-frame windows",
            "finetune": {**finetune_budget(args, config, args.refresh_steps), "msft_stages": args.stages,
                         "msft_steps_per_stage": max(1, args.steps // args.stages)},
            "sensitivity": {"objective": "distill (unlabeled, FP32 point)", "estimator": "Hutchinson, Rademacher",
                            "batches": args.trace_batches, "probes": args.probes,
                            "quantizer": "kmeans per tensor; 1 bit: binary_adaptive",
                            "allowed_bits": list(allocate.DEFAULT_BITS)},
            "tflite": "converters.convert_model, float activations, verified under the TFLM interpreter",
            "eer_ci95": "bootstrap over trials, 1000 resamples (tfadvq.metrics.eer_ci95), percent",
            "partial": partial, "seconds": round(time.perf_counter() - started, 1), **info},
        "rows": rows,
        "targets": targets(rows),
    }
    rundir.write_json(args.out, report)


if __name__ == "__main__":
    main()
