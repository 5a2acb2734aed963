"""tfadvq.scoring / tfadvq.windows: the device scoring schedule, cosine and AS-norm scores against references."""
from __future__ import annotations

from pathlib import Path

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


SCHEDULE_TABLE = Path(__file__).resolve().parents[1] / "tflm_firmware" / "tests" / "data" / "window_schedule.txt"


def _schedule_cases() -> list[tuple[int, int, int, list[int]]]:
    cases = []
    for line in SCHEDULE_TABLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        head, starts = line.split(":")
        frames, window, hop = map(int, head.split())
        cases.append((frames, window, hop, [int(s) for s in starts.split()]))
    return cases


def test_window_schedule_matches_the_table_the_firmware_tests_read():
    """The same table drives tflm_firmware/tests (C++ WindowStarts): one schedule on both sides."""
    from tfadvq.windows import window_starts

    cases = _schedule_cases()
    assert len(cases) >= 20
    for frames, window, hop, starts in cases:
        assert window_starts(frames, window, hop).tolist() == starts, (frames, window, hop)


def test_window_indices_wrap_short_utterances_and_end_at_the_last_frame():
    from tfadvq.windows import ScoringConfig, window_indices

    short = window_indices(7, ScoringConfig(window_frames=10))
    assert short.tolist() == [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2]]
    long = window_indices(25, ScoringConfig(window_frames=10, hop_frames=6))
    assert long[:, 0].tolist() == [0, 6, 12, 15] and long[-1, -1] == 24
    assert np.all(np.diff(long, axis=1) == 1)
    with pytest.raises(DataError, match="0 frames"):
        window_indices(0, ScoringConfig(window_frames=10))


def _linear_embedder(weights: np.ndarray):
    """A stand-in network: mean over frames, then a fixed projection (as the C++ tests use)."""
    calls = []

    def embed(windows: np.ndarray) -> np.ndarray:
        calls.append(windows.shape)
        return np.tanh(windows.mean(axis=1) @ weights)

    return embed, calls


def test_utterance_embedding_is_the_normalised_mean_of_normalised_windows():
    from tfadvq.scoring import utterance_embedding
    from tfadvq.windows import ScoringConfig, window_indices

    rng = np.random.default_rng(3)
    features = rng.normal(size=(530, 8)).astype(np.float32)
    embed, calls = _linear_embedder(rng.normal(size=(8, 5)))
    config = ScoringConfig(window_frames=200, hop_frames=100)
    got = utterance_embedding(embed, features, config)
    windows = [features[i] for i in window_indices(530, config)]
    units = [e / np.linalg.norm(e) for e in embed(np.stack(windows))]
    expected = np.mean(units, axis=0)
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), rtol=1e-6)
    assert calls[0] == (5, 200, 8)  # ceil((530 - 200) / 100) + 1 windows, one batch
    raw_mean = embed(np.stack(windows)).mean(axis=0)  # without per-window normalisation: different
    assert np.linalg.norm(got - raw_mean / np.linalg.norm(raw_mean)) > 1e-4


def test_keras_embedding_of_corpus_audio_follows_the_schedule(tiny_corpus):
    from tfadvq.audio import load_audio
    from tfadvq.compat import keras
    from tfadvq.features import FbankConfig, fbank
    from tfadvq.models import build_model
    from tfadvq.scoring import embed_features, embed_files, embed_utterances, keras_embedder
    from tfadvq.voxceleb import load_corpus
    from tfadvq.windows import ScoringConfig, window_indices

    keras.utils.set_random_seed(0)
    model = build_model("TinyResNet", feat_dim=80, embed_dim=16, base_width=4)
    embed = keras_embedder(model)
    utterances = load_corpus(tiny_corpus).test[:3]
    config = ScoringConfig(window_frames=70)
    by_key = embed_utterances(embed, utterances, config, progress=False)
    assert list(by_key) == [u.key for u in utterances]
    features = [fbank(load_audio(u.path), FbankConfig()).numpy() for u in utterances]
    for u, f in zip(utterances, features):
        windows = f[window_indices(len(f), config)]
        assert len(windows) >= 2  # 2-4 s utterances, 0.7 s windows: really windowed
        out = model(windows, training=False).numpy()
        units = out / np.linalg.norm(out, axis=1, keepdims=True)
        expected = units.mean(axis=0) / np.linalg.norm(units.mean(axis=0))
        np.testing.assert_allclose(by_key[u.key], expected, atol=1e-4)
    np.testing.assert_allclose(embed_features(embed, features, config),
                               np.stack([by_key[u.key] for u in utterances]), atol=1e-4)
    np.testing.assert_allclose(embed_files(embed, [u.path for u in utterances], config),
                               np.stack([by_key[u.key] for u in utterances]), atol=1e-4)
    with pytest.raises(DataError, match=r"features\[1\]"):
        embed_features(embed, [features[0], features[1][0]], config)
    with pytest.raises(DataError, match="no feature matrices"):
        embed_features(embed, [], config)


def test_file_features_apply_the_device_audio_checks(tmp_path):
    import bad_audio  # tests/ is on sys.path under pytest
    from tfadvq.errors import AudioError
    from tfadvq.scoring import file_features
    from tfadvq.windows import ScoringConfig

    clip = bad_audio.write_wav(tmp_path / "clip.wav", bad_audio.tone(0.3))
    silent = bad_audio.write_wav(tmp_path / "silent.wav", np.zeros(16000))
    with pytest.raises(AudioError, match="at least 0.5 s"):
        file_features(clip, ScoringConfig())
    assert file_features(clip, ScoringConfig(min_seconds=0.2)).shape == (28, 80)  # the limit is the scoring's
    with pytest.raises(AudioError, match="is silent") as info:
        file_features(silent, ScoringConfig())
    assert info.value.path == str(silent)


def test_embed_utterances_names_a_file_that_changed_after_the_check(tmp_path):
    import bad_audio
    from tfadvq.scoring import embed_utterances
    from tfadvq.voxceleb import Utterance
    from tfadvq.windows import ScoringConfig

    path = bad_audio.write_wav(tmp_path / "u.wav", bad_audio.tone(1.0, rate=44100), rate=44100)
    utts = [Utterance("u", str(path), "s")]
    embed, _ = _linear_embedder(np.eye(80, 4))
    assert embed_utterances(embed, utts, ScoringConfig(window_frames=50), progress=False)["u"].shape == (4,)
    path.write_text("overwritten by a text editor")
    with pytest.raises(DataError, match=f"{path}: cannot be decoded as wav"):
        embed_utterances(embed, utts, ScoringConfig(window_frames=50), progress=False)
