"""Multi-stage fine-tuning: grouping and order, stage-by-stage quantization with the latent float
weights carried on, finished-run reuse, and resume after ``kill -9`` (a recipe under MirroredStrategy)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tfadvq import model_io, rundir
from tfadvq.config import dump_yaml
from tfadvq.errors import ConfigError
from tfadvq.quant import api, spec
from tfadvq.quant.msft import MSFTSettings, msft, plan_groups, stage_bits
from tfadvq.recipe import parse_recipe
from tfadvq.training import training_data
from tfadvq.voxceleb import load_corpus
from test_quant_finetune import small_embedding_model  # tests/ is on sys.path under pytest
from test_training import tiny_config

BITS = 3
SENSITIVITIES = {"conv1/kernel": 1.0, "conv2": 5.0, "embed/kernel": 3.0}


@pytest.mark.parametrize("order, stages, expected", [
    ("sensitivity", 3, [["conv2"], ["embed"], ["conv1"]]),  # most sensitive first (HAWQ)
    ("depth", 3, [["conv1"], ["conv2"], ["embed"]]),
    ("reverse_depth", 2, [["embed", "conv2"], ["conv1"]]),
    ("size", 3, [["conv2"], ["embed"], ["conv1"]]),  # 576, 128, 72 kernel parameters
    ("depth", 7, [["conv1"], ["conv2"], ["embed"]]),  # no more stages than quantized layers
])
def test_groups_follow_the_order(order, stages, expected):
    groups = plan_groups(small_embedding_model(), BITS, MSFTSettings(stages=stages, order=order), SENSITIVITIES)
    assert groups == expected


def test_groups_only_hold_the_layers_the_bits_quantize():
    bits = spec.BitsSpec(layers={"conv1": 4, "embed": 2})
    assert plan_groups(small_embedding_model(), bits, MSFTSettings(order="depth")) == [["conv1"], ["embed"]]
    explicit = MSFTSettings(groups=[["embed/kernel", "conv2"], ["conv1"]])
    assert plan_groups(small_embedding_model(), BITS, explicit) == [["embed", "conv2"], ["conv1"]]


def test_stage_bits_keep_only_the_active_layers_with_their_per_weight_bits():
    model = small_embedding_model()
    bits = spec.BitsSpec(default=4, weights={"embed/kernel": 2, "conv2/kernel": 6})
    assert spec.resolve_weights(model, stage_bits(bits, {"conv1", "embed"}, model)) == \
        {"conv1/kernel": 4, "conv2/kernel": None, "embed/kernel": 2}
    assert spec.resolve_weights(model, stage_bits(bits, {"conv1", "conv2", "embed"}, model)) == \
        spec.resolve_weights(model, bits)


@pytest.mark.parametrize("settings, sensitivities, match", [
    (MSFTSettings(), None, "order sensitivity: pass the sensitivities"),
    (MSFTSettings(), {"conv1": 1.0}, r"no value for quantized layer\(s\) \['conv2', 'embed'\]"),
    (MSFTSettings(), {"conv9": 1.0, "conv2": 1.0, "embed": 1.0}, "'conv9' is neither a layer"),
    (MSFTSettings(groups=[["conv1"], ["conv2"]]), None, r"\['embed'\] are in no group"),
    (MSFTSettings(groups=[["conv1", "embed"], ["conv2", "embed/kernel"]]), None, "'embed' is in groups 0 and 1"),
    (MSFTSettings(groups=[["conv1/bias", "conv2", "embed"]]), None, "'conv1/bias' is neither"),
    (MSFTSettings(groups=[["bn1", "conv1", "conv2", "embed"]]), None, "'bn1' is not quantized"),
])
def test_bad_plans_are_refused_naming_the_problem(settings, sensitivities, match):
    with pytest.raises(ConfigError, match=match):
        plan_groups(small_embedding_model(), BITS, settings, sensitivities)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="order: 'random'"):
        MSFTSettings(order="random")
    with pytest.raises(ConfigError, match="steps_per_stage: 0"):
        MSFTSettings(steps_per_stage=0)
    with pytest.raises(ConfigError, match="exactly one of bits, bits_per_layer or mixed"):
        parse_recipe({"stages": [{"type": "model", "path": "m.keras"},
                                 {"type": "msft", "model": "model", "bits": 3, "bits_per_layer": "b.yaml"}]})


def test_msft_quantizes_group_by_group_on_the_latent_weights(tiny_corpus, tmp_path, monkeypatch):
    config = tiny_config(tiny_corpus)
    data = training_data(config, load_corpus(tiny_corpus).train)
    model = small_embedding_model()
    fp32 = model.get_layer("conv1").kernel.numpy().copy()
    wrapped_layers, latent_conv1 = [], []
    real_quantize = api.quantize

    def spy(latent, bits, **kwargs):
        wrapped_layers.append([n for n, b in spec.resolve(latent, bits).items() if b is not None])
        latent_conv1.append(latent.get_layer("conv1").kernel.numpy().copy())
        return real_quantize(latent, bits, **kwargs)

    monkeypatch.setattr(api, "quantize", spy)
    settings = MSFTSettings(steps_per_stage=3, stages=3, order="depth", objective="distill", refresh_steps=2)
    out = tmp_path / "msft"
    with rundir.locked(out):  # as the CLI holds its --out
        result = msft(model, BITS, data, config, settings, out=out, teacher=model)

    # stage k quantizes groups 1..k, the rest float
    assert wrapped_layers == [["conv1"], ["conv1", "conv2"], ["conv1", "conv2", "embed"]]
    # what stage 2 and 3 wrap is the float shadow of conv1 trained in stage 1, not its centroids
    assert np.array_equal(latent_conv1[0], fp32)
    for later in latent_conv1[1:]:
        assert not np.allclose(later, fp32) and np.unique(later).size > 2 ** BITS
    np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), fp32)  # the input is untouched
    assert [r["group"] for r in result.rows] == [["conv1"], ["conv2"], ["embed"]]
    assert [r["bits"] for r in result.rows] == [{f"{n}/kernel": BITS} for n in ("conv1", "conv2", "embed")]
    assert all(np.isfinite([r["loss_before"], r["loss_after"]]).all() and r["steps"] == 3 for r in result.rows)
    # the result keeps float shadow weights; stripped, every layer holds at most 2^b values
    sources = {w.layer.name: q.source.numpy() for w, q in api.quantized_weights(result.model)}
    assert sorted(sources) == ["conv1", "conv2", "embed"]
    assert all(np.unique(w).size > 2 ** BITS for w in sources.values())
    plain, _ = api.strip(result.model)
    assert all(np.unique(plain.get_layer(n).kernel.numpy()).size <= 2 ** BITS for n in sources)
    # the run directory is a finished QuantDir: no checkpoints left, the stage rows stored
    run = rundir.MSFTDir(out)
    assert run.wrapped.is_file() and run.plain.is_file() and not run.checkpoints.exists()
    assert json.loads(run.state.read_text())["rows"] == json.loads(json.dumps(result.rows))
    assert json.loads(run.summary.read_text())["msft"]["groups"] == result.groups

    # a finished run is reused, not trained again; other settings are refused
    wrapped_layers.clear()
    again = msft(model, BITS, data, config, settings, out=out, teacher=model)
    assert wrapped_layers == [] and again.rows == result.rows
    with pytest.raises(ConfigError, match="other settings"):
        msft(model, BITS, data, config, MSFTSettings(steps_per_stage=4, stages=3, order="depth",
                                                     objective="distill"), out=out, teacher=model)


_DRIVER = r'''
import os, signal, sys
from tfadvq.compat import keras, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tfadvq.quant.msft as msft_module
from tfadvq.recipe import load_recipe, run_recipe

recipe, workdir, logs, kill = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "kill"
sys.path.insert(0, os.path.dirname(recipe))  # the plugin module beside the recipe
real_finetune = msft_module.finetune

class Kill(keras.callbacks.Callback):
    """kill -9 of this process in the middle of a stage (after one of its training steps)."""
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

logs_dir = logs
def finetune(wrapped, *args, callbacks=(), **kwargs):
    stage = 1 if len(msft_module.api.quantized_weights(wrapped)) == 2 else 2  # groups [conv2, embed], [conv1]
    with open(os.path.join(logs_dir, "stages_begun.txt"), "a") as f:
        f.write(f"{stage}\n")
    extra = [Kill()] if kill and stage == 2 else []
    return real_finetune(wrapped, *args, callbacks=[*callbacks, *extra], **kwargs)

msft_module.finetune = finetune
run_recipe(load_recipe(recipe), workdir)
'''


_GIVEN_BITS = r'''
import dataclasses
from tfadvq import rundir
from tfadvq.config import dump_yaml
from tfadvq.quant import BitsSpec
from tfadvq.recipe import StageBase, StageResult, register_stage

@register_stage("given_bits")
@dataclasses.dataclass
class GivenBits(StageBase):
    """Stands in for a mixed stage: its outputs (bits spec, sensitivities, the FP32 model's lineage)."""
    train_dir: str = ""
    def run(self, ctx):
        out = rundir.MixedDir(ctx.out)
        dump_yaml(BitsSpec(layers={"conv1": 4, "conv2": 3, "embed": 2}), out.bits_spec)
        rundir.write_json(out.sensitivities, {"conv1/kernel": 1.0, "conv2/kernel": 5.0, "embed/kernel": 3.0})
        train = rundir.TrainDir(self.train_dir)
        return StageResult(outputs={"bits_spec": str(out.bits_spec), "sensitivities": str(out.sensitivities),
                                    "source_model": str(train.model), "train_dir": str(train.path)})
'''
MIXED_BITS = {"conv1": 4, "conv2": 3, "embed": 2}


def test_recipe_msft_resumes_after_kill_under_mirrored_strategy(tiny_corpus, tmp_path):
    train_dir = rundir.TrainDir(tmp_path / "fp32")
    train_dir.path.mkdir()
    small_embedding_model().save(train_dir.model)
    dump_yaml(tiny_config(tiny_corpus, strategy="mirrored"), train_dir.config)
    (tmp_path / "given_bits_stage.py").write_text(_GIVEN_BITS)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({"plugins": ["given_bits_stage"], "stages": [
        {"type": "given_bits", "name": "mixed", "train_dir": str(train_dir.path)},
        {"type": "msft", "mixed": "mixed", "stages": 2, "steps_per_stage": 3, "refresh_steps": 2,
         "objective": "aam"}]}))  # default order: by the mixed stage's sensitivities
    (tmp_path / "driver.py").write_text(_DRIVER)
    workdir, logs = tmp_path / "work", tmp_path / "logs"
    logs.mkdir()
    command = [sys.executable, str(tmp_path / "driver.py"), str(recipe), str(workdir), str(logs)]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    killed = subprocess.run(command + ["kill"], env=env, capture_output=True, timeout=150)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-3000:]
    run = rundir.MSFTDir(workdir / "msft")
    state = json.loads(run.state.read_text())
    assert [r["stage"] for r in state["rows"]] == [1] and not state["finished"]
    assert run.stage(1).wrapped.is_file() and run.stage(1).head.is_file()  # model and AAM head of stage 1
    assert not run.record.exists() and not run.wrapped.exists()

    done = subprocess.run(command + ["run"], env=env, capture_output=True, timeout=150)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    # stage 1 finished before the kill and was not run again; stage 2 was
    assert (logs / "stages_begun.txt").read_text().split() == ["1", "2", "2"]
    assert json.loads(run.record.read_text())["outputs"]["wrapped"] == str(run.wrapped)
    rows = json.loads(run.state.read_text())["rows"]
    assert [r["stage"] for r in rows] == [1, 2] and rows[0] == state["rows"][0]
    assert all(r["replicas"] == 2 and r["steps"] == 3 for r in rows)  # MirroredStrategy of train.yaml
    assert [r["group"] for r in rows] == [["conv2", "embed"], ["conv1"]]  # most sensitive first
    # the result has the structure of a one-shot quantization of the same model at the same bits
    final = model_io.load_model(run.wrapped)
    reference = api.quantize(small_embedding_model(), MIXED_BITS, progress=False)
    def structure(model):
        return [(type(l).__name__, l.name, [tuple(w.shape) for w in l.weights]) for l in model.layers if l.weights]

    assert structure(final) == structure(reference)
    assert [(w.layer.name, q.bits) for w, q in api.quantized_weights(final)] == \
        [(w.layer.name, q.bits) for w, q in api.quantized_weights(reference)] == list(MIXED_BITS.items())
    assert run.head.is_file() and not run.checkpoints.exists()


def test_packaged_mixed_recipe_chains_mixed_msft_and_convert():
    from tfadvq.recipe import load_recipe

    recipe = load_recipe("mixed")
    stages = {e.name: e.stage for e in recipe.stages}
    assert [e.stage.type_name for e in recipe.stages] == [
        "corpus", "train", "evaluate", "mixed", "msft", "evaluate", "convert", "calibrate"]
    tuned = stages["msft"]
    assert tuned.uses() == {"mixed": "mixed", "corpus": "corpus"} and stages["convert"].model == "msft"
    settings = tuned.settings()
    assert settings.order.value == "sensitivity" and settings.stages == 4 and settings.steps_per_stage == 30
