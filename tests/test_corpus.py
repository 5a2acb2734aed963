"""Tests of the generated corpus (``tfadvq data synth``) on real generated audio."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import pyworld

from tfadvq.cli import main
from tfadvq.corpus.synth import (SynthConfig, make_trials, plan_corpus, synthesize_corpus,
                                 trim_silence, utterance_text)
from tfadvq.corpus.texts import sentence, sentence_of_length
from tfadvq.corpus.tts import synthesize
from tfadvq.corpus.vocoder import revoice
from tfadvq.errors import ConfigError
from tfadvq.voxceleb import load_corpus, read_trials

KEY = re.compile(r"^id\d{5}/s\d{2}/\d{5}\.wav$")


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()]


def _wav_info(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as src:
        return src.getframerate(), src.getnchannels(), src.getsampwidth(), src.getnframes() / src.getframerate()


def test_layout_lists_and_manifest(tiny_corpus):
    lists = tiny_corpus / "lists"
    for split, speakers in (("dev", 8), ("test", 4)):
        scp = _lines(lists / f"{split}_wav.scp")
        utt2spk = dict(_lines(lists / f"{split}_utt2spk"))
        assert len(scp) == speakers * 4
        for key, rel in scp:
            assert KEY.match(key) and rel == f"{split}/wav/{key}"
            assert utt2spk[key] == key.split("/")[0]
            rate, channels, width, seconds = _wav_info(tiny_corpus / rel)
            assert (rate, channels, width) == (16000, 1, 2)
            assert 1.0 <= seconds <= 4.1
        assert len(set(utt2spk.values())) == speakers
    manifest = json.loads((tiny_corpus / "corpus.json").read_text())
    assert manifest["settings"]["seed"] == 0 and manifest["generation_seconds"] > 0
    assert manifest["failed"] == []
    assert len(manifest["speakers"]) == 12
    voice = manifest["speakers"]["id00000"]["voice"]
    assert {"engine", "engine_voice", "vtl_warp", "f0_mean"} <= set(voice)
    assert 2 <= len(manifest["speakers"]["id00000"]["sessions"]) <= 4
    corpus = load_corpus(tiny_corpus)
    assert len(corpus.train) == 32 and len(corpus.test) == 16
    assert not {u.speaker for u in corpus.train} & {u.speaker for u in corpus.test}


def test_trials_are_balanced_voxceleb_lines(tiny_corpus):
    rows = _lines(tiny_corpus / "trials" / "test.txt")
    assert all(len(r) == 3 and r[0] in ("0", "1") for r in rows)
    speaker = dict(_lines(tiny_corpus / "lists" / "test_utt2spk"))
    for label, enroll, test in rows:
        assert enroll != test
        assert (speaker[enroll] == speaker[test]) == (label == "1")
    trials = read_trials(tiny_corpus / "trials" / "test.txt", set(speaker))
    assert trials.labels.sum() * 2 == len(trials)
    per_test = {}
    for label, test in zip(trials.labels, trials.test):
        per_test.setdefault(test, []).append(int(label))
    assert set(per_test) == set(speaker)  # every test utterance is a test side
    assert all(sum(v) * 2 == len(v) for v in per_test.values())


def test_make_trials_with_few_utterances_stays_balanced():
    keys = ["a/s01/1", "a/s01/2", "b/s01/1", "c/s01/1", "c/s01/2", "c/s01/3"]
    trials = make_trials(keys, [k[0] for k in keys], np.random.default_rng(0), per_utt=3)
    assert trials.labels.sum() * 2 == len(trials)
    assert "b/s01/1" not in trials.test  # a speaker with one utterance has no target trial


def test_deterministic_per_seed_and_resumable(tiny_corpus, tmp_path, capsys):
    """Speaker i's utterance j is the same audio whatever the corpus size and worker count;
    deleted files come back identical on a re-run, which skips the rest."""
    small = tmp_path / "small"
    synthesize_corpus(small, SynthConfig(speakers=2, test_speakers=2, utts=2), workers=1,
                      progress=False)
    shared = sorted((small / "dev" / "wav").rglob("*.wav"))
    assert len(shared) == 4
    for path in shared:
        assert path.read_bytes() == (tiny_corpus / path.relative_to(small)).read_bytes()

    before = {p: p.read_bytes() for p in small.rglob("*.wav")}
    removed = sorted(before)[::3]
    for path in removed:
        path.unlink()
    (small / "corpus.json").unlink()
    stale = removed[0].with_name(f".{removed[0].name}.x1y2.tmp")
    stale.write_bytes(b"RIFF half-written")
    assert main(["data", "synth", "--speakers", "2", "--test-speakers", "2", "--utts", "2",
                 "--out", str(small), "--workers", "2"]) == 0
    assert {p: p.read_bytes() for p in small.rglob("*.wav")} == before
    summary = capsys.readouterr().out
    run_row = next(line for line in summary.splitlines() if line.startswith("run"))
    assert run_row.split()[1:4] == [str(len(removed)), str(len(before) - len(removed)), "0"]
    assert json.loads((small / "corpus.json").read_text())["last_run"]["written"] == len(removed)
    assert not list(small.rglob("*.tmp"))


def test_other_seed_gives_other_audio(tiny_corpus, tmp_path):
    other = tmp_path / "other"
    synthesize_corpus(other, SynthConfig(speakers=2, test_speakers=2, utts=2, seed=1), workers=1,
                      progress=False)
    path = sorted((other / "dev" / "wav").rglob("*.wav"))[0]
    twin = tiny_corpus / path.relative_to(other)
    assert not twin.is_file() or twin.read_bytes() != path.read_bytes()
    assert json.loads((other / "corpus.json").read_text())["speakers"]["id00000"]["voice"] != \
        json.loads((tiny_corpus / "corpus.json").read_text())["speakers"]["id00000"]["voice"]


def _clean_voice_features(plan, tmp: Path) -> np.ndarray:
    """(median log-F0, spectral centroid) of a speaker's utterances before the channel."""
    texts = [utterance_text(plan, u) for u in plan.utterances]
    rows = []
    for j, (samples, rate) in enumerate(synthesize(plan.voice, texts, tmp / plan.speaker)):
        y = revoice(trim_silence(samples, rate), rate, plan.voice, np.random.default_rng(j))
        x = y.astype(np.float64)
        f0, times = pyworld.dio(x, 16000, frame_period=10)
        f0 = pyworld.stonemask(x, f0, times, 16000)
        power = np.abs(np.fft.rfft(x)) ** 2
        centroid = np.sum(power * np.fft.rfftfreq(len(x), 1 / 16000)) / np.sum(power)
        rows.append((np.log(np.median(f0[f0 > 0])), centroid))
    return np.asarray(rows)


def test_voices_differ_more_between_than_within_speakers(tmp_path):
    plans = plan_corpus(SynthConfig(speakers=6, test_speakers=2, utts=3))[:6]
    groups = [_clean_voice_features(plan, tmp_path) for plan in plans]
    means = np.stack([g.mean(axis=0) for g in groups])
    within = np.mean([g.var(axis=0) for g in groups], axis=0)
    f_ratio = means.var(axis=0) / within
    assert f_ratio[0] > 10, f"F0 between/within variance ratio {f_ratio[0]:.1f}"
    assert f_ratio[1] > 1, f"spectral-centroid between/within variance ratio {f_ratio[1]:.1f}"
    f0_targets = np.log([p.voice.f0_mean for p in plans])
    assert np.corrcoef(means[:, 0], f0_targets)[0, 1] > 0.9


def test_vocal_tract_warp_moves_the_spectrum(tmp_path):
    plan = plan_corpus(SynthConfig(speakers=2, test_speakers=2, utts=2))[0]
    (samples, rate), = synthesize(plan.voice, [utterance_text(plan, plan.utterances[0])], tmp_path)
    centroids = []
    for warp in (0.85, 1.0, 1.2):
        voice = dataclasses.replace(plan.voice, vtl_warp=warp)
        y = revoice(samples, rate, voice, np.random.default_rng(0)).astype(np.float64)
        power = np.abs(np.fft.rfft(y)) ** 2
        centroids.append(np.sum(power * np.fft.rfftfreq(len(y), 1 / 16000)) / np.sum(power))
    assert centroids[0] < centroids[1] < centroids[2]


def test_sentences_vary_and_follow_the_seed():
    a = [sentence(np.random.default_rng([3, i])) for i in range(50)]
    b = [sentence(np.random.default_rng([3, i])) for i in range(50)]
    assert a == b and len(set(a)) >= 45
    rng = np.random.default_rng(0)
    for words in (5, 8, 11):
        assert abs(len(sentence_of_length(rng, words).split()) - words) <= 2


@pytest.mark.parametrize("args, needle", [
    (["--speakers", "1"], "--speakers"),
    (["--test-speakers", "1"], "--test-speakers"),
    (["--utts", "1"], "--utts"),
    (["--seed", "-1"], "--seed"),
    (["--workers", "0"], "--workers"),
])
def test_bad_arguments_name_the_argument(args, needle, tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), *args]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_refuses_foreign_or_mismatched_directories(tiny_corpus, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a tfadvq corpus"):
        synthesize_corpus(foreign, SynthConfig(speakers=2, test_speakers=2, utts=2))
    copy = tmp_path / "copy"
    shutil.copytree(tiny_corpus, copy)
    with pytest.raises(ConfigError, match="utts: 4 there, 5 now"):
        synthesize_corpus(copy, SynthConfig(speakers=8, test_speakers=4, utts=5))


# ----------------------------------------------------------------------------- voices that work here (issue 25)


def test_probe_keeps_the_voices_that_work_and_names_the_others():
    from tfadvq.corpus.tts import probe_voices
    from tfadvq.corpus.voices import VoiceSet

    asked = VoiceSet(espeak_english=("en-us",), espeak_other=("xx-nolang",), espeak_variants=("m3", "novariant"),
                     flite=("slt", "novoice"), festival=("kal_diphone", "czech_ph_not_installed"))
    working, unavailable = probe_voices(asked)
    assert working == VoiceSet(("en-us",), (), ("m3",), ("slt",), ("kal_diphone",))
    assert sorted(unavailable) == ["espeak-ng novariant", "espeak-ng xx-nolang", "festival czech_ph_not_installed",
                                   "flite novoice"]
    assert "unbound variable" in unavailable["festival czech_ph_not_installed"]
    assert asked.removed(working) == [] and working.removed(asked) == [
        "espeak_other:xx-nolang", "espeak_variants:novariant", "flite:novoice", "festival:czech_ph_not_installed"]


def test_with_every_candidate_working_the_voices_are_the_ones_always_drawn():
    from tfadvq.corpus.voices import CANDIDATES, VoiceSet

    config = SynthConfig(speakers=30, test_speakers=2, utts=2)
    assert [p.voice for p in plan_corpus(config)] == [p.voice for p in plan_corpus(config, CANDIDATES)]
    no_festival = dataclasses.replace(CANDIDATES, festival=())
    engines = {p.voice.engine for p in plan_corpus(config, no_festival)}
    assert "festival" in {p.voice.engine for p in plan_corpus(config)} and "festival" not in engines
    with pytest.raises(ValueError, match="no TTS voice"):
        plan_corpus(config, VoiceSet((), (), (), (), ()))


def test_synth_never_gives_a_speaker_a_voice_this_machine_lacks(tmp_path, monkeypatch, capsys):
    """The fresh-machine failure: festival's czech_ph (no Debian package set-up installs) was assigned
    to speakers, whose clips then all failed.  Here half the speakers go to festival and one of its two
    candidate voices is not installed: every speaker still gets all its clips, none that voice."""
    from tfadvq.corpus import synth, voices

    monkeypatch.setattr(voices, "ENGINE_WEIGHTS", {"espeak-ng": 0.5, "flite": 0.0, "festival": 0.5})
    candidates = voices.VoiceSet(espeak_english=("en-us",), espeak_other=(), espeak_variants=("m3", "f2"),
                                 flite=(), festival=("czech_ph", "kal_diphone"))
    config = SynthConfig(speakers=4, test_speakers=2, utts=2)
    assert "czech_ph" in {p.voice.engine_voice for p in plan_corpus(config, candidates)}  # unprobed: would fail
    out = tmp_path / "c"
    result = synth.synthesize_corpus(out, config, workers=1, progress=False, candidates=candidates)
    result.require_complete()
    manifest = json.loads((out / "corpus.json").read_text())
    used = {s["voice"]["engine_voice"] for s in manifest["speakers"].values()}
    assert "czech_ph" not in used and "kal_diphone" in used
    assert manifest["complete"] and not manifest["failed"]
    assert "unbound variable" in manifest["unavailable_voices"]["festival czech_ph"]
    assert result.speakers == {"dev": 4, "test": 2} and result.utterances == {"dev": 8, "test": 4}


def test_a_corpus_short_of_its_settings_stops_with_an_error_naming_it(tmp_path, monkeypatch, capsys):
    from tfadvq.corpus import synth
    from tfadvq.corpus.tts import SynthesisError

    real = synth.synthesize

    def flaky(voice, texts, workdir):
        if "tfadvq-tts-" in str(workdir) and flaky.calls == 0:  # the first speaker's engine dies
            flaky.calls += 1
            raise SynthesisError(f"{voice.engine} ({voice.engine_voice}) exited with 255: crashed")
        return real(voice, texts, workdir)

    flaky.calls = 0
    monkeypatch.setattr(synth, "synthesize", flaky)
    out = tmp_path / "c"
    argv = ["data", "synth", "--speakers", "2", "--test-speakers", "2", "--utts", "2", "--out", str(out),
            "--workers", "1"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("tfadvq: error: ") and "the corpus is incomplete" in err
    assert "dev: 1 of 2 speakers, 2 of 4 utterances; 2 clips failed (first: id0000" in err
    assert "exited with 255: crashed" in err and "re-run" in err
    assert "failed utterances (2" in captured.out
    manifest = json.loads((out / "corpus.json").read_text())
    assert not manifest["complete"] and len(manifest["failed"]) == 2
    assert main(argv) == 0  # the re-run makes the missing clips; the corpus is complete
    assert json.loads((out / "corpus.json").read_text())["complete"]
