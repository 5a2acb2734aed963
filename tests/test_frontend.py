"""The front end travels with the model: a model trained on 64 mel bins at a 12 ms shift is scored,
quantized, calibrated, converted and described with *those* features, through the CLI and a recipe.

A tiny TinyResNet is trained for a few steps on the tiny generated corpus; nothing here depends on
how well it verifies, only on which features every path computes.
"""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import yaml

from tfadvq import frontend, rundir
from tfadvq.cli import main
from tfadvq.config import dump_yaml, from_dict, load_yaml
from tfadvq.errors import ConfigError
from tfadvq.fbank_config import FbankConfig
from tfadvq.train_config import TrainConfig

FBANK = FbankConfig(num_mel_bins=64, frame_shift_ms=12.0)
FRAMES = 40  # scoring window: 40 frames of 12 ms


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """``tfadvq train`` of a 64-mel, 12 ms model (2 steps); its run directory."""
    work = tmp_path_factory.mktemp("frontend")
    config = from_dict(TrainConfig, dict(
        model="TinyResNet", model_args=dict(feat_dim=64, embed_dim=16, base_width=16),
        data=dict(corpus=str(tiny_corpus)),
        pipeline=dict(batch_size=8, crop_seconds=1.0, noise_prob=0.0, reverb_prob=0.0, spec_augment=False,
                      fbank=dataclasses.asdict(FBANK)),
        schedule=dict(warmup_epochs=0, decay="constant"), epochs=1, steps_per_epoch=2))
    dump_yaml(config, work / "train.yaml")
    assert main(["train", "--config", str(work / "train.yaml"), "--out", str(work / "fp32")]) == 0
    return work


def _utterance_features(path, fbank_config: FbankConfig) -> np.ndarray:
    from tfadvq.scoring import file_features
    from tfadvq.windows import ScoringConfig

    return file_features(path, ScoringConfig(window_frames=FRAMES), fbank_config)


def test_training_records_the_front_end_and_eval_scores_with_it(trained, tiny_corpus, capsys):
    from tfadvq.model_io import load_model
    from tfadvq.scoring import keras_embedder, utterance_embedding
    from tfadvq.voxceleb import load_corpus
    from tfadvq.windows import ScoringConfig

    run = rundir.TrainDir(trained / "fp32")
    assert load_yaml(FbankConfig, run.frontend) == FBANK
    assert frontend.resolve(run.model).fbank == FBANK

    assert main(["eval", "--model", str(run.path), "--corpus", str(tiny_corpus), "--frames", str(FRAMES),
                 "--out", str(trained / "eval")]) == 0
    assert "64 mel bins from" in capsys.readouterr().out
    # The first trial's score, recomputed by hand from 64-mel / 12 ms features of its two files.
    enroll, test, score, _ = (trained / "eval" / "scores.txt").read_text().split("\n")[0].split()
    corpus = load_corpus(tiny_corpus)
    paths = {u.key: u.path for u in corpus.test}
    embed = keras_embedder(load_model(run.path), frontend.resolve(run.model))
    a, b = (utterance_embedding(embed, _utterance_features(paths[k], FBANK), ScoringConfig(window_frames=FRAMES))
            for k in (enroll, test))
    assert float(a @ b) == pytest.approx(float(score), abs=1e-4)
    # 12 ms frames (192 samples), not the default 10 ms (160).
    assert len(_utterance_features(paths[enroll], FBANK)) == 1 + (len(_samples(paths[enroll])) - 400) // 192


def _samples(path):
    from tfadvq.audio import load_audio

    return load_audio(path)


def test_quantize_inherits_and_convert_states_it_down_to_tflm(trained, tiny_corpus, capsys):
    from converters.metadata import c_header, read_json
    from tfadvq.model_io import load_model
    from converters.tflm import tflm_embedder
    from tfadvq.scoring import keras_embedder, utterance_embedding
    from tfadvq.voxceleb import load_corpus
    from tfadvq.windows import ScoringConfig

    q = rundir.QuantDir(trained / "q4")
    assert main(["quantize", "--model", str(trained / "fp32"), "--bits", "4", "--out", str(q.path)]) == 0
    assert load_yaml(FbankConfig, q.frontend) == FBANK  # inherited from its source

    out = trained / "device" / "model.tflite"
    convert = ["convert", "--model", str(q.wrapped), "--out", str(out), "--frames", str(FRAMES),
               "--corpus", str(tiny_corpus), "--corpus-crops", "8"]
    # the firmware computes 80 mel bins at 10 ms: its sources for this model are refused, naming why
    assert main([*convert, "--c-array", str(trained / "fw")]) == 2
    err = capsys.readouterr().err
    assert "num_mel_bins: 80 -> 64; frame_shift_ms: 10.0 -> 12.0" in err and "firmware" in err
    assert main(convert) == 0
    metadata = read_json(out.with_suffix(".json"))
    assert metadata.feature == FBANK and metadata.num_mel_bins == 64 and metadata.input_frames == FRAMES
    assert "crops of" in metadata.parity.inputs and metadata.parity.threshold_from.startswith("EER threshold")
    header = c_header(metadata)  # what model.json states, as the firmware's macros
    assert "#define TFADVQ_FBANK_NUM_MEL_BINS 64\n" in header
    assert "#define TFADVQ_FBANK_FRAME_SHIFT_MS 12.0f\n" in header
    assert "#define TFADVQ_NUM_MEL_BINS 64\n" in header

    # TFLM scores a real utterance from the model's own features, as Keras does (int8 activations).
    device_front = frontend.FrontEnd(metadata.feature, str(out.with_suffix(".json")))
    utterance = load_corpus(tiny_corpus).test[0].path
    scoring = ScoringConfig(window_frames=FRAMES)
    features = _utterance_features(utterance, FBANK)
    on_device = utterance_embedding(tflm_embedder(out.read_bytes(), device_front), features, scoring)
    in_keras = utterance_embedding(keras_embedder(load_model(q.plain), device_front), features, scoring)
    assert float(on_device @ in_keras) > 0.95
    with pytest.raises(ConfigError, match="takes 64 features per frame, but its front end .* has num_mel_bins 80"):
        tflm_embedder(out.read_bytes())  # the default front end is refused, not used


def test_a_contradicting_declaration_and_an_undeclared_model_are_errors_naming_both(trained, tiny_corpus, capsys):
    (trained / "fbank80.yaml").write_text(yaml.safe_dump({"num_mel_bins": 80}))
    q = rundir.QuantDir(trained / "q_decl")
    assert main(["quantize", "--model", str(trained / "fp32"), "--bits", "4", "--out", str(q.path)]) == 0
    assert main(["convert", "--model", str(q.wrapped), "--out", str(trained / "x" / "m.tflite"),
                 "--frames", str(FRAMES), "--feature-config", str(trained / "fbank80.yaml")]) == 2
    err = capsys.readouterr().err
    assert "--feature-config" in err and str(q.frontend) in err and "num_mel_bins: 64 -> 80" in err

    # A model you bring, without its record: refused by eval (never fed 80 default mel bins) ...
    bring = trained / "bring"
    bring.mkdir()
    shutil.copy(rundir.TrainDir(trained / "fp32").model, bring / "encoder.keras")
    assert main(["eval", "--model", str(bring / "encoder.keras"), "--corpus", str(tiny_corpus),
                 "--frames", str(FRAMES)]) == 2
    assert main(["verify", "--model", str(bring / "encoder.keras"), "--enroll", "a.wav", "--test", "b.wav",
                 "--threshold", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "takes 64 features per frame, but its front end (default FbankConfig" in err
    assert "frontend.yaml" in err  # how to declare it
    # ... and accepted once it declares its front end beside it; a fine-tune that borrows a training
    # config of another front end is fed the model's features (recorded in the config it followed).
    frontend.record(bring, FBANK)
    assert frontend.resolve(bring / "encoder.keras").fbank == FBANK
    borrowed = load_yaml(TrainConfig, trained / "train.yaml")
    dump_yaml(dataclasses.replace(borrowed, pipeline=dataclasses.replace(borrowed.pipeline, fbank=FbankConfig())),
              trained / "train80.yaml")
    tuned = rundir.QuantDir(trained / "q_tuned")
    assert main(["quantize", "--model", str(bring / "encoder.keras"), "--bits", "4", "--finetune-epochs", "1",
                 "--train-config", str(trained / "train80.yaml"), "--objective", "distill",
                 "--out", str(tuned.path)]) == 0
    assert load_yaml(TrainConfig, tuned.train_config).pipeline.fbank == FBANK
    assert load_yaml(FbankConfig, tuned.frontend) == FBANK


def test_a_recipe_follows_a_declared_front_end(trained, tiny_corpus):
    """model stage (declared fbank) -> quantize -> convert (int8 crops) -> evaluate under TFLM."""
    from converters.metadata import read_json
    from tfadvq.recipe import parse_recipe, run_recipe

    bring = trained / "bring_recipe"
    bring.mkdir()
    shutil.copy(rundir.TrainDir(trained / "fp32").model, bring / "encoder.keras")
    recipe = parse_recipe({
        "scoring": {"window_frames": FRAMES},
        "stages": [
            {"type": "corpus", "path": str(tiny_corpus)},
            {"type": "model", "path": str(bring / "encoder.keras"), "fbank": dataclasses.asdict(FBANK)},
            {"type": "quantize", "model": "model", "bits": 4},
            {"type": "convert", "model": "quantize", "corpus": "corpus", "corpus_crops": 8},
            {"type": "evaluate", "name": "evaluate_tflm", "model": "convert", "corpus": "corpus"},
        ]})
    rows = run_recipe(recipe, trained / "recipe")
    assert [r["stage"] for r in rows][-1] == "evaluate_tflm"
    assert load_yaml(FbankConfig, rundir.RunDir(trained / "recipe" / "quantize").frontend) == FBANK
    assert read_json(rundir.DeviceDir(trained / "recipe" / "convert").metadata).feature == FBANK
    undeclared = parse_recipe({"scoring": {"window_frames": FRAMES}, "stages": [
        {"type": "corpus", "path": str(tiny_corpus)},
        {"type": "model", "path": str(bring / "encoder.keras")},
        {"type": "quantize", "model": "model", "bits": 4},  # computes no features: nothing recorded
        {"type": "evaluate", "model": "quantize", "corpus": "corpus"}]})
    with pytest.raises(ConfigError, match="takes 64 features per frame, but its front end .default FbankConfig"):
        run_recipe(undeclared, trained / "recipe_undeclared")
    assert not rundir.RunDir(trained / "recipe_undeclared" / "quantize").frontend.exists()
