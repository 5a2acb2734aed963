"""Loading the model a user names: the one owner of ``--model``, the recipe's ``model`` stage and
``tfadvq.load_model``.

A user names a model file (``.keras``, ``.h5``, a SavedModel folder) or any
run folder tfadvq writes; :func:`tfadvq.rundir.model_file` picks the file.  It
is loaded with tf-keras, with tfadvq's own layers and the quantizers of a
tfmot-wrapped model known, or -- a ``.keras`` saved by Keras 3 -- rebuilt in
tf-keras with identical weights (:mod:`tfadvq.keras3_import`).  What was
loaded, from which file and whether it was converted comes back in
:class:`LoadedModel`, so commands can say it.

Every failure is a :class:`ModelLoadError`: one short line (under
:data:`MAX_MESSAGE` characters) with the file, the cause and the fix.  The
causes users meet are recognised before Keras is asked (no file, not a zip,
not HDF5, weights only, a Keras 3 file); what Keras itself raises is cut to
its first sentence, never the model config it likes to append.
"""
from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfadvq import rundir
from tfadvq.errors import ConfigError

if TYPE_CHECKING:
    from tfadvq.keras3_import import Keras3Conversion

MAX_MESSAGE = 300


class ModelLoadError(ConfigError):
    """A model cannot be loaded: the message names the file, the cause and what to do."""


def load_error(path: str | os.PathLike, cause: str, fix: str) -> ModelLoadError:
    """``path: cannot load the model: cause; fix``, the cause shortened so the whole stays short."""
    head, tail = f"{path}: cannot load the model: ", f"; {fix}"
    room = max(MAX_MESSAGE - 1 - len(head) - len(tail), 40)
    cause = " ".join(cause.split())
    return ModelLoadError(head + (cause if len(cause) <= room else cause[:room - 3] + "...") + tail)


@dataclasses.dataclass
class LoadedModel:
    """A loaded model, the path the user gave and the file actually loaded."""

    model: Any  # keras.Model (tf-keras)
    given: Path
    file: Path
    conversion: Keras3Conversion | None = None

    def describe(self) -> str:
        """``file`` (and the conversion, if any): what commands print as the model they used."""
        return str(self.file) + (f" ({self.conversion.describe()})" if self.conversion else "")

    def row(self) -> dict[str, Any]:
        """The model's line in a command's summary."""
        return {"model": str(self.file), "given": str(self.given),
                "format": self.conversion.describe() if self.conversion else "tf-keras"}


def open_model(path: str | os.PathLike, quantized: bool = False) -> LoadedModel:
    """Load the model ``path`` names (module doc); ``quantized``: from a quantize folder take the
    tfmot-wrapped model (what conversion and further fine-tuning start from), not its plain twin."""
    given = Path(path)
    try:
        file = rundir.model_file(given, quantized)
    except ConfigError as exc:
        raise ModelLoadError(str(exc)) from None
    _check_readable(file)
    if file.suffix == ".keras":
        version = _keras_version(file)
        if version.startswith("3."):
            from tfadvq.keras3_import import NotRebuilt, rebuild

            try:
                model, conversion = rebuild(file, version)
            except NotRebuilt as refused:
                raise load_error(file, *refused.args) from None
            return LoadedModel(model, given, file, conversion)
    return LoadedModel(_load_tf_keras(file), given, file)


def load_model(path: str | os.PathLike, quantized: bool = False):
    """The tf-keras model ``path`` names (see :func:`open_model`, which also says what was loaded)."""
    return open_model(path, quantized).model


def _check_readable(file: Path) -> None:
    """Refuse, with the cause, what is not a model in the format its name says (before Keras sees it)."""
    if file.is_dir():
        return  # a SavedModel folder (rundir.model_file checked it has saved_model.pb)
    if file.suffix == ".keras":
        if not zipfile.is_zipfile(file):
            raise load_error(file, "not a .keras archive (not a zip file: truncated, or another format)",
                             "save it again with model.save('name.keras')")
        return
    if file.suffix in (".h5", ".hdf5"):
        import h5py

        if not h5py.is_hdf5(str(file)):
            raise load_error(file, "not an HDF5 file (truncated or another format)",
                             "save it again with model.save('name.h5')")
        try:
            with h5py.File(file, "r") as handle:
                config = handle.attrs.get("model_config")
        except OSError as exc:  # a damaged (e.g. truncated) HDF5 file
            raise load_error(file, f"unreadable HDF5 ({exc})", "save it again or copy it again") from None
        if config is None:
            raise load_error(file, "holds weights only (no model config)",
                             "build the model in Python and call model.load_weights(file), or save the "
                             "whole model")
        return
    if file.suffix == ".tflite":
        raise load_error(file, "a converted TFLite model, not a Keras model",
                         "give the Keras model (or the quantize folder) it was converted from")
    raise load_error(file, f"unknown model format {file.suffix or '(no suffix)'!r}",
                     "give a .keras or .h5 file, a SavedModel folder or a tfadvq run folder")


def _keras_version(file: Path) -> str:
    """The Keras version that saved a ``.keras`` archive (its ``metadata.json``; '' if absent)."""
    try:
        with zipfile.ZipFile(file) as archive:
            return str(json.loads(archive.read("metadata.json")).get("keras_version", ""))
    except KeyError:
        return ""
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError) as exc:
        raise load_error(file, f"damaged .keras archive ({exc})", "save it again") from None


def _load_tf_keras(file: Path):
    """tf-keras ``load_model`` with tfadvq's layers and quantizers known; Keras's errors made short."""
    import tensorflow_model_optimization as tfmot

    import tfadvq.models  # noqa: F401  (registers StatsPooling etc. for deserialisation)
    from tfadvq.compat import keras
    from tfadvq.quant.api import custom_objects

    try:
        with tfmot.quantization.keras.quantize_scope(custom_objects()):
            model = keras.models.load_model(file, compile=False)
    except Exception as exc:  # Keras raises many kinds for unreadable models
        raise _explained(file, exc) from None
    if not isinstance(model, keras.Model):
        raise load_error(file, f"a SavedModel without Keras metadata ({type(model).__name__})",
                         "save the Keras model itself (model.save('name.keras'))")
    return model


def _explained(file: Path, exc: Exception) -> ModelLoadError:
    """The short form of a Keras load failure: its first sentence, the usual causes named."""
    text = " ".join(str(exc).split())
    for marker in (" Full object config", " config=", " Config:", " with config"):
        text = text.split(marker)[0]
    if file.suffix in (".h5", ".hdf5") and _saved_by_keras3(file):
        return load_error(file, "saved by Keras 3 in the legacy .h5 format",
                          "save it from Keras 3 as .keras (model.save('name.keras')): those are rebuilt")
    if "Unknown layer" in text or "Could not locate class" in text:
        return load_error(file, f"a custom class unknown to tf-keras ({text})",
                          "import the module that registers it before loading (Python API), or save the "
                          "model without it")
    return load_error(file, f"{type(exc).__name__}: {text}", "check that it is a complete tf-keras model")


def _saved_by_keras3(file: Path) -> bool:
    import h5py

    try:
        with h5py.File(file, "r") as handle:
            version = handle.attrs.get("keras_version", b"")
    except OSError:
        return False
    return str(version.decode() if isinstance(version, bytes) else version).startswith("3.")
