"""From an embedding model to trial scores: the device's window schedule, cosine scoring, AS-norm.

There is one definition of how an utterance becomes an embedding,
:func:`utterance_embedding`: fbank features -> the windows of
:mod:`tfadvq.windows` (the deployed model's input length) -> one network call
per window -> L2-normalised window embeddings averaged.  An *embedder* is any
callable ``[n, window_frames, F] -> [n, D]``: :func:`keras_embedder` for a
Keras model, :func:`converters.tflm.tflm_embedder` for a converted ``.tflite``
run by the TFLite-Micro interpreter (what the firmware runs).  Those two are
:class:`FeatureEmbedder` objects: they carry the model's front end
(:mod:`tfadvq.frontend`), checked against the model's input, and every
function here that computes features from audio computes *those*
(:func:`front_end_of`); a bare callable is fed the default ``FbankConfig()``.  Evaluation, ``tfadvq
verify``, threshold calibration, the converter's checks and the demo all go
through it, and the firmware's ``Verifier`` implements the same schedule, so
a threshold calibrated here means the same on the device.  No long file is
ever pushed through the network at once: memory is bounded by one window batch.

Embeddings are L2-normalised, so a cosine score is a dot product.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from tfadvq.errors import ConfigError, DataError
from tfadvq.fbank_config import FbankConfig
from tfadvq.frontend import DEFAULT, FrontEnd, check_input
from tfadvq.voxceleb import Trials, Utterance
from tfadvq.windows import ScoringConfig, cut_windows, l2_normalize, pool_windows

Embedder = Callable[[np.ndarray], np.ndarray]
COHORT_BLOCK = 2048  # rows of the [utterances x cohort] score matrix held at once


@dataclasses.dataclass(frozen=True)
class FeatureEmbedder:
    """An embedder with the front end its model eats: ``embed(windows)`` runs ``run``."""

    run: Embedder
    front_end: FrontEnd

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        return self.run(windows)


def front_end_of(embed: Embedder) -> FbankConfig:
    """The fbank configuration to compute for ``embed``: its own, or the default for a bare callable."""
    return embed.front_end.fbank if isinstance(embed, FeatureEmbedder) else FbankConfig()


def default_front_end(front_end: FrontEnd | None) -> FrontEnd:
    """``front_end``, or the default ``FbankConfig()`` said to be one (checked against the model by the caller)."""
    return front_end or FrontEnd(FbankConfig(), DEFAULT)


def keras_embedder(model, front_end: FrontEnd | None = None) -> FeatureEmbedder:
    """Window batches through a Keras embedding model, traced once (any window count).

    ``front_end`` (:func:`tfadvq.frontend.resolve` of the model's file) must
    match the model's input; None means the default ``FbankConfig()``, checked too.
    """
    from tfadvq.compat import tf

    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 3 or shape[-1] is None:
        raise ConfigError(f"model {model.name!r}: input shape {shape} is not [batch, frames, mels]; "
                          "score it through an embedder of your own (scoring.Embedder)")
    feat_dim = int(shape[-1])
    front_end = check_input(default_front_end(front_end), feat_dim, f"model {model.name!r}")

    @tf.function(input_signature=[tf.TensorSpec([None, None, feat_dim], tf.float32)])
    def embed(batch):
        return model(batch, training=False)

    def run(windows: np.ndarray) -> np.ndarray:
        return embed(tf.convert_to_tensor(windows, tf.float32)).numpy()

    return FeatureEmbedder(run, front_end)


def as_embedder(model, front_end: FrontEnd | None = None) -> Embedder:
    """``model`` if it is already an embedder, else :func:`keras_embedder` of the Keras model."""
    return keras_embedder(model, front_end) if hasattr(model, "layers") else model


def utterance_embedding(embed: Embedder, features: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """The unit embedding ``[D]`` of one utterance's mean-normalised fbank ``[T, F]`` (module doc)."""
    return pool_windows(embed(cut_windows(features, config)))


def embed_utterances(embed: Embedder, utterances: Sequence[Utterance], config: ScoringConfig,
                     progress: bool = True, desc: str = "embedding") -> dict[str, np.ndarray]:
    """``{utterance key: unit embedding}``; decoding and fbank run in parallel in ``tf.data``.

    The utterances should have passed :func:`tfadvq.pipeline.check_utterances`
    (evaluation does that); a file that fails to read anyway raises
    :class:`DataError` naming it.
    """
    from tfadvq.compat import tf
    from tfadvq.pipeline import eval_dataset, read_error_message

    def read(dataset):  # only the pipeline's errors are read errors, not the embedder's
        elements = dataset.as_numpy_iterator()
        while True:
            try:
                yield next(elements)
            except StopIteration:
                return
            except tf.errors.OpError as exc:
                raise DataError(f"{desc}: reading audio failed ({read_error_message(exc)}); "
                                "did the file change after it was checked?") from None

    out = {}
    for features, key in tqdm(read(eval_dataset(list(utterances), front_end_of(embed))), total=len(utterances), desc=desc,
                              unit="utt", disable=not progress):
        out[key[0].decode()] = utterance_embedding(embed, features[0], config)
    return out


def embed_features(embed: Embedder, features: Sequence[np.ndarray], config: ScoringConfig) -> np.ndarray:
    """Unit embeddings ``[n, D]`` of in-memory fbank matrices ``[frames, F]`` (same schedule)."""
    if len(features) == 0:
        raise DataError("embed_features: no feature matrices given")
    for i, f in enumerate(features):
        if np.ndim(f) != 2 or np.shape(f)[0] < 1:
            raise DataError(f"features[{i}]: expected [frames >= 1, mels], got shape {np.shape(f)}")
    return np.stack([utterance_embedding(embed, f, config) for f in features])


def file_features(path: str | os.PathLike, config: ScoringConfig, fbank_config: FbankConfig | None = None) -> np.ndarray:
    """Mean-normalised fbank ``[T, F]`` (``fbank_config``, default ``FbankConfig()``) of an audio file of any
    supported format and rate.

    The recording must pass the device's audio checks (at least
    ``config.min_seconds``, not silent, not clipped: :class:`tfadvq.audio.AudioLimits`),
    else :class:`~tfadvq.errors.AudioError` names the file and why: the
    firmware would refuse it, so it is not scored here either.
    """
    from tfadvq.audio import load_checked_audio
    from tfadvq.audio_limits import AudioLimits
    from tfadvq.compat import tf
    from tfadvq.features import fbank

    fbank_config = fbank_config or FbankConfig()
    samples = load_checked_audio(path, AudioLimits(min_seconds=config.min_seconds), fbank_config.sample_rate)
    return np.asarray(fbank(tf.constant(samples), fbank_config), np.float32)


def embed_files(embed: Embedder, paths: Sequence[str | os.PathLike], config: ScoringConfig) -> np.ndarray:
    """Unit embeddings ``[n, D]`` of audio files (any supported format and rate), features of ``embed``'s front end."""
    return embed_features(embed, [file_features(p, config, front_end_of(embed)) for p in paths], config)


def stack(embeddings: Mapping[str, np.ndarray] | np.ndarray, keys: Sequence[str] | None = None,
          what: str = "embeddings") -> np.ndarray:
    """Rows of ``embeddings`` (a key -> vector mapping, or already a matrix) as a normalised matrix."""
    if isinstance(embeddings, Mapping):
        keys = list(embeddings) if keys is None else keys
        missing = [k for k in keys if k not in embeddings]
        if missing:
            raise DataError(f"{what}: no embedding for {len(missing)} key(s), e.g. {missing[0]!r}")
        embeddings = np.stack([embeddings[k] for k in keys]) if keys else np.zeros((0, 0))
    matrix = np.asarray(embeddings, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise DataError(f"{what}: expected a non-empty [n, dim] set of embeddings, got shape {matrix.shape}")
    return l2_normalize(matrix)


def _trial_index(trials: Trials) -> tuple[list[str], np.ndarray, np.ndarray]:
    keys = sorted(trials.keys())
    index = {k: i for i, k in enumerate(keys)}
    return keys, np.array([index[k] for k in trials.enroll]), np.array([index[k] for k in trials.test])


def cosine_scores(embeddings: Mapping[str, np.ndarray], trials: Trials) -> np.ndarray:
    """Cosine similarity of each trial's enrollment and test embeddings, ``[len(trials)]``."""
    if len(trials) == 0:
        raise DataError("trials: the trial list is empty")
    keys, enroll, test = _trial_index(trials)
    matrix = stack(embeddings, keys, "trials")
    return np.einsum("ij,ij->i", matrix[enroll], matrix[test])


def cohort_statistics(matrix: np.ndarray, cohort: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each row's ``top_n`` highest cosine scores against the cohort."""
    means, stds = [], []
    for start in range(0, matrix.shape[0], COHORT_BLOCK):
        scores = matrix[start:start + COHORT_BLOCK] @ cohort.T
        top = np.partition(scores, scores.shape[1] - top_n, axis=1)[:, -top_n:]
        means.append(top.mean(axis=1))
        stds.append(top.std(axis=1))
    return np.concatenate(means), np.maximum(np.concatenate(stds), 1e-12)


def as_norm(scores: np.ndarray, embeddings: Mapping[str, np.ndarray], trials: Trials,
            cohort: Mapping[str, np.ndarray] | np.ndarray, top_n: int = 300) -> np.ndarray:
    """Adaptive symmetric score normalisation (Matejka et al., Interspeech 2017; AS-norm1).

    Each side of a trial is compared with an imposter cohort; only its
    ``top_n`` closest cohort entries count, which adapts the normalisation
    to the speaker's neighbourhood::

        s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2

    ``top_n`` is capped at the cohort size (at least 2 entries are needed for a std).
    """
    if top_n < 1:
        raise ConfigError(f"--top-n must be >= 1, got {top_n}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(trials),):
        raise DataError(f"as_norm: {scores.size} scores for {len(trials)} trials")
    cohort_matrix = stack(cohort, what="cohort")
    if cohort_matrix.shape[0] < 2:
        raise DataError(f"cohort: AS-norm needs at least 2 imposter embeddings, got {cohort_matrix.shape[0]}")
    keys, enroll, test = _trial_index(trials)
    mean, std = cohort_statistics(stack(embeddings, keys, "trials"), cohort_matrix,
                                  min(top_n, cohort_matrix.shape[0]))
    return 0.5 * ((scores - mean[enroll]) / std[enroll] + (scores - mean[test]) / std[test])
