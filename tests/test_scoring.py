"""tfadvq.scoring: cosine and AS-norm scores against per-trial references, whole-utterance embeddings."""
from __future__ import annotations

import numpy as np
import pytest

from tfadvq.errors import DataError


def _trials(pairs: list[tuple[str, str]], labels: list[int]):
    from tfadvq.voxceleb import Trials

    return Trials(np.array(labels, np.int8), [a for a, _ in pairs], [b for _, b in pairs])


def test_cosine_scores_and_as_norm_match_a_per_trial_reference():
    from tfadvq.scoring import as_norm, cosine_scores

    rng = np.random.default_rng(7)
    embeddings = {f"u{i}": rng.normal(size=16) for i in range(12)}
    cohort = rng.normal(size=(40, 16))
    pairs = [(f"u{rng.integers(12)}", f"u{rng.integers(12)}") for _ in range(30)]
    trials = _trials(pairs, list(rng.integers(0, 2, 30)))
    raw = cosine_scores(embeddings, trials)

    def unit(v):
        return v / np.linalg.norm(v)

    def top_stats(key, n):
        s = sorted((unit(embeddings[key]) @ unit(c) for c in cohort), reverse=True)[:n]
        return np.mean(s), np.std(s)

    for i, (a, b) in enumerate(pairs):
        assert raw[i] == pytest.approx(unit(embeddings[a]) @ unit(embeddings[b]))
    for n in (5, 100):  # 100 > cohort size: all 40 used
        normed = as_norm(raw, embeddings, trials, cohort, top_n=n)
        for i, (a, b) in enumerate(pairs):
            (ma, sa), (mb, sb) = top_stats(a, min(n, 40)), top_stats(b, min(n, 40))
            assert normed[i] == pytest.approx(0.5 * ((raw[i] - ma) / sa + (raw[i] - mb) / sb))


def test_scoring_errors_name_the_problem():
    from tfadvq.errors import ConfigError
    from tfadvq.scoring import as_norm, cosine_scores

    embeddings = {"a": np.ones(3), "b": -np.ones(3)}
    trials = _trials([("a", "c")], [1])
    with pytest.raises(DataError, match="'c'"):
        cosine_scores(embeddings, trials)
    trials = _trials([("a", "b")], [1])
    with pytest.raises(DataError, match="at least 2"):
        as_norm(np.zeros(1), embeddings, trials, np.ones((1, 3)))
    with pytest.raises(ConfigError, match="top-n"):
        as_norm(np.zeros(1), embeddings, trials, np.ones((4, 3)), top_n=0)


def test_windows_cover_every_frame_with_equal_lengths():
    from tfadvq.scoring import windows

    frames = np.arange(25, dtype=np.float32).reshape(1, 25, 1)
    assert windows(frames, 100).numpy().ravel().tolist() == list(range(25))
    w = windows(frames, 10).numpy()[..., 0]
    assert w.shape == (3, 10) and w[0, 0] == 0 and w[-1, -1] == 24
    assert set(w.ravel()) == set(range(25)) and np.all(np.diff(w, axis=1) == 1)


def test_embed_utterances_chunks_and_averages_whole_utterances(tiny_corpus):
    from tfadvq.compat import keras
    from tfadvq.features import FbankConfig, fbank
    from tfadvq.audio import load_audio
    from tfadvq.models import build_model
    from tfadvq.scoring import embed_utterances, windows
    from tfadvq.voxceleb import load_corpus

    keras.utils.set_random_seed(0)
    model = build_model("TinyResNet", feat_dim=80, embed_dim=16, base_width=4)
    utterances = load_corpus(tiny_corpus).test[:3]
    whole = embed_utterances(model, utterances, progress=False)
    chunked = embed_utterances(model, utterances, chunk_frames=70, progress=False)
    assert list(whole) == [u.key for u in utterances]
    for u in utterances:
        features = fbank(load_audio(u.path), FbankConfig())[np.newaxis]
        expected = model(features, training=False).numpy()[0]
        np.testing.assert_allclose(whole[u.key], expected / np.linalg.norm(expected), atol=1e-4)
        mean = model(windows(features, 70), training=False).numpy().mean(axis=0)
        np.testing.assert_allclose(chunked[u.key], mean / np.linalg.norm(mean), atol=1e-4)
        assert np.linalg.norm(whole[u.key] - chunked[u.key]) > 1e-3  # the chunking did something


def test_embed_features_agrees_with_embed_utterances(tiny_corpus):
    from tfadvq.audio import load_audio
    from tfadvq.compat import keras
    from tfadvq.features import FbankConfig, fbank
    from tfadvq.models import build_model
    from tfadvq.scoring import embed_features, embed_utterances
    from tfadvq.voxceleb import load_corpus

    keras.utils.set_random_seed(1)
    model = build_model("TinyResNet", feat_dim=80, embed_dim=16, base_width=4)
    utterances = load_corpus(tiny_corpus).test[:2]
    features = [fbank(load_audio(u.path), FbankConfig()).numpy() for u in utterances]
    for chunk_frames in (3000, 70):  # whole utterances, then windowed and averaged
        by_key = embed_utterances(model, utterances, chunk_frames=chunk_frames, progress=False)
        np.testing.assert_allclose(embed_features(model, features, chunk_frames),
                                   np.stack([by_key[u.key] for u in utterances]), atol=1e-4)
    with pytest.raises(DataError, match=r"features\[1\]: expected \[frames >= 1, 80\]"):
        embed_features(model, [features[0], features[1][:, :40]])
    with pytest.raises(DataError, match="no feature matrices"):
        embed_features(model, [])
