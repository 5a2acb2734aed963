"""McuDFResNet (the device model): layout, multiply-accumulate counts, the device budget of its int8
conversion under TFLM, and scoring of utterances shorter than the device window."""
from __future__ import annotations

import numpy as np
import pytest

from tfadvq.compat import keras
from tfadvq.errors import ConfigError
from tfadvq.models import build_model
from tfadvq.models.common import multiply_accumulates
from tfadvq.train_config import resolve_config

FRAMES = 100  # the device recipe's window (tfadvq/recipes/demo.yaml)


@pytest.fixture(scope="module")
def device_model() -> keras.Model:
    """The packaged device configuration (tfadvq/configs/mcu.yaml), untrained."""
    config = resolve_config("mcu")
    keras.utils.set_random_seed(0)
    return build_model(config.model, **config.model_args)


def test_mac_count_is_output_positions_times_kernel_size():
    inputs = keras.Input((None, 16))
    x = keras.layers.Reshape((-1, 16, 1))(inputs)
    x = keras.layers.Conv2D(4, 3, 2, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.DepthwiseConv2D(3, 1, padding="same", use_bias=False, name="dw")(x)
    x = keras.layers.Reshape((-1, 8 * 4))(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))
    macs = multiply_accumulates(model, 10)
    # conv: 5 x 8 outputs x 4 channels x 3 x 3 x 1 input; depthwise: the same map, one 3x3 per channel
    assert macs == {"conv": 5 * 8 * 4 * 9, "dw": 5 * 8 * 4 * 9, "fc": 32 * 5}
    assert multiply_accumulates(model, 20)["conv"] == 2 * macs["conv"]  # linear in the frames


def test_device_model_downsamples_early_and_keeps_stage_one_separable(device_model):
    stem = device_model.get_layer("stem_conv")
    assert stem.strides == (2, 2) and stem.filters == 8
    names = [layer.name for layer in device_model.layers]
    assert not any(n.startswith("stage1_") and n.endswith("_expand") for n in names)
    assert device_model.get_layer("stage2_block1_expand").filters == 2 * 16
    assert device_model.get_layer("downsample3_depthwise").strides == (2, 2)
    assert device_model.get_layer("frame_features").output_shape == (None, None, 5 * 32)
    assert device_model.output_shape == (None, 128)


def test_device_model_costs_far_less_than_the_tiny_resnet(device_model):
    macs = sum(multiply_accumulates(device_model, FRAMES).values())
    tiny = sum(multiply_accumulates(build_model("TinyResNet"), FRAMES).values())
    assert macs < 1e7 and macs * 20 < tiny
    assert device_model.count_params() < 150_000


@pytest.mark.parametrize("args, message", [
    ({"widths": [8, 8, 16, 32]}, "widths"),
    ({"feat_dim": 40}, "divisible by 16"),
    ({"depths": [1, 0, 1, 1]}, "depths"),
    ({"expansion": 0}, "expansion"),
])
def test_bad_device_model_arguments_raise(args, message):
    with pytest.raises(ConfigError, match=message):
        build_model("McuDFResNet", **args)


def test_device_model_reloads(device_model, tmp_path):
    x = np.random.default_rng(1).normal(size=(2, 60, 80)).astype(np.float32)
    device_model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded(x, training=False), device_model(x, training=False), atol=1e-5)


@pytest.fixture(scope="module")
def int8_device(device_model, tiny_corpus) -> bytes:
    """The untrained device model with int8 activations, calibrated on real corpus crops."""
    from converters.keras_to_tflite import array_representative, corpus_crops, to_int8_tflite

    return to_int8_tflite(device_model, FRAMES, array_representative(corpus_crops(tiny_corpus, FRAMES, 8)))


def test_int8_device_model_fits_the_cortex_m4_budget(int8_device):
    """Arena (measured by TFLM) and model bytes leave room for the firmware in 256 KB / 1 MB."""
    from converters.tflm import arena_bytes

    assert arena_bytes(int8_device, (1, FRAMES, 80)) < 80 * 1024
    assert len(int8_device) < 256 * 1024


def test_utterances_shorter_than_the_window_are_scored_on_the_device(device_model, int8_device, tiny_corpus):
    """The shortest audio the device accepts (0.5 s) still gets an embedding from the int8 model."""
    from tfadvq.audio import load_audio
    from tfadvq.features import FbankConfig, fbank
    from converters.tflm import tflm_embedder
    from tfadvq.scoring import keras_embedder, utterance_embedding
    from tfadvq.voxceleb import load_corpus
    from tfadvq.windows import ScoringConfig

    audio = load_audio(load_corpus(tiny_corpus).test[0].path)[:8000]
    features = np.asarray(fbank(audio, FbankConfig()), np.float32)  # mean-normalised
    assert len(features) < FRAMES
    config = ScoringConfig(window_frames=FRAMES)
    device = utterance_embedding(tflm_embedder(int8_device), features, config)
    assert device.shape == (128,) and np.isfinite(device).all()
    assert device @ utterance_embedding(keras_embedder(device_model), features, config) > 0.9


def test_mad_pooling_is_mean_and_mean_absolute_deviation_over_time():
    from tfadvq.models import StatsPooling

    x = np.random.default_rng(2).normal(size=(2, 9, 3)).astype(np.float32) * [1.0, 5.0, 0.1]
    pooled = StatsPooling(spread="mad")(x).numpy()
    mean = x.mean(axis=1)
    np.testing.assert_allclose(pooled[:, :3], mean, atol=1e-5)
    np.testing.assert_allclose(pooled[:, 3:], np.abs(x - mean[:, None]).mean(axis=1), atol=1e-5)
    std = StatsPooling()(x).numpy()[:, 3:]
    assert np.all(pooled[:, 3:] <= std + 1e-6)  # mean |d| <= sqrt(mean d^2)
    assert StatsPooling.from_config(StatsPooling(spread="mad").get_config()).spread == "mad"
    with pytest.raises(ConfigError, match="spread"):
        StatsPooling(spread="max")
