"""A ``.keras`` saved by Keras 3, rebuilt as a tf-keras model with identical weights.

tfmot (and so every quantizer here) needs tf-keras layers, while ``import
keras`` gives today's users Keras 3.  A Keras 3 ``.keras`` is a zip of
``config.json`` (the architecture, Keras 3's serialization) and
``model.weights.h5``; both are read directly -- Keras 3 is never imported, so
it cannot clash with tf-keras in this process.

The architecture is translated layer by layer into tf-keras's config format
and checked *before anything is built*: only the families tfadvq quantizes and
converts (the support table of :mod:`tfadvq.quant.layer_rules`) and the layers
around them (normalisation, pooling, activations, reshapes, merges, dropout,
padding, tfadvq's own registered layers) are taken.  A layer option tf-keras
lacks is accepted only at the value that changes nothing (``lora_rank: null``,
``use_cudnn``, a dropout ``seed``); initializers are dropped (the saved
weights replace them).  Anything else -- another layer class, a custom class
tf-keras does not know, a Keras 3 op (``keras.ops.*``) or ``Lambda`` in the
graph, both written for Keras 3's backends -- is refused naming the file,
the layer and what to do.

Weights: Keras 3 stores each layer's variables under
``layers/<class in snake case>[_n]/vars/<i>`` with the layer's name in the
``vars`` group's ``name`` attribute, in the order of tf-keras's
``layer.weights`` for these families, and a layer's sub-layers in sub-groups
(an LSTM's ``cell/vars``: kernel, recurrent kernel, bias).  They are matched
to the tf-keras layers by layer name and checked by shape.
"""
from __future__ import annotations

import dataclasses
import inspect
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq.compat import keras

# The Keras 3 layer classes taken; tf-keras has each under the same name.
LAYERS: frozenset[str] = frozenset({
    # the quantized families (tfadvq.quant.layer_rules)
    "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D", "Dense", "LSTM", "GRU",
    # what surrounds them in an encoder
    "InputLayer", "BatchNormalization", "LayerNormalization",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "Reshape", "Flatten", "Permute", "RepeatVector", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
})
SUPPORTED_TEXT = "convolutions, Dense, LSTM/GRU, norms, pooling, activations, reshapes, merges"
MODELS = ("Functional", "Sequential")
# Keras 3 option -> tf-keras name, per class
RENAMED: dict[str, dict[str, str]] = {"LeakyReLU": {"negative_slope": "alpha"},
                                      "InputLayer": {"batch_shape": "batch_input_shape"}}
# Keras 3 options tf-keras lacks, and the values at which leaving them out changes nothing (None: any value)
NEUTRAL: dict[str, tuple[Any, ...] | None] = {
    "seed": None,  # dropout randomness only
    "use_cudnn": None,  # a kernel choice, same results
    "lora_rank": (None,), "lora_alpha": (None,), "quantization_config": (None,),
    "optional": (False,), "rms_scaling": (False,), "zero_output_for_mask": (False,),
}
# tf-keras's base Layer accepts these through **kwargs
_BASE_KWARGS = {"name", "trainable", "dtype", "dynamic", "input_shape", "batch_input_shape", "batch_size",
                "activity_regularizer", "autocast", "implementation", "input_dim"}


@dataclasses.dataclass
class Keras3Conversion:
    """A Keras 3 ``.keras`` rebuilt in tf-keras: the Keras version that saved it and what was copied."""

    keras_version: str
    layers: int
    weights: int

    def describe(self) -> str:
        return f"Keras {self.keras_version} .keras rebuilt in tf-keras ({self.layers} layers, {self.weights} weights)"


class NotRebuilt(Exception):
    """The file cannot be rebuilt: ``(cause, fix)``; :mod:`tfadvq.model_io` names the file."""


class _Refused(Exception):
    """A layer that cannot be rebuilt: ``(layer name, cause, fix)``."""


def rebuild(path: Path, version: str) -> tuple[keras.Model, Keras3Conversion]:
    """The tf-keras twin of the Keras 3 ``.keras`` at ``path`` (saved by Keras ``version``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except KeyError as exc:
        raise NotRebuilt(f"Keras {version} archive without {exc}", "save it again with model.save()") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise NotRebuilt(f"damaged Keras {version} archive ({exc})", "save it again") from None
    try:
        translated = _model_entry(config)
        _check_layers(translated)
    except _Refused as refusal:
        layer, cause, fix = refusal.args
        raise NotRebuilt(f"Keras {version} layer {layer!r} {cause}", fix) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a config.json not laid out as Keras 3's
        raise NotRebuilt(f"config.json not in Keras {version}'s layout ({type(exc).__name__}: {exc})",
                         "save it again with model.save()") from None
    import tfadvq.models  # noqa: F401  (registers tfadvq's layers)

    try:
        model = keras.layers.deserialize(translated)
    except Exception as exc:  # tf-keras's many kinds; each layer was checked alone, so this is rare
        raise NotRebuilt(f"tf-keras cannot assemble the Keras {version} graph ({exc})",
                         "report it with the file; meanwhile save the model from tf-keras") from None
    import h5py

    try:
        with h5py.File(io.BytesIO(weights), "r") as stored:
            count = _copy_weights(model, stored)
    except (OSError, KeyError) as exc:  # a damaged weights file inside the archive
        raise NotRebuilt(f"model.weights.h5 unreadable ({exc})", "save it again with model.save()") from None
    return model, Keras3Conversion(version, _count_layers(model), count)


# --------------------------------------------------------------------------- config translation


def _model_entry(entry: dict[str, Any], nested: bool = False) -> dict[str, Any]:
    """A Keras 3 model entry (top level or ``nested`` in another) in tf-keras's ``{class_name, config}`` form.

    A nested Sequential loses its ``InputLayer``: tf-keras would give it an own first call, and the
    outer graph's references to its call (node 0) would never resolve.
    """
    kind, config = entry.get("class_name"), entry.get("config", {})
    if kind == "Sequential":
        layers = [_layer_entry(layer) for layer in config.get("layers", [])
                  if not (nested and layer.get("class_name") == "InputLayer")]
        return {"class_name": "Sequential", "config": {"name": config.get("name"), "layers": layers}}
    if kind != "Functional" and not (kind == "Model" and "layers" in config):
        raise _Refused(config.get("name", "?"), f"is a subclassed model ({kind}) without a layer graph",
                       "save a Functional or Sequential model")
    if nested:  # Keras 3 numbers a nested graph's calls unlike tf-keras, whose rebuild then never ends
        raise _Refused(config.get("name", "?"), "is a Functional model nested in another",
                       "build one flat model from its layers (or nest it as a Sequential) and save again")
    layers = []
    for layer in config.get("layers", []):
        if len(layer.get("inbound_nodes", [])) > 1:
            raise _Refused(layer["name"], f"is called {len(layer['inbound_nodes'])} times (a shared layer)",
                           "give each call its own layer and save again")
        translated = _layer_entry(layer)
        translated["name"] = layer["name"]
        translated["inbound_nodes"] = [_node(layer["name"], node) for node in layer.get("inbound_nodes", [])]
        layers.append(translated)
    return {"class_name": "Functional",
            "config": {"name": config.get("name"), "layers": layers,
                       "input_layers": _endpoints(config.get("input_layers", [])),
                       "output_layers": _endpoints(config.get("output_layers", []))}}


def _endpoints(value: list) -> list:
    """Keras 3 writes a single endpoint as ``[name, 0, 0]``, tf-keras wants ``[[name, 0, 0]]``."""
    value = [value] if value and isinstance(value[0], str) else value
    for name, node_index, _ in value:
        _first_call(name, node_index)
    return value


def _first_call(layer: str, node_index: int) -> None:
    """Every layer is called once (shared layers are refused), so every reference is to its call 0."""
    if node_index != 0:
        raise _Refused(layer, f"is referred to by its call {node_index} (a shared layer or nested model)",
                       "give each call its own layer and save again")


def _node(layer: str, node: dict[str, Any]) -> list[list[Any]]:
    """One Keras 3 call ``{args, kwargs}`` as tf-keras's list of ``[layer, node, tensor, kwargs]``."""
    args = node.get("args", [])
    if len(args) != 1:
        raise _Refused(layer, f"is called with {len(args)} positional arguments", "call it on one tensor or a list")
    tensors = args[0] if isinstance(args[0], list) else [args[0]]
    kwargs = {}
    for key, value in node.get("kwargs", {}).items():
        if value is None or key == "training":  # tf-keras decides training itself
            continue
        if _is_tensor(value) or (isinstance(value, list) and any(_is_tensor(v) for v in value)):
            raise _Refused(layer, f"takes a tensor through {key}=", "pass every tensor as its input")
        kwargs[key] = value
    found = []
    for tensor in tensors:
        if not _is_tensor(tensor):
            raise _Refused(layer, "is called on a constant, not a layer output", "make the constant a layer weight")
        name, node_index, tensor_index = tensor["config"]["keras_history"]
        _first_call(name, node_index)
        found.append([name, node_index, tensor_index, kwargs])
    return found


def _is_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _layer_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A Keras 3 layer entry as tf-keras ``{class_name, config}``, or refused (module doc)."""
    kind, module = entry.get("class_name", "?"), str(entry.get("module") or "")
    config = dict(entry.get("config") or {})
    name = config.get("name", entry.get("name", "?"))
    if kind in MODELS or module.startswith("keras.src.models"):
        return _model_entry(entry, nested=True)
    if module.startswith(("keras.src.ops", "keras.ops")):
        raise _Refused(name, f"is the Keras 3 op keras.ops.{_snake(kind)}, written for Keras 3's backends",
                       "replace it with a Keras layer (e.g. GlobalAveragePooling1D, Add) and save again")
    if kind == "Lambda":
        raise _Refused(name, "is a Lambda: Python code written for Keras 3's backend ops",
                       "replace it with a Keras layer or a registered custom layer and save again")
    registered = entry.get("registered_name")
    if not module.startswith("keras") or (registered and registered != kind):
        return _custom(name, registered or kind, config)
    if kind not in LAYERS:
        raise _Refused(name, f"({kind}) is not among the layers rebuilt in tf-keras ({SUPPORTED_TEXT})",
                       "replace it, or save the model from tf-keras")
    return {"class_name": kind, "config": _options(name, kind, config, getattr(keras.layers, kind))}


def _custom(name: str, registered: str, config: dict[str, Any]) -> dict[str, Any]:
    """A custom layer: taken when tf-keras has a class registered under the same name (tfadvq's own)."""
    import tfadvq.models  # noqa: F401  (registers tfadvq's layers)

    cls = keras.utils.get_registered_object(registered)
    if cls is None:
        raise _Refused(name, f"is the custom class {registered}, unknown to tf-keras",
                       "register a tf-keras version of it (keras.utils.register_keras_serializable) "
                       "before loading, or save the model without it")
    return {"class_name": registered, "config": _options(name, registered, config, cls)}


def _options(name: str, kind: str, config: dict[str, Any], cls: type) -> dict[str, Any]:
    """A layer's Keras 3 options as tf-keras takes them (module doc); refuse any that would change it."""
    accepted = _accepted(cls)
    renamed = RENAMED.get(kind, {})
    out: dict[str, Any] = {}
    for key, value in config.items():
        key = renamed.get(key, key)
        if key.endswith("_initializer"):
            continue  # the saved weights replace what they would initialise
        if key == "dtype":
            value = _dtype(name, value)
        elif isinstance(value, dict) and "class_name" in value:
            value = _serialized(name, key, value)
        if key not in accepted:
            neutral = NEUTRAL.get(key, ())
            if neutral is None or value in neutral:
                continue
            raise _Refused(name, f"({kind}) sets {key}={value!r}, which tf-keras lacks",
                           "save the model without that option")
        out[key] = value
    return out


def _accepted(cls: type) -> set[str]:
    """The options ``cls`` takes: its ``__init__`` parameters and those of the bases it forwards to."""
    names = set(_BASE_KWARGS)
    for base in cls.__mro__:
        if "__init__" in vars(base):
            names |= {p for p in inspect.signature(base.__init__).parameters if p not in ("self", "args", "kwargs")}
    return names


def _dtype(name: str, value: Any) -> Any:
    """Keras 3's ``DTypePolicy`` dict -> the policy name tf-keras takes; quantized policies refused."""
    if isinstance(value, dict):
        if value.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy"):
            raise _Refused(name, f"has the dtype policy {value.get('class_name')} (Keras 3 quantized weights)",
                           "save the float model instead")
        value = value.get("config", {}).get("name")
    return value


def _serialized(name: str, key: str, value: dict[str, Any]) -> Any:
    """A nested Keras 3 object (activation, regularizer, constraint) in tf-keras's form."""
    module, kind, config = str(value.get("module") or ""), value.get("class_name"), value.get("config")
    if not module.startswith("keras") or value.get("registered_name") not in (None, kind):
        raise _Refused(name, f"has the custom {key} {value.get('registered_name') or kind}", f"use a built-in {key}")
    if kind == "function" and isinstance(config, str):
        return config  # a built-in activation function by name
    return {"class_name": kind, "config": config}


def _check_layers(translated: dict[str, Any]) -> None:
    """Build every layer alone from its translated config, so a refusal names the layer, before any work."""
    import tfadvq.models  # noqa: F401

    for layer in translated["config"]["layers"]:
        if layer["class_name"] in MODELS:
            _check_layers(layer)
            continue
        try:
            keras.layers.deserialize({"class_name": layer["class_name"], "config": layer["config"]})
        except Exception as exc:  # tf-keras raises many kinds for options it does not take
            name = layer["config"].get("name", "?")
            raise _Refused(name, f"({layer['class_name']}) is not accepted by tf-keras: {exc}",
                           "save the model without that option") from None


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


# --------------------------------------------------------------------------- weights


def _copy_weights(model: keras.Model, stored) -> int:
    """Set every tf-keras layer's weights from the Keras 3 file; the number of arrays copied."""
    groups = _groups_by_name(stored.get("layers"))
    count = 0
    for layer in model.layers:
        group = groups.get(layer.name)
        if isinstance(layer, keras.Model):
            if group is None:
                raise NotRebuilt(f"no stored weights for the nested model {layer.name!r}", "save it again")
            count += _copy_weights(layer, group)
            continue
        arrays = _arrays(group) if group is not None else []
        expected = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            raise NotRebuilt(f"layer {layer.name!r}: stored weights {[a.shape for a in arrays]}, the "
                             f"tf-keras layer has {expected}", "report it with the file")
        if arrays:
            layer.set_weights(arrays)
        count += len(arrays)
    return count


def _groups_by_name(layers) -> dict[str, Any]:
    """``{layer name: h5 group}`` of a Keras 3 ``layers`` group (its group names are class-based)."""
    found = {}
    for group in (layers.values() if layers is not None else []):
        name = group["vars"].attrs.get("name") if "vars" in group else None
        if name is not None:
            found[name.decode() if isinstance(name, bytes) else str(name)] = group
    return found


def _arrays(group) -> list[np.ndarray]:
    """A layer's own variables (``vars/0..n``), then those of its sub-layers (an RNN's ``cell``)."""
    own = group["vars"] if "vars" in group else {}
    arrays = [np.asarray(own[key]) for key in sorted(own, key=int)]
    for key in sorted(group):
        if key not in ("vars", "layers"):
            arrays += _arrays(group[key])
    return arrays


def _count_layers(model: keras.Model) -> int:
    return sum(_count_layers(layer) if isinstance(layer, keras.Model) else 1 for layer in model.layers)
