"""Run converted models under the real TFLite-Micro interpreter.

``tf.lite`` cannot execute DECODE (LUT-compressed) models, and it would not
prove what the device does anyway: every check here goes through
``tflite_micro.runtime.Interpreter``, the same C++ kernels the firmware links.
The interpreter takes one ``[1, frames, mels]`` input per invoke, so batches are
run one example at a time.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
from tflite_micro import runtime
from tqdm import tqdm

from converters.metadata import FIRMWARE_FBANK
from tfadvq.errors import ConversionError
from tfadvq.frontend import FrontEnd, check_input
from tfadvq.scoring import FeatureEmbedder, default_front_end

T = TypeVar("T")

# Generous arena for host runs; the size actually used is measured, not assumed.
HOST_ARENA_BYTES = 64 * 1024 * 1024
_ARENA_TOTAL = re.compile(rb"Arena allocation total (\d+) bytes")


@contextlib.contextmanager
def _captured_stdio() -> Iterator[list[bytes]]:
    """Collect what C++ code writes to file descriptors 1 and 2.

    TFLM reports arena use and kernel errors with ``MicroPrintf`` straight to
    the process's stdio, which Python's ``sys.stderr`` redirection never sees.
    """
    out: list[bytes] = []
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in saved:
                os.dup2(sink.fileno(), fd)
            yield out
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            out.append(sink.read())


def _tflm_call(call: Callable[[], T], what: str) -> T:
    """Run ``call`` with TFLM's stdio captured, so a failure carries TFLM's own explanation."""
    with _captured_stdio() as log:
        try:
            return call()
        except RuntimeError as exc:
            failure = exc
    detail = log[0].decode(errors="replace").strip()
    raise ConversionError(f"TFLite-Micro {what} ({failure}); TFLM says: {detail}") from failure


def make_interpreter(model: bytes, arena_size: int = HOST_ARENA_BYTES) -> runtime.Interpreter:
    """A TFLM interpreter for ``model``; a model TFLM cannot prepare raises ConversionError."""
    return _tflm_call(lambda: runtime.Interpreter.from_bytes(bytes(model), arena_size=arena_size),
                      "cannot load the converted model")


def input_shape(model: bytes) -> tuple[int, ...]:
    """The shape of the converted model's input tensor (``[1, frames, mels]`` for tfadvq's models)."""
    details = make_interpreter(model).get_input_details(0)
    return tuple(int(d) for d in details["shape"])


def quantize_features(features: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``features`` as int8, rounded as TFLM's QUANTIZE kernel (reference ``AffineQuantize``): the
    division in float32, half away from zero (not numpy's half to even), plus the zero point, clamped.

    The firmware's ``QuantizeInt8`` does the same, so an int8-input model sees the same tensor on the
    device as here; a model with a float input and a leading QUANTIZE op computes it likewise.
    """
    q = np.asarray(features, np.float32) / np.float32(scale)
    rounded = np.sign(q) * np.floor(np.abs(q).astype(np.float64) + 0.5)
    return np.clip(rounded + zero_point, -128, 127).astype(np.int8)


def set_features(interpreter: runtime.Interpreter, features: np.ndarray) -> None:
    """Set the model's input to ``features`` (float ``[1, frames, mels]``), quantised for an int8 input."""
    details = interpreter.get_input_details(0)
    if details["dtype"] == np.int8:
        scale, zero_point = details["quantization_parameters"]["scales"][0], \
            details["quantization_parameters"]["zero_points"][0]
        features = quantize_features(features, scale, int(zero_point))
    else:
        features = np.asarray(features, np.float32)
    interpreter.set_input(features, 0)


def run_tflm(model: bytes, inputs: np.ndarray, progress: bool = False) -> np.ndarray:
    """Outputs of ``model`` for each example of ``inputs`` ``[N, frames, mels]`` -> ``[N, D]``.

    Each example is an independent utterance: the interpreter is reset before
    every invoke, so a stateful kernel (LSTM) does not carry its state from
    one example into the next (measured: without the reset an LSTM's outputs
    drift from Keras after the first example).
    """
    interpreter = make_interpreter(model)
    outputs = []
    for example in tqdm(inputs, desc="TFLM invoke", disable=not progress, leave=False):
        _tflm_call(interpreter.reset, "failed to reset the interpreter")
        set_features(interpreter, np.asarray(example, np.float32)[None])
        _tflm_call(interpreter.invoke, "failed to invoke the model")
        outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs)


def tflm_embedder(tflite_model: bytes, front_end: FrontEnd | None = None) -> FeatureEmbedder:
    """A :data:`tfadvq.scoring.Embedder`: window batches through the interpreter, one invoke per window.

    This is what the firmware runs, so scores from it are the device's scores:
    for the front end the firmware computes (``metadata.FIRMWARE_FBANK``), its
    features are the firmware's too, frames kept as int16 codes before the mean
    (``FbankConfig.int16_frames``, :mod:`tfadvq.features` step 10b).
    ``front_end``: the converted model's (its ``model.json`` ``feature``), checked
    against the model's input; None means the default ``FbankConfig()``.
    """
    model = bytes(tflite_model)
    front_end = check_input(default_front_end(front_end), input_shape(model)[-1], "the converted model")
    if front_end.fbank == FIRMWARE_FBANK:
        front_end = replace(front_end, fbank=replace(front_end.fbank, int16_frames=True))
    return FeatureEmbedder(lambda windows: run_tflm(model, np.asarray(windows, np.float32)), front_end)


def arena_bytes(model: bytes, input_shape: tuple[int, ...]) -> int:
    """Arena bytes TFLM allocated for ``model`` after one invoke (head + tail).

    Read from the RecordingMicroAllocator report, so it is the measured need of
    this interpreter build; firmware should add a small margin for its own
    kernels' scratch buffers (CMSIS-NN may ask for more than the reference ones).
    """
    interpreter = make_interpreter(model)
    set_features(interpreter, np.zeros(input_shape, np.float32))
    interpreter.invoke()
    with _captured_stdio() as log:
        interpreter.print_allocations()
    found = _ARENA_TOTAL.search(log[0])
    if found is None:
        raise ConversionError("TFLite-Micro did not report its arena allocation")
    return int(found.group(1))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of ``a`` and ``b``."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)


@dataclass(frozen=True)
class Parity:
    """How closely a converted model reproduces a reference on the same inputs."""

    min_cosine: float
    max_abs_diff: float

    def check(self, min_cosine: float, what: str) -> None:
        """Raise ConversionError when the parity is below ``min_cosine``."""
        if not self.min_cosine >= min_cosine:
            raise ConversionError(
                f"{what}: embeddings disagree (min cosine {self.min_cosine:.6f} < {min_cosine}, "
                f"max |diff| {self.max_abs_diff:.4g})"
            )


def parity(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """Compare two ``[N, D]`` embedding batches row by row."""
    return Parity(
        min_cosine=float(np.min(cosine_rows(reference, candidate))),
        max_abs_diff=float(np.max(np.abs(np.asarray(reference) - np.asarray(candidate)))),
    )


def invoke_seconds(models: list[bytes], input_shape: tuple[int, ...], repeats: int = 3) -> list[float]:
    """Median wall time of one TFLM invoke of each model on this host.

    Invokes are interleaved (A, B, A, B, ...) after one warm-up each, so load
    from other processes on a shared machine hits every model alike and the
    ratios stay meaningful.
    """
    features = np.random.default_rng(0).normal(size=input_shape).astype(np.float32)
    interpreters = [make_interpreter(model) for model in models]
    for interpreter in interpreters:
        set_features(interpreter, features)
        interpreter.invoke()
    times = np.zeros((repeats, len(models)))
    for r in range(repeats):
        for i, interpreter in enumerate(interpreters):
            start = time.perf_counter()
            interpreter.invoke()
            times[r, i] = time.perf_counter() - start
    return [float(t) for t in np.median(times, axis=0)]
