"""What the comparison benchmarks share: their JSON header and the fine-tune budget they describe.

Methods compared in one benchmark get the same fine-tune budget; writing it
down once here keeps ``binary.py`` and ``mixed_precision.py`` describing it
the same way (the format is ``/work/shared/benchmarks.md``'s).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
from typing import Any

import numpy as np

import tfadvq
from tfadvq import rundir
from tfadvq.compat import keras
from tfadvq.config import load_yaml
from tfadvq.model_io import load_model
from tfadvq.quant.finetune import finetune_config
from tfadvq.report import machine_description
from tfadvq.train_config import TrainConfig
from tfadvq.training import TrainingData, training_data
from tfadvq.voxceleb import Corpus, load_corpus


@dataclasses.dataclass
class Setup:
    """The FP32 model under comparison and the one fine-tune every method of the run gets."""

    fp: keras.Model
    corpus: Corpus
    train_config: TrainConfig  # the model's own training config on ``args.corpus``, ``args.steps`` an epoch
    config: TrainConfig  # ``train_config`` as a one-epoch fine-tune (:func:`finetune_config`)
    data: TrainingData  # ``args.steps`` batches, cached: every method trains on the same ones
    head: list[np.ndarray] | None  # the trained AAM head
    fp_size: Any  # tfadvq.quant.SizeReport of the FP32 model


def finetune_setup(args: argparse.Namespace) -> Setup:
    """Load ``args.model`` (a train directory) and ``args.corpus``; fix the fine-tune budget from ``args``."""
    train_dir = rundir.TrainDir(args.model)
    fp = load_model(args.model)
    corpus = load_corpus(args.corpus)
    base = load_yaml(TrainConfig, train_dir.config)
    base = dataclasses.replace(base, pipeline=dataclasses.replace(base.pipeline, batch_size=args.batch_size),
                               data=dataclasses.replace(base.data, corpus=str(args.corpus)),
                               steps_per_epoch=args.steps)
    config = finetune_config(base, epochs=1, lr_scale=args.lr_scale)
    data = training_data(config, corpus.train)
    data = dataclasses.replace(data, dataset=data.dataset.take(args.steps).cache(), steps_per_epoch=args.steps)
    return Setup(fp, corpus, base, config, data, train_dir.load_head(), tfadvq.model_size(fp))


def header(name: str) -> dict[str, str]:
    """``benchmark``, ``date`` and ``machine`` of a result file."""
    return {"benchmark": name, "date": datetime.date.today().isoformat(), "machine": machine_description()}


def finetune_budget(args: argparse.Namespace, config: TrainConfig, refresh_steps: int) -> dict[str, Any]:
    """The AAM fine-tune every method of a run gets: steps, batch, optimizer, schedule, codebook refresh."""
    return {"objective": "aam", "head": "trained (head.npz)", "steps": args.steps,
            "batch_size": args.batch_size, "optimizer": config.optimizer.name.value,
            "peak_lr": config.optimizer.lr, "lr_scale": args.lr_scale,
            "schedule": config.schedule.decay.value, "same_cached_batches": True,
            "codebook_refresh_steps": refresh_steps}
