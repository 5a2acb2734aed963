"""Post-training quantization of a model you did not train: plain vs Fisher-weighted k-means, tables, bias correction.

Two FP32 models: the demo TinyResNet (``/work/scratch/model``) and a TinyDFResNet
trained briefly here on the same corpus (``tfadvq.training.train``,
``--dfresnet-steps`` AAM steps; another architecture: depthwise-separable
blocks).  For each, at ``--bits`` (8/6/4/3/2):

* ``kmqat_ptq``: ``tfadvq.ptq`` (k-means codebooks, no training), per tensor
  and per channel;
* ``kmqat_ptq_weighted``: the same with importances = the diagonal Fisher of
  the distillation objective (``tfadvq.quant.sensitivity.fisher_diagonal``
  on ``--fisher-batches`` x ``--batch-size`` unlabeled crops), i.e.
  sensitivity-weighted k-means;
* both again with bias correction (``tfadvq.quant.bias_correction``, on
  ``--bc-batches`` batches) at ``--bc-bits``, per channel;
* ``sklearn_kmeans_ptq``: the same per-tensor layers with sklearn KMeans
  codebooks (k-means++, ``n_init=1``) in place of ours;
* ``tfmot_cluster_ptq``: tfmot ``cluster_weights`` (2^b clusters, k-means++
  init) on the same layers, stripped, no training.

Every row is scored through ``tfadvq.evaluation.evaluate`` (whole test
utterances, cosine) on the trials among ``--test-speakers`` test speakers:
``eer`` (%), ``eer_ci95`` (``tfadvq.metrics.eer_ci95``, %), ``min_dcf``
(p_target 0.01), ``mean_cosine_to_fp32`` (mean cosine between the model's and
the FP32 model's embeddings of ``--cosine-utts`` test utterances) and
``size_bytes`` (``tfadvq.model_size``, the cost model).  Then distillation
fine-tuning (``tfadvq.quant.finetune``, objective distill, labels unused,
codebook refresh) from the best PTQ setting at 4 and 3 bits, a fixed
``--finetune-steps`` budget.  Last, the ``kmeans_error`` table (kmeans1d vs
sklearn squared error on heavy-tailed tensors, ``benchmarks/kmeans_error.py``
at its quick k list).

Usage: ``python benchmarks/ptq.py``; writes benchmarks/results/ptq.json.  On a loaded machine the
two models can run in parallel (``--models X --out a.json`` twice) and be merged
(``--models --include a.json b.json``), which is how the committed JSON was made.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import time
import warnings
from pathlib import Path

import numpy as np
import tensorflow_model_optimization as tfmot
from tqdm import tqdm

import tfadvq
from tfadvq import metrics, rundir
from tfadvq import scoring as sc
from tfadvq.compat import keras
from tfadvq.config import load_yaml
from tfadvq.evaluation import evaluate
from tfadvq.model_io import load_model
from tfadvq.quant import api, bias_correction, sensitivity
from tfadvq.quant.finetune import finetune, finetune_config
from tfadvq.report import machine_description, print_table
from tfadvq.train_config import TrainConfig
from tfadvq.training import train
from tfadvq.voxceleb import load_corpus
from tfadvq.windows import ScoringConfig

from kmqat import cached_finetune_data, copy_of, frozen_copy, test_subset  # benchmarks/ is the script dir
from kmeans_error import QUICK_KS, error_rows, sklearn_codebook

ROOT = Path(__file__).resolve().parent.parent
RESULT = Path(__file__).parent / "results" / "ptq.json"


def dfresnet(config: TrainConfig, workdir: Path, steps: int) -> keras.Model:
    """A TinyDFResNet trained with the demo's recipe for ``steps`` AAM steps (resumed/reused in ``workdir``)."""
    epochs = max(1, steps // 40)
    run_config = dataclasses.replace(config, model="TinyDFResNet", model_args={"feat_dim": 80, "embed_dim": 128},
                                     epochs=epochs, steps_per_epoch=steps // epochs)
    run = workdir / "dfresnet"
    if not (run / "model.keras").is_file():
        train(run_config, run, verbose=2)
    return load_model(run)


@dataclasses.dataclass
class Bench:
    """One FP32 model's shared inputs: trials, reference embeddings, data for Fisher / BC / fine-tuning."""

    name: str
    fp: keras.Model
    trials: object
    utterances: list
    cosine_utts: list
    reference: dict
    data: object  # TrainingData of cached unlabeled crops (labels unused)
    config: TrainConfig

    def row(self, method: str, bits: int, model: keras.Model, size_bytes: int, **extra) -> dict:
        result = evaluate(model, self.trials, self.utterances)
        lo, hi = metrics.eer_ci95(result.scores, result.labels)
        emb = sc.embed_utterances(sc.as_embedder(model), self.cosine_utts, ScoringConfig(), progress=False)
        cosine = float(np.mean([np.dot(emb[k], self.reference[k]) for k in self.reference]))
        out = {"model": self.name, "method": method, "bits": bits, **extra, "eer": result.eer,
               "eer_ci95": [lo, hi], "min_dcf": result.min_dcf[0.01],
               "mean_cosine_to_fp32": cosine, "size_bytes": int(size_bytes)}
        tqdm.write(json.dumps(out))
        return out


def kmqat_rows(b: Bench, bits: int, fisher: dict, bc_batches: list, bc_bits: list[int]) -> list[dict]:
    rows = []
    for weighted in (False, True):
        for per_channel in (False, True):
            method = "kmqat_ptq_weighted" if weighted else "kmqat_ptq"
            start = time.perf_counter()
            wrapped = tfadvq.ptq(b.fp, bits, per_channel=per_channel, importances=fisher if weighted else None,
                                 progress=False)
            seconds = time.perf_counter() - start
            plain, _ = tfadvq.strip(wrapped)
            size = tfadvq.model_size(wrapped).size_bytes
            rows.append(b.row(method, bits, plain, size, per_channel=per_channel, bias_correction=False,
                              seconds=seconds))
            if per_channel and bits in bc_bits:
                corrected = bias_correction.correct_bias(b.fp, plain, bc_batches)
                fixed = sum(not r["correction"].startswith("none") for r in corrected)
                rows.append(b.row(method, bits, plain, size, per_channel=True, bias_correction=True,
                                  corrected_layers=fixed))
    return rows


def sklearn_row(b: Bench, bits: int) -> dict:
    """Our per-tensor quantizers with sklearn KMeans codebooks (same layers, same storage)."""
    wrapped = tfadvq.ptq(b.fp, bits, progress=False)
    for _, q in api.quantized_weights(wrapped):
        values = q.source.numpy().ravel()
        book = sklearn_codebook(values, min(2 ** bits, values.size))  # sklearn refuses k > n (8-bit, 144 values)
        q._codebook.assign(np.concatenate([book, np.full(2 ** bits - book.size, book[-1], np.float32)]))
    plain, _ = tfadvq.strip(wrapped)
    return b.row("sklearn_kmeans_ptq", bits, plain, tfadvq.model_size(wrapped).size_bytes, per_channel=False,
                 bias_correction=False)


def tfmot_row(b: Bench, bits: int) -> dict:
    cluster = tfmot.clustering.keras
    wrapped = tfadvq.ptq(b.fp, bits, progress=False)
    names = {w.layer.name for w, _ in api.quantized_weights(wrapped)}

    def wrap(layer):
        if layer.name not in names:
            return layer
        return cluster.cluster_weights(layer, number_of_clusters=2 ** bits,
                                       cluster_centroids_init=cluster.CentroidInitialization.KMEANS_PLUS_PLUS)

    try:
        plain = cluster.strip_clustering(keras.models.clone_model(copy_of(b.fp), clone_function=wrap))
    except Exception as exc:  # tfmot refuses some layers: record it rather than stop the run
        return {"model": b.name, "method": "tfmot_cluster_ptq", "bits": bits, "refused": str(exc)[:200]}
    return b.row("tfmot_cluster_ptq", bits, plain, tfadvq.model_size(b.fp, bits).size_bytes, per_channel=False,
                 bias_correction=False)


def finetune_row(b: Bench, best: dict, fisher: dict, steps: int, refresh: int) -> dict:
    """Distillation fine-tuning (labels unused) from the best PTQ setting, a fixed step budget."""
    wrapped = tfadvq.ptq(b.fp, best["bits"], per_channel=best["per_channel"],
                         importances=fisher if best["method"] == "kmqat_ptq_weighted" else None, progress=False)
    config = finetune_config(b.config, epochs=1, steps_per_epoch=steps)
    tuned = finetune(wrapped, b.data, config, "distill", teacher=frozen_copy(b.fp), refresh_steps=refresh,
                     verbose=0)
    plain, _ = tfadvq.strip(wrapped)
    return b.row("kmqat_distill", best["bits"], plain, tfadvq.model_size(wrapped).size_bytes,
                 per_channel=best["per_channel"], bias_correction=False, start=best["method"], **tuned.record())


def targets(rows: list[dict], error: list[dict]) -> list[dict]:
    out = []
    worst = max(error, key=lambda r: r["error_ratio"])
    out.append({"target": "kmeans1d error <= sklearn at every k", "measured": worst["error_ratio"],
                "limit": 1 + 1e-9, "met": worst["error_ratio"] <= 1 + 1e-9})
    eer = {_key(r): r["eer"] for r in rows if "eer" in r}
    for model in sorted({r["model"] for r in rows}):
        for bits in (4, 3, 2):
            for pc in (False, True):
                plain, weighted = (eer.get((model, m, bits, pc, False)) for m in ("kmqat_ptq", "kmqat_ptq_weighted"))
                if plain is not None and weighted is not None:
                    out.append({"target": f"{model} {bits}-bit {'per-channel' if pc else 'per-tensor'}: "
                                          "weighted <= plain EER", "measured": weighted, "limit": plain,
                                "met": weighted <= plain})
        fp, pc4 = eer.get((model, "fp32", 32, None, None)), eer.get((model, "kmqat_ptq", 4, True, False))
        if fp is not None and pc4 is not None:
            out.append({"target": f"{model} 4-bit per-channel PTQ <= 1.1 x FP32 EER", "measured": pc4,
                        "limit": 1.1 * fp, "met": pc4 <= 1.1 * fp})
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("/work/scratch/corpus"))
    parser.add_argument("--model", type=Path, default=Path("/work/scratch/model"), help="the demo FP32 train dir")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "ptq")
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4, 3, 2])
    parser.add_argument("--dfresnet-bits", type=int, nargs="+", default=[4, 3, 2],
                        help="bit widths for the second model (a trimmed grid: the CPU budget)")
    parser.add_argument("--bc-bits", type=int, nargs="+", default=[4, 3, 2], help="bits with bias-corrected rows")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fisher-batches", type=int, default=8, help="unlabeled batches for the Fisher")
    parser.add_argument("--bc-batches", type=int, default=2, help="batches for bias correction")
    parser.add_argument("--dfresnet-steps", type=int, default=160, help="AAM steps training the TinyDFResNet")
    parser.add_argument("--finetune-steps", type=int, default=40)
    parser.add_argument("--refresh-steps", type=int, default=10)
    parser.add_argument("--test-speakers", type=int, default=16)
    parser.add_argument("--cosine-utts", type=int, default=48)
    parser.add_argument("--models", nargs="*", default=["demo_TinyResNet", "TinyDFResNet"],
                        help="models to run (none: only merge --include files and the kmeans_error table)")
    parser.add_argument("--include", type=Path, nargs="*", default=[],
                        help="result files of runs of the other models (run in parallel), merged into --out")
    parser.add_argument("--note", default="", help="what this run trimmed or changed, kept in the JSON config")
    parser.add_argument("--out", type=Path, default=RESULT)
    return parser.parse_args()


def setup(args: argparse.Namespace) -> tuple:
    """Seeded; the corpus, the test trials and utterances, the cosine subset, the model's recipe at ``--batch-size``."""
    warnings.simplefilter("ignore", category=FutureWarning)
    keras.utils.set_random_seed(0)
    corpus = load_corpus(args.corpus)
    trials, utterances = test_subset(corpus, args.test_speakers)
    cosine_utts = utterances[:: max(1, len(utterances) // args.cosine_utts)][:args.cosine_utts]
    base = load_yaml(TrainConfig, args.model / "train.yaml")
    base = dataclasses.replace(base, pipeline=dataclasses.replace(base.pipeline, batch_size=args.batch_size))
    return corpus, trials, utterances, cosine_utts, base


def main() -> None:
    args = parse_args()
    corpus, trials, utterances, cosine_utts, base = setup(args)
    rows, info = [], {}
    for name in args.models:
        fp = load_model(args.model) if name.startswith("demo") else dfresnet(base, args.workdir,
                                                                                        args.dfresnet_steps)
        data = cached_finetune_data(base, corpus, max(args.fisher_batches, args.finetune_steps))
        start = time.perf_counter()
        fisher = sensitivity.fisher_diagonal(fp, sensitivity.objective_batches(data, args.fisher_batches),
                                             objective="distill")
        info[name] = {"params": int(fp.count_params()), "fisher_seconds": time.perf_counter() - start}
        reference = sc.embed_utterances(sc.as_embedder(fp), cosine_utts, ScoringConfig(), progress=False)
        b = Bench(name, fp, trials, utterances, cosine_utts, reference, data, base)
        rows.append(b.row("fp32", 32, fp, tfadvq.model_size(fp).size_bytes))
        bc_batches = bias_correction.input_batches(data, args.bc_batches)
        grid = args.bits if name.startswith("demo") else args.dfresnet_bits
        for bits in grid:
            rows += kmqat_rows(b, bits, fisher, bc_batches, args.bc_bits)
            rows.append(sklearn_row(b, bits))
            rows.append(tfmot_row(b, bits))
            write(args.out, {"config": info, "rows": rows, "partial": True})  # a late failure keeps these
        for bits in (4, 3):
            if bits not in grid:
                continue
            ptq = [r for r in rows if r["model"] == name and r["bits"] == bits and r["method"].startswith("kmqat_ptq")
                   and not r["bias_correction"]]
            rows.append(finetune_row(b, min(ptq, key=lambda r: r["eer"]), fisher, args.finetune_steps,
                                     args.refresh_steps))
    for other in args.include:  # another model's rows (and its settings), measured by a parallel run
        earlier = json.loads(other.read_text())
        seen = {_key(r) for r in rows}
        rows += [r for r in earlier["rows"] if r.get("table") != "kmeans_error" and r["model"] not in args.models
                 and _key(r) not in seen]  # one FP32 row per model when its bit widths ran apart
        config = earlier["config"]
        info.update({k: v for k, v in config.get("models", config).items() if k not in args.models})
    error = [{**r, "table": "kmeans_error"} for r in error_rows(QUICK_KS, exact=False)]
    print_table([{k: r.get(k) for k in ("model", "method", "bits", "per_channel", "bias_correction", "eer",
                                         "min_dcf", "mean_cosine_to_fp32", "size_bytes")} for r in rows],
                title="post-training quantization")
    print_table([{k: r[k] for k in ("tensor", "weighted", "k", "error_ratio")} for r in error],
                title="kmeans_error: squared error ours / sklearn")
    checks = targets(rows, error)
    print_table(checks, title="targets")
    config = {"corpus": str(args.corpus), "demo_model": str(args.model), "models": info,
              "trials": len(trials), "test_speakers": args.test_speakers, "cosine_utts": len(cosine_utts),
              "bits": args.bits, "dfresnet_bits": args.dfresnet_bits, "bc_bits": args.bc_bits, "batch_size": args.batch_size,
              "fisher": f"sensitivity.fisher_diagonal, objective distill, {args.fisher_batches} batches of "
                        f"{args.batch_size} 2-s crops (labels unused)",
              "bias_correction": f"{args.bc_batches} batches of {args.batch_size}, per-channel rows only",
              "dfresnet": {"model": "TinyDFResNet", "aam_steps": args.dfresnet_steps, "recipe": "demo train.yaml"},
              "finetune": {"objective": "distill", "steps": args.finetune_steps, "refresh_steps": args.refresh_steps,
                           "lr": "demo lr x 0.1, no warm-up", "data": "cached fbank crops, labels unused"},
              "sklearn": "KMeans(k, n_init=1, k-means++, random_state=0) per tensor",
              "tfmot": "cluster_weights(2^b, KMEANS_PLUS_PLUS) + strip_clustering, no training",
              "kmeans_error_ks": QUICK_KS, "note": args.note}
    result = {"benchmark": "ptq", "date": datetime.date.today().isoformat(), "machine": machine_description(),
              "config": config, "rows": rows + error, "targets": checks}
    write(args.out, result)


def _key(row: dict) -> tuple:
    return row["model"], row["method"], row["bits"], row.get("per_channel"), row.get("bias_correction")


def write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write(path, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
