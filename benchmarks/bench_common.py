"""What the comparison benchmarks share: their JSON header and the fine-tune budget they describe.

Methods compared in one benchmark get the same fine-tune budget; writing it
down once here keeps ``binary.py`` and ``mixed_precision.py`` describing it
the same way (the format is ``/work/shared/benchmarks.md``'s).
"""
from __future__ import annotations

import argparse
import datetime
from typing import Any

from tfadvq.report import machine_description
from tfadvq.train_config import TrainConfig


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
