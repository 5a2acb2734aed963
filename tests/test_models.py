"""tfadvq.models: shapes, published parameter counts, registry errors, serialisation round trips."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from tfadvq.compat import keras, tf
from tfadvq.errors import ConfigError
from tfadvq.models import MODELS, StatsPooling, build_model

# All Keras weights (incl. batch-norm moving statistics) at 80 mel, 256-d, published widths.
PARAMS = {
    "ResNet18": 4_110_240,
    "ResNet34": 6_642_848,
    "DFResNet56": 4_088_608,
    "DFResNet110": 6_613_792,
    "DFResNet179": 9_325_856,
    "DFResNet233": 11_851_040,
}
TINY = {"TinyResNet": dict(embed_dim=32, base_width=4), "TinyDFResNet": dict(embed_dim=32, base_width=4),
        "McuDFResNet": dict(embed_dim=32, widths=[4, 4, 8, 8, 16], pool_channels=8),
        "LstmEncoder": dict(feat_dim=80, embed_dim=32, units=8, layers=2),
        "TdnnEncoder": dict(feat_dim=80, embed_dim=32, channels=8, pool_channels=16)}


@functools.lru_cache(maxsize=None)
def _published(name: str) -> keras.Model:
    """Each full-size model is built once per session: the deep DF-ResNets take seconds."""
    return build_model(name)


def _trainable(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_match_the_published_sizes(name):
    model = _published(name)
    assert model.count_params() == PARAMS[name]
    assert model.output_shape == (None, 256) and model.input_shape == (None, None, 80)


def test_resnet34_is_the_common_6_6m_model():
    assert _trainable(_published("ResNet34")) == pytest.approx(6.6e6, rel=0.02)
    assert _trainable(_published("ResNet18")) == pytest.approx(4.1e6, rel=0.02)


def test_dfresnet_depths_and_names():
    model = _published("DFResNet56")
    blocks = {l.name.rsplit("_", 1)[0] for l in model.layers if l.name.endswith("_add")}
    per_stage = [sum(b.startswith(f"stage{s}_") for b in blocks) for s in range(1, 5)]
    assert per_stage == [3, 3, 9, 3]
    assert isinstance(model.get_layer("stage3_block9_depthwise"), keras.layers.DepthwiseConv2D)
    assert model.get_layer("stage3_block9_expand").filters == 4 * 128
    assert model.get_layer("downsample4").strides == (2, 2)
    # 80 mel -> 5 bins after four stride-2 downsamplings; 5 * 256 channels pooled.
    assert model.get_layer("frame_features").output_shape == (None, None, 5 * 256)


def test_resnet_layout_halves_time_and_frequency_three_times():
    model = _published("ResNet34")
    assert model.get_layer("frame_features").output_shape == (None, None, 10 * 256)
    assert model.get_layer("stage2_block1_conv1").strides == (2, 2)
    assert model.get_layer("stage2_block1_shortcut_subsample").strides == (2, 2)
    names = [l.name for l in model.layers]
    assert len(names) == len(set(names))
    assert all(type(l) in (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
               for l in model.layers if l.weights and "bn" not in l.name)


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("frames", [1, 37, 200])
def test_tiny_models_embed_any_length(name, frames):
    model = build_model(name, **TINY[name])
    out = model(np.random.default_rng(0).normal(size=(3, frames, 80)).astype(np.float32))
    assert out.shape == (3, 32) and np.all(np.isfinite(out))


@pytest.mark.parametrize("name", sorted(TINY))
def test_tiny_models_train(name):
    """A few SGD steps run and change the loss (tiny widths once crashed oneDNN's conv backward)."""
    keras.utils.set_random_seed(0)
    model = build_model(name, **TINY[name])
    classifier = keras.Model(model.input, keras.layers.Dense(4)(model.output))
    classifier.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(4).normal(size=(16, 60, 80)).astype(np.float32)
    losses = classifier.fit(x, np.arange(16) % 4, batch_size=8, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_round_trip(name, suffix, tmp_path):
    model = build_model(name, **TINY[name])
    x = np.random.default_rng(1).normal(size=(2, 50, 80)).astype(np.float32)
    model.save(tmp_path / f"m{suffix}")
    loaded = keras.models.load_model(tmp_path / f"m{suffix}", compile=False)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-5)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]


def test_stats_pooling_is_mean_and_std_over_time():
    x = np.random.default_rng(2).normal(size=(2, 9, 4)).astype(np.float32)
    layer = StatsPooling(epsilon=0.0)
    np.testing.assert_allclose(layer(x), np.concatenate([x.mean(1), x.std(1)], axis=-1), rtol=1e-5)
    again = StatsPooling.from_config(layer.get_config())
    assert again.epsilon == 0.0
    assert layer.compute_output_shape((None, None, 4)) == tf.TensorShape([None, 8])


@pytest.mark.parametrize("name, args, message", [
    ("ResNet50", {}, "known models: ResNet18, ResNet34"),
    ("ResNet34", {"width": 16}, "unknown argument.*'width'.*base_width"),
    ("TinyResNet", {"base_width": 0}, "base_width"),
    ("TinyResNet", {"blocks": [1, 1]}, "blocks must be 4"),
    ("TinyDFResNet", {"depths": [1, 1, 0, 1]}, "depths"),
    ("LstmEncoder", {"layers": 0}, "layers"),
    ("TdnnEncoder", {"kernels": [5, 3], "dilations": [1]}, "one dilation per kernel"),
])
def test_bad_model_config_raises(name, args, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, **args)


def test_registry_lists_every_factory():
    assert set(MODELS) == set(PARAMS) | set(TINY)


# ----------------------------------------------------------------------------- AAM-softmax head


def _cosines(embeddings: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    return e @ w


@pytest.mark.parametrize("easy_margin", [False, True])
def test_aam_reduces_only_the_true_class_logit_by_the_angular_margin(easy_margin):
    from tfadvq.heads import AAMSoftmax

    rng = np.random.default_rng(3)
    embeddings = rng.normal(size=(64, 8)).astype(np.float32)
    labels = rng.integers(0, 6, size=64)
    head = AAMSoftmax(6, margin=0.3, scale=16.0, easy_margin=easy_margin)
    logits = head(embeddings, labels).numpy()
    cos = _cosines(embeddings, head.kernel.numpy())
    theta = np.arccos(np.clip(cos[np.arange(64), labels], -1, 1))
    if easy_margin:
        expected = np.where(np.cos(theta) > 0, np.cos(theta + 0.3), np.cos(theta))
    else:
        expected = np.where(theta + 0.3 <= np.pi, np.cos(theta + 0.3), np.cos(theta) - 0.3 * np.sin(0.3))
    np.testing.assert_allclose(logits[np.arange(64), labels], 16.0 * expected, atol=1e-4)
    others = np.ones_like(cos, bool)
    others[np.arange(64), labels] = False
    np.testing.assert_allclose(logits[others], 16.0 * cos[others], atol=1e-4)
    reduced = logits[np.arange(64), labels] < 16.0 * cos[np.arange(64), labels] - 1e-3
    assert np.all(reduced | (easy_margin & (cos[np.arange(64), labels] <= 0)))
    np.testing.assert_allclose(head(embeddings).numpy(), 16.0 * cos, atol=1e-4)


def test_aam_margin_variable_warms_up_and_config_keeps_the_final_margin(tmp_path):
    from tfadvq.heads import AAMSoftmax

    head = AAMSoftmax(4, margin=0.2, scale=8.0)
    assert head.margin not in head.trainable_weights and float(head.margin.numpy()) == pytest.approx(0.2)
    x, y = np.eye(4, dtype=np.float32), np.arange(4)
    head.margin.assign(0.0)
    np.testing.assert_allclose(head(x, y), head(x), atol=1e-6)
    again = AAMSoftmax.from_config(head.get_config())
    assert (again.num_classes, again.final_margin, again.scale) == (4, 0.2, 8.0)
    # Inside a saved model (labels as a second input) it reloads with its weights.
    features, labels = keras.Input((4,)), keras.Input((), dtype="int32")
    model = keras.Model([features, labels], AAMSoftmax(4, margin=0.2, scale=8.0, name="aam")(features, labels))
    model.save(tmp_path / "head.keras")
    loaded = keras.models.load_model(tmp_path / "head.keras")
    np.testing.assert_allclose(loaded([x, y]), model([x, y]), atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (dict(num_classes=1), "num_classes"), (dict(num_classes=3, margin=2.0), "margin"),
    (dict(num_classes=3, scale=0.0), "scale"),
])
def test_aam_bad_arguments_raise(args, message):
    from tfadvq.heads import AAMSoftmax

    with pytest.raises(ConfigError, match=message):
        AAMSoftmax(**args)


def test_pretrained_benchmark_encoders_have_no_batchnorm_and_quantizable_layers():
    """The LSTM and TDNN encoders (benchmarks/pretrained.py) are other families: recurrent / Conv1D, no BN."""
    lstm, tdnn = build_model("LstmEncoder"), build_model("TdnnEncoder")
    assert lstm.input_shape == tdnn.input_shape == (None, None, 40)
    assert [type(l).__name__ for l in lstm.layers if l.weights] == ["LSTM"] * 2 + ["Dense"]
    assert [type(l).__name__ for l in tdnn.layers if l.weights] == ["Conv1D"] * 5 + ["Dense"]
    assert tdnn.get_layer("frame3").dilation_rate == (3,)
