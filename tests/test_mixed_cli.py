"""``tfadvq mixed`` end to end on tiny models: a corpus-fed fbank model and a model with its own input."""
from __future__ import annotations

import numpy as np
import pytest

from tfadvq import rundir
from tfadvq.cli import main
from tfadvq.compat import keras
from tfadvq.quant import QuantizedWeights, load_spec

CONFIG = "pipeline: {batch_size: 4, crop_seconds: 1.0}\noptimizer: {lr: 0.001}\n"


def _fbank_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 80))
    x = keras.layers.Conv1D(8, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv1D(16, 3, strides=2, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(12, name="emb")(x))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mixed_model")
    _fbank_model().save(directory / "model.keras")
    (directory / "config.yaml").write_text(CONFIG)
    return directory


def test_mixed_on_a_corpus_writes_bits_sensitivities_model_and_plots(saved_model, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "q"
    code = main(["mixed", "--model", str(saved_model / "model.keras"), "--corpus", str(tiny_corpus),
                 "--train-config", str(saved_model / "config.yaml"), "--avg-bits", "6", "--allowed", "1,2,4,8",
                 "--batches", "1", "--probes", "2", "--frames", "40", "--finetune-steps", "2", "--plots",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "conv1" in printed and "share" in printed and "tflite_bytes" in printed
    run = rundir.MixedDir(out)
    spec = load_spec(run.bits_spec)
    assert set(spec.layers) == {"conv1", "conv2", "emb"} and set(spec.layers.values()) <= {1, 2, 4, 8}
    assert set(rundir.read_json(run.sensitivities)) == {"conv1/kernel", "conv2/kernel", "emb/kernel"}
    plan = rundir.read_json(run.plan)
    assert plan["allocation"]["avg_bits"] <= 6.0  # bits per weight, the value tables included
    assert plan["allocation"]["index_bits"] < plan["allocation"]["avg_bits"]
    assert plan["sizes"]["tflite_bytes"] > 0 and plan["tuning"]["steps"] == 2
    assert [p["planned_bytes"] for p in plan["front"]] == sorted((p["planned_bytes"] for p in plan["front"]),
                                                                  reverse=True)
    assert (run.plots / "sensitivity.png").stat().st_size > 0 and (run.plots / "convergence.png").is_file()
    summary = rundir.read_json(run.summary)
    assert {r["layer"]: r["bits"] for r in summary["layers"] if r["layer"] in spec.layers} == spec.layers

    assert spec.per_channel == {}  # per tensor unless asked: nothing to record

    # the same model to a byte target, the granularity a choice: the converted file keeps the target
    target = plan["sizes"]["tflite_bytes"] + 200
    again = tmp_path / "q2"
    assert main(["mixed", "--model", str(saved_model / "model.keras"), "--corpus", str(tiny_corpus),
                 "--train-config", str(saved_model / "config.yaml"), "--target-size", str(target),
                 "--per-channel", "auto", "--batches", "1", "--probes", "2", "--frames", "40",
                 "--out", str(again)]) == 0
    plan = rundir.read_json(rundir.MixedDir(again).plan)
    assert plan["sizes"]["tflite_bytes"] <= target
    spec = load_spec(rundir.MixedDir(again).bits_spec)
    assert set(spec.per_channel) == {"conv1/kernel", "conv2/kernel", "emb/kernel"}
    if spec.layers["conv1"] <= 7:  # BatchNorm folds into conv1: its tables are per channel at no extra byte
        assert spec.per_channel["conv1/kernel"]
    records = QuantizedWeights.load(rundir.MixedDir(again).weights)  # the model got the chosen tables
    assert {f"{t.layer}/{t.weight}": t.per_channel for t in records.tensors} == spec.per_channel


def test_unreachable_and_bad_budgets_are_user_errors(saved_model, tiny_corpus, tmp_path, capsys):
    common = ["mixed", "--model", str(saved_model / "model.keras"), "--corpus", str(tiny_corpus),
              "--train-config", str(saved_model / "config.yaml"), "--batches", "1", "--probes", "1",
              "--frames", "40"]
    assert main([*common, "--target-size", "2KB", "--out", str(tmp_path / "a")]) == 2
    assert "smallest reachable size is" in capsys.readouterr().err
    assert main([*common, "--target-size", "lots", "--out", str(tmp_path / "b")]) == 2
    assert "target size 'lots'" in capsys.readouterr().err
    assert main([*common, "--avg-bits", "3", "--allowed", "2,x", "--out", str(tmp_path / "c")]) == 2
    assert "--allowed" in capsys.readouterr().err


def test_a_model_with_its_own_input(tmp_path, capsys):
    """A model over raw 400-sample frames (not our fbank), fed from --inputs: no labels, per-weight bits."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((400,))
    x = keras.layers.Dense(32, activation="relu", name="front")(inputs)
    keras.Model(inputs, keras.layers.Dense(8, name="emb")(x)).save(tmp_path / "raw.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(16, 400)).astype(np.float32))
    (tmp_path / "config.yaml").write_text(CONFIG)
    out = tmp_path / "q"
    assert main(["mixed", "--model", str(tmp_path / "raw.keras"), "--inputs", str(tmp_path / "x.npy"),
                 "--train-config", str(tmp_path / "config.yaml"), "--avg-bits", "4", "--allowed", "2,4,8",
                 "--per-weight", "--batches", "2", "--probes", "2", "--out", str(out)]) == 0
    assert "planned only" in capsys.readouterr().out  # the converter takes [batch, frames, mels] only
    spec = load_spec(rundir.MixedDir(out).bits_spec)
    assert set(spec.weights) == {"front/kernel", "emb/kernel"}
    assert rundir.read_json(rundir.MixedDir(out).plan)["allocation"]["avg_bits"] <= 4.0
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((16, 399), np.float32))
    assert main(["mixed", "--model", str(tmp_path / "raw.keras"), "--inputs", str(bad), "--avg-bits", "4",
                 "--out", str(tmp_path / "q2")]) == 2
    assert "expects input batches of shape" in capsys.readouterr().err


def test_recipe_stage_type_is_registered_and_checks_its_fields():
    from tfadvq.errors import ConfigError, QuantizationError
    from tfadvq.recipe import stage_types
    from tfadvq.stages.mixed import parse_size

    mixed = stage_types()["mixed"]
    stage = mixed(model="train", target_size="1.5MB", msft=True)
    assert parse_size(stage.target_size) == 1_500_000 and parse_size("200KiB") == 204_800
    assert stage.uses() == {"model": "train"}
    with pytest.raises(ConfigError, match="exactly one of target_size or avg_bits"):
        mixed(model="train")
    with pytest.raises(ConfigError, match="msft replaces finetune_steps"):
        mixed(model="train", avg_bits=3.0, msft=True, finetune_steps=10)
    with pytest.raises(QuantizationError, match=r"allowed bits \[0, 4\]: 0 is not a supported bit width"):
        mixed(model="train", avg_bits=3.0, allowed=[0, 4])
    with pytest.raises(ConfigError, match="per_channel 'sometimes'; accepted: true, false or auto"):
        mixed(model="train", avg_bits=3.0, per_channel="sometimes")
    assert mixed(model="train", avg_bits=3.0, per_channel="auto").settings().channel_widths == [1, 2, 3, 4, 5, 6]


def test_eer_vs_size_plot(tmp_path):
    from tfadvq.plots import plot_eer_vs_size

    rows = [{"method": m, "eer": e, "eer_ci95": [e - 1, e + 1], "size_bytes": s, "tflite_bytes": s + 100}
            for m, e, s in (("kmqat", 10.0, 190_000), ("kmqat", 9.4, 280_000), ("mixed", 9.7, 189_000))]
    path = plot_eer_vs_size(rows, tmp_path / "eer.png", front=[(300_000, 1e-3), (200_000, 1e-2)])
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="no rows"):
        plot_eer_vs_size([], tmp_path / "none.png")
