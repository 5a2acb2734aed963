"""From a trained embedding model to trial scores: whole-utterance embeddings,
cosine scoring and adaptive score normalisation (AS-norm).

Embeddings are L2-normalised, so a cosine score is a dot product.  Long
utterances are cut into ``chunk_frames``-frame windows that are embedded as
one batch and averaged: the statistics pooling would accept any length, but
the convolution activations of a 10-minute file do not fit in memory.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError, DataError
from tfadvq.voxceleb import Trials, Utterance

CHUNK_FRAMES = 3000  # 30 s at a 10 ms shift: whole utterance for almost all of VoxCeleb
COHORT_BLOCK = 2048  # rows of the [utterances x cohort] score matrix held at once


def windows(features: tf.Tensor, chunk_frames: int) -> tf.Tensor:
    """``[1, T, F]`` -> ``[n, min(T, chunk_frames), F]`` evenly spaced windows covering all frames.

    ``n = ceil(T / chunk_frames)``; the last window ends at the last frame, so
    windows overlap slightly instead of leaving a short remainder.
    """
    frames = features[0]
    total = tf.shape(frames)[0]
    length = tf.minimum(total, chunk_frames)
    count = (total + chunk_frames - 1) // chunk_frames
    starts = tf.cast(tf.round(tf.linspace(0.0, tf.cast(total - length, tf.float32), count)), tf.int32)
    return tf.gather(frames, starts[:, tf.newaxis] + tf.range(length)[tf.newaxis])


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _window_embedder(model: keras.Model, chunk_frames: int):
    """``windows [n, frames, F] -> mean embedding [D]``, traced once for any window count and length."""
    if chunk_frames < 1:
        raise ConfigError(f"chunk_frames must be >= 1, got {chunk_frames}")
    feat_dim = int(model.input_shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None, None, feat_dim], tf.float32)])
    def embed(batch: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(model(batch, training=False), axis=0)

    return embed


def embed_utterances(model: keras.Model, utterances: Sequence[Utterance],
                     chunk_frames: int = CHUNK_FRAMES, progress: bool = True) -> dict[str, np.ndarray]:
    """``{utterance key: L2-normalised embedding}`` of whole utterances (chunked and averaged).

    Decoding, fbank and windowing run in parallel in ``tf.data``; each
    utterance's windows go through the model as one batch in a single traced
    graph (variable lengths do not retrace).
    """
    from tfadvq.pipeline import eval_dataset

    embed = _window_embedder(model, chunk_frames)
    dataset = eval_dataset(list(utterances)).map(
        lambda features, key: (windows(features, chunk_frames), key[0]),
        num_parallel_calls=tf.data.AUTOTUNE)
    out = {}
    for batch, key in tqdm(dataset, total=len(utterances), desc="embedding", unit="utt",
                           disable=not progress):
        out[key.numpy().decode()] = embed(batch).numpy()
    return {k: v for k, v in zip(out, l2_normalize(np.stack(list(out.values()))))}


def embed_features(model: keras.Model, features: Sequence[np.ndarray],
                   chunk_frames: int = CHUNK_FRAMES) -> np.ndarray:
    """L2-normalised embeddings ``[n, D]`` of in-memory fbank matrices ``[frames, F]`` (e.g. of
    uploaded files), windowed and averaged exactly as :func:`embed_utterances` does, so scores
    of such recordings are comparable with a threshold calibrated on a trial list."""
    if len(features) == 0:
        raise DataError("embed_features: no feature matrices given")
    feat_dim = int(model.input_shape[-1])
    for i, f in enumerate(features):
        if np.ndim(f) != 2 or np.shape(f)[1] != feat_dim or np.shape(f)[0] < 1:
            raise DataError(f"features[{i}]: expected [frames >= 1, {feat_dim}], got shape {np.shape(f)}")
    embed = _window_embedder(model, chunk_frames)
    rows = [embed(windows(tf.convert_to_tensor(f, tf.float32)[tf.newaxis], chunk_frames)).numpy()
            for f in features]
    return l2_normalize(np.stack(rows))


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
