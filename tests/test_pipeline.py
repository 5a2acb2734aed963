"""tf.data pipelines on tiny real wav corpora: crops, labels, shuffling, augmentation, evaluation."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import bad_audio  # tests/ is on sys.path under pytest
from tfadvq.audio import SAMPLE_RATE, load_audio, save_wav
from tfadvq.compat import tf
from tfadvq.config import dump_yaml, load_yaml
from tfadvq.errors import ConfigError, DataError
from tfadvq.features import FbankConfig, fbank, mel_filterbank, num_frames
from tfadvq.pipeline import (
    PipelineConfig,
    _plain_pcm16,
    add_noise,
    add_reverb,
    check_utterances,
    eval_dataset,
    read_error_message,
    num_classes,
    spec_augment,
    speaker_labels,
    train_dataset,
)
from tfadvq.voxceleb import Utterance

TONES = {"spkA": 500.0, "spkB": 1000.0, "spkC": 2000.0}
CLEAN = dict(noise_prob=0.0, reverb_prob=0.0, spec_augment=False)


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    """Each speaker 'speaks' one pure tone; lengths 0.6 s (shorter than a crop) to 3 s."""
    root = tmp_path_factory.mktemp("tones")
    utts = []
    for speaker, hz in TONES.items():
        for i, seconds in enumerate([0.6, 1.3, 3.0]):
            t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            path = root / speaker / "s" / f"{i:05d}.wav"
            save_wav(path, 0.3 * np.sin(2 * np.pi * hz * t + i))
            utts.append(Utterance(f"{speaker}/s/{i:05d}.wav", str(path), speaker))
    return utts


def _peak_hz(features: np.ndarray, config: FbankConfig) -> np.ndarray:
    """Centre frequency of the strongest mel bin per example ([B, T, mel] log features)."""
    weights = mel_filterbank(config)
    centres = (weights * np.arange(len(weights))[:, None]).sum(0) / weights.sum(0)
    bins = features.mean(axis=1).argmax(axis=-1)
    return centres[bins] * config.sample_rate / config.fft_length


def _all_batches(dataset):
    pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def test_batches_have_fixed_shape_and_labels_match_audio(tone_corpus):
    config = PipelineConfig(batch_size=4, fbank=FbankConfig(mean_norm=False), **CLEAN)
    speakers = speaker_labels(tone_corpus)
    assert speakers == {"spkA": 0, "spkB": 1, "spkC": 2}
    dataset = train_dataset(tone_corpus, config)
    assert dataset.element_spec[0].shape.as_list() == [4, 198, 80]
    features, labels = _all_batches(dataset)
    assert features.dtype == np.float32 and labels.dtype == np.int32
    assert len(labels) == 8  # 9 utterances, last partial batch dropped
    expected = np.array(list(TONES.values()))[labels]
    np.testing.assert_allclose(_peak_hz(features, config.fbank), expected, rtol=0.06)
    # short (0.6 s) utterances were repeated, not zero-padded: no silent (all-floor) frame
    assert features.max(axis=-1).min() > 5.0


def test_speed_perturbation_adds_speakers_and_shifts_pitch(tone_corpus):
    config = PipelineConfig(batch_size=9, speed_perturb=True, seed=3,
                            fbank=FbankConfig(mean_norm=False), **CLEAN)
    assert num_classes(3, config) == 9
    seen = []
    for _ in range(4):  # epochs redraw the speed factor of every utterance
        features, labels = _all_batches(train_dataset(tone_corpus, config))
        speaker, factor = labels % 3, np.array([1.0, 0.9, 1.1])[labels // 3]
        expected = np.array(list(TONES.values()))[speaker] * factor
        np.testing.assert_allclose(_peak_hz(features, config.fbank), expected, rtol=0.04)
        seen.extend(labels // 3)
    assert set(seen) == {0, 1, 2}


def test_epochs_reshuffle_and_seed_makes_runs_repeatable(tone_corpus):
    config = PipelineConfig(batch_size=3, seed=7)
    dataset = train_dataset(tone_corpus, config)
    first, second = _all_batches(dataset), _all_batches(dataset)
    assert not np.array_equal(first[1], second[1]) or not np.allclose(first[0], second[0])
    again = _all_batches(train_dataset(tone_corpus, config))
    np.testing.assert_array_equal(again[1], first[1])
    np.testing.assert_allclose(again[0], first[0], atol=1e-5)
    other = _all_batches(train_dataset(tone_corpus, dataclasses.replace(config, seed=8)))
    assert not np.allclose(other[0], first[0])


def test_spec_augment_masks_bands_within_limits():
    config = PipelineConfig(freq_masks=2, freq_mask_max=8, time_masks=1, time_mask_max=10)
    masked = spec_augment(tf.ones([64, 198, 80]), tf.constant(5, tf.int64), config).numpy()
    zero_bins = (masked == 0).all(axis=1).sum(axis=1)  # fully masked mel bins per example
    zero_frames = (masked == 0).all(axis=2).sum(axis=1)
    assert zero_bins.max() <= 16 and zero_frames.max() <= 10
    assert zero_bins.mean() > 3 and zero_frames.mean() > 3  # masks are actually drawn
    assert set(np.unique(masked)) == {0.0, 1.0}


def test_noise_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    waves = tf.constant(0.1 * rng.standard_normal([32, 16000]), tf.float32)
    config = PipelineConfig(noise_prob=1.0, snr_db=(5.0, 15.0), babble_prob=0.5)
    noisy = add_noise(waves, tf.constant(1, tf.int64), config).numpy()
    residual = noisy - waves.numpy()
    snr = 10 * np.log10((waves.numpy() ** 2).sum(1) / (residual ** 2).sum(1))
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 15.0 + 1e-3
    assert snr.std() > 1.0  # SNR is drawn per example
    untouched = add_noise(waves, tf.constant(1, tf.int64),
                          dataclasses.replace(config, noise_prob=0.0)).numpy()
    np.testing.assert_array_equal(untouched, waves.numpy())


def test_reverb_of_an_impulse_is_a_decaying_tail():
    impulse = np.zeros([8, 16000], np.float32)
    impulse[:, 100] = 1.0
    config = PipelineConfig(reverb_prob=1.0, rt60_seconds=(0.4, 0.4))
    wet = add_reverb(tf.constant(impulse), tf.constant(2, tf.int64), config).numpy()
    energy = lambda a, b: (wet[:, 100 + a:100 + b] ** 2).sum(1)  # noqa: E731
    assert np.abs(wet[:, :100]).max() < 1e-6  # causal (up to FFT round-off)
    assert (energy(1, 800) > 10 * energy(3200, 4000)).all()  # decays (about 30 dB at 0.2 s)
    np.testing.assert_allclose((wet ** 2).sum(1), 1.0, rtol=1e-4)  # energy kept


def test_eval_dataset_yields_whole_utterances_in_order(tone_corpus):
    utts = tone_corpus[:3]
    elements = list(eval_dataset(utts))
    assert [k.numpy()[0].decode() for _, k in elements] == [u.key for u in utts]
    for (features, _), utt in zip(elements, utts):
        wave = load_audio(utt.path)
        assert features.shape == (1, num_frames(len(wave)), 80)
        np.testing.assert_allclose(features.numpy()[0], fbank(wave).numpy(), atol=1e-4)
    (capped, _), = list(eval_dataset(utts[2:], max_seconds=1.0))
    assert capped.shape[1] == num_frames(SAMPLE_RATE)


def test_bad_inputs_are_named(tmp_path, tone_corpus):
    with pytest.raises(DataError, match="empty"):
        train_dataset([])
    with pytest.raises(DataError, match="no label"):
        train_dataset(tone_corpus, speakers={"spkA": 0})
    with pytest.raises(ConfigError, match="noise_prob"):
        PipelineConfig(noise_prob=1.5)


def test_every_readable_format_is_read_as_load_audio_reads_it(tmp_path, tone_corpus):
    """The one reader: the in-graph shortcut for canonical 16-bit wav and load_audio for the rest agree."""
    source = tone_corpus[1].path
    files = {"canonical": source, **bad_audio.convertible_versions(source, tmp_path)}
    files["8 kHz"] = bad_audio.write_wav(tmp_path / "8k.wav", bad_audio.tone(1.3, 500, 8000), rate=8000)
    for where, size in (("before_fmt", 4), ("after_fmt", 26), ("after_fmt", 5)):  # odd: RIFF pads it
        files[f"LIST {where} {size}"] = bad_audio.write_wav(tmp_path / f"{where}{size}.wav", load_audio(source),
                                                            extra_chunk=where, extra_size=size)
    utts = [Utterance(name, str(path), "s") for name, path in files.items()]
    for (features, key), utt in zip(eval_dataset(utts), utts):
        expected = fbank(load_audio(utt.path)).numpy()
        assert features.shape[1:] == expected.shape, utt.key
        np.testing.assert_allclose(features.numpy()[0], expected, atol=1e-3, err_msg=utt.key)
    in_graph = {name for name, p in files.items() if _plain_pcm16(tf.io.read_file(str(p)), SAMPLE_RATE)}
    assert in_graph == {"canonical", "LIST after_fmt 26"}
    truncated = Path(files["canonical"]).read_bytes()[:-2]  # the checker refuses it; so does the shortcut
    assert not _plain_pcm16(tf.constant(truncated), SAMPLE_RATE)
    for cut in (0, 3, 20, 40, 44):
        assert not _plain_pcm16(tf.constant(truncated[:cut]), SAMPLE_RATE)


def test_check_utterances_skips_bad_files_and_training_reads_the_rest(tmp_path, tone_corpus):
    bad = bad_audio.bad_versions(tone_corpus[0].path, tmp_path / "bad")
    odd = bad_audio.convertible_versions(tone_corpus[4].path, tmp_path / "odd")
    utts = list(tone_corpus)
    utts += [Utterance(f"bad/{name}", str(path), "spkA") for name, (path, _) in bad.items()]
    utts += [Utterance(f"odd/{name}", str(path), "spkB") for name, path in odd.items()]
    good, skipped = check_utterances(utts, progress=False)
    header_only_ok = {"silence", "clipped"}  # training's fast check reads no samples
    assert [u.key for u in good] == [u.key for u in utts
                                     if not u.key.startswith("bad/") or u.key[4:] in header_only_ok]
    assert {p for p, _ in skipped} == {str(p) for name, (p, _) in bad.items() if name not in header_only_ok}
    for path, reason in skipped:
        name = next(n for n, (p, _) in bad.items() if str(p) == path)
        assert bad[name][1] in reason, (name, reason)
    strict, refused = check_utterances(utts, signal=True, progress=False)
    assert len(refused) == len(bad) and not any(u.key.startswith("bad/") for u in strict)
    features, labels = _all_batches(train_dataset(strict, PipelineConfig(batch_size=4, **CLEAN)))
    assert len(labels) == len(strict) // 4 * 4 and np.isfinite(features).all()


def test_a_file_that_changes_after_the_check_is_named(tmp_path, tone_corpus):
    path = tmp_path / "later.wav"
    bad_audio.write_wav(path, bad_audio.tone(1.0, rate=44100), rate=44100)
    good, _ = check_utterances([Utterance("k", str(path), "s")], progress=False)
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(tf.errors.OpError) as info:
        list(eval_dataset(good))
    assert read_error_message(info.value).startswith(f"{path}: cannot be decoded as wav")


def test_config_yaml_round_trip(tmp_path):
    config = PipelineConfig(batch_size=32, snr_db=(3.0, 9.0), speed_perturb=True,
                            fbank=FbankConfig(num_mel_bins=40))
    dump_yaml(config, tmp_path / "pipeline.yaml")
    loaded = load_yaml(PipelineConfig, tmp_path / "pipeline.yaml")
    assert loaded == config and loaded.crop_frames == 198
