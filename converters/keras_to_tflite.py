"""Keras embedding model -> .tflite with a fixed ``[1, frames, mels]`` input.

The firmware computes fbank features for a fixed window and feeds them as one
tensor (float, or int8 as below); a static shape lets the converter fold the model's reshapes into
constants, so the graph holds only kernels TFLM has.  Two flavours:

* float activations and weights (``to_float_tflite``);
* full-integer int8 weights and activations with an int8 input and a float
  output (``to_int8_tflite``), activation ranges measured on a representative
  set of fbank crops.  The input's scale and zero point are in the model: the
  caller quantises the features (``converters.tflm.set_features``, the
  firmware's ``WindowRows::QuantizeTo``, both as TFLM's QUANTIZE kernel
  rounds), so the device's arena holds no float copy of the window.

Convert the *stripped* plain Keras model: a tfmot-wrapped model keeps
QUANTIZE/DEQUANTIZE pairs on its weights, which TFLM rejects.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tflite_micro.tensorflow.lite.micro.compression import model_editor
from tqdm import tqdm

from tfadvq.compat import keras, tf
from tfadvq.errors import ConversionError
from tfadvq.fbank_config import FbankConfig
from tfadvq.quant import layer_rules

RepresentativeData = Callable[[], Iterable[np.ndarray]]


def feature_dim(model: keras.Model) -> int:
    """Mel bins the model expects (last input dimension)."""
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 3 or shape[-1] is None:
        raise ConversionError(
            f"model {model.name!r}: input shape {shape} is not [batch, frames, mels]"
        )
    return int(shape[-1])


def _converter(model: keras.Model, frames: int) -> tf.lite.TFLiteConverter:
    if frames < 1:
        raise ConversionError(f"frames must be positive, got {frames}")
    spec = tf.TensorSpec([1, frames, feature_dim(model)], tf.float32, name="fbank")
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    return tf.lite.TFLiteConverter.from_concrete_functions([function], model)


def _run_converter(converter: tf.lite.TFLiteConverter, model: keras.Model) -> bytes:
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises its own ConverterError/ValueError kinds
        raise ConversionError(f"model {model.name!r}: TFLite conversion failed: {exc}") from exc
    _reject_fake_quant(flatbuffer, model)
    return flatbuffer


def _reject_fake_quant(flatbuffer: bytes, model: keras.Model) -> None:
    """A float model with QUANTIZE/DEQUANTIZE on constants came from an unstripped QAT model."""
    subgraph = model_editor.read(flatbuffer).subgraphs[0]
    for operator in subgraph.operators:
        constant = operator.inputs[0].buffer
        if operator.opcode_name == "DEQUANTIZE" and constant is not None and constant.data:
            raise ConversionError(
                f"model {model.name!r}: converted graph dequantizes constant {operator.inputs[0].name!r} "
                "(fake-quant wrappers left in); convert the stripped model from tfadvq.strip()"
            )


def refusals(model: keras.Model, int8: bool = False) -> list[str]:
    """Why ``model`` cannot be converted (with int8 activations if ``int8``); empty if it can.

    Read from the support table (:meth:`tfadvq.quant.layer_rules.LayerRule.refuses`,
    :attr:`~tfadvq.quant.layer_rules.LayerRule.int8_refusal`) for every layer,
    quantized or not: some configurations would hang TFLM (a GRU returning
    sequences) or crash the converter (a GRU while measuring int8 ranges, segfault),
    which must be refused before either runs.  A model with more than one
    output is refused too: the device computes one embedding.
    """
    reasons = []
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) > 1:  # the firmware, the metadata and the parity checks take one embedding
        names = ", ".join(repr(getattr(t, "name", "?").split("/")[0]) for t in outputs)
        reasons.append(f"it has {len(outputs)} outputs ({names}); the device runs one embedding output: "
                       "convert keras.Model(model.input, <the embedding output>)")
    for layer in model.submodules:
        rule = layer_rules.rule_for(layer) if isinstance(layer, keras.layers.Layer) else None
        if rule is None:
            continue
        reason = rule.refuses(layer) or (rule.int8_refusal if int8 else None)
        if reason:
            reasons.append(f"layer {layer.name!r}: {reason}")
    return reasons


def _check_refusals(model: keras.Model, int8: bool) -> None:
    refused = refusals(model, int8)
    if refused:
        what = "with int8 activations" if int8 else "for TFLite Micro"
        raise ConversionError(f"model {model.name!r} cannot be converted {what}: " + "; ".join(refused))


def to_float_tflite(model: keras.Model, frames: int) -> bytes:
    """Float32 .tflite of ``model`` for a ``[1, frames, mels]`` input (refusals: :func:`refusals`)."""
    _check_refusals(model, int8=False)
    return _run_converter(_converter(model, frames), model)


def to_int8_tflite(model: keras.Model, frames: int, representative: RepresentativeData, *,
                   float_input: bool = False) -> bytes:
    """Full-integer int8 .tflite (int8 input, float output), activation ranges measured on ``representative``.

    ``float_input``: the older form, a float input quantised by a leading QUANTIZE op (same scales, same
    outputs: the tests hold :func:`converters.tflm.quantize_features` to that op with it).

    ``representative()`` yields feature arrays of shape ``[frames, mels]`` or
    ``[1, frames, mels]``.  Models with layers the converter cannot quantize
    (:func:`refusals`) raise ConversionError.
    """
    _check_refusals(model, int8=True)
    mels = feature_dim(model)

    def batches() -> Iterable[list[np.ndarray]]:
        for features in representative():
            array = np.asarray(features, np.float32).reshape(1, frames, mels)
            yield [array]

    converter = _converter(model, frames)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = batches
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32 if float_input else tf.int8
    converter.inference_output_type = tf.float32
    return _run_converter(converter, model)


def array_representative(features: np.ndarray) -> RepresentativeData:
    """Representative data from an array ``[N, frames, mels]`` of fbank crops."""
    features = np.asarray(features, np.float32)
    if features.ndim != 3 or len(features) == 0:
        raise ConversionError(f"representative features must be [N, frames, mels], got {features.shape}")
    return lambda: iter(features)


def fbank_window(path: str | Path, frames: int, rng: np.random.Generator | None = None,
                 fbank_config: FbankConfig | None = None) -> np.ndarray:
    """``[frames, mels]`` window of an audio file's fbank (``fbank_config``: the model's front end,
    default ``FbankConfig()``), cut as the device cuts one (:func:`tfadvq.windows.crop_window`)."""
    from tfadvq.audio import load_audio
    from tfadvq.features import fbank
    from tfadvq.windows import crop_window

    fbank_config = fbank_config or FbankConfig()
    features = np.asarray(fbank(load_audio(path, fbank_config.sample_rate), fbank_config), np.float32)
    return crop_window(features, frames, rng)


def labelled_corpus_crops(corpus_dir: str | Path, frames: int, count: int = 64, seed: int = 0,
                          fbank_config: FbankConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random fbank windows ``[count, frames, mels]`` of a corpus's training (dev) utterances,
    computed with the model's front end ``fbank_config`` (:mod:`tfadvq.frontend`; default ``FbankConfig()``),
    and the speaker of each (the parity check scores pairs of them: :mod:`converters.parity`)."""
    from tfadvq.voxceleb import load_corpus

    utterances = load_corpus(corpus_dir).train
    if not utterances:
        raise ConversionError(f"{corpus_dir}: no dev utterances to crop for the int8 activation ranges")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(utterances), count)
    crops = np.stack([fbank_window(utterances[i].path, frames, rng, fbank_config)
                      for i in tqdm(picks, desc="representative crops", leave=False)])
    return crops, np.array([utterances[i].speaker for i in picks])


def corpus_crops(corpus_dir: str | Path, frames: int, count: int = 64, seed: int = 0,
                 fbank_config: FbankConfig | None = None) -> np.ndarray:
    """The crops of :func:`labelled_corpus_crops` (representative data for the int8 activation ranges)."""
    return labelled_corpus_crops(corpus_dir, frames, count, seed, fbank_config)[0]


def input_windows(inputs: np.ndarray, frames: int, what: str = "--inputs") -> np.ndarray:
    """``[N, frames, F]`` windows of the model's own inputs ``[N, T, F]``, cut as the device cuts one
    (:func:`tfadvq.windows.crop_window`: the centre window; shorter inputs repeat)."""
    from tfadvq.windows import crop_window

    inputs = np.asarray(inputs, np.float32)
    if inputs.ndim != 3 or len(inputs) == 0:
        raise ConversionError(f"{what}: need an array [N, frames, features] of the model's inputs, got shape "
                              f"{inputs.shape}")
    return np.stack([crop_window(x, frames) for x in inputs])
