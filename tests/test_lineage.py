"""The one rule for what a stage hands on (:mod:`tfadvq.stages.lineage`), on real run folders."""
from __future__ import annotations

import numpy as np
import pytest

from tfadvq import rundir
from tfadvq.errors import ConfigError
from tfadvq.stages.lineage import Lineage


@pytest.fixture
def trained(tmp_path):
    """A train folder with its model file, training config and AAM head."""
    run = rundir.TrainDir(tmp_path / "train")
    run.path.mkdir()
    run.model.write_bytes(b"keras")
    run.config.write_text("model: tiny\n")
    np.savez(run.head, np.ones((4, 3), np.float32))
    return run


def test_a_quantized_model_follows_its_training_runs_config_and_head(trained, tmp_path):
    quant = rundir.QuantDir(tmp_path / "quantize")
    made = Lineage.of_outputs("quantize", quant.path, {"wrapped": str(quant.wrapped), "plain": str(quant.plain),
                                                      "source_model": str(trained.model),
                                                      "train_dir": str(trained.path)})
    assert made.keras_model("finetune") == quant.plain  # the plain twin, not the wrapped model
    assert made.quantized("convert") == quant.wrapped
    assert made.followed("finetune", "the fine-tune") == (trained.config, trained.head)
    assert made.source_model == trained.model
    assert [a.shape for a in rundir.load_head(made.head)] == [(4, 3)]


def test_a_fine_tune_hands_on_its_own_config_and_head(trained, tmp_path):
    tuned = rundir.QuantDir(tmp_path / "finetune")
    outputs = {"wrapped": str(tuned.wrapped), "plain": str(tuned.plain), "source_model": str(trained.model),
               "train_config": str(tuned.train_config)}
    assert Lineage.of_outputs("finetune", tuned.path, outputs).followed("f2", "the fine-tune") \
        == (tuned.train_config, None)  # no head in its outputs: none, whatever the train folder holds
    with_head = Lineage.of_outputs("finetune", tuned.path, {**outputs, "head": str(tuned.head)})
    assert with_head.head == tuned.head


def test_a_model_not_trained_by_tfadvq_is_refused_naming_the_missing_config(tmp_path):
    model = tmp_path / "mine" / "encoder.keras"
    model.parent.mkdir()
    model.write_bytes(b"keras")
    made = Lineage.of_outputs("model", tmp_path / "model", {"model": str(model), "train_dir": str(model.parent)})
    assert made.train_config is None and made.head is None
    with pytest.raises(ConfigError, match=r"train\.yaml is missing.*give msft its data"):
        made.followed("msft", "msft")
    with pytest.raises(ConfigError, match="is not a quantized model"):
        made.quantized("convert")
    with pytest.raises(ConfigError, match="produced no .tflite"):
        made.device_model("calibrate")


def test_a_user_named_folder_resolves_by_the_same_rule_as_a_stage(trained):
    by_folder = Lineage.of_model(trained.path)
    by_file = Lineage.of_model(trained.model)
    assert by_folder.model == by_file.model == trained.model
    assert by_folder.followed("cli", "the fine-tune") == by_file.followed("cli", "the fine-tune") \
        == (trained.config, trained.head)


def test_a_stage_without_a_keras_model_says_what_it_produced(tmp_path):
    made = Lineage.of_outputs("corpus", tmp_path / "corpus", {"corpus": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"produced no Keras model \(outputs \['corpus'\]\)"):
        made.keras_model("evaluate")
