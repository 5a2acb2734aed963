"""Is the tf.data pipeline fast enough to keep a small SV model's training busy?

Measures, in one process and one run, (a) batches/s of :func:`tfadvq.pipeline.train_dataset`
with every augmentation on (speed perturbation, noise, reverb, SpecAugment; batch 64, 2 s
crops) over a small espeak-ng corpus, and (b) training steps/s of a small SV model
(``TinyResNet`` from ``tfadvq.models`` when it exists, else a stand-in conv net) with a
softmax head on the same batch shape fed from memory.  Row field
``pipeline_to_step_ratio`` = (a) / (b) must be >= 2: the input pipeline is then not the
bottleneck even if training shared the CPU with it.

Run: ``.venv/bin/python benchmarks/data_pipeline.py`` (about 2 minutes on 2 cores);
writes benchmarks/results/data_pipeline.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tfadvq.audio import load_audio, save_wav
from tfadvq.compat import keras, tf
from tfadvq.config import to_dict
from tfadvq.pipeline import PipelineConfig, num_classes, speaker_labels, train_dataset
from tfadvq.report import print_table
from tfadvq.voxceleb import Utterance

RESULTS = Path(__file__).parent / "results" / "data_pipeline.json"
VOICES = ["en", "en-us", "en-gb-scotland", "de", "fr", "es", "it", "nl"]
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]


def make_corpus(root: Path, speakers: int, utts: int) -> list[Utterance]:
    """espeak-ng voices (language x pitch) as speakers, resampled to 16 kHz wav."""
    jobs = [(s, u) for s in range(speakers) for u in range(utts)]

    def synth(job: tuple[int, int]) -> Utterance:
        s, u = job
        key = f"spk{s:03d}/s0/{u:05d}.wav"
        raw = root / f"{s}_{u}.raw.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[s % len(VOICES)], "-p", str(10 + (7 * s) % 90),
                        "-s", str(130 + 10 * (u % 5)), "-w", str(raw), SENTENCES[u % len(SENTENCES)]],
                       check=True)
        save_wav(root / key, load_audio(raw))
        raw.unlink()
        return Utterance(key, str(root / key), f"spk{s:03d}")

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return list(pool.map(synth, jobs))


def small_sv_model(feat_dim: int, classes: int) -> tuple[keras.Model, str]:
    """Embedding model + softmax head; TinyResNet if the models package is there."""
    try:
        from tfadvq.models import build_model
    except ImportError:
        build_model = None
    if build_model is not None:
        embedder = build_model("TinyResNet", feat_dim=feat_dim, embed_dim=128, base_width=16)
        name = "TinyResNet(embed 128, width 16)"
    else:
        # Stand-in shaped like the ResNets of this project: 2-D convs over (frames, mel),
        # a full-resolution stage of width 16, then strided stages.
        inputs = keras.Input([None, feat_dim])
        x = keras.layers.Reshape([-1, feat_dim, 1])(inputs)
        for width, stride in [(16, 1), (16, 1), (32, 2), (64, 2), (128, 2)]:
            x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False)(x)
            x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        x = keras.layers.Dense(128)(keras.layers.GlobalAveragePooling2D()(x))
        embedder = keras.Model(inputs, x)
        name = "stand-in 5-layer Conv2D net, widths 16-128 (tfadvq.models not available)"
    logits = keras.layers.Dense(classes)(embedder.output)
    model = keras.Model(embedder.input, logits)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, name


def rate(step, count: int, warmup: int) -> float:
    """Calls per second of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(count):
        step()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speakers", type=int, default=32)
    parser.add_argument("--utts", type=int, default=6)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    config = PipelineConfig(batch_size=64, crop_seconds=2.0, speed_perturb=True, noise_prob=0.5,
                            reverb_prob=0.3, spec_augment=True, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        utterances = make_corpus(Path(tmp), args.speakers, args.utts)
        corpus_seconds = time.perf_counter() - start
        classes = num_classes(len(speaker_labels(utterances)), config)
        batches = iter(train_dataset(utterances, config).repeat())
        pipeline_rate = rate(lambda: next(batches), args.batches, warmup=3)
    model, model_name = small_sv_model(config.fbank.num_mel_bins, classes)
    rng = np.random.default_rng(0)
    features = tf.constant(rng.standard_normal([64, config.crop_frames, 80]), tf.float32)
    labels = tf.constant(rng.integers(0, classes, 64), tf.int32)
    step_rate = rate(lambda: model.train_on_batch(features, labels), args.steps, warmup=3)
    rows = [{
        "method": "train_dataset(all augmentations) vs train step",
        "batches_per_s": pipeline_rate,
        "steps_per_s": step_rate,
        "pipeline_to_step_ratio": pipeline_rate / step_rate,
        "seconds": args.batches / pipeline_rate + args.steps / step_rate,
    }]
    result = {
        "benchmark": "data_pipeline",
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {_cpu_model()}",
        "config": {
            "corpus": f"espeak-ng, {args.speakers} speakers x {args.utts} utts, 16 kHz",
            "corpus_seconds": round(corpus_seconds, 1),
            "pipeline": {k: v for k, v in to_dict(config).items() if k != "fbank"},
            "model": model_name, "classes": classes,
            "batches": args.batches, "steps": args.steps,
            "tensorflow": tf.__version__,
        },
        "rows": rows,
    }
    print_table(rows, "data pipeline vs training step (batch 64, 2 s crops, 80 fbank)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
