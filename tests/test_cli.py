"""`tfadvq train`, `eval` and `verify` end to end on the tiny generated corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_curve

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
    stored = json.loads((run / "threshold.json").read_text())["threshold"]

    corpus = load_corpus(tiny_corpus)
    speaker = corpus.test[0].speaker
    own = [u.path for u in corpus.test if u.speaker == speaker]
    other = next(u.path for u in corpus.test if u.speaker != speaker)
    assert main(["verify", "--model", str(run), "--enroll", *own[:2], "--test", own[2]]) == 0
    printed = capsys.readouterr().out
    assert "stored by eval" in printed and f"{stored:.4g}" in printed
    for threshold, decision in ((-1.0, "accept"), (1.01, "reject")):
        assert main(["verify", "--model", str(run), "--enroll", own[0], "--test", other,
                     "--threshold", str(threshold)]) == 0
        assert decision in capsys.readouterr().out

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
