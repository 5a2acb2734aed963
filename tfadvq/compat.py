"""The one place that chooses Keras 2 (``tf_keras``).

tfmot 0.8 only understands Keras 2 layers and TF 2.17 hands out Keras 3 as
``tf.keras`` unless ``TF_USE_LEGACY_KERAS=1`` is set *before* TensorFlow is
imported.  Every tfadvq module imports ``keras`` and ``tf`` from here, so the
choice is made once and a wrong environment fails loudly instead of silently
mixing two Keras versions.
"""
from __future__ import annotations

import os
import sys

if "tensorflow" not in sys.modules:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
elif os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError(
        "tfadvq needs Keras 2 (tf_keras): TensorFlow was imported before tfadvq without "
        "TF_USE_LEGACY_KERAS=1. Set TF_USE_LEGACY_KERAS=1 in the environment or import "
        "tfadvq before tensorflow."
    )

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
