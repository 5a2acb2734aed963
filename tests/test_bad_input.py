"""Bad audio in a real corpus: evaluation and training skip and report it, lists refuses it,
verify refuses it with `tfadvq: error:` -- all with the one reader and checker of tfadvq.audio."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import bad_audio  # tests/ is on sys.path under pytest
from tfadvq.cli import main
from tfadvq.errors import DataError
from tfadvq.voxceleb import Trials, load_corpus, read_kaldi_lists, read_trials

SCORING_FRAMES = 70
#: test utterance index -> what it becomes (one bad file per test speaker, so each keeps targets)
TEST_BAD = {0: "text named .wav", 4: "0.1 s clip", 8: "silence", 12: "clipped"}
TEST_CONVERTED = {1: "8-bit", 5: "44.1 kHz", 9: "float32"}
DEV_BAD = {0: "truncated header", 5: "truncated data", 10: "text named .wav", 15: "0.1 s clip"}
DEV_CONVERTED = {1: "8-bit", 6: "44.1 kHz", 11: "extensible"}


def _replace(utterances, bad: dict, converted: dict, scratch) -> dict[str, str]:
    """Overwrite the chosen corpus files in place; returns {path: expected reason fragment}."""
    reasons = {}
    for i, name in bad.items():
        made, reason = bad_audio.bad_versions(utterances[i].path, scratch / f"b{i}")[name]
        shutil.copyfile(made, utterances[i].path)
        reasons[utterances[i].path] = reason
    for i, name in converted.items():
        shutil.copyfile(bad_audio.convertible_versions(utterances[i].path, scratch / f"c{i}")[name],
                        utterances[i].path)
    return reasons


@pytest.fixture(scope="module")
def bad_corpus(tiny_corpus, tmp_path_factory):
    """A copy of the tiny corpus with bad and unusually encoded files in both splits."""
    root = tmp_path_factory.mktemp("bad_corpus") / "corpus"
    shutil.copytree(tiny_corpus, root)
    corpus = load_corpus(root)
    scratch = tmp_path_factory.mktemp("scratch")
    test_bad = _replace(corpus.test, TEST_BAD, TEST_CONVERTED, scratch)
    dev_bad = _replace(corpus.train, DEV_BAD, DEV_CONVERTED, scratch)
    return root, test_bad, dev_bad


@pytest.fixture(scope="module")
def model():
    from tfadvq.compat import keras
    from tfadvq.models import build_model

    keras.utils.set_random_seed(0)
    return build_model("TinyResNet", feat_dim=80, embed_dim=16, base_width=4)


def test_evaluate_skips_bad_files_reports_them_and_drops_their_trials(bad_corpus, tiny_corpus, model, tmp_path):
    from tfadvq import rundir
    from tfadvq.evaluation import evaluate, write_outputs
    from tfadvq.windows import ScoringConfig

    root, test_bad, _ = bad_corpus
    corpus, clean = load_corpus(root), load_corpus(tiny_corpus)
    scoring = ScoringConfig(window_frames=SCORING_FRAMES)
    result = evaluate(model, corpus.trials, corpus.test, scoring)
    assert dict(result.bad).keys() == test_bad.keys()
    for path, reason in result.bad:
        assert test_bad[path] in reason, (path, reason)
    bad_keys = {u.key for u in corpus.test if u.path in test_bad}
    needs_bad = np.array([a in bad_keys or b in bad_keys for a, b in zip(corpus.trials.enroll, corpus.trials.test)])
    np.testing.assert_array_equal(result.kept, ~needs_bad)
    assert result.dropped_trials == needs_bad.sum() > 0 and result.labels.size == (~needs_bad).sum()

    # the 8-bit, 44.1 kHz and float32 files were read (converted), not skipped: scores match the
    # clean corpus's on the same trials -- float32 holds the very samples; 8-bit quantisation and
    # the round trip through 44.1 kHz move the embeddings of this random model a little
    reference = evaluate(model, clean.trials.select(~needs_bad), clean.test, scoring)
    lossy = {corpus.test[i].key for i, name in TEST_CONVERTED.items() if name != "float32"}
    scored = corpus.trials.select(~needs_bad)
    touched = np.array([a in lossy or b in lossy for a, b in zip(scored.enroll, scored.test)])
    assert touched.any() and not touched.all()
    np.testing.assert_allclose(result.scores[~touched], reference.scores[~touched], atol=1e-3)
    np.testing.assert_allclose(result.scores[touched], reference.scores[touched], atol=0.2)
    assert np.abs(result.scores[touched] - reference.scores[touched]).max() > 1e-4

    out = write_outputs(result, corpus.trials, rundir.EvalDir(tmp_path / "eval"))
    assert sorted(line.split("\t")[0] for line in out.bad.read_text().splitlines()) == sorted(test_bad)
    assert len(out.scores.read_text().splitlines()) == result.labels.size
    summary = json.loads(out.summary.read_text())
    assert (summary["bad_files"], summary["dropped_trials"]) == (len(test_bad), result.dropped_trials)


def test_bad_cohort_files_only_leave_the_cohort(bad_corpus, model):
    from tfadvq.evaluation import evaluate
    from tfadvq.windows import ScoringConfig

    root, test_bad, dev_bad = bad_corpus
    corpus = load_corpus(root)
    result = evaluate(model, corpus.trials, corpus.test, ScoringConfig(window_frames=SCORING_FRAMES),
                      cohort=corpus.train, top_n=5)
    assert result.as_norm and dict(result.bad).keys() == test_bad.keys() | dev_bad.keys()
    assert result.dropped_trials == int((~result.kept).sum()) and np.isfinite(result.scores).all()


def test_eval_command_reports_skipped_files_and_dropped_trials(bad_corpus, model, tmp_path, capsys):
    root, test_bad, _ = bad_corpus
    model.save(tmp_path / "model.keras")
    assert main(["eval", "--model", str(tmp_path), "--corpus", str(root), "--frames", str(SCORING_FRAMES),
                 "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "bad_files" in printed and "dropped_trials" in printed
    lines = (tmp_path / "eval" / "bad.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == sorted(test_bad)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["trials"] + summary["dropped_trials"] == len(load_corpus(root).trials)
    assert json.loads((tmp_path / "eval" / "threshold.json").read_text())["num_trials"] == summary["trials"]


def test_an_evaluation_with_every_trial_dropped_is_a_data_error(bad_corpus, model):
    from tfadvq.evaluation import evaluate

    root, test_bad, _ = bad_corpus
    corpus = load_corpus(root)
    bad_keys = sorted(u.key for u in corpus.test if u.path in test_bad)
    good_key = next(u.key for u in corpus.test if u.path not in test_bad)
    trials = Trials(np.array([1, 0], np.int8), [bad_keys[0], good_key], [good_key, bad_keys[1]])
    with pytest.raises(DataError, match=r"no trial left to score after dropping 2 of 2 trials") as info:
        evaluate(model, trials, corpus.test)
    assert any(path in str(info.value) for path in test_bad)


def test_training_split_skips_unreadable_files_and_reads_converted_ones(bad_corpus):
    from tfadvq.pipeline import PipelineConfig, check_utterances, train_dataset

    root, _, dev_bad = bad_corpus
    train = load_corpus(root).train
    good, bad = check_utterances(train, progress=False)
    assert dict(bad).keys() == dev_bad.keys()
    for path, reason in bad:
        assert dev_bad[path] in reason, (path, reason)
    assert [u.path for u in good] == [u.path for u in train if u.path not in dev_bad]
    config = PipelineConfig(batch_size=4, noise_prob=0.0, reverb_prob=0.0, spec_augment=False)
    batches = [(x.numpy(), y.numpy()) for x, y in train_dataset(good, config)]
    assert len(batches) == len(good) // 4 and all(np.isfinite(x).all() for x, _ in batches)


def test_lists_approves_exactly_what_the_pipeline_reads(bad_corpus, tmp_path, capsys):
    from tfadvq.pipeline import check_utterances, eval_dataset

    root, test_bad, _ = bad_corpus
    out = tmp_path / "lists"
    assert main(["lists", "--corpus", str(root), "--split", "test", "--trials",
                 str(root / "trials" / "test.txt"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tfadvq lists" in printed and "skipped files (4" in printed
    kept = read_kaldi_lists(out / "wav.scp", out / "utt2spk")
    corpus = load_corpus(root)
    assert [u.key for u in kept] == [u.key for u in corpus.test if u.path not in test_bad]
    refused = dict(line.split("\t") for line in (out / "bad.txt").read_text().splitlines())
    assert {str(p) for p in refused} == set(test_bad)
    readable, unreadable = check_utterances(kept, progress=False)  # what training would read
    assert unreadable == [] and len(readable) == len(kept)
    assert all(np.isfinite(f).all() for f, _ in eval_dataset(kept).as_numpy_iterator())
    clean = read_trials(out / "trials.txt")
    usable = {u.key for u in kept}
    assert len(clean) == sum(a in usable and b in usable for a, b in zip(corpus.trials.enroll, corpus.trials.test))


@pytest.mark.parametrize("kind, reason", [("silence", "is silent"), ("clipped", "is clipped"),
                                          ("0.1 s clip", "at least 0.5 s")])
def test_verify_refuses_what_the_device_would_refuse(tiny_corpus, model, tmp_path, capsys, kind, reason):
    good = [u.path for u in load_corpus(tiny_corpus).test[:2]]
    recording, _ = bad_audio.bad_versions(good[0], tmp_path / "bad")[kind]
    model.save(tmp_path / "model.keras")
    for enroll, test in (([good[0], str(recording)], good[1]), ([good[0]], str(recording))):
        assert main(["verify", "--model", str(tmp_path), "--enroll", *enroll, "--test", test,
                     "--threshold", "0.5"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"tfadvq: error: {recording}: ") and reason in err, err
