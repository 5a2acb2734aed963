"""The optimizer and learning-rate schedule of a training run."""
from __future__ import annotations

import math
from typing import Any

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError
from tfadvq.train_config import Decay, OptimizerName, TrainConfig


@keras.saving.register_keras_serializable(package="tfadvq")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Per-step learning rate: linear warm-up to ``peak_lr``, then decay to ``final_lr``.

    ``lr(s) = peak * (s + 1) / W`` for ``s < W``; afterwards with progress
    ``p = (s - W) / (T - W)`` clipped to [0, 1]: exponential
    ``peak * (final / peak) ** p`` (WeSpeaker's ExponentialDecrease), cosine
    ``final + (peak - final) * (1 + cos(pi p)) / 2``, or constant ``peak``.
    It depends only on the optimizer's step counter, which the backup
    restores, so a resumed run continues on the same curve.
    """

    def __init__(self, peak_lr: float, final_lr: float, warmup_steps: int, total_steps: int,
                 decay: str = "exponential"):
        self.peak_lr = float(peak_lr)
        self.final_lr = float(final_lr)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.decay = Decay(decay).value

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        warm = self.peak_lr * (step + 1.0) / warmup
        span = float(max(self.total_steps - self.warmup_steps, 1))
        p = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.decay == Decay.EXPONENTIAL.value:
            after = self.peak_lr * tf.pow(self.final_lr / self.peak_lr, p)
        elif self.decay == Decay.COSINE.value:
            after = self.final_lr + 0.5 * (self.peak_lr - self.final_lr) * (1.0 + tf.cos(math.pi * p))
        else:
            after = tf.constant(self.peak_lr, tf.float32)
        return tf.where(step < self.warmup_steps, warm, after)

    def get_config(self) -> dict[str, Any]:
        return {"peak_lr": self.peak_lr, "final_lr": self.final_lr, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay}


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The configured optimizer with a :class:`WarmupDecay` schedule over the whole run."""
    opt = config.optimizer
    if opt.lr <= 0 or config.schedule.final_lr <= 0:
        raise ConfigError(f"optimizer.lr and schedule.final_lr must be > 0, got {opt.lr}, "
                          f"{config.schedule.final_lr}")
    if opt.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay: {opt.weight_decay}; accepted: >= 0")
    schedule = WarmupDecay(opt.lr, config.schedule.final_lr,
                           round(config.schedule.warmup_epochs * steps_per_epoch),
                           config.epochs * steps_per_epoch, config.schedule.decay.value)
    # XLA-compiled updates (Keras' default) break on tfmot-wrapped variables and buy nothing on CPU.
    common = dict(learning_rate=schedule, weight_decay=float(opt.weight_decay), jit_compile=False)
    if opt.name is OptimizerName.ADAMW:
        optimizer = keras.optimizers.AdamW(**common)
    else:
        optimizer = keras.optimizers.SGD(momentum=opt.momentum, nesterov=opt.nesterov, **common)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer
