"""tfadvq data real: a tiny real-speech corpus built in the test from installed Debian packages
(scripts/setup.sh installs the four small asterisk packages used here: two Spanish and two French
voices, about 44 MB), then scored through evaluation and the TFLM path."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tfadvq.corpus.real import RealConfig, build_real_corpus, read_trial_sources, source_report
from tfadvq.corpus.real_sources import SOURCES, Reader, Source
from tfadvq.errors import ConfigError
from tfadvq.voxceleb import load_corpus

FRAMES = 32
# The es and fr speakers of the asterisk source: wav (16-bit, 8 kHz) and GSM (through sox) voices.
TINY = Source("asterisk", SOURCES[0].licence, SOURCES[0].labels,
              tuple(r for r in SOURCES[0].readers if r.language in ("es", "fr")))
CONFIG = RealConfig(sources=("asterisk",), max_clips=5, seed=3)


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "corpus"
    result = build_real_corpus(out, CONFIG, sources=[TINY], progress=False)
    return out, result


def test_layout_is_read_by_load_corpus_and_holds_16k_mono_wav(real_corpus):
    from tfadvq.audio import audio_info

    out, result = real_corpus
    corpus = load_corpus(out)
    assert corpus.train == []  # evaluation only
    speakers = {u.speaker for u in corpus.test}
    assert speakers == {"asterisk-allison", "asterisk-july", "asterisk-june", "asterisk-armelle"}
    assert len(corpus.test) == result.per_source["asterisk"]["clips"] >= 16
    for utterance in corpus.test:
        info = audio_info(utterance.path)
        assert (info.encoding, info.sample_rate, info.channels) == ("pcm16", 16000, 1)
        assert info.frames >= 8000  # the device's 0.5 s minimum
    manifest = json.loads((out / "corpus.json").read_text())
    assert manifest["sources"]["asterisk"]["packages"]["asterisk-prompt-es-co"] == "GPL-2"
    assert "presumed" in (out / "README.md").read_text()


def test_trials_pair_voices_within_one_source_and_language(real_corpus):
    out, _ = real_corpus
    corpus = load_corpus(out)
    manifest = json.loads((out / "corpus.json").read_text())
    groups = read_trial_sources(out, corpus.trials)
    assert {g for g in groups} == {("asterisk", "es"), ("asterisk", "fr")}
    for label, a, b, (source, language) in zip(corpus.trials.labels, corpus.trials.enroll, corpus.trials.test,
                                               groups):
        spk_a, spk_b = a.split("/")[0], b.split("/")[0]
        assert a != b and (spk_a == spk_b) == bool(label)
        for key, speaker in ((a, spk_a), (b, spk_b)):  # both clips in the trial's language and source
            assert key.split("/")[1].startswith(f"{language}-")
            assert manifest["speakers"][speaker]["source"] == source
    assert 0 < corpus.trials.labels.sum() < len(corpus.trials)


def test_rebuild_is_deterministic_and_resumes(real_corpus, tmp_path):
    out, result = real_corpus
    corpus = load_corpus(out)
    victim = corpus.test[3]
    copy = tmp_path / "copy"
    build_real_corpus(copy, CONFIG, sources=[TINY], progress=False)
    (copy / "test" / "wav" / victim.key).unlink()                 # as if killed before this clip
    (copy / "test" / "wav" / victim.key).with_name(".x.wav.tmp").write_bytes(b"half")  # and mid-write
    marker = json.loads((copy / ".real.json").read_text())
    del marker["settings"]["train_speakers"]  # as a build from before that setting wrote it
    (copy / ".real.json").write_text(json.dumps(marker))
    resumed = build_real_corpus(copy, CONFIG, sources=[TINY], progress=False)
    assert (resumed.written, resumed.skipped) == (1, result.written - 1)
    assert not list((copy / "test").rglob(".*.tmp"))
    for name in ("trials/test.txt", "trials/test_sources.txt", "lists/test_wav.scp"):
        assert (copy / name).read_text() == (out / name).read_text()
    for u in corpus.test:
        assert (copy / "test" / "wav" / u.key).read_bytes() == (out / "test" / "wav" / u.key).read_bytes()
    with pytest.raises(ConfigError, match="max_clips: 5 there, 6 now"):
        build_real_corpus(copy, dataclasses.replace(CONFIG, max_clips=6), sources=[TINY], progress=False)


def test_a_missing_source_names_the_apt_packages(tmp_path, capsys):
    from tfadvq.cli import main

    absent = Source("absent", "GPL-2", "none", (Reader("absent-x", "en", "tfadvq-absent-voices",
                                                       str(tmp_path / "nowhere"), "*.wav", "GPL-2", "nobody"),))
    with pytest.raises(ConfigError, match=r"not installed: tfadvq-absent-voices; .*apt-get install "
                                          r"--no-install-recommends tfadvq-absent-voices"):
        build_real_corpus(tmp_path / "out", RealConfig(sources=("absent",)), sources=[absent], progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    assert main(["data", "real", "--out", str(tmp_path / "o"), "--sources", "asterisk", "festival"]) == 2
    assert "tfadvq: error: --sources: unknown source(s) festival; accepted: asterisk" in capsys.readouterr().err


def _tiny_device_model():
    """A stripped 4-bit k-means model on [FRAMES, 80] fbank windows and its LUT .tflite."""
    import tfadvq
    from converters import convert_model
    from tfadvq.compat import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((FRAMES, 80))
    x = keras.layers.Conv1D(16, 5, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(16, name="emb")(x))
    plain, records = tfadvq.strip(tfadvq.ptq(model, 4, progress=False))
    return plain, convert_model(plain, records.bits_by_layer(), FRAMES).model


def test_real_trials_score_through_evaluation_and_tflm_alike(real_corpus, tmp_path, capsys):
    from tfadvq.cli import main
    from tfadvq.evaluation import evaluate
    from converters.tflm import tflm_embedder
    from tfadvq.scoring import keras_embedder
    from tfadvq.windows import ScoringConfig

    out, _ = real_corpus
    corpus = load_corpus(out)
    plain, tflite = _tiny_device_model()
    scoring = ScoringConfig(window_frames=FRAMES)
    on_keras = evaluate(keras_embedder(plain), corpus.trials, corpus.test, scoring)
    on_tflm = evaluate(tflm_embedder(tflite), corpus.trials, corpus.test, scoring)
    assert on_tflm.labels.size == on_keras.labels.size == len(corpus.trials)  # no clip refused
    assert np.abs(on_tflm.scores - on_keras.scores).max() < 2e-3
    rows = source_report(on_tflm.scores, on_tflm.labels, corpus.trials, read_trial_sources(out, corpus.trials),
                         resamples=200)
    assert [r["trials"] for r in rows] == ["all", "same-source", "asterisk/es", "asterisk/fr"]
    for row in rows:
        assert row["eer_ci95"][0] <= row["eer"] <= row["eer_ci95"][1]
    assert rows[0]["eer"] == pytest.approx(on_tflm.eer, abs=1e-3)
    assert rows[2]["speakers"] == rows[3]["speakers"] == 2

    plain.save(tmp_path / "tiny.keras")
    assert main(["eval", "--model", str(tmp_path / "tiny.keras"), "--corpus", str(out), "--frames", str(FRAMES),
                 "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "EER by source" in printed and "asterisk/fr" in printed
    by_source = json.loads((tmp_path / "eval" / "by_source.json").read_text())
    assert by_source[0]["eer"] == pytest.approx(on_keras.eer, abs=1e-3)


def test_an_evaluation_corpus_cannot_train_or_serve_as_a_cohort(real_corpus, tmp_path, capsys):
    from tfadvq.cli import main
    from tfadvq.train_config import DataConfig
    from tfadvq.training import load_training_utterances

    out, _ = real_corpus
    with pytest.raises(ConfigError, match="has no training \\(dev\\) part"):
        load_training_utterances(DataConfig(corpus=str(out)))
    plain, _ = _tiny_device_model()
    plain.save(tmp_path / "tiny.keras")
    assert main(["eval", "--model", str(tmp_path / "tiny.keras"), "--corpus", str(out), "--frames", str(FRAMES),
                 "--as-norm", "--cohort", str(out), "--out", str(tmp_path / "eval")]) == 2
    assert "tfadvq: error: cohort: no utterances" in capsys.readouterr().err


def test_train_speakers_form_a_dev_part_that_trains_beside_another_corpus(real_corpus, tmp_path):
    """Issue 20's real-speaker training split: the named speakers go to dev lists without trials, and
    data.extra_corpora adds that dev part to the main corpus's (speakers disjoint across corpora)."""
    from tfadvq.train_config import DataConfig, TrainConfig, overridden
    from tfadvq.training import load_training_utterances, training_data

    out, _ = real_corpus
    split = tmp_path / "split"
    build_real_corpus(split, dataclasses.replace(CONFIG, train_speakers=("asterisk-july", "asterisk-armelle")),
                      sources=[TINY], progress=False)
    corpus, whole = load_corpus(split), load_corpus(out)
    assert {u.speaker for u in corpus.train} == {"asterisk-july", "asterisk-armelle"}
    assert {u.speaker for u in corpus.test} == {"asterisk-allison", "asterisk-june"}
    assert all("/dev/wav/" in u.path for u in corpus.train) and all("/test/wav/" in u.path for u in corpus.test)
    # the same clips as the evaluation-only build, each in one part; trials only among the test speakers
    assert sorted(u.key for u in corpus.train + corpus.test) == sorted(u.key for u in whole.test)
    assert {k.split("/")[0] for k in corpus.trials.keys()} == {"asterisk-allison", "asterisk-june"}
    other = tmp_path / "other"
    build_real_corpus(other, dataclasses.replace(CONFIG, train_speakers=("asterisk-allison",)), sources=[TINY],
                      progress=False)
    config = overridden(TrainConfig(data=DataConfig(extra_corpora=(str(other),))), corpus=split)
    utterances = load_training_utterances(config.data)
    assert {u.speaker for u in utterances} == {"asterisk-july", "asterisk-armelle", "asterisk-allison"}
    data = training_data(dataclasses.replace(config, pipeline=dataclasses.replace(config.pipeline, batch_size=4)))
    assert set(data.speakers) == {u.speaker for u in utterances}
    with pytest.raises(ConfigError, match="also in"):  # one speaker in two training corpora
        load_training_utterances(DataConfig(corpus=str(split), extra_corpora=(str(split),)))
    with pytest.raises(ConfigError, match="add to a `corpus`"):
        load_training_utterances(DataConfig(wav_root=str(split), extra_corpora=(str(split),)))
    with pytest.raises(ConfigError, match="not a speaker of --sources"):
        build_real_corpus(tmp_path / "bad", dataclasses.replace(CONFIG, train_speakers=("queen-joe",)),
                          sources=[TINY], progress=False)


def _queen_archive(path, entries: dict[str, bytes], compression: int = 3) -> None:
    """A resource file in the layout of tfadvq/corpus/queen.py holding ``entries``."""
    import struct

    offset = 15 + 21 * len(entries)
    table, body = b"", b""
    for name, data in entries.items():
        table += name.encode().ljust(12, b"\0") + b"\x01" + struct.pack(">II", offset + len(body), len(data))
        body += data
    path.write_bytes(b"QTBLCEM10\0\0\0" + bytes([compression]) + struct.pack(">H", len(entries)) + table + body)


def test_a_game_resource_file_is_read_entry_by_entry(tmp_path):
    """Speech inside a Queen-style resource file: FLAC entries (made by sox from the installed prompts)
    labelled by their names as the amazon-queen source labels them, decoded by the one reader."""
    import subprocess

    from tfadvq.corpus.queen import read_table
    from tfadvq.errors import DataError

    prompts = {r.speaker: sorted(Path(r.directory).glob(r.pattern))[:3] for r in TINY.readers if r.decoder == "reader"}
    entries = {}
    for letter, speaker in (("P", "asterisk-june"), ("J", "asterisk-allison")):
        for i, wav in enumerate(prompts[speaker]):
            flac = tmp_path / f"{letter}{i}.flac"
            subprocess.run(["sox", str(wav), str(flac)], check=True)
            entries[f"180{i:03X}{letter}1.SB"] = flac.read_bytes()
    entries["C18A_011.SB"] = entries["180000P1.SB"]  # a cut-scene line: not matched
    archive = tmp_path / "queen.1c"
    _queen_archive(archive, entries)
    assert set(read_table(archive).entries) == set(entries)
    readers = tuple(Reader(f"queen-{who}", "en", "test-queen", str(archive), f"18{'[0-9A-F]' * 4}{letter}[0-9].SB",
                           "freeware", who, "queen", session="en-faye2")
                    for who, letter in (("faye", "P"), ("joe", "J")))
    source = Source("queen", "freeware", "test", readers)
    result = build_real_corpus(tmp_path / "out", RealConfig(sources=("queen",), max_clips=0), sources=[source],
                               progress=False)
    corpus = load_corpus(tmp_path / "out")
    assert result.rejected == [] and len(corpus.test) == 6
    assert {(u.speaker, u.key.split("/")[1]) for u in corpus.test} == {("queen-faye", "en-faye2"),
                                                                      ("queen-joe", "en-faye2")}
    manifest = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert sorted(manifest["utterances"].values())[0] == f"{archive}:180000J1.SB"
    (tmp_path / "bad.1c").write_bytes(b"RIFF0000")
    with pytest.raises(DataError, match="no QTBL header"):
        read_table(tmp_path / "bad.1c")


def test_the_demo_scores_every_model_on_real_speech_unless_told_not_to():
    from tfadvq.recipe import demo_recipe

    with_real = [e.name for e in demo_recipe().stages]
    assert with_real[-4:] == ["real_speech", "evaluate_real", "evaluate_real_quantized", "evaluate_real_device"]
    without = [e.name for e in demo_recipe(real_speech=False).stages]
    assert without == with_real[:-4]
    narrowed = demo_recipe(real_sources=["asterisk"], real_clips=7).stages[-4].stage
    assert narrowed.sources == ["asterisk"] and narrowed.max_clips == 7


def test_recipe_real_corpus_stage_and_evaluate_report_by_source(tmp_path, monkeypatch):
    """The recipe path of the command's report: a real_corpus stage, then evaluate writes by_source.json."""
    from tfadvq import rundir
    from tfadvq.corpus import real
    from tfadvq.recipe import load_recipe, run_recipe

    monkeypatch.setattr(real, "KNOWN", (TINY,))  # the es/fr voices setup.sh installs
    plain, _ = _tiny_device_model()
    plain.save(tmp_path / "tiny.keras")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"scoring: {{window_frames: {FRAMES}}}\n"
                      "stages:\n  - {type: real_corpus, name: people, sources: [asterisk], max_clips: 5, seed: 3}\n"
                      f"  - {{type: model, path: {tmp_path / 'tiny.keras'}}}\n"
                      "  - {type: evaluate, model: model, corpus: people}\n")
    run_recipe(load_recipe(recipe), tmp_path / "work")
    evaluated = rundir.EvalDir(tmp_path / "work" / "evaluate")
    rows = rundir.read_json(evaluated.by_source)
    assert [r["trials"] for r in rows] == ["all", "same-source", "asterisk/es", "asterisk/fr"]
    record = rundir.read_json(evaluated.record)
    assert "same-source EER" in record["summary"] and record["metrics"]["by_source"] == rows
    people = load_corpus(rundir.CorpusRun(tmp_path / "work" / "people").corpus)
    assert not people.train and len({u.speaker for u in people.test}) == 4
