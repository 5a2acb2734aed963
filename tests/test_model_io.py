"""Loading the model a user names (tfadvq.model_io): files and run folders of every kind, Keras 3
``.keras`` rebuilt in tf-keras, and short errors on every command's load path."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfadvq
from tfadvq import rundir
from tfadvq.cli import main
from tfadvq.compat import keras
from tfadvq.errors import ConfigError
from tfadvq.model_io import MAX_MESSAGE, ModelLoadError, open_model

HERE = Path(__file__).parent
README = HERE.parent / "README.md"


@pytest.fixture(scope="module")
def k3(tmp_path_factory) -> Path:
    """The Keras 3 files of tests/keras3_models.py, written by Keras 3 in its own process."""
    out = tmp_path_factory.mktemp("keras3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    done = subprocess.run([sys.executable, str(HERE / "keras3_models.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _small_model() -> keras.Model:
    from test_quant_finetune import small_embedding_model

    return small_embedding_model()


# --------------------------------------------------------------------------- Keras 3 in


@pytest.mark.parametrize("name", ["encoder", "families", "sequential"])
def test_a_keras3_model_is_rebuilt_in_tf_keras_with_the_same_outputs(k3, name):
    loaded = open_model(k3 / f"{name}.keras")
    assert isinstance(loaded.model, keras.Model)  # tf-keras, what tfmot and the quantizers take
    assert loaded.conversion is not None and loaded.conversion.keras_version.startswith("3.")
    assert "Keras 3." in loaded.describe() and "rebuilt in tf-keras" in loaded.row()["format"]
    x, y = np.load(k3 / f"{name}.x.npy"), np.load(k3 / f"{name}.y.npy")
    out = loaded.model(x, training=False).numpy()
    np.testing.assert_allclose(out, y, rtol=0, atol=1e-6 * max(1.0, float(np.abs(y).max())))


def test_the_rebuilt_layers_are_the_quantizable_classes(k3):
    from tfadvq.models.pooling import StatsPooling
    from tfadvq.quant import layer_rules

    encoder = open_model(k3 / "encoder.keras").model
    classes = {layer.name: type(layer).__name__ for layer in encoder.layers if layer_rules.rule_for(layer)}
    assert classes == {"conv": "Conv2D", "dw": "DepthwiseConv2D", "lstm": "LSTM", "embed": "Dense"}
    families = open_model(k3 / "families.keras").model
    assert type(families.get_layer("stats")) is StatsPooling  # tfadvq's own layer, by its registered name
    assert families.get_layer("leaky_re_lu").alpha == pytest.approx(0.2)  # Keras 3's negative_slope


@pytest.mark.parametrize("name, expected", [
    ("custom.keras", ["'scale'", "mypkg>Scale", "unknown to tf-keras", "register"]),
    ("attention.keras", ["'mha'", "MultiHeadAttention", "replace it"]),
    ("ops.keras", ["keras.ops.mean", "replace it with a Keras layer"]),
    ("lora.keras", ["'adapted'", "lora_rank=2", "without that option"]),
    ("legacy.h5", ["legacy .h5", "save it from Keras 3 as .keras"]),
])
def test_a_keras3_model_that_cannot_be_rebuilt_is_refused_naming_file_layer_and_fix(k3, name, expected):
    with pytest.raises(ModelLoadError) as refused:
        open_model(k3 / name)
    message = str(refused.value)
    assert message.startswith(f"{k3 / name}: cannot load the model: ") and len(message) < MAX_MESSAGE
    for part in expected:
        assert part in message


def test_a_keras3_encoder_goes_through_quantize_convert_and_tflm_scores(k3, tiny_corpus, tmp_path, capsys):
    """Conv2D + BatchNorm + DepthwiseConv2D + LSTM + Dense saved by Keras 3 -> 4-bit KMQAT -> LUT .tflite;
    TFLM's trial scores on real speech equal the quantized Keras model's."""
    from tfadvq.evaluation import evaluate
    from converters.tflm import tflm_embedder
    from tfadvq.scoring import keras_embedder
    from tfadvq.voxceleb import load_corpus
    from tfadvq.windows import ScoringConfig

    q = tmp_path / "q4"
    assert main(["quantize", "--model", str(k3 / "encoder.keras"), "--bits", "4", "--out", str(q)]) == 0
    assert "Keras 3." in capsys.readouterr().out
    source = json.loads(rundir.QuantDir(q).summary.read_text())["source"]
    assert source["model"] == str(k3 / "encoder.keras") and "rebuilt in tf-keras" in source["format"]
    quantized = {row["layer"] for row in json.loads(rundir.QuantDir(q).summary.read_text())["layers"]
                 if str(row.get("bits", "")).isdigit()}
    assert {"conv", "dw", "lstm", "embed"} <= quantized

    assert main(["convert", "--model", str(q), "--out", str(q / "model.tflite"), "--frames", "40"]) == 0
    printed = capsys.readouterr().out
    assert f"Quantized layers of {rundir.QuantDir(q).wrapped}" in printed and "UNIDIRECTIONAL_SEQUENCE_LSTM" in printed

    corpus, scoring = load_corpus(tiny_corpus), ScoringConfig(window_frames=40)
    plain = tfadvq.load_model(q)  # the quantize folder's plain (centroid-valued) model
    device = evaluate(tflm_embedder((q / "model.tflite").read_bytes()), corpus.trials, corpus.test, scoring)
    reference = evaluate(keras_embedder(plain), corpus.trials, corpus.test, scoring)
    assert device.labels.size == len(corpus.trials) and np.ptp(device.scores) > 0.01
    np.testing.assert_allclose(device.scores, reference.scores, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- run folders


def test_every_run_folder_resolves_to_its_model(tmp_path):
    model = _small_model()
    train = tmp_path / "train"
    rundir.atomic_save_model(model, rundir.TrainDir(train).model)
    quant = rundir.QuantDir(tmp_path / "quant")
    from tfadvq.quant import outputs

    outputs.save(tfadvq.ptq(model, 2, progress=False), quant)
    assert rundir.model_file(train) == rundir.TrainDir(train).model
    assert rundir.model_file(quant.path) == quant.plain and rundir.model_file(quant.path, quantized=True) == quant.wrapped
    assert rundir.model_file(quant.wrapped) == quant.wrapped  # a file is itself
    assert open_model(quant.path, quantized=True).file == quant.wrapped

    # a recipe stage folder: the model its record names (a convert stage names the plain model it converted)
    stage = tmp_path / "work" / "convert"
    stage.mkdir(parents=True)
    (stage / "model.tflite").write_bytes(b"TFL3")
    rundir.write_json(stage / rundir.RECORD, {"outputs": {"tflite": str(stage / "model.tflite"),
                                                          "plain": str(quant.plain)}})
    assert rundir.model_file(stage) == quant.plain
    # a SavedModel folder is the model
    model.save(tmp_path / "saved")
    assert open_model(tmp_path / "saved").file == tmp_path / "saved"
    np.testing.assert_allclose(open_model(tmp_path / "saved").model(np.ones((1, 20, 80))).numpy(),
                               model(np.ones((1, 20, 80))).numpy(), atol=1e-6)

    # folders without a model say what they are and what to give
    for folder, why in ((tmp_path / "work", "recipe work folder; give one of its stage folders"),
                        (_with_tflite(tmp_path / "device"), "holds .tflite files but no Keras model"),
                        (_made(tmp_path / "empty"), "holds no model: expected model.keras")):
        with pytest.raises(ConfigError, match=re.escape(why)):
            rundir.model_file(folder)


def _with_tflite(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"TFL3")
    return folder


def _made(folder: Path) -> Path:
    folder.mkdir()
    return folder


def _readme_model_folder_examples() -> dict[str, str]:
    """The first README command line per command whose ``--model`` is a run folder (``runs/...``)."""
    found: dict[str, str] = {}
    for line in README.read_text().splitlines():
        command = re.match(r"tfadvq (\w+) --model runs/\S+ ", line)
        if command and command.group(1) not in found:
            found[command.group(1)] = re.sub(r"\s+#.*$|\s*\[[^]]*\]", "", line)
    return found


# README lines are run as written, made small: the tiny corpus as data/synth, a tiny training config
SMALLER = {"--finetune-steps 100": "--finetune-steps 1"}


@pytest.mark.slow
def test_the_readme_examples_take_run_folders(tiny_corpus, tmp_path, monkeypatch, capsys):
    from test_training import tiny_config
    from tfadvq.config import dump_yaml
    from tfadvq.voxceleb import load_corpus

    examples = _readme_model_folder_examples()
    assert set(examples) == {"eval", "verify", "quantize", "mixed", "convert"}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synth").symlink_to(tiny_corpus)
    test = load_corpus(tiny_corpus).test
    for name, utterance in zip(("a1.wav", "a2.wav", "b.wav"), (test[0], test[1], test[-1])):
        (tmp_path / name).symlink_to(utterance.path)
    dump_yaml(tiny_config(tiny_corpus, epochs=1, steps_per_epoch=2), tmp_path / "tiny.yaml")
    assert main(["train", "--config", "tiny.yaml", "--corpus", "data/synth", "--out", "runs/tiny"]) == 0
    for command in ("eval", "verify", "quantize", "mixed", "convert"):  # the README's order: eval stores
        line = examples[command]                                       # the threshold verify uses
        for big, small in SMALLER.items():
            line = line.replace(big, small)
        capsys.readouterr()
        assert main(line.split()[1:]) == 0, (line, capsys.readouterr().err[-500:])
        folder = re.search(r"--model (\S+)", line).group(1)
        expected = rundir.model_file(folder, quantized=command == "convert")  # convert strips the wrapped one
        assert str(expected) in capsys.readouterr().out, line  # the command says which file it used
    assert Path("runs/tiny_q4/model.tflite").is_file() and Path("fw_model/model_data.cc").is_file()


# --------------------------------------------------------------------------- short errors


def _truncated_h5(folder: Path) -> Path:
    path = folder / "cut.h5"
    folder.mkdir(exist_ok=True)
    _small_model().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD = {  # kind -> (make the bad model in a folder, what the message must say)
    "random .keras": (lambda d: _write(d / "m.keras", os.urandom(3000)), "not a .keras archive"),
    "random .h5": (lambda d: _write(d / "m.h5", os.urandom(3000)), "not an HDF5 file"),
    "truncated .h5": (_truncated_h5, "HDF5"),
    "keras3 custom layer": (None, "unknown to tf-keras"),
    "folder without a model": (_made, "holds no model"),
    "conversion folder": (_with_tflite, "no Keras model"),
}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _commands(model: Path, tmp: Path, corpus: Path) -> dict[str, list[str]]:
    recipe = tmp / "recipe.yaml"
    recipe.write_text(json.dumps({"stages": [{"type": "model", "path": str(model)}]}))
    return {
        "quantize": ["quantize", "--model", str(model), "--bits", "4", "--out", str(tmp / "q")],
        "mixed": ["mixed", "--model", str(model), "--inputs", str(tmp / "x.npy"), "--objective", "distill",
                  "--avg-bits", "4", "--out", str(tmp / "mixed")],
        "convert": ["convert", "--model", str(model), "--out", str(tmp / "c" / "m.tflite")],
        "eval": ["eval", "--model", str(model), "--corpus", str(corpus), "--out", str(tmp / "e")],
        "verify": ["verify", "--model", str(model), "--enroll", "a.wav", "--test", "b.wav", "--threshold", "0.5"],
        "recipe model stage": ["run", str(recipe), "--workdir", str(tmp / "work")],
    }


@pytest.mark.parametrize("kind", sorted(BAD))
def test_every_command_refuses_a_bad_model_in_one_short_line(kind, k3, tiny_corpus, tmp_path, capsys):
    make, cause = BAD[kind]
    model = k3 / "custom.keras" if make is None else make(tmp_path / "bad")
    for command, argv in _commands(model, tmp_path, tiny_corpus).items():
        capsys.readouterr()
        assert main(argv) == 2, command
        err = capsys.readouterr().err
        message = err.strip().splitlines()[-1]
        assert message.startswith("tfadvq: error: ") and "Traceback" not in err, (command, err[-800:])
        message = message[len("tfadvq: error: "):]
        assert len(message) < MAX_MESSAGE, (command, message)
        assert str(model) in message and cause in message, (command, message)
        assert "{" not in message, (command, message)  # no model config dumped
