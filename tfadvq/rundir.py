"""Every file a run leaves behind, named and written in one place.

A *run directory* is what one step of the workflow writes: a trained model
(:class:`TrainDir`), a quantized model (:class:`QuantDir`), an evaluation
(:class:`EvalDir`), a conversion for the device (:class:`DeviceDir`).  A recipe
(:mod:`tfadvq.recipe`) gives each of its stages one such directory under its
work directory, plus the stage's record (:data:`RECORD`).  No other module
spells a file name of a run: they ask these classes for paths and use their
typed load/save.

Writes are atomic (:func:`atomic_write`, :func:`atomic_save_model`): the data
goes to a temporary name in the same directory, is flushed to disk, then
renamed over the target, so a ``kill -9`` or a full disk leaves either the old
file or the new one, never a truncated one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tfadvq.errors import ConfigError, TfadvqError, describe_os_error

RECORD = "record.json"
ATTEMPT = "attempt.json"
LOCK = ".lock"


class OutputError(TfadvqError):
    """An output cannot be written (permissions, full disk, a file where a directory belongs)."""


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the body succeeds.

    The temporary file has ``path``'s own name inside a fresh hidden directory
    next to it, so writers that look at the name (Keras picks the format from
    the suffix) behave exactly as for ``path``, and the rename stays on one
    filesystem (atomic).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {describe_os_error(exc, path)}") from None
    tmp = scratch / path.name
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {describe_os_error(exc, path)}; nothing was replaced") from None
    finally:
        _remove(scratch)


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (see module doc); returns ``path``."""
    path = Path(path)
    with _writing(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else bytes(data))
    return path


def write_bad_files(path: str | os.PathLike, bad: list[tuple[str, str]]) -> Path:
    """The skipped files of a run, one ``path<TAB>reason`` line each (written even when empty,
    so a stale list never survives a re-run)."""
    return atomic_write(path, "".join(f"{file}\t{reason}\n" for file, reason in bad))


def write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write(path, json.dumps(value, indent=1, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def atomic_save_model(model: Any, path: str | os.PathLike) -> Path:
    """``model.save(path)`` (Keras; the suffix picks the format) without ever leaving a partial file."""
    path = Path(path)
    with _writing(path) as tmp:
        model.save(tmp)
    return path


def atomic_save_with(path: str | os.PathLike, save: Callable[[Path], None]) -> Path:
    """Atomically create ``path`` with ``save(tmp_path)`` (for writers that take a path)."""
    path = Path(path)
    with _writing(path) as tmp:
        save(tmp)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(path: str | os.PathLike, content_limit: int = 16 << 20) -> str:
    """A digest of a file or directory tree: names, sizes and (files up to ``content_limit``) contents.

    Large files count by size and modification time only, so digesting a corpus
    of audio stays cheap; records and models are small enough to be hashed.
    """
    root = Path(path)
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for file in files:
        hidden = any(part.startswith(".") for part in file.relative_to(root).parts) if file != root else False
        if file.name in (LOCK, ATTEMPT) or hidden:  # locks, attempts, a killed write's scratch
            continue
        stat = file.stat()
        digest.update(f"{file.relative_to(root) if file != root else file.name}\0{stat.st_size}\0".encode())
        digest.update(file_sha256(file).encode() if stat.st_size <= content_limit
                      else str(stat.st_mtime_ns).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (two runs must not write one run directory).

    A directory this call created and nothing was written into is removed again,
    so a refused command leaves no trace.
    """
    import fcntl

    directory = Path(directory)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / LOCK, "a+")
    except OSError as exc:
        raise OutputError(f"cannot create the run directory {describe_os_error(exc, directory)}") from None
    try:
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(f"{directory}: another tfadvq run is writing this directory; wait for it "
                                  "or choose another --workdir/--out") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        if created and [p.name for p in directory.iterdir()] == [LOCK]:
            _remove(directory / LOCK)
            with contextlib.suppress(OSError):
                directory.rmdir()


# --------------------------------------------------------------------------- run directories


class Entry:
    """A file or directory of a run directory, by name: ``TrainDir(p).model`` is ``p / "model.keras"``.

    A descriptor, so each run-directory class lists its files as data, one line each.
    """

    def __init__(self, name: str, doc: str = ""):
        self.name = name
        self.__doc__ = doc or f"``{name}``"

    def __get__(self, run: RunDir | None, owner: type | None = None) -> Any:
        return self if run is None else run.path / self.name


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Base of the typed run directories: a path and the stage record inside it."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def record(self) -> Path:
        return self.path / RECORD

    @property
    def attempt(self) -> Path:
        return self.path / ATTEMPT

    frontend = Entry("frontend.yaml", "The FbankConfig the model(s) in this directory eat (tfadvq.frontend).")


class TrainDir(RunDir):
    """What :func:`tfadvq.training.train` writes: the embedding model and what it was trained with."""

    MODEL = "model.keras"

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    config = Entry("train.yaml")
    speakers = Entry("speakers.json")
    head = Entry("head.npz")
    history = Entry("history.json")
    checkpoints = Entry("checkpoints")
    backup = Entry("backup")
    tensorboard = Entry("tensorboard")
    legacy_threshold = Entry("threshold.json", "Where ``tfadvq eval`` kept the threshold before it lived in the "
                                               "evaluation's own directory (:class:`EvalDir`); read only to say so.")
    bad = Entry("bad.txt", "The training files skipped as unreadable (``path<TAB>reason``).")

    def evaluation(self, trials: str | os.PathLike) -> EvalDir:
        """Where ``tfadvq eval`` evaluates this model on the trial list ``trials`` by default."""
        return EvalDir(self.path / f"eval_{Path(trials).stem}")

    def evaluations(self) -> list[EvalDir]:
        """The model's evaluations in their default places (:meth:`evaluation`), by name."""
        return [EvalDir(p) for p in sorted(self.path.glob("eval_*")) if p.is_dir()]

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.weights.h5"

    def checkpoint_files(self) -> list[Path]:
        return sorted(self.checkpoints.glob("epoch_*.weights.h5"))

    def load_history(self) -> dict[str, list[float]]:
        return read_json(self.history) if self.history.is_file() else {}

    def save_head(self, weights: list[Any]) -> Path:
        import numpy as np

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, *weights)

        return atomic_save_with(self.head, save)

    def load_head(self) -> list[Any]:
        import numpy as np

        try:
            with np.load(self.head) as saved:
                return [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.head}: cannot read the AAM head ({exc})") from None

    @classmethod
    def of_model(cls, model: str | os.PathLike) -> TrainDir:
        """The run directory of ``model``: a directory holding ``model.keras``, or a model file."""
        path = Path(model)
        if path.is_dir():
            if not (path / cls.MODEL).is_file():
                raise ConfigError(f"--model {path}: no {cls.MODEL} in this directory (expected a .keras "
                                  "file or a directory written by `tfadvq train`)")
            return cls(path)
        if not path.is_file():
            raise ConfigError(f"--model {path}: no such model (expected a .keras file or a directory "
                              f"holding {cls.MODEL}, as `tfadvq train` writes)")
        return _ModelFileDir(path.parent, path.name)


class _ModelFileDir(TrainDir):
    """A :class:`TrainDir` whose model file has another name (a user's ``encoder.keras``)."""

    def __init__(self, path: Path, model_name: str):
        super().__init__(path)
        object.__setattr__(self, "_model_name", model_name)

    @property
    def model(self) -> Path:
        return self.path / self._model_name


class QuantDir(RunDir):
    """What a quantization (PTQ, fine-tune) writes; see :mod:`tfadvq.quant.outputs`."""

    wrapped = Entry("model.h5", "The tfmot-wrapped model (``.h5``: tfmot wrappers do not reload from ``.keras``).")
    plain = Entry("plain.keras", "The stripped, centroid-valued plain Keras model (what converters take).")
    weights = Entry("quantized_weights.npz")
    summary = Entry("summary.json")
    head = Entry("head.npz", "The AAM head after an AAM fine-tune (handed to the next fine-tune).")
    train_config = Entry("train.yaml", "The training config the fine-tune followed.")
    plots = Entry("plots")


class MSFTDir(QuantDir):
    """What multi-stage fine-tuning writes: the :class:`QuantDir` of its final model, its stage
    rows, and while it runs one checkpoint per finished stage (each a :class:`QuantDir` holding
    the wrapped model and the AAM head; see :mod:`tfadvq.quant.msft`)."""

    state = Entry("msft.json", "Groups, bits, settings and the rows of the finished stages.")
    checkpoints = Entry("msft_checkpoints")

    def stage(self, index: int) -> QuantDir:
        """The checkpoint of stage ``index`` (1-based)."""
        return QuantDir(self.checkpoints / f"stage_{index:02d}")


class MixedDir(MSFTDir):
    """What ``tfadvq mixed`` / the ``mixed`` stage writes: the :class:`QuantDir` of the mixed-precision
    model (with ``--msft`` also :class:`MSFTDir`'s files) and the allocation it was made from."""

    bits_spec = Entry("bits.yaml", "The chosen bits as a BitsSpec (``tfadvq quantize --bits-per-layer``).")
    sensitivities = Entry("sensitivities.json", "HAWQ-V2 sensitivity per weight key at its chosen bits.")
    plan = Entry("mixed.json", "Hessian traces, sensitivity per bits, allocation, Pareto front, sizes.")


class EvalDir(RunDir):
    """What an evaluation writes: scores, DET plot, summary and the calibrated threshold.

    The threshold's one home: ``threshold.json`` of the evaluation that calibrated it
    (``tfadvq eval`` and the ``evaluate`` stage alike; see :mod:`tfadvq.evaluation`).
    """

    scores = Entry("scores.txt")
    trial_scores = Entry("trial_scores.txt")
    det = Entry("det.png")
    summary = Entry("summary.json")
    threshold = Entry("threshold.json")
    bad = Entry("bad.txt")
    verification = Entry("verify.json", "The outcome of a verification example.")
    by_source = Entry("by_source.json", "EER on all, same-source and each source's trials (a real corpus).")


class ListsDir(RunDir):
    """What ``tfadvq lists`` writes: clean Kaldi lists, the filtered trials and the skipped files."""

    wav_scp = Entry("wav.scp")
    utt2spk = Entry("utt2spk")
    trials = Entry("trials.txt")
    bad = Entry("bad.txt")


class CorpusDir(RunDir):
    """A corpus in the layout of docs/architecture.md, as ``tfadvq data real`` writes it.

    (``tfadvq data synth`` and :func:`tfadvq.voxceleb.load_corpus` spell the same names.)
    """

    lists = Entry("lists")
    trials = Entry("trials/test.txt", "The test trials, VoxCeleb format ``1|0 enroll test``.")
    trial_sources = Entry("trials/test_sources.txt",
                          "Each trial's ``enroll test source language`` (the group it was drawn in).")
    manifest = Entry("corpus.json")
    readme = Entry("README.md", "How the speaker labels were derived, their caveats, the licences.")
    marker = Entry(".real.json", "The settings of a build in progress (a re-run must match them).")

    def wav_root(self, split: str) -> Path:
        return self.path / split / "wav"

    def wav_scp(self, split: str) -> Path:
        return self.lists / f"{split}_wav.scp"

    def utt2spk(self, split: str) -> Path:
        return self.lists / f"{split}_utt2spk"


class CorpusRun(RunDir):
    """A corpus stage's directory: the generated corpus lives in a subdirectory."""

    corpus = Entry("corpus")


class DeviceDir(RunDir):
    """What a conversion for the device writes: ``.tflite`` files, metadata, firmware C sources."""

    def __init__(self, path: str | os.PathLike, name: str = "model.tflite"):
        super().__init__(Path(path))
        object.__setattr__(self, "_name", name)

    @classmethod
    def for_file(cls, tflite: str | os.PathLike) -> DeviceDir:
        tflite = Path(tflite)
        return cls(tflite.parent, tflite.name)

    @property
    def tflite(self) -> Path:
        """The LUT-compressed model to flash."""
        return self.path / self._name

    @property
    def float_tflite(self) -> Path:
        return self.tflite.with_suffix(".float.tflite")

    @property
    def int8_tflite(self) -> Path:
        return self.tflite.with_suffix(".int8.tflite")

    @property
    def metadata(self) -> Path:
        return self.tflite.with_suffix(".json")

    c_array = Entry("c_array")
    scores = Entry("device_scores.txt", "Device (TFLM) trial scores written by calibration.")
    verification = Entry("device_verify.json")
