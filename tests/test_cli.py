"""`tfadvq train`, `eval` and `verify` end to end on the tiny generated corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from tfadvq import rundir
from tfadvq.cli import main
from tfadvq.config import dump_yaml
from tfadvq.voxceleb import load_corpus, read_trials
from test_training import tiny_config  # tests/ is on sys.path under pytest


def _independent_eer(labels: np.ndarray, scores: np.ndarray) -> float:
    """EER in percent from sklearn's ROC (the crossing of FAR and FRR)."""
    far, tpr, _ = roc_curve(labels, scores)
    frr = 1 - tpr
    i = np.argmin(np.abs(far - frr))
    return 100 * (far[i] + frr[i]) / 2


def _reference_score(run, enroll: list[str], test: str) -> float:
    """Cosine of ``test`` against the enrolment, by the device schedule written out with numpy."""
    from tfadvq.audio import load_audio
    from tfadvq.compat import keras
    from tfadvq.features import FbankConfig, fbank

    model = keras.models.load_model(run / "model.keras", compile=False)

    def embedding(path: str) -> np.ndarray:
        f = fbank(load_audio(path), FbankConfig()).numpy()
        starts = [0] if len(f) <= 200 else sorted({min(k * 200, len(f) - 200)
                                                   for k in range(-(-(len(f) - 200) // 200) + 1)})
        windows = np.stack([f[(s + np.arange(200)) % len(f)] for s in starts])
        out = model(windows, training=False).numpy()
        mean = (out / np.linalg.norm(out, axis=1, keepdims=True)).mean(axis=0)
        return mean / np.linalg.norm(mean)

    enrolled = np.mean([embedding(p) for p in enroll], axis=0)
    return float(embedding(test) @ (enrolled / np.linalg.norm(enrolled)))


def test_train_eval_verify_end_to_end(tiny_corpus, tmp_path, capsys):
    config_path, run = tmp_path / "tiny.yaml", tmp_path / "run"
    dump_yaml(tiny_config(tiny_corpus, epochs=2), config_path)

    assert main(["train", "--config", str(config_path), "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "tfadvq train" in printed and str(run / "model.keras") in printed

    assert main(["eval", "--model", str(run), "--corpus", str(tiny_corpus)]) == 0
    printed = capsys.readouterr().out
    assert "tfadvq eval" in printed and "eer" in printed
    out = run / "eval_test"
    trials = read_trials(tiny_corpus / "trials" / "test.txt")
    table = np.loadtxt(out / "trial_scores.txt", ndmin=2)
    np.testing.assert_array_equal(table[:, 0], trials.labels)
    assert len((out / "scores.txt").read_text().splitlines()) == len(trials)
    summary = json.loads((out / "summary.json").read_text())
    fewer = min(trials.labels.sum(), len(trials) - trials.labels.sum())  # one error in the rarer class
    assert summary["eer"] == pytest.approx(_independent_eer(table[:, 0], table[:, 1]), abs=100 / fewer)
    assert (out / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = json.loads((out / "threshold.json").read_text())  # the threshold lives with its evaluation
    assert stored["num_trials"] == len(trials) and stored["scoring"]["window_frames"] == 200
    assert not (run / "threshold.json").exists() and f"{out / 'threshold.json'} ({len(trials)} trials" in printed

    corpus = load_corpus(tiny_corpus)
    speaker = corpus.test[0].speaker
    own = [u.path for u in corpus.test if u.speaker == speaker]
    other = next(u.path for u in corpus.test if u.speaker != speaker)
    assert main(["verify", "--model", str(run), "--enroll", *own[:2], "--test", own[2]]) == 0
    printed = capsys.readouterr().out
    assert f"stored ({len(trials)} trials" in printed and f"{stored['threshold']:.4g}" in printed

    # the score is the device schedule's cosine (windows of 200 frames, unit windows averaged):
    # computed independently here, the decision flips exactly at it
    score = _reference_score(run, own[:1], other)
    for offset, decision in ((-1e-4, "accept"), (1e-4, "reject")):
        assert main(["verify", "--model", str(run), "--enroll", own[0], "--test", other,
                     "--threshold", str(score + offset)]) == 0
        assert decision in capsys.readouterr().out
    for bad in ("nan", "1.5", "-2"):
        assert main(["verify", "--model", str(run), "--enroll", own[0], "--test", other,
                     "--threshold", bad]) == 2
        assert "tfadvq: error: --threshold" in capsys.readouterr().err

    # a threshold from fewer trials never silently replaces the one verify uses (issue 25)
    few = tmp_path / "few.txt"
    lines = (tiny_corpus / "trials" / "test.txt").read_text().splitlines(True)
    few.write_text("".join([x for x in lines if x.startswith("1")][:6] + [x for x in lines if x.startswith("0")][:6]))
    assert main(["eval", "--model", str(run), "--trials", str(few), "--corpus", str(tiny_corpus),
                 "--out", str(out)]) == 2
    assert f"from {len(trials)} trials" in capsys.readouterr().err
    assert json.loads((out / "threshold.json").read_text()) == stored
    assert main(["eval", "--model", str(run), "--trials", str(few), "--corpus", str(tiny_corpus),
                 "--out", str(tmp_path / "elsewhere")]) == 0
    printed = capsys.readouterr().out  # eval says which threshold verify will use: still the 48-trial one
    assert "verify_uses" in printed and f"{out / 'threshold.json'} ({len(trials)}" in printed
    assert main(["verify", "--model", str(run), "--enroll", *own[:2], "--test", own[2]]) == 0
    assert f"stored ({len(trials)} trials" in capsys.readouterr().out
    assert main(["verify", "--model", str(run), "--enroll", *own[:2], "--test", own[2],
                 "--threshold-from", str(tmp_path / "elsewhere")]) == 0
    assert "stored (12 trials" in capsys.readouterr().out
    assert main(["eval", "--model", str(run), "--trials", str(few), "--corpus", str(tiny_corpus),
                 "--out", str(out), "--force"]) == 0
    assert json.loads((out / "threshold.json").read_text())["num_trials"] == 12
    capsys.readouterr()

    # a threshold belongs to its model: retraining removes it, and one left beside a replaced
    # model is refused
    assert main(["train", "--config", str(config_path), "--out", str(run), "--epochs", "1", "--force"]) == 0
    capsys.readouterr()
    assert main(["verify", "--model", str(run), "--enroll", own[0], "--test", other]) == 2
    assert "none stored" in capsys.readouterr().err
    assert main(["eval", "--model", str(run), "--corpus", str(tiny_corpus)]) == 0
    from tfadvq.models import build_model

    build_model("TinyResNet", feat_dim=80, embed_dim=32, base_width=16).save(run / "model.keras")
    capsys.readouterr()
    assert main(["verify", "--model", str(run), "--enroll", own[0], "--test", other]) == 2
    assert "calibrated for another model" in capsys.readouterr().err
    for evaluation in rundir.TrainDir(run).evaluations():  # the old home beside the model: named, not read
        evaluation.threshold.unlink(missing_ok=True)
    (run / "threshold.json").write_text(json.dumps(stored))
    assert main(["verify", "--model", str(run), "--enroll", own[0], "--test", other]) == 2
    assert "thresholds no longer live beside the model" in capsys.readouterr().err

    assert main(["eval", "--model", str(run), "--corpus", str(tiny_corpus), "--as-norm",
                 "--cohort", str(tiny_corpus), "--top-n", "5", "--out", str(tmp_path / "asn")]) == 0
    assert json.loads((tmp_path / "asn" / "summary.json").read_text())["as_norm"] is True


@pytest.mark.parametrize("argv, message", [
    (["verify", "--model", "{tmp}/nothing", "--enroll", "a.wav", "--test", "b.wav"], "no such model"),
    (["eval", "--model", "{tmp}/nothing", "--corpus", "{tmp}", "--as-norm"], "--cohort"),
    (["train", "--config", "{tmp}/missing.yaml"], "packaged"),
])
def test_user_errors_exit_2_with_a_message(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_verify_reports_an_unreadable_recording(tiny_corpus, tmp_path, capsys):
    from tfadvq.models import build_model

    model = build_model("TinyResNet", feat_dim=80, embed_dim=32, base_width=16)
    model.save(tmp_path / "model.keras")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    good = str(next(iter(load_corpus(tiny_corpus).test)).path)
    assert main(["verify", "--model", str(tmp_path), "--enroll", good, "--test", str(bad),
                 "--threshold", "0.5"]) == 2
    assert str(bad) in capsys.readouterr().err
