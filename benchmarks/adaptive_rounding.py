"""Adaptive rounding onto the k-means codebooks vs nearest rounding, post-training, no labels.

One trained FP32 model (default: the demo's device model, ``runs/demo/train``) on
its corpus.  At each ``--bits``, plain and Fisher-weighted k-means codebooks
(``tfadvq.quant.post_training``, per tensor), each with ``rounding: nearest``
(every weight to its nearest centroid) and ``rounding: adaptive``
(:mod:`tfadvq.quant.adaptive_rounding`: per layer, each weight takes the
centroid below or above it so that the layer's output on unlabeled reconstruction
crops is reconstructed best).  Same codebooks, same size; the reconstruction crops
(training utterances, labels unused) are disjoint from the test speakers.  No bias
correction (pinned off: it would act on both roundings alike).

Every row: EER (%) with its interval, minDCF and mean cosine to the FP32
embeddings of held-out test utterances (``benchmarks/ptq.py``'s ``Bench.row``),
and the seconds the rounding took.

Usage: ``python benchmarks/adaptive_rounding.py``; writes benchmarks/results/adaptive_rounding.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import time
from pathlib import Path

import numpy as np

import tfadvq
from tfadvq import scoring as sc
from tfadvq.model_io import load_model
from tfadvq.quant.adaptive_rounding import RoundingSettings
from tfadvq.quant.post_training import PTQSettings, post_training
from tfadvq.report import machine_description, print_table
from tfadvq.windows import ScoringConfig

from kmqat import cached_finetune_data  # benchmarks/ is the script dir
from ptq import Bench, setup, write

ROOT = Path(__file__).resolve().parent.parent
RESULT = Path(__file__).parent / "results" / "adaptive_rounding.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "runs" / "demo" / "train", help="FP32 train dir")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "demo" / "corpus")
    parser.add_argument("--bits", type=int, nargs="+", default=[4, 3, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-batches", type=int, default=4,
                        help="unlabeled batches for the Fisher and the rounding")
    parser.add_argument("--test-speakers", type=int, default=40)
    parser.add_argument("--cosine-utts", type=int, default=48)
    parser.add_argument("--out", type=Path, default=RESULT)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    corpus, trials, utterances, cosine_utts, base = setup(args)
    fp = load_model(args.model)
    data = cached_finetune_data(base, corpus, args.data_batches)
    reference = sc.embed_utterances(sc.as_embedder(fp), cosine_utts, ScoringConfig(), progress=False)
    bench = Bench(fp.name, fp, trials, utterances, cosine_utts, reference, data, base)
    rows = [bench.row("fp32", 32, fp, tfadvq.model_size(fp).size_bytes)]
    for bits in args.bits:
        for weighted in (False, True):
            for rounding in ("nearest", "adaptive"):
                settings = PTQSettings(bits=bits, weighted=weighted, bias_correction=False,
                                       fisher_batches=args.data_batches,
                                       rounding=rounding)
                start = time.perf_counter()
                result = post_training(fp, settings, data, progress=False)
                seconds = time.perf_counter() - start
                plain, _ = tfadvq.strip(result.wrapped)
                layers = result.rounding or []
                rows.append(bench.row(f"kmqat_ptq{'_weighted' if weighted else ''}", bits, plain,
                                      tfadvq.model_size(result.wrapped).size_bytes, rounding=rounding,
                                      seconds=seconds,
                                      adaptive_layers=sum(r["rounding"] == "adaptive" for r in layers),
                                      layer_error_ratio=float(np.median(
                                          [r["error"] / r["error_nearest"] for r in layers
                                           if r["error_nearest"]])) if layers else None))
                write(args.out, {"rows": rows, "partial": True})
    print_table([{k: r.get(k) for k in ("method", "bits", "rounding", "eer", "min_dcf", "mean_cosine_to_fp32",
                                         "size_bytes", "seconds")} for r in rows], title="adaptive rounding")
    config = {"model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
              "params": int(fp.count_params()), "corpus": str(args.corpus), "trials": len(trials),
              "test_speakers": args.test_speakers, "cosine_utts": len(cosine_utts),
              "reconstruction_data": f"{args.data_batches} batches of {args.batch_size} 2-s training crops, "
                             "labels unused", "rounding": dataclasses.asdict(RoundingSettings())}
    write(args.out, {"benchmark": "adaptive_rounding", "date": datetime.date.today().isoformat(),
                     "machine": machine_description(), "config": config, "rows": rows})


if __name__ == "__main__":
    main()
