"""1-bit weights: plain sign (larq), the static and the adaptive binary quantizer, PTQ and fine-tuned.

One FP32 model (the trained demo TinyResNet, a ``TrainDir``), one corpus,
every test trial, one fine-tune budget.  Methods:

* ``sign``: larq's own ``ste_sign`` (``larq.quantizers.ste_sign``, clip 1.0):
  weights in {-1, +1}, no scale, plugged in as a tfadvq table quantizer
  (registered here as ``"larq_sign"``) so it is wrapped, stripped, sized and
  converted by the same code as the others;
* ``binary_static``: ``tfadvq.quant.binary.StaticBinaryQuantizer`` (α·sign, α = mean|w| per channel);
* ``binary_adaptive``: ``AdaptiveBinaryQuantizer`` (two 2-means values per channel, refreshed every step);

each with every quantizable layer at 1 bit (``first_last_bits`` 1) and with
the first convolution and the embedding layer at 8 bits
(:func:`tfadvq.quant.spec.higher_precision_ends`, k-means, stored as int8),
each post-training (``<method>_ptq``) and after the same fine-tune
(``<method>``): AAM-softmax from the trained head, the model's own training
config with the fine-tune changes of :func:`tfadvq.quant.finetune_config`,
``--steps`` steps on the same cached batches for every method.  Per-channel
tables for every method.

Every model is evaluated stripped (the weights the device gets) through
:func:`tfadvq.evaluation.evaluate` (the device's 200-frame windows), with a
95 % bootstrap interval (:func:`tfadvq.metrics.eer_ci95`); ``size_bytes`` is
:func:`tfadvq.model_size` (the cost model), ``tflite_bytes`` the LUT
``.tflite`` written by :func:`converters.convert_model`, which checks it
under the TFLM interpreter (float activations).  Also draws the weight
distributions of one layer before/after each fine-tuned method
(``benchmarks/results/binary_weights.png``).

Target (issue 13): EER adaptive < static < sign, outside the intervals.

Run: ``nice -n 10 .venv/bin/python benchmarks/binary.py`` (about 40 min on 2 shared cores);
writes ``benchmarks/results/binary.json``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tfadvq
from converters import convert_model
from tfadvq import metrics, rundir
from tfadvq.evaluation import evaluate
from tfadvq.plots import plot_binary_weights
from tfadvq.quant import api
from tfadvq.quant.finetune import finetune
from tfadvq.quant import quantizers as qz
from tfadvq.quant.spec import higher_precision_ends
from tfadvq.report import print_table
from tfadvq.train_config import TrainConfig
from tfadvq.windows import ScoringConfig

from bench_common import finetune_budget, finetune_setup, header  # noqa: E402,I001  (benchmarks/ is on sys.path)

import larq  # noqa: E402,I001  (after tfadvq.compat has chosen tf_keras: larq builds on tf.keras)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
METHODS = {"sign": "larq_sign", "binary_static": "static", "binary_adaptive": "adaptive"}
PLOT_LAYER = "stage3_block1_conv2"


@qz.register_quantizer("larq_sign")
class LarqSign(qz.TableQuantizer):
    """larq's ``ste_sign`` as a table quantizer: ``q = sign(w)`` in {-1, +1}, gradient ``1[|w| <= 1]``."""

    def __init__(self, bits: int = 1, per_channel: bool = True, channel_dims: int = 1):
        super().__init__(bits, per_channel, channel_dims)

    def __call__(self, inputs, training, weights, **kwargs):
        return larq.quantizers.ste_sign(inputs, clip_value=1.0)

    def value_table(self, w: np.ndarray) -> np.ndarray:
        table = np.array([-1.0, 1.0], np.float32)
        return np.tile(table, (qz._channels(w.shape, self.channel_dims), 1)) if self.per_channel else table


def average_bits(size: tfadvq.quant.SizeReport) -> float:
    """Bits per quantized weight, weighted by parameters (32-bit float parameters excluded)."""
    rows = [r for r in size.rows if r["bits"] < 32]
    return sum(r["bits"] * r["params"] for r in rows) / sum(r["params"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("/work/scratch/model"), help="FP32 train dir")
    parser.add_argument("--corpus", type=Path, default=Path("/work/scratch/corpus"))
    parser.add_argument("--steps", type=int, default=60, help="fine-tune steps, the same for every method")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr-scale", type=float, default=0.5, help="fine-tune peak lr / training lr")
    parser.add_argument("--end-bits", type=int, default=8, help="first conv and embedding when kept wider")
    parser.add_argument("--out", type=Path, default=RESULTS / "binary.json")
    args = parser.parse_args()

    setup = finetune_setup(args)
    fp, corpus, config, data, head, fp_size = (setup.fp, setup.corpus, setup.config, setup.data, setup.head,
                                               setup.fp_size)
    scoring = ScoringConfig()
    specs = {1: 1, args.end_bits: higher_precision_ends(fp, 1, args.end_bits)}

    rows, plotted = [], {}
    start = time.perf_counter()

    def measure(method: str, first_last: int, stage: str, wrapped, seconds: float) -> dict:
        plain, records = tfadvq.strip(wrapped)
        result = evaluate(plain, corpus.trials, corpus.test, scoring)
        low, high = metrics.eer_ci95(result.scores, result.labels)
        converted = convert_model(plain, records.bits_by_layer(), scoring.window_frames)
        size = tfadvq.model_size(wrapped)
        row = {"method": method if stage == "finetuned" else f"{method}_ptq", "stage": stage,
               "first_last_bits": first_last, "bits": round(average_bits(size), 3),
               "eer": round(result.eer, 3), "eer_ci95": [round(low, 3), round(high, 3)],
               "min_dcf": round(result.min_dcf[0.01], 4), "size_bytes": size.size_bytes,
               "compression": round(fp_size.size_bytes / size.size_bytes, 2),
               "tflite_bytes": len(converted.model),
               "tflm_min_cosine_vs_keras": round(float(converted.keras_parity.min_cosine), 6),
               "max_distinct_per_channel_1bit": max(int(np.unique(t.values().reshape(-1, t.shape[-1])[:, c]).size)
                                                    for t in records.tensors if t.bits == 1
                                                    for c in range(t.shape[-1])),
               "seconds": round(seconds, 1)}
        if stage == "finetuned" and first_last == 1:
            (latent,) = [q.source.numpy() for w, q in api.quantized_weights(wrapped) if w.layer.name == PLOT_LAYER]
            plotted[method] = (latent, records.get(PLOT_LAYER, "kernel"))
        tqdm.write(str(row))
        rows.append(row)
        return row

    fp_eval = evaluate(fp, corpus.trials, corpus.test, scoring)
    low, high = metrics.eer_ci95(fp_eval.scores, fp_eval.labels)
    rows.append({"method": "fp32", "stage": "fp32", "first_last_bits": 32, "bits": 32,
                 "eer": round(fp_eval.eer, 3), "eer_ci95": [round(low, 3), round(high, 3)],
                 "min_dcf": round(fp_eval.min_dcf[0.01], 4), "size_bytes": fp_size.size_bytes,
                 "compression": 1.0, "tflite_bytes": None})
    plan = [(m, b) for m in METHODS for b in specs]
    for method, first_last in tqdm(plan, desc="binary methods"):
        bits = specs[first_last]
        began = time.perf_counter()
        wrapped = tfadvq.ptq(fp, bits, binary=METHODS[method], per_channel=True, progress=False)
        measure(method, first_last, "ptq", wrapped, time.perf_counter() - began)
        began = time.perf_counter()  # the fine-tune starts from that same post-training model
        tuned = finetune(wrapped, data, config, "aam", head_weights=head, verbose=0)
        row = measure(method, first_last, "finetuned", wrapped, time.perf_counter() - began)
        row.update(tuned.record())
        write(args, rows, config, corpus, started=start, partial=True)
    figure = plot_binary_weights(fp.get_layer(PLOT_LAYER).get_weights()[0], plotted,
                                 RESULTS / "binary_weights.png",
                                 title=f"{PLOT_LAYER}/kernel: FP32, latent after the fine-tune, 1-bit values")
    write(args, rows, config, corpus, started=start, partial=False, figure=figure)
    print_table(rows, title="binary (1-bit) quantization")
    print_table(targets(rows), title="targets")


def ci_below(a: dict, b: dict) -> bool:
    """``a``'s EER interval lies entirely below ``b``'s."""
    return a["eer_ci95"][1] < b["eer_ci95"][0]


def targets(rows: list[dict]) -> list[dict]:
    """adaptive < static < sign (EER, and outside the 95 % intervals), per stage and first/last setting."""
    out = []
    for stage in ("ptq", "finetuned"):
        for first_last in sorted({r["first_last_bits"] for r in rows if r["stage"] == stage}):
            by = {r["method"].removesuffix("_ptq"): r for r in rows
                  if r["stage"] == stage and r["first_last_bits"] == first_last}
            if len(by) < 3:
                continue
            a, s, g = by["binary_adaptive"], by["binary_static"], by["sign"]
            out.append({"stage": stage, "first_last_bits": first_last,
                        "eer_adaptive": a["eer"], "eer_static": s["eer"], "eer_sign": g["eer"],
                        "adaptive_lt_static": a["eer"] < s["eer"], "static_lt_sign": s["eer"] < g["eer"],
                        "adaptive_lt_static_outside_ci": ci_below(a, s),
                        "static_lt_sign_outside_ci": ci_below(s, g)})
    return out


def write(args, rows, config: TrainConfig, corpus, *, started: float, partial: bool, figure: Path | None = None):
    report = {
        **header("binary"),
        "config": {
            "fp_model": str(args.model), "corpus": str(args.corpus), "trials": len(corpus.trials),
            "test_utterances": len(corpus.test), "scoring": "tfadvq.evaluation.evaluate, 200-frame windows",
            "finetune": finetune_budget(args, config, 100),
            "per_channel": True, "clip_value": 1.0, "end_bits": args.end_bits,
            "sign": f"larq {larq.__version__} ste_sign (clip 1.0), no scale",
            "tflite": "converters.convert_model, float activations, verified under the TFLM interpreter",
            "eer_ci95": "bootstrap over trials, 1000 resamples (tfadvq.metrics.eer_ci95)",
            "figure": str(figure.relative_to(ROOT)) if figure else None,
            "partial": partial, "seconds": round(time.perf_counter() - started, 1)},
        "rows": rows,
        "targets": targets(rows),
    }
    rundir.write_json(args.out, report)


if __name__ == "__main__":
    main()
