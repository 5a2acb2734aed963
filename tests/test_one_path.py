"""One path from every entry point: a command and the equivalent recipe stage give the same result.

``tfadvq quantize`` and the recipe's ``quantize`` stage both run
``tfadvq.quant.post_training.post_training`` with the same ``PTQSettings``; ``train``, ``mixed``,
``eval`` and ``convert`` likewise share their settings' rule and library calls.  These tests hold
each command to its stage on a small real model and the tiny corpus, setting by setting.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfadvq import model_io, rundir
from tfadvq.cli import main
from tfadvq.config import dump_yaml
from tfadvq.quant import api
from tfadvq.quant.spec import BitsSpec, load_spec
from tfadvq.recipe import load_recipe, run_recipe


@pytest.fixture(scope="module")
def fp_model(tmp_path_factory) -> Path:
    from test_quant_finetune import small_embedding_model

    path = tmp_path_factory.mktemp("fp") / "fp.keras"
    small_embedding_model().save(path)
    return path


def _run_recipe(tmp_path: Path, stages: list[str], window_frames: int | None = None) -> Path:
    """Write ``stages`` (YAML flow mappings) as a recipe, run it in ``tmp_path/work`` and return that."""
    scoring = f"scoring: {{window_frames: {window_frames}}}\n" if window_frames else ""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(scoring + "stages:\n" + "".join(f"  - {stage}\n" for stage in stages))
    run_recipe(load_recipe(recipe), tmp_path / "work")
    return tmp_path / "work"


def _weights(path: Path) -> list[np.ndarray]:
    plain, _ = api.strip(model_io.load_model(path))
    return plain.get_weights()


SETTINGS = {
    "binary ends": (["--bits", "1", "--binary", "adaptive", "--binary-clip", "0.5", "--end-bits", "8"],
                    {"bits": 1, "binary": "adaptive", "binary_clip": 0.5, "end_bits": 8}),
    "spec per channel": (["--bits-per-layer", "{spec}", "--per-channel"],
                         {"bits_per_layer": "{spec}", "per_channel": True}),
    # data given: weighted codebooks and bias correction by default, in both
    "default on inputs": (["--inputs", "{inputs}", "--fisher-batches", "1"], {"inputs": "{inputs}", "fisher_batches": 1}),
    "opted out on inputs": (["--inputs", "{inputs}", "--no-weighted", "--bias-correction"],
                            {"inputs": "{inputs}", "weighted": "false", "bias_correction": "true"}),
}


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_quantize_command_and_recipe_stage_give_the_same_model(case, fp_model, tmp_path):
    files = {"{spec}": tmp_path / "bits.yaml", "{inputs}": tmp_path / "x.npy"}
    dump_yaml(BitsSpec(default=3), files["{spec}"])
    np.save(files["{inputs}"], np.random.default_rng(0).normal(size=(16, 40, 80)).astype(np.float32))
    flags, fields = SETTINGS[case]
    flags = [str(files.get(f, f)) for f in flags]
    fields = {k: str(files.get(v, v)) for k, v in fields.items()}

    assert main(["quantize", "--model", str(fp_model), *flags, "--out", str(tmp_path / "cli")]) == 0
    stage = ", ".join(f"{k}: {v}" for k, v in fields.items())
    _run_recipe(tmp_path, [f"{{type: model, path: {fp_model}}}", f"{{type: quantize, model: model, {stage}}}"])

    cli, stage = rundir.QuantDir(tmp_path / "cli"), rundir.QuantDir(tmp_path / "work" / "quantize")
    assert rundir.read_json(cli.summary)["ptq"] == rundir.read_json(stage.summary)["ptq"]  # the same path ran
    from_cli, from_recipe = _weights(cli.wrapped), _weights(stage.wrapped)
    assert len(from_cli) == len(from_recipe) > 0
    for a, b in zip(from_cli, from_recipe):
        np.testing.assert_array_equal(a, b)


def test_a_conflicting_setting_is_named_by_its_flag_on_the_command_line(fp_model, tmp_path, capsys):
    spec = tmp_path / "bits.yaml"
    dump_yaml(BitsSpec(default=3), spec)
    argv = ["quantize", "--model", str(fp_model), "--bits-per-layer", str(spec), "--end-bits", "8",
            "--out", str(tmp_path / "q")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tfadvq: error: --end-bits applies to bits, not to --bits-per-layer" in err
    assert not rundir.QuantDir(tmp_path / "q").wrapped.exists()


def test_mixed_command_and_recipe_stage_give_the_same_bits_and_model(fp_model, tmp_path):
    """The same request (a budget, model inputs, the distill objective, the granularity chosen per tensor)
    through both entry points.

    14 bits per weight: the value tables count, and on a model this small they outweigh the indices."""
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).normal(size=(16, 40, 80)).astype(np.float32))
    assert main(["mixed", "--model", str(fp_model), "--inputs", str(inputs), "--avg-bits", "14",
                 "--allowed", "2,4,8", "--per-channel", "auto", "--batches", "1", "--probes", "2", "--frames", "40",
                 "--out", str(tmp_path / "cli")]) == 0
    _run_recipe(tmp_path, [f"{{type: model, path: {fp_model}}}",
                           f"{{type: mixed, model: model, inputs: {inputs}, avg_bits: 14, allowed: [2, 4, 8], "
                           "per_channel: auto, batches: 1, probes: 2}"], window_frames=40)

    cli, stage = rundir.MixedDir(tmp_path / "cli"), rundir.MixedDir(tmp_path / "work" / "mixed")
    assert cli.bits_spec.read_text() == stage.bits_spec.read_text()
    assert set(load_spec(cli.bits_spec).per_channel) == set(rundir.read_json(cli.sensitivities))  # chosen per weight
    for a, b in zip(_weights(cli.wrapped), _weights(stage.wrapped)):
        np.testing.assert_array_equal(a, b)


def test_eval_command_and_evaluate_stage_score_every_trial_alike(fp_model, tiny_corpus, tmp_path):
    """``tfadvq eval`` and the recipe's ``evaluate`` stage: the same trial scores, EER and threshold."""
    assert main(["eval", "--model", str(fp_model), "--corpus", str(tiny_corpus), "--frames", "40",
                 "--out", str(tmp_path / "cli")]) == 0
    _run_recipe(tmp_path, [f"{{type: model, path: {fp_model}}}", f"{{type: corpus, path: {tiny_corpus}}}",
                           "{type: evaluate, model: model, corpus: corpus}"], window_frames=40)

    cli, stage = rundir.EvalDir(tmp_path / "cli"), rundir.EvalDir(tmp_path / "work" / "evaluate")
    a, b = np.loadtxt(cli.trial_scores, ndmin=2), np.loadtxt(stage.trial_scores, ndmin=2)
    trials = [line for line in (tiny_corpus / "trials" / "test.txt").read_text().splitlines() if line.strip()]
    assert a.shape == b.shape and len(a) == len(trials)
    np.testing.assert_allclose(a, b, atol=1e-5)  # the same embedder and schedule: one float path
    threshold_cli, threshold_stage = (rundir.read_json(d.threshold) for d in (cli, stage))
    assert threshold_cli["eer"] == pytest.approx(threshold_stage["eer"])
    assert threshold_cli["threshold"] == pytest.approx(threshold_stage["threshold"], abs=1e-5)


def test_convert_command_and_recipe_stage_write_the_same_device_model(fp_model, tiny_corpus, tmp_path):
    """``tfadvq convert --corpus`` and the ``convert`` stage with ``corpus``: the same int8 LUT model
    (activation ranges measured on the same corpus crops) and the same metadata."""
    from converters.metadata import read_json
    from tfadvq.config import to_dict

    work = _run_recipe(tmp_path, [f"{{type: model, path: {fp_model}}}", "{type: quantize, model: model, bits: 3}",
                                  f"{{type: corpus, path: {tiny_corpus}}}",
                                  "{type: convert, model: quantize, corpus: corpus, corpus_crops: 8}"],
                       window_frames=40)
    cli = rundir.DeviceDir.for_file(tmp_path / "cli" / "model.tflite")
    assert main(["convert", "--model", str(work / "quantize"), "--out", str(cli.tflite), "--frames", "40",
                 "--corpus", str(tiny_corpus), "--corpus-crops", "8"]) == 0

    stage = rundir.DeviceDir(work / "convert")
    assert cli.tflite.read_bytes() == stage.tflite.read_bytes()
    assert cli.int8_tflite.read_bytes() == stage.int8_tflite.read_bytes()  # int8 on both: corpus given
    a, b = to_dict(read_json(cli.metadata)), to_dict(read_json(stage.metadata))
    assert a["activations"] == "int8" and a["parity"]["inputs"] == b["parity"]["inputs"]
    assert a == b


def test_train_command_and_recipe_stage_train_and_evaluate_the_same_model(tiny_corpus, tmp_path, capsys):
    """``tfadvq train`` with its overrides and the ``train`` stage with the same fields: one config
    (:func:`tfadvq.train_config.overridden`), one seeded training, the same weights; and the evaluation
    ``tfadvq train`` runs on the config's ``data.trials`` scores every trial as the ``evaluate`` stage
    does (:func:`tfadvq.evaluation.evaluate_into`, the call ``tfadvq eval`` makes too)."""
    from test_training import tiny_config
    from tfadvq.train_config import load_config
    from tfadvq.voxceleb import corpus_trials_path

    config = tmp_path / "tiny.yaml"
    trials = corpus_trials_path(tiny_corpus)
    dump_yaml(tiny_config(tmp_path / "elsewhere", epochs=3, steps_per_epoch=5,
                          data={"corpus": str(tmp_path / "elsewhere"), "trials": str(trials)}), config)
    assert main(["train", "--config", str(config), "--corpus", str(tiny_corpus), "--epochs", "1",
                 "--steps-per-epoch", "2", "--batch-size", "4", "--out", str(tmp_path / "cli")]) == 0
    assert "tfadvq train: evaluation of" in capsys.readouterr().out
    work = _run_recipe(tmp_path, [f"{{type: corpus, path: {tiny_corpus}}}",
                                  f"{{type: train, config: {config}, corpus: corpus, epochs: 1, steps_per_epoch: 2, "
                                  "batch_size: 4}", "{type: evaluate, model: train, corpus: corpus}"])

    cli, stage = rundir.TrainDir(tmp_path / "cli"), rundir.TrainDir(work / "train")
    trained = load_config(cli.config)
    assert trained == load_config(stage.config)
    assert (trained.epochs, trained.steps_per_epoch, trained.pipeline.batch_size) == (1, 2, 4)
    assert Path(trained.data.corpus) == tiny_corpus
    assert cli.load_history() == stage.load_history()  # the same losses, epoch by epoch
    from_cli, from_recipe = (model_io.load_model(d.model).get_weights() for d in (cli, stage))
    assert len(from_cli) == len(from_recipe) > 0
    for a, b in zip(from_cli, from_recipe):
        np.testing.assert_array_equal(a, b)

    after_train, evaluated = cli.evaluation(trials), rundir.EvalDir(work / "evaluate")
    a, b = np.loadtxt(after_train.trial_scores, ndmin=2), np.loadtxt(evaluated.trial_scores, ndmin=2)
    assert a.shape == b.shape and len(a) == len([line for line in trials.read_text().splitlines() if line.strip()])
    np.testing.assert_allclose(a, b, atol=1e-5)
    stored, staged = (rundir.read_json(d.threshold) for d in (after_train, evaluated))
    assert stored["eer"] == pytest.approx(staged["eer"])
    assert stored["threshold"] == pytest.approx(staged["threshold"], abs=1e-5)
    assert stored["model_sha256"] == rundir.file_sha256(cli.model)  # the threshold belongs to the model trained


def test_verify_command_and_verify_stage_decide_alike(fp_model, tiny_corpus, tmp_path, capsys):
    """``tfadvq verify`` at the threshold the ``evaluate`` stage stored (``--threshold-from``) and the
    ``verify`` stage's claim: the same scores and decisions for the genuine and the impostor recording."""
    work = _run_recipe(tmp_path, [f"{{type: model, path: {fp_model}}}", f"{{type: corpus, path: {tiny_corpus}}}",
                                  "{type: evaluate, model: model, corpus: corpus}",
                                  "{type: verify, model: model, threshold: evaluate, corpus: corpus}"],
                       window_frames=40)
    claim = rundir.read_json(rundir.EvalDir(work / "verify").verification)
    capsys.readouterr()
    for test, score, decision in zip((claim["genuine"], claim["impostor"]), claim["scores"], claim["decisions"]):
        assert main(["verify", "--model", str(fp_model), "--enroll", *claim["enroll"], "--test", test,
                     "--threshold-from", str(work / "evaluate")]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if test in line).split()
        assert decision in row and f"{claim['threshold']:.4g}" in row
        assert float(row[row.index(test) + 1]) == pytest.approx(score, abs=1e-3)  # printed to 4 digits


def test_data_synth_command_and_corpus_stage_write_the_same_corpus(tmp_path):
    """``tfadvq data synth`` and the ``corpus`` stage with the same sizes and seed: one generator
    (:func:`tfadvq.corpus.synth.synthesize_corpus`), the same lists, trials and audio."""
    assert main(["data", "synth", "--speakers", "2", "--test-speakers", "2", "--utts", "2", "--seed", "3",
                 "--out", str(tmp_path / "cli")]) == 0
    work = _run_recipe(tmp_path, ["{type: corpus, speakers: 2, test_speakers: 2, utts: 2, seed: 3}"])
    cli, stage = tmp_path / "cli", rundir.CorpusRun(work / "corpus").corpus

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.suffix in (".wav", ".txt", ".scp") or p.parent.name == "lists"}

    from_cli, from_stage = files(cli), files(stage)
    assert sum(name.endswith(".wav") for name in from_cli) == 2 * (2 + 2)
    assert from_cli.keys() == from_stage.keys()
    assert [name for name in from_cli if from_cli[name] != from_stage[name]] == []


def test_quantize_with_finetune_and_the_quantize_finetune_stages_give_the_same_model(tiny_corpus, tmp_path):
    """``tfadvq quantize --finetune-epochs`` and the ``quantize`` + ``finetune`` stages on a tfadvq-trained
    model: one PTQ (:func:`tfadvq.quant.post_training.post_training`), one fine-tune engine
    (:func:`tfadvq.quant.finetune.finetune_run`) on the same corpus with the trained head; the same weights."""
    from test_training import tiny_config
    from tfadvq.training import train

    trained = train(tiny_config(tiny_corpus, epochs=1, steps_per_epoch=2), tmp_path / "fp").path
    assert main(["quantize", "--model", str(trained), "--bits", "3", "--finetune-epochs", "1",
                 "--corpus", str(tiny_corpus), "--fisher-batches", "1", "--out", str(tmp_path / "cli")]) == 0
    work = _run_recipe(tmp_path, [f"{{type: model, path: {trained}}}", f"{{type: corpus, path: {tiny_corpus}}}",
                                  "{type: quantize, model: model, bits: 3, corpus: corpus, fisher_batches: 1}",
                                  "{type: finetune, model: quantize, epochs: 1, corpus: corpus}"])

    cli, stage = rundir.QuantDir(tmp_path / "cli"), rundir.QuantDir(work / "finetune")
    assert rundir.read_json(cli.summary)["finetune"]["loss_curve"] == \
        rundir.read_json(stage.summary)["finetune"]["loss_curve"]
    from_cli, from_recipe = _weights(cli.wrapped), _weights(stage.wrapped)
    assert len(from_cli) == len(from_recipe) > 0
    for a, b in zip(from_cli, from_recipe):
        np.testing.assert_array_equal(a, b)
