"""Is the tf.data pipeline fast enough to keep the demo model's training busy?

Measures, in one process and one run, (a) batches/s of :func:`tfadvq.pipeline.train_dataset`
with every augmentation on (speed perturbation, noise, reverb, SpecAugment; batch 64, 2 s
crops) over the training split of the default generated corpus, and (b) training steps/s of
the demo model (``build_model`` with tfadvq/configs/demo.yaml's ``model``/``model_args``)
under the AAM-softmax trainer and optimizer that ``tfadvq train`` uses, on the same batch
shape fed from memory.  Row field ``pipeline_to_step_ratio`` = (a) / (b) must be >= 2: the
input pipeline is then not the bottleneck even if training shared the CPU with it.

A second row reports the corpus-generation wall time of the default size
(``tfadvq data synth`` defaults).  Generation takes many minutes on this shared CPU, so an
existing default-size corpus is not regenerated: its ``generation_seconds`` is read from its
corpus.json.  Only when no default-size corpus exists is one generated (into the first
``--corpus`` path) and timed here.

Run: ``.venv/bin/python benchmarks/data_pipeline.py`` (about 2 minutes on 2 cores with an
existing corpus); writes benchmarks/results/data_pipeline.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tfadvq.compat import keras, tf
from tfadvq.config import to_dict
from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
from tfadvq.heads import AAMSoftmax
from tfadvq.models import build_model
from tfadvq.objectives import AAMTrainer
from tfadvq.pipeline import num_classes, speaker_labels, train_dataset
from tfadvq.report import machine_description, print_table
from tfadvq.optim import make_optimizer
from tfadvq.train_config import PipelineConfig, TrainConfig, load_config, packaged_config
from tfadvq.voxceleb import load_corpus

RESULTS = Path(__file__).parent / "results" / "data_pipeline.json"
REPO = Path(__file__).resolve().parent.parent
CORPORA = [REPO / "runs" / "demo" / "corpus", Path("/tmp/default_corpus")]
MANIFEST = "corpus.json"


def is_default_corpus(directory: Path) -> bool:
    """True when ``directory`` holds a finished corpus generated with the default SynthConfig."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return False
    return json.loads(manifest.read_text()).get("settings") == dataclasses.asdict(SynthConfig())


def generation_row(directory: Path, generated_now: bool) -> dict[str, object]:
    """The generation wall time recorded in ``directory``'s corpus.json, with what is known of the load."""
    manifest = json.loads((directory / MANIFEST).read_text())
    finished = datetime.datetime.fromtimestamp((directory / MANIFEST).stat().st_mtime)
    return {
        "method": "tfadvq data synth (default size)",
        "corpus": str(directory),
        "speakers": manifest["speakers_per_split"],
        "utterances": sum(manifest["utterances_per_split"].values()),
        "audio_hours": manifest["audio_hours"],
        "seconds": manifest["generation_seconds"],
        "last_run_seconds": manifest["last_run"]["seconds"],
        "source": "generated in this run" if generated_now else
                  f"read from {MANIFEST} (run finished {finished:%Y-%m-%d %H:%M}); not regenerated",
    }


def corpus_rows(candidates: list[Path]) -> tuple[Path, list[dict[str, object]]]:
    """Generation rows of every existing default-size corpus; generate the first one if none exists."""
    found = [c for c in candidates if is_default_corpus(c)]
    if found:
        return found[0], [generation_row(c, generated_now=False) for c in found]
    target = candidates[0]
    load = os.getloadavg()
    synthesize_corpus(target, SynthConfig())
    row = generation_row(target, generated_now=True)
    row["load_average_1_5_15"] = {"start": [round(x, 2) for x in load],
                                  "end": [round(x, 2) for x in os.getloadavg()]}
    return target, [row]


def demo_trainer(config: TrainConfig, classes: int) -> AAMTrainer:
    """The demo embedding model under the AAM head and optimizer ``tfadvq train`` would use."""
    keras.utils.set_random_seed(config.seed)
    embedder = build_model(config.model, **config.model_args)
    trainer = AAMTrainer(embedder, AAMSoftmax(classes, margin=config.head.margin, scale=config.head.scale))
    # The schedule's length only shapes the learning rate, not the cost of a step.
    trainer.compile(optimizer=make_optimizer(config, steps_per_epoch=100),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return trainer


def rate(step: Callable[[], object], count: int, warmup: int) -> float:
    """Calls per second of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(count):
        step()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, nargs="+", default=CORPORA,
                        help="default-size corpus directories to read generation times from; the first "
                             "found feeds the pipeline; if none exists, one is generated into the first")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--steps", type=int, default=15)
    args = parser.parse_args()
    load_before = os.getloadavg()
    corpus_dir, generation = corpus_rows(args.corpus)
    utterances = load_corpus(corpus_dir).train
    demo = load_config(packaged_config("demo"))
    config = PipelineConfig(batch_size=demo.pipeline.batch_size, crop_seconds=demo.pipeline.crop_seconds,
                            speed_perturb=True, noise_prob=0.5, reverb_prob=0.3, spec_augment=True, seed=0)
    classes = num_classes(len(speaker_labels(utterances)), config)
    batches = iter(train_dataset(utterances, config).repeat())
    pipeline_rate = rate(lambda: next(batches), args.batches, warmup=3)
    trainer = demo_trainer(demo, classes)
    rng = np.random.default_rng(0)
    features = tf.constant(rng.standard_normal([config.batch_size, config.crop_frames,
                                                config.fbank.num_mel_bins]), tf.float32)
    labels = tf.constant(rng.integers(0, classes, config.batch_size), tf.int32)
    step_rate = rate(lambda: trainer.train_on_batch((features, labels), labels), args.steps, warmup=3)
    pipeline_row = {
        "method": "train_dataset(all augmentations) vs demo train step",
        "batches_per_s": pipeline_rate,
        "steps_per_s": step_rate,
        "pipeline_to_step_ratio": pipeline_rate / step_rate,
        "seconds": args.batches / pipeline_rate + args.steps / step_rate,
    }
    result = {
        "benchmark": "data_pipeline",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {
            "corpus": f"{corpus_dir} (train split: {len(utterances)} utterances)",
            "pipeline": {k: v for k, v in to_dict(config).items() if k != "fbank"},
            "model": f"{demo.model}({demo.model_args}) from demo.yaml, AAMSoftmax head "
                     f"(margin {demo.head.margin}, scale {demo.head.scale}), {demo.optimizer.name.value}",
            "classes": classes, "batches": args.batches, "steps": args.steps,
            "tensorflow": tf.__version__,
            "load_average_1_5_15": {"start": [round(x, 2) for x in load_before],
                                    "end": [round(x, 2) for x in os.getloadavg()]},
            "load_note": "2 cores shared by ~8 engineers: pipeline and step rates measured side by side in "
                         "this run; only their ratio is meaningful.  corpus.json records no load for an "
                         "earlier generation run: its seconds are wall time on the same shared machine.",
        },
        "rows": [pipeline_row, *generation],
    }
    print_table([pipeline_row], "data pipeline vs demo training step (batch 64, 2 s crops, 80 fbank)")
    print_table(generation, "default corpus generation (wall time)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
