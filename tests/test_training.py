"""Training: config round trip, schedules, AAM and distillation fitting, resume after kill -9."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfadvq.compat import keras, tf
from tfadvq.config import dump_yaml, from_dict
from tfadvq.errors import ConfigError, DataError
from tfadvq import rundir
from tfadvq.callbacks import MarginWarmup
from tfadvq.optim import WarmupDecay, make_optimizer
from tfadvq.train_config import TrainConfig, load_config, packaged_config
from tfadvq.training import fit_embedding_model, train, training_data
from tfadvq.voxceleb import load_corpus

PACKAGED = ["demo", "resnet34_vox2", "dfresnet56_vox2", "dfresnet233_vox2", "lstm40", "tdnn40"]


def tiny_config(corpus: Path, **overrides) -> TrainConfig:
    """A configuration small enough to train in seconds on the tiny corpus."""
    data = dict(
        model="TinyResNet",
        model_args=dict(feat_dim=80, embed_dim=32, base_width=16),  # < 16 segfaults in oneDNN grads
        data=dict(corpus=str(corpus)),
        pipeline=dict(batch_size=8, crop_seconds=1.0, noise_prob=0.0, reverb_prob=0.0,
                      spec_augment=False),
        optimizer=dict(name="adamw", lr=0.003, weight_decay=1e-4),
        schedule=dict(warmup_epochs=0, decay="constant"),
        head=dict(margin=0.2, scale=32.0),
        epochs=3,
        steps_per_epoch=4,
    )
    data.update(overrides)
    return from_dict(TrainConfig, data)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_configs_round_trip(name, tmp_path):
    config = load_config(packaged_config(name))
    dump_yaml(config, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == config


@pytest.mark.parametrize("patch, where", [
    ({"epoch": 3}, "epoch"),
    ({"optimizer": {"name": "sgd", "learning_rate": 0.1}}, "learning_rate"),
    ({"pipeline": {"crop_secs": 2.0}}, "crop_secs"),
    ({"head": {"margin": 0.2, "scale": 32, "easy_margin": True}}, "easy_margin"),
])
def test_unknown_keys_raise_naming_key_and_file(patch, where, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(patch))  # JSON is YAML
    with pytest.raises(ConfigError, match=where) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_bad_values_raise():
    with pytest.raises(ConfigError, match="sgd"):
        from_dict(TrainConfig, {"optimizer": {"name": "adam"}})
    with pytest.raises(ConfigError, match="mirrored"):
        from_dict(TrainConfig, {"strategy": "horovod"})
    with pytest.raises(ConfigError, match="epochs"):
        from_dict(TrainConfig, {"epochs": 0})
    with pytest.raises(ConfigError, match="only one"):
        from_dict(TrainConfig, {"data": {"corpus": "a", "wav_root": "b"}})
    with pytest.raises(ConfigError, match="packaged"):
        packaged_config("no_such_recipe")


def test_config_values_are_type_checked_naming_the_key(tmp_path):
    """YAML reads 1e-3 as a string: a float field takes it; anything else of the wrong type is an error."""
    path = tmp_path / "t.yaml"
    path.write_text("optimizer: {lr: 1e-3}\nepochs: 2\n")
    assert load_config(path).optimizer.lr == pytest.approx(1e-3)
    for text, where in [("optimizer: {lr: fast}", "optimizer.lr: expected a number, got 'fast'"),
                        ("epochs: 2.5", "epochs: expected an integer"),
                        ("pipeline: {spec_augment: 'no'}", "pipeline.spec_augment: expected bool"),
                        ("pipeline: {snr_db: [0]}", r"pipeline.snr_db: expected 2 values"),
                        ("model_args: [1, 2]", "model_args: expected a mapping")]:
        path.write_text(text + "\n")
        with pytest.raises(ConfigError, match=where) as info:
            load_config(path)
        assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("decay", ["exponential", "cosine", "constant"])
def test_warmup_decay_shape(decay):
    peak, final, warm, total = 0.1, 1e-4, 10, 110
    schedule = WarmupDecay(peak, final, warm, total, decay)
    lr = np.array([float(schedule(s)) for s in range(total + 5)])
    np.testing.assert_allclose(lr[:warm], peak * np.arange(1, warm + 1) / warm, rtol=1e-5)
    assert lr[warm] == pytest.approx(peak, rel=1e-5)
    assert np.all(np.diff(lr[warm:]) <= 1e-9)  # never rises after the warm-up
    expected_end = peak if decay == "constant" else final
    assert lr[total] == pytest.approx(expected_end, rel=1e-4)
    if decay == "exponential":  # geometric: the midpoint is the geometric mean
        assert lr[warm + 50] == pytest.approx(math.sqrt(peak * final), rel=1e-4)
    again = WarmupDecay.from_config(schedule.get_config())
    assert float(again(37)) == pytest.approx(float(schedule(37)))


def test_margin_warmup_ramp():
    margin = tf.Variable(0.2)
    callback = MarginWarmup(margin, 0.2, start_epoch=1, warmup_epochs=2, steps_per_epoch=10)
    values = [callback.value_at(e) for e in (0, 1, 1.5, 2, 3, 9)]
    assert values == pytest.approx([0.0, 0.0, 0.05, 0.1, 0.2, 0.2])
    callback.on_epoch_begin(2)
    callback.on_train_batch_begin(5)
    assert float(margin.numpy()) == pytest.approx(0.15)


# ----------------------------------------------------------------------------- fitting


def test_training_lowers_loss_and_writes_model(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    model_path = train(tiny_config(tiny_corpus), out, verbose=0).model
    history = json.loads((out / "history.json").read_text())
    assert history["loss"][-1] < history["loss"][0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == "epoch_0003.weights.h5"
    speakers = json.loads((out / "speakers.json").read_text())
    assert sorted(speakers.values()) == list(range(len(speakers)))
    assert load_config(out / "train.yaml") == tiny_config(tiny_corpus)
    model = keras.models.load_model(model_path, compile=False)
    embeddings = model(np.zeros((2, 150, 80), np.float32))
    assert embeddings.shape == (2, 32)
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))

    # an AAM fine-tune restores the trained class centres instead of a random head
    config = tiny_config(tiny_corpus, epochs=1, steps_per_epoch=1)
    data = training_data(config)
    history = fit_embedding_model(model, data.dataset, data.num_classes, config, "aam",
                                  head_weights=rundir.TrainDir(out).load_head(), verbose=0)
    assert history.history["loss"][0] < history_loss_first_epoch(out)

    # the run is finished: training into it again, or with another config, is refused
    with pytest.raises(ConfigError, match="finished training run.*--force"):
        train(tiny_config(tiny_corpus), out, verbose=0)
    with pytest.raises(ConfigError, match="finished training run"):
        train(tiny_config(tiny_corpus, epochs=1), out, verbose=0)


@pytest.mark.parametrize("speed_perturb, copies", [(False, 1), (True, 3)])
def test_training_data_labels_and_epoch_length(tiny_corpus, speed_perturb, copies):
    config = tiny_config(tiny_corpus, steps_per_epoch=None,
                         pipeline=dict(batch_size=4, crop_seconds=0.5, speed_perturb=speed_perturb))
    utterances = load_corpus(tiny_corpus).train
    data = training_data(config)
    speakers = sorted({u.speaker for u in utterances})
    assert list(data.speakers) == speakers and list(data.speakers.values()) == list(range(len(speakers)))
    assert data.num_classes == copies * len(speakers)
    assert data.steps_per_epoch == len(utterances) // 4
    features, labels = next(iter(data.dataset))
    assert features.shape[0] == 4 and int(tf.reduce_max(labels)) < data.num_classes


def history_loss_first_epoch(run: Path) -> float:
    return json.loads((run / "history.json").read_text())["loss"][0]


def test_training_data_too_small_for_a_batch_is_an_error(tiny_corpus):
    config = tiny_config(tiny_corpus, pipeline=dict(batch_size=10_000))
    with pytest.raises(DataError, match="batch_size=10000"):
        training_data(config)


def test_training_skips_unreadable_files_names_them_and_still_trains(tiny_corpus, tmp_path):
    """A broken file in the training set is skipped and reported (bad.txt), not a traceback."""
    from bad_audio import bad_versions
    from tfadvq.voxceleb import Utterance

    utterances = load_corpus(tiny_corpus).train
    bad = bad_versions(Path(utterances[0].path), tmp_path / "bad")
    # training checks headers only (silent or clipped speech still trains): the unreadable ones
    broken = [Utterance(f"broken/{name}", str(path), utterances[i % 3].speaker)
              for i, (name, (path, _)) in enumerate(bad.items()) if name not in ("silence", "clipped")]
    data = training_data(tiny_config(tiny_corpus), utterances + broken)
    assert sorted(p for p, _ in data.bad) == sorted(u.path for u in broken)
    next(iter(data.dataset))  # the pipeline reads the good files only

    out = tmp_path / "run"
    config = tiny_config(tiny_corpus, epochs=1, steps_per_epoch=1)
    import tfadvq.training as training_module

    real = training_module.load_training_utterances
    try:
        training_module.load_training_utterances = lambda data_config: real(data_config) + broken
        train(config, out, verbose=0)
    finally:
        training_module.load_training_utterances = real
    lines = (out / "bad.txt").read_text().splitlines()
    assert len(lines) == len(broken) and all("\t" in line for line in lines)
    assert (out / "model.keras").is_file()


def _features(corpus: Path, batch: int = 8) -> tf.data.Dataset:
    from tfadvq.pipeline import PipelineConfig, train_dataset

    pipeline = PipelineConfig(batch_size=batch, crop_seconds=1.0, noise_prob=0.0, reverb_prob=0.0)
    return train_dataset(load_corpus(corpus).train, pipeline)


def test_distillation_pulls_student_to_frozen_teacher(tiny_corpus):
    from tfadvq.models import build_model

    teacher = build_model("TinyResNet", feat_dim=80, embed_dim=32, base_width=16)
    student = build_model("TinyResNet", feat_dim=80, embed_dim=32, base_width=16)
    before = [w.copy() for w in teacher.get_weights()]
    config = tiny_config(tiny_corpus, epochs=3)
    history = fit_embedding_model(student, _features(tiny_corpus), None, config, "distill",
                                  teacher=teacher, verbose=0)
    losses = history.history["loss"]
    assert 0.0 <= losses[-1] < losses[0] <= 2.0
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_accepts_a_tfmot_quantized_model(tiny_corpus):
    import tensorflow_model_optimization as tfmot

    inputs = keras.Input((None, 80))
    x = keras.layers.Reshape((-1, 80, 1))(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    plain = keras.Model(inputs, keras.layers.Dense(16)(x))
    quantized = tfmot.quantization.keras.quantize_model(plain)
    config = tiny_config(tiny_corpus, epochs=1, steps_per_epoch=2)
    speakers = len({u.speaker for u in load_corpus(tiny_corpus).train})
    history = fit_embedding_model(quantized, _features(tiny_corpus), speakers, config, "aam", verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_objective_errors_name_the_problem(tiny_corpus):
    from tfadvq.models import build_model

    model = build_model("TinyResNet", feat_dim=80, embed_dim=32, base_width=16)
    config = tiny_config(tiny_corpus)
    with pytest.raises(ConfigError, match="teacher"):
        fit_embedding_model(model, _features(tiny_corpus), None, config, "distill")
    with pytest.raises(ConfigError, match="aam.*distill"):
        fit_embedding_model(model, _features(tiny_corpus), 8, config, "triplet")
    with pytest.raises(ConfigError, match="num_classes"):
        fit_embedding_model(model, _features(tiny_corpus), None, config, "aam")


# ----------------------------------------------------------------------------- resume

_DRIVER = r'''
import os, sys, time
from tfadvq.compat import keras
from tfadvq import training

config_path, out, hang = sys.argv[1], sys.argv[2], sys.argv[3] == "hang"
probe = os.path.dirname(out)  # beside the run directory: a file train does not write in it is refused

class Probe(keras.callbacks.Callback):
    """Logs every epoch started; with `hang`, stops mid-epoch 2 so the test can kill -9."""
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        with open(os.path.join(probe, "epochs_begun.txt"), "a") as f:
            f.write(f"{epoch}\n")
    def on_train_batch_begin(self, batch, logs=None):
        if hang and self.epoch == 1 and batch == 2:
            open(os.path.join(probe, "mid_epoch"), "w").close()
            time.sleep(600)

from tfadvq.train_config import load_config
training.train(load_config(config_path), out, callbacks=[Probe()], verbose=0)
'''


def test_resume_after_kill_loses_at_most_the_interrupted_epoch(tiny_corpus, tmp_path):
    config = tiny_config(tiny_corpus, schedule=dict(warmup_epochs=0, decay="exponential",
                                                     final_lr=1e-4))
    config_path, out, driver = tmp_path / "c.yaml", tmp_path / "run", tmp_path / "driver.py"
    dump_yaml(config, config_path)
    driver.write_text(_DRIVER)
    out.mkdir()
    command = [sys.executable, str(driver), str(config_path), str(out)]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    victim = subprocess.Popen(command + ["hang"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while not (tmp_path / "mid_epoch").exists():
            assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "training never reached the middle of epoch 2"
            time.sleep(0.2)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert not (out / "model.keras").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch_0001.weights.h5"]
    before_kill = json.loads((out / "history.json").read_text())
    assert len(before_kill["loss"]) == 1  # the finished epoch is on disk before the run finishes

    # resuming with another config is refused, naming what differs; the run is left as it was
    with pytest.raises(ConfigError, match=r"another config \(epochs: 3 -> 5\)"):
        train(dataclasses.replace(config, epochs=5), out, verbose=0)
    assert load_config(out / "train.yaml") == config

    done = subprocess.run(command + ["run"], env=env, capture_output=True, timeout=150)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    # first run began epochs 0 and 1 (killed in 1); the rerun resumed at 1, not 0
    assert (tmp_path / "epochs_begun.txt").read_text().split() == ["0", "1", "1", "2"]
    assert (out / "model.keras").is_file()
    history = json.loads((out / "history.json").read_text())
    # the whole curve: the epoch from before the kill, then the two after it, each once
    assert {key: len(values) for key, values in history.items()} == {key: 3 for key in history}
    assert history["loss"][0] == before_kill["loss"][0] and history["lr"][0] == before_kill["lr"][0]
    # the optimizer step counter was restored too: the last step ran at the schedule's step 3n-1
    steps = config.steps_per_epoch
    schedule = WarmupDecay(config.optimizer.lr, config.schedule.final_lr, 0, 3 * steps)
    assert history["lr"][-1] == pytest.approx(float(schedule(3 * steps - 1)), rel=1e-4)
    assert history["lr"][-1] != pytest.approx(float(schedule(2 * steps - 1)), rel=1e-2)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizers_take_zero_weight_decay_and_refuse_a_negative_one(name):
    def optimizer(decay: float):
        config = from_dict(TrainConfig, {"epochs": 1, "optimizer": {"name": name, "lr": 0.1, "weight_decay": decay}})
        return make_optimizer(config, steps_per_epoch=4)

    for decay, shrinks in ((0.0, False), (0.5, True)):
        kernel = tf.Variable(tf.ones([3]), name="kernel")
        optimizer(decay).apply_gradients([(tf.zeros([3]), kernel)])  # zero gradient: only decay can move it
        assert bool(np.all(kernel.numpy() < 1.0)) is shrinks, (decay, kernel.numpy())
    with pytest.raises(ConfigError, match="weight_decay"):
        optimizer(-1e-4)


def test_the_history_file_keeps_each_epoch_once_across_resumes(tmp_path):
    from tfadvq.rundir import TrainDir

    run = TrainDir(tmp_path)
    run.record_epoch(0, {"loss": 3.0, "lr": 0.1})
    run.record_epoch(1, {"loss": 2.0, "lr": 0.05})
    run.record_epoch(2, {"loss": 1.5, "lr": 0.02})  # killed before epoch 2's resume state was saved
    run.record_epoch(2, {"loss": 1.4, "lr": 0.02, "margin": 0.2})  # epoch 2 again, with a new metric
    run.record_epoch(3, {"loss": 1.0, "lr": 0.01, "margin": 0.2})
    assert run.load_history() == {"loss": [3.0, 2.0, 1.4, 1.0], "lr": [0.1, 0.05, 0.02, 0.01],
                                  "margin": [None, None, 0.2, 0.2]}
    run.record_epoch(0, {"loss": 9.0})  # a run started over from its first epoch
    assert run.load_history() == {"loss": [9.0]}
