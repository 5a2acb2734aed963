"""Speaker-embedding networks: ``[batch, frames, feat_dim]`` fbank -> ``[batch, embed_dim]``.

No classifier head (that is :mod:`tfadvq.heads`, used only in training).
Configs name a factory and its arguments (``model: ResNet34``,
``model_args: {...}``); :func:`build_model` resolves them.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from tfadvq.compat import keras
from tfadvq.errors import ConfigError
from tfadvq.models.dfresnet import (
    DFResNet,
    DFResNet56,
    DFResNet110,
    DFResNet179,
    DFResNet233,
    TinyDFResNet,
)
from tfadvq.models.mcu import McuDFResNet
from tfadvq.models.pooling import StatsPooling
from tfadvq.models.lstm import LstmEncoder
from tfadvq.models.resnet import ResNet, ResNet18, ResNet34, TinyResNet
from tfadvq.models.tdnn import TdnnEncoder

MODELS: dict[str, Callable[..., keras.Model]] = {
    f.__name__: f for f in (ResNet18, ResNet34, TinyResNet,
                            DFResNet56, DFResNet110, DFResNet179, DFResNet233, TinyDFResNet, McuDFResNet,
                            LstmEncoder, TdnnEncoder)
}


def build_model(name: str, **model_args: Any) -> keras.Model:
    """The embedding model ``name`` (a key of :data:`MODELS`) built with ``model_args``.

    Unknown names and arguments raise ConfigError listing what is accepted.
    """
    if name not in MODELS:
        raise ConfigError(f"model: unknown model {name!r}; known models: {', '.join(MODELS)}")
    factory = MODELS[name]
    accepted = list(inspect.signature(factory).parameters)
    unknown = sorted(set(model_args) - set(accepted))
    if unknown:
        raise ConfigError(f"model_args for {name}: unknown argument(s) {unknown}; "
                          f"accepted: {accepted}")
    return factory(**model_args)


__all__ = ["MODELS", "build_model", "StatsPooling", "ResNet", "ResNet18", "ResNet34", "TinyResNet",
           "DFResNet", "DFResNet56", "DFResNet110", "DFResNet179", "DFResNet233", "TinyDFResNet",
           "McuDFResNet", "LstmEncoder", "TdnnEncoder"]
