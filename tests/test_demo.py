"""``tfadvq demo`` (the packaged recipe) end to end on the tiny corpus: train the device model ->
KMQAT 4-bit with 8-bit activation QAT -> int8 LUT .tflite -> thresholds calibrated on TFLM scores ->
a claim verified under TFLM.

The model is barely trained (one epoch of one step), so what is asserted holds
for any model: every stage ran and recorded itself, the quantized model really
is 4-bit LUT-compressed with int8 activations, the shipped thresholds are the
EER point of the converted model's own TFLM scores (recomputed here from the
scores file), TFLM stays close to the Keras scores, every trial is scored, and
a re-run reuses every stage.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(600)

ARGS = ["--epochs", "1", "--batch-size", "16", "--steps-per-epoch", "1", "--finetune-epochs", "1",
        "--finetune-steps", "1", "--frames", "100", "--corpus-crops", "8",
        "--no-real-speech"]  # its own test: tests/test_real_corpus.py (a recipe on a tiny real set)


@pytest.fixture(scope="module")
def demo_run(tiny_corpus, tmp_path_factory):
    from tfadvq.cli import main

    workdir = tmp_path_factory.mktemp("demo")
    rc = main(["demo", "--workdir", str(workdir), "--corpus", str(tiny_corpus), *ARGS])
    return rc, workdir


def _record(workdir, stage):
    return json.loads((workdir / stage / "record.json").read_text())


def test_demo_runs_every_stage_and_records_it(demo_run):
    rc, workdir = demo_run
    assert rc == 0
    stages = ["corpus", "train", "evaluate", "verify", "quantize", "finetune", "evaluate_quantized",
              "convert", "calibrate", "device_verify"]
    for stage in stages:
        record = _record(workdir, stage)
        assert record["stage"] == stage and record["seconds"] >= 0 and len(record["fingerprint"]) == 64
        assert all(__import__("pathlib").Path(p).exists() for p in record["outputs"].values())
    finetune = _record(workdir, "finetune")
    assert finetune["metrics"]["finetune"]["head"] == "trained"  # started from the trained AAM head
    assert finetune["metrics"]["finetune"]["steps"] == 1
    summary = json.loads((workdir / "finetune" / "summary.json").read_text())
    assert summary["settings"]["epochs"] == 1 and summary["source_model"].endswith("model.keras")
    assert all(row["bits"] == 4 for row in summary["layers"] if isinstance(row["bits"], int))


def test_demo_ships_thresholds_calibrated_on_tflm_scores(demo_run, tiny_corpus):
    from converters.metadata import read_json
    from tfadvq.metrics import compute_eer

    _, workdir = demo_run
    metadata = read_json(workdir / "calibrate" / "model.json")
    assert metadata.input_frames == 100 == metadata.scoring.window_frames
    assert set(metadata.bits_per_layer.values()) == {4} and metadata.activations == "int8"
    table = np.loadtxt(workdir / "calibrate" / "trial_scores.txt", ndmin=2)
    eer, threshold = compute_eer(table[:, 1], table[:, 0])
    assert metadata.thresholds.eer_threshold == pytest.approx(threshold, abs=1e-6)
    # the file's 6 decimals tie some of the barely trained int8 model's near-equal scores: a trial or two
    assert metadata.thresholds.eer_percent == pytest.approx(eer, abs=200 / len(table))
    assert metadata.calibration["embedder"] == "tflm" and metadata.calibration["num_trials"] == len(table)
    trials = (tiny_corpus / "trials" / "test.txt").read_text().splitlines()
    assert len(table) == len([line for line in trials if line.strip()])  # no trial left unscored
    assert metadata.calibration["device_scoring_max_abs_diff"] < 0.1  # int8 TFLM scores near Keras's
    calibrate = _record(workdir, "calibrate")["metrics"]
    assert calibrate["decision_agreement_at_eer"] == 1 - calibrate["decisions_differ_at_eer"] / len(table)
    labels, scores = table[:, 0], table[:, 1]
    # the threshold is one of the scores, which the file rounds to 6 decimals: the FAR lies between the file's
    # FARs half a unit of the last digit either side of it (near-equal scores of the barely trained model tie there)
    impostors = scores[labels == 0]
    threshold = metadata.thresholds.eer_threshold
    assert np.mean(impostors >= threshold + 5e-7) <= calibrate["device_far_at_eer_threshold"] \
        <= np.mean(impostors >= threshold - 5e-7)
    header = (workdir / "calibrate" / "c_array" / "model_config.h").read_text()
    assert f"#define TFADVQ_THRESHOLD_EER {metadata.thresholds.eer_threshold!r}f" in header
    assert "#define TFADVQ_SCORING_HOP_FRAMES 100" in header
    tflite = workdir / "calibrate" / "model.tflite"
    assert tflite.stat().st_size == metadata.model_bytes < (workdir / "convert" / "model.float.tflite").stat().st_size


def test_demo_verifies_a_speaker_under_tflm(demo_run):
    _, workdir = demo_run
    outcome = json.loads((workdir / "device_verify" / "device_verify.json").read_text())
    keras = json.loads((workdir / "verify" / "verify.json").read_text())
    scores = np.asarray(outcome["scores"])
    assert scores.shape == (2,) and np.isfinite(scores).all() and (np.abs(scores) <= 1 + 1e-6).all()
    assert outcome["decisions"] == ["accept" if s >= outcome["threshold"] else "reject" for s in scores]
    assert outcome["speaker"] == keras["speaker"] and outcome["genuine"] == keras["genuine"]


def test_demo_rerun_reuses_every_stage(demo_run, tiny_corpus, capsys):
    from tfadvq.cli import main

    _, workdir = demo_run
    before = {p: p.stat().st_mtime_ns for p in workdir.glob("*/record.json")}
    assert main(["demo", "--workdir", str(workdir), "--corpus", str(tiny_corpus), *ARGS]) == 0
    assert "== stage" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in workdir.glob("*/record.json")} == before


def test_demo_firmware_runs_the_model_in_the_firmware_on_qemu(demo_run, tiny_corpus, capsys):
    """``make firmware-demo``: only the firmware session runs (the device stages are reused); the device's
    verify scores and decisions are the Python TFLM interpreter's.  Needs TFLM built outside the project."""
    from converters.firmware import FirmwareError, find_tflm
    from tfadvq.cli import main

    try:
        find_tflm().library("cortex-m4")
    except FirmwareError as exc:
        pytest.skip(str(exc))
    _, workdir = demo_run
    assert main(["demo", "--workdir", str(workdir), "--corpus", str(tiny_corpus), *ARGS, "--firmware"]) == 0
    out = capsys.readouterr().out
    assert out.count("== stage") == 1 and "== stage: firmware_session" in out
    session = json.loads((workdir / "firmware_session" / "session.json").read_text())
    verifies = [e for e in session["exchange"] if e["python_score"] is not None]
    # CMSIS-NN's int8 kernels round a little differently from the interpreter's reference kernels
    assert len(verifies) == 4 and session["max_score_abs_diff"] < 0.02
    threshold = float(session["ready"].split("threshold=")[1].split()[0])
    clear = [e for e in verifies if abs(e["python_score"] - threshold) > 0.02]
    assert all(e["device_decision"] == e["python_decision"] for e in clear)
    replies = [e["reply"] for e in session["exchange"]]
    assert replies[0] == "OK formatted" and replies[-1] == "ERR UNKNOWN_SPEAKER"  # deleted, then claimed
    assert all(e["instructions"] > 0 for e in session["exchange"])
    assert "Python TFLM: score=" in (workdir / "firmware_session" / "transcript.txt").read_text()


def test_demo_core_needs_firmware(capsys):
    from tfadvq.cli import main

    assert main(["demo", "--core", "cortex-m55", "--workdir", "unused"]) == 2
    assert "--core: only with --firmware" in capsys.readouterr().err
