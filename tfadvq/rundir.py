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
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tfadvq.errors import ConfigError, TfadvqError, describe_os_error

RECORD = "record.json"
ATTEMPT = "attempt.json"
LOCK = ".lock"
RECIPE = "recipe.json"  # in a recipe's work directory: the recipe it was last run with


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
    """``model.save(path)`` (Keras; the suffix picks the format) without ever leaving a partial file.

    An HDF5 model is built in memory and written in one go: libhdf5 writing
    onto a full disk raises errors that do not say so (``RuntimeError: Slist
    already enabled?``) and can crash the process when the file is closed,
    whereas a plain write fails with ENOSPC, reported as a full disk.
    """
    path = Path(path)
    if path.suffix in (".h5", ".hdf5"):
        return atomic_write(path, _hdf5_bytes(model.save))
    with _writing(path) as tmp:
        model.save(tmp)
    return path


def _hdf5_bytes(save: Callable[[Any], None]) -> bytes:
    """The bytes of the HDF5 file ``save(h5py.File)`` writes, made in memory."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        save(handle)
    return buffer.getvalue()


def atomic_save_with(path: str | os.PathLike, save: Callable[[Path], None]) -> Path:
    """Atomically create ``path`` with ``save(tmp_path)`` (for writers that take a path)."""
    path = Path(path)
    with _writing(path) as tmp:
        save(tmp)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes; of a folder (a SavedModel), the digest of its whole tree's contents."""
    if Path(path).is_dir():
        return tree_digest(path, content_limit=1 << 62)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tree_files(root: Path) -> list[tuple[str, Path]]:
    """``(name, path)`` of the files a digest of ``root`` covers: not locks, attempts or hidden scratch."""
    if root.is_file():
        return [(root.name, root)]
    files = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        if file.name in (LOCK, ATTEMPT, RECORD) or any(part.startswith(".") for part in relative.parts):
            continue  # locks, attempts, records, a killed write's scratch
        files.append((str(relative), file))
    return files


def tree_digest(path: str | os.PathLike, content_limit: int | None = 16 << 20) -> str:
    """A digest of a file or directory tree: names, sizes and (files up to ``content_limit``) contents.

    Large files count by size and modification time only, so digesting a corpus
    of audio stays cheap; records and models are small enough to be hashed.
    ``content_limit=None`` hashes every file's content (a corpus whose files may
    change without their size and time changing).
    """
    digest = hashlib.sha256()
    for name, file in _tree_files(Path(path)):
        info = file.stat()
        digest.update(f"{name}\0{info.st_size}\0".encode())
        digest.update(file_sha256(file).encode() if content_limit is None or info.st_size <= content_limit
                      else str(info.st_mtime_ns).encode())
    return digest.hexdigest()


def stat_digest(path: str | os.PathLike) -> str:
    """A digest of the names, sizes and modification times under ``path`` (no file is read).

    The cheap first check that a stage's outputs are as it left them: when it
    matches the recorded one, the outputs are taken as unchanged; when it does
    not, the full :func:`tree_digest` decides.
    """
    digest = hashlib.sha256()
    for name, file in _tree_files(Path(path)):
        info = file.stat()
        digest.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
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


# --------------------------------------------------------------------------- claiming outputs


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a device node"), (stat.S_ISBLK, "a device node"),
          (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot write {describe_os_error(exc, path)}") from None


@contextlib.contextmanager
def claim(path: str | os.PathLike, *, force: bool = False, flag: str = "--out",
          companions: Sequence[str | os.PathLike] = ()) -> Iterator[Path]:
    """Claim the output file ``path`` (and its ``companions``, written beside it) for one command.

    The one place that decides whether a command may write a file the user
    named: anything already there that is not a regular file (``/dev/null``, a
    fifo, a directory, a symbolic link) is refused, ``--force`` or not; an
    existing file is refused unless ``force`` -- the command did not create it
    in this run.  Both before anything is written.  While the body runs, a
    lock on ``path`` itself (``.NAME.lock`` beside it, not the folder) keeps a
    second command off the same output; when the body fails, every file this
    claim created is removed again, so a full disk leaves no partial output.
    """
    path = Path(path)
    targets = [path, *map(Path, companions)]
    for target in targets:
        found = _lstat(target)
        if found is not None and not stat.S_ISREG(found.st_mode):
            raise OutputError(f"{flag} {path}: {target} is {_kind(found.st_mode)}, not a regular file; "
                              "give the path of a file to write (nothing was written)")
    folders = list(dict.fromkeys(target.parent for target in targets))
    for folder in folders:
        found = _lstat(folder)
        if found is not None and not folder.is_dir():
            raise OutputError(f"{flag} {path}: {folder} is {_kind(found.st_mode)}, not a directory")
    created = [made for folder in folders for made in _missing_parents(folder)]
    try:
        with _lock_file(path.parent / f".{path.name}{LOCK}", flag, path):
            existing = [target for target in targets if target.exists()]
            if existing and not force:
                one = len(existing) == 1
                raise OutputError(f"{flag} {path}: {', '.join(map(str, existing))} already exist{'s' if one else ''}"
                                  f" and {'was' if one else 'were'} not written by this command; pass --force to "
                                  "replace, or choose another file")
            try:
                yield path
            except BaseException:
                for target in targets:
                    if target not in existing:
                        _remove(target)
                raise
    except BaseException:
        _remove_dirs(created)  # after the lock file is gone
        raise


def claim_dir(path: str | os.PathLike, run: type[RunDir], *, force: bool = False, flag: str = "--out",
              command: str = "this command", keep_on_failure: bool = False) -> Iterator[None]:
    """Claim the output directory ``path`` of a ``run``-type run directory for one command (locked).

    Refused: a ``path`` that is not a directory, and, unless ``force``, a
    directory holding files ``run`` never writes (a user's own folder named by
    mistake) -- an empty directory or one of ``run``'s kind (to resume or, with
    the command's own check, to replace) is accepted.  A directory this claim
    created is removed again when the command fails, unless ``keep_on_failure``
    (training: its checkpoints are what a re-run resumes from).
    """
    path = Path(path)
    found = _lstat(path)
    if found is not None and not path.is_dir():
        raise OutputError(f"{flag} {path}: is {_kind(found.st_mode)}, not a directory; give a directory "
                          "(created if missing)")
    foreign = sorted(p.name for p in path.iterdir() if not run.owns(p.name) and p.name != LOCK
                     and not p.name.startswith(".")) if found is not None else []
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise OutputError(f"{flag} {path}: holds files {command} does not write ({shown}); choose an empty or "
                          "new directory, or pass --force to write into it anyway")
    return _claimed_dir(path, found is None and not keep_on_failure)


@contextlib.contextmanager
def _claimed_dir(path: Path, created: bool) -> Iterator[None]:
    try:
        with locked(path):
            yield
    except Exception:
        if created:
            _remove(path)
        raise


def _missing_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; return the ones created (innermost first)."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    try:
        for folder in reversed(missing):
            folder.mkdir()
    except OSError as exc:
        _remove_dirs(missing)
        raise OutputError(f"cannot write {describe_os_error(exc, folder)}") from None
    return missing


def _remove_dirs(folders: list[Path]) -> None:
    for folder in folders:  # innermost first; only while empty
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _lock_file(lock: Path, flag: str, path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created, and removed again afterwards).

    After the lock is taken the file must still be the one at ``lock``: a
    second command that opened it just before the first removed it would
    otherwise hold a lock nobody else sees.
    """
    import fcntl

    try:
        handle = open(lock, "a+")
    except OSError as exc:
        raise OutputError(f"cannot write {describe_os_error(exc, lock)}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(handle.fileno()).st_ino != os.stat(lock).st_ino:
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            raise OutputError(f"{flag} {path}: another tfadvq command is writing it; wait for it or choose "
                              "another file") from None
        try:
            yield
        finally:
            _remove(lock)
            fcntl.flock(handle, fcntl.LOCK_UN)


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

    @classmethod
    def names(cls) -> set[str]:
        """The names of the files and directories this kind of run directory holds."""
        names = {RECORD, ATTEMPT}
        for klass in cls.__mro__:
            names |= {v.name for v in vars(klass).values() if isinstance(v, Entry)}
            names |= {v for k, v in vars(klass).items() if k.isupper() and isinstance(v, str)}
        return names

    @classmethod
    def owns(cls, name: str) -> bool:
        """True if an entry ``name`` inside such a directory is one tfadvq writes there."""
        return name in cls.names()


def load_head(path: Path) -> list[Any]:
    """The AAM head weights saved at ``path`` (a train run's or a fine-tune's ``head.npz``)."""
    import numpy as np

    try:
        with np.load(path) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the AAM head ({exc})") from None


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

    EVAL_PREFIX = "eval_"  # `tfadvq eval` writes its EvalDir here by default: eval_<trials name>

    @classmethod
    def owns(cls, name: str) -> bool:
        return super().owns(name) or name.startswith(cls.EVAL_PREFIX)

    def checkpoint_files(self) -> list[Path]:
        return sorted(self.checkpoints.glob("epoch_*.weights.h5"))

    def load_history(self) -> dict[str, list[float]]:
        return read_json(self.history) if self.history.is_file() else {}

    def record_epoch(self, epoch: int, logs: dict[str, Any]) -> Path:
        """Add the metrics of ``epoch`` (0-based) to ``history.json``, each epoch once.

        Written after every epoch, so a run resumed after a kill continues the
        curve instead of starting a new one: whatever was recorded for
        ``epoch`` and later (an epoch re-run because the kill came before its
        resume state was saved) is replaced.
        """
        history = {key: values[:epoch] for key, values in self.load_history().items() if values[:epoch]}
        for key, value in logs.items():
            values = history.setdefault(key, [])
            values += [None] * (epoch - len(values))  # a metric that was not logged before
            values.append(float(value))
        return write_json(self.history, history)

    def save_head(self, weights: list[Any]) -> Path:
        import numpy as np

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, *weights)

        return atomic_save_with(self.head, save)

    def load_head(self) -> list[Any]:
        return load_head(self.head)

    @classmethod
    def of_model(cls, model: str | os.PathLike, quantized: bool = False) -> TrainDir:
        """The run directory of ``model`` (a model file or any run folder, see :func:`model_file`): the
        folder its training config, head and threshold lie in, with ``.model`` the file chosen."""
        path = model_file(model, quantized)
        return cls(path.parent) if path.name == cls.MODEL else _ModelFileDir(path.parent, path.name)


SAVED_MODEL = "saved_model.pb"  # what makes a folder a TensorFlow SavedModel


def model_file(path: str | os.PathLike, quantized: bool = False) -> Path:
    """The Keras model a user's ``--model`` names: the file (or SavedModel folder) itself, or the model
    inside any run folder tfadvq writes.

    A train folder gives its ``model.keras``; a quantize, mixed or MSFT folder
    its plain (centroid-valued) model, or with ``quantized`` its tfmot-wrapped
    one (what ``convert`` strips and fine-tunes continue from); a recipe stage
    folder whatever Keras model its record names (a ``convert`` stage: the
    plain model it converted).  A folder holding none (a recipe work folder, a
    ``.tflite``-only conversion, a train run not finished) is refused, saying
    what it is and what to give instead.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ConfigError(f"{path}: no such model file or folder (give a .keras/.h5 file, a SavedModel "
                          "folder or a folder tfadvq wrote: train, quantize, mixed, msft)")
    if (path / SAVED_MODEL).is_file():
        return path
    order = (QuantDir.wrapped.name, TrainDir.MODEL, QuantDir.plain.name) if quantized else \
        (TrainDir.MODEL, QuantDir.plain.name, QuantDir.wrapped.name)
    for name in order:
        if (path / name).is_file():
            return path / name
    recorded = _recorded_model(path / RECORD, quantized)
    if recorded is not None:
        return recorded
    raise ConfigError(f"{path}: {_why_no_model(path)}")


_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def _recorded_model(record: Path, quantized: bool) -> Path | None:
    """The Keras model a recipe stage's record names as an output (None if it names none)."""
    try:
        outputs = json.loads(record.read_text()).get("outputs", {})
    except (OSError, ValueError, AttributeError):
        return None
    for key in ("wrapped", "model", "plain") if quantized else ("model", "plain", "wrapped"):
        value = outputs.get(key) if isinstance(outputs, dict) else None
        if isinstance(value, str) and Path(value).suffix in _KERAS_SUFFIXES and Path(value).exists():
            return Path(value)
    return None


def _why_no_model(path: Path) -> str:
    """What a folder without a Keras model is, and what to give instead (for the error message)."""
    stages = sorted(p.name for p in path.iterdir() if (p / RECORD).is_file()) if path.is_dir() else []
    if stages:
        return (f"a recipe work folder; give one of its stage folders that holds a model "
                f"({', '.join(stages[:6])}{', ...' if len(stages) > 6 else ''})")
    if any(path.glob("*.tflite")):
        return ("holds .tflite files but no Keras model (a conversion); give the quantize folder it was "
                "converted from")
    if (path / TrainDir.checkpoints.name).is_dir():
        return f"a train folder without {TrainDir.MODEL} (training not finished?); run `tfadvq train` again"
    return (f"holds no model: expected {TrainDir.MODEL} (train), {QuantDir.plain.name} / "
            f"{QuantDir.wrapped.name} (quantize, mixed, msft) or {SAVED_MODEL} (SavedModel)")


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
    sensitivity_plot = Entry("sensitivity.png", "Sensitivity and chosen bits per weight tensor.")
    convergence_plot = Entry("convergence.png", "How each Hutchinson trace estimate converged.")


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
    """A corpus in the layout of docs/architecture.md: what ``tfadvq data synth`` and ``tfadvq data real``
    write and :func:`tfadvq.voxceleb.load_corpus` reads (the one place its names are spelled)."""

    lists = Entry("lists")
    trials = Entry("trials/test.txt", "The test trials, VoxCeleb format ``1|0 enroll test``.")
    trial_sources = Entry("trials/test_sources.txt",
                          "Each trial's ``enroll test source language`` (the group it was drawn in).")
    manifest = Entry("corpus.json")
    readme = Entry("README.md", "How the speaker labels were derived, their caveats, the licences.")
    marker = Entry(".real.json", "The settings of a build in progress (a re-run must match them).")
    synth_marker = Entry(".synth.json", "A generated corpus's settings and voices (a re-run must match them).")

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


class SessionDir(RunDir):
    """A scripted exchange with the firmware on QEMU (the ``firmware_session`` stage)."""

    audio = Entry("audio", "Short-named copies of the recordings the device reads (semihosting paths).")
    commands = Entry("commands.txt", "The protocol lines sent to the device.")
    transcript = Entry("transcript.txt", "Each command, the device's reply and the Python TFLM score beside it.")
    session = Entry("session.json")
    build = Entry("build", "The firmware build (objects and ELF).")
