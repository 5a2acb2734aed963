"""Shared pytest fixtures.

``TF_USE_LEGACY_KERAS`` is set before any test module imports TensorFlow, so
``tf.keras`` is Keras 2 (tf_keras) everywhere, as tfadvq.compat expects.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY_CORPUS = dict(speakers=8, test_speakers=4, utts=4, seed=0)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A generated corpus (8 train + 4 test speakers x 4 utterances), made once per session.

    Real speech from the corpus generator, in the layout of
    docs/architecture.md; takes a few seconds on two cores.
    """
    from tfadvq.corpus.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("tiny_corpus") / "corpus"
    synthesize_corpus(out, SynthConfig(**TINY_CORPUS), workers=2, progress=False)
    return out
