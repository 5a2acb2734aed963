"""Utterance lists and trial lists: VoxCeleb trees, Kaldi lists, the generated corpus.

Everything downstream (pipeline, scoring) works on :class:`Utterance` records
and :class:`Trials`; this module is the only place that knows on-disk layouts:

* VoxCeleb1/VoxCeleb2 trees ``<root>/<speaker id>/<video id>/<nnnnn>.wav``
  (:func:`scan_tree`); the utterance key is the path relative to the root,
  exactly as the official trial lists spell it.  VoxCeleb2 is distributed as
  m4a/AAC (``dev/aac/...``), which tfadvq cannot decode (tfadvq.audio): the error
  says how to convert it with ffmpeg.
* Kaldi ``wav.scp`` / ``utt2spk`` (:func:`read_kaldi_lists`).
* Trial lists (:func:`read_trials`): VoxCeleb format ``1 enroll test`` (the
  official VoxCeleb1-O/E/H lists and their cleaned versions, see
  :data:`VOXCELEB1_TRIALS`) and Kaldi format ``enroll test target|nontarget``.
* The generated corpus of ``tfadvq data synth`` (:func:`load_corpus`), laid out
  as in docs/architecture.md.

Malformed or empty lists and keys that are not in the tree raise
:class:`~tfadvq.errors.DataError` naming the file and line.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Collection, Iterable
from pathlib import Path

import numpy as np

from tfadvq.audio_limits import SAMPLE_RATE
from tfadvq.errors import DataError
from tfadvq.rundir import CorpusDir

#: Official VoxCeleb1 trial lists (file names as published); "-clean" are the
#: cleaned versions.  O uses only VoxCeleb1 test speakers; E and H draw on all
#: of VoxCeleb1, so their keys must be looked up in dev + test trees together.
VOXCELEB1_TRIALS = {
    "O": "veri_test.txt",
    "O-clean": "veri_test2.txt",
    "E": "list_test_all.txt",
    "E-clean": "list_test_all2.txt",
    "H": "list_test_hard.txt",
    "H-clean": "list_test_hard2.txt",
}

_KALDI_LABELS = {"target": 1, "nontarget": 0}
_AAC_SUFFIXES = (".m4a", ".aac")


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One recording: ``key`` as in trial lists, ``path`` to the audio, ``speaker`` id."""

    key: str
    path: str
    speaker: str


@dataclasses.dataclass
class Trials:
    """A trial list: ``labels[i]`` is 1 if ``enroll[i]`` and ``test[i]`` share a speaker."""

    labels: np.ndarray  # int8 [n]
    enroll: list[str]
    test: list[str]
    duplicates: int = 0  # exact duplicate lines :func:`read_trials` dropped

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, keep: np.ndarray) -> "Trials":
        """The trials where the boolean mask ``keep`` (one entry per trial) is true, in order."""
        keep = np.asarray(keep, bool)
        if keep.shape != (len(self),):
            raise DataError(f"trials: a mask of shape {keep.shape} for {len(self)} trials")
        return Trials(self.labels[keep], [k for k, ok in zip(self.enroll, keep) if ok],
                      [k for k, ok in zip(self.test, keep) if ok], self.duplicates)

    def keys(self) -> set[str]:
        """Every utterance key the trials mention (what must be embedded)."""
        return set(self.enroll) | set(self.test)


@dataclasses.dataclass
class Corpus:
    """A generated corpus: training utterances, held-out test utterances and their trials."""

    train: list[Utterance]
    test: list[Utterance]
    trials: Trials


def tree_conversion_command(aac_root: str | os.PathLike) -> str:
    """Shell command converting every m4a under ``aac_root`` to a 16 kHz mono wav beside it."""
    return (
        f"find {aac_root} -name '*.m4a' -print0 | xargs -0 -P 2 -I{{}} "
        f"sh -c 'ffmpeg -nostdin -v error -y -i \"$1\" -ac 1 -ar {SAMPLE_RATE} \"${{1%.m4a}}.wav\"' _ {{}}"
    )


def scan_tree(wav_root: str | os.PathLike) -> list[Utterance]:
    """All ``<speaker>/<video>/<utt>.wav`` under ``wav_root``, sorted by key.

    Raises :class:`DataError` if the root is missing, holds no wav files, or
    holds m4a/aac files without a converted wav beside them.
    """
    root = Path(wav_root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; expected a VoxCeleb-style tree "
                        "<root>/<speaker>/<video>/<utt>.wav")
    wavs = sorted(root.glob("*/*/*.wav"))
    unconverted = [p for s in _AAC_SUFFIXES for p in root.glob(f"*/*/*{s}")
                   if not p.with_suffix(".wav").exists()]
    if unconverted:
        raise DataError(
            f"{root}: {len(unconverted)} m4a/aac files (e.g. {unconverted[0]}) have no wav "
            "version; tfadvq cannot decode AAC. Convert them once with:\n  "
            + tree_conversion_command(root)
        )
    if not wavs:
        raise DataError(f"{root}: no <speaker>/<video>/<utt>.wav files found")
    return [Utterance(p.relative_to(root).as_posix(), str(p), p.parts[-3]) for p in wavs]


def read_kaldi_lists(
    wav_scp: str | os.PathLike,
    utt2spk: str | os.PathLike,
    root: str | os.PathLike | None = None,
    check_files: bool = True,
) -> list[Utterance]:
    """Utterances from Kaldi ``wav.scp`` (``key path``) and ``utt2spk`` (``key speaker``).

    Relative paths are resolved against ``root`` (default: the directory of
    ``wav_scp``).  Piped entries (``key cmd ... |``) are rejected: tfadvq reads
    files.  Both lists must name the same keys; with ``check_files`` every
    audio file must exist.  Order follows ``wav_scp``.
    """
    wav_scp, utt2spk = Path(wav_scp), Path(utt2spk)
    base = Path(root) if root is not None else wav_scp.parent
    paths = _read_pairs(wav_scp, "<key> <path>")
    speakers = _read_pairs(utt2spk, "<key> <speaker>")
    utterances = []
    for key, (value, line) in paths.items():
        where = f"{wav_scp}:{line}"
        if value.endswith("|"):
            raise DataError(f"{where}: piped command entries are not supported; "
                            "write the audio to files and list their paths")
        if key not in speakers:
            raise DataError(f"{where}: key {key!r} has no speaker in {utt2spk}")
        path = base / value
        if check_files and not path.is_file():
            raise DataError(f"{where}: audio file {path} for key {key!r} does not exist")
        utterances.append(Utterance(key, str(path), speakers[key][0]))
    orphans = [(k, line) for k, (_, line) in speakers.items() if k not in paths]
    if orphans:
        key, line = orphans[0]
        raise DataError(f"{utt2spk}:{line}: key {key!r} is not in {wav_scp} "
                        f"({len(orphans)} such keys)")
    return utterances


def read_trials(path: str | os.PathLike, known_keys: Collection[str] | None = None) -> Trials:
    """Read a VoxCeleb (``1 enroll test``) or Kaldi (``enroll test target``) trial list.

    With ``known_keys`` (e.g. the keys of the scanned tree) every key must be
    among them.  A UTF-8 byte-order mark is ignored.  A list that cannot mean
    what it says is an error (:class:`DataError` naming the file and the
    lines): a pair labelled both 1 and 0 (in either order: a speaker match is
    symmetric), or a trial of an utterance against itself (a perfect score
    that measures nothing).  An exact repeat of an earlier line only counts
    that trial twice: it is dropped, counted in ``Trials.duplicates`` and
    reported with a :class:`UserWarning`.  The same pair in the other order
    is a different trial of the list and is kept.
    """
    path = Path(path)
    labels, enroll, test = [], [], []
    first: dict[tuple[str, str], tuple[int, int]] = {}  # unordered pair -> (label, line)
    seen: dict[tuple[str, str], int] = {}  # ordered pair -> line
    repeats: list[tuple[int, int]] = []
    for line, fields in _lines(path):
        where = f"{path}:{line}"
        if len(fields) != 3:
            raise DataError(f"{where}: expected '<1|0> <enroll> <test>' or "
                            f"'<enroll> <test> <target|nontarget>', got {len(fields)} fields")
        if fields[0] in ("0", "1"):
            label, a, b = int(fields[0]), fields[1], fields[2]
        elif fields[2] in _KALDI_LABELS:
            label, a, b = _KALDI_LABELS[fields[2]], fields[0], fields[1]
        else:
            raise DataError(f"{where}: no trial label; the first field must be 1 or 0 "
                            f"(VoxCeleb) or the last target/nontarget (Kaldi), got {' '.join(fields)!r}")
        if known_keys is not None:
            for key in (a, b):
                if key not in known_keys:
                    raise DataError(f"{where}: utterance {key!r} is not in the audio tree/list")
        if a == b:
            raise DataError(f"{where}: trial compares {a!r} with itself; enrollment and test "
                            "must be different recordings")
        pair = (min(a, b), max(a, b))
        if pair in first and first[pair][0] != label:
            raise DataError(f"{where}: {a} {b} is labelled {label}, but {first[pair][0]} on line "
                            f"{first[pair][1]}; a pair is either the same speaker or not")
        first.setdefault(pair, (label, line))
        if (a, b) in seen:
            repeats.append((line, seen[(a, b)]))
            continue
        seen[(a, b)] = line
        labels.append(label)
        enroll.append(a)
        test.append(b)
    if repeats:
        line, original = repeats[0]
        warnings.warn(f"{path}: dropped {len(repeats)} duplicate trial line(s) (e.g. line {line} "
                      f"repeats line {original})", UserWarning, stacklevel=2)
    return Trials(np.asarray(labels, np.int8), enroll, test, len(repeats))


def write_trials(trials: Trials, path: str | os.PathLike) -> None:
    """Write ``trials`` in VoxCeleb format (``1|0 enroll test``), creating the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = (f"{int(label)} {a} {b}\n" for label, a, b in zip(trials.labels, trials.enroll, trials.test))
    path.write_text("".join(rows))


def write_kaldi_lists(
    utterances: Iterable[Utterance], wav_scp: str | os.PathLike, utt2spk: str | os.PathLike
) -> None:
    """Write ``wav.scp`` and ``utt2spk`` (absolute paths) that :func:`read_kaldi_lists` reads back."""
    utterances = list(utterances)
    for path, rows in ((wav_scp, (f"{u.key} {Path(u.path).resolve()}\n" for u in utterances)),
                       (utt2spk, (f"{u.key} {u.speaker}\n" for u in utterances))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("".join(rows))


def load_corpus(directory: str | os.PathLike, check_files: bool = True) -> Corpus:
    """Load a corpus written by ``tfadvq data synth`` (layout in docs/architecture.md).

    A corpus without dev lists at all (``tfadvq data real``: evaluation only) has an empty ``train``.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root}: no such corpus directory (make one with `tfadvq data synth`)")
    layout = CorpusDir(root)
    dev = (layout.wav_scp("dev"), layout.utt2spk("dev"))
    train = (read_kaldi_lists(*dev, root, check_files) if any(p.exists() for p in dev) else [])
    test = read_kaldi_lists(layout.wav_scp("test"), layout.utt2spk("test"), root, check_files)
    overlap = {u.speaker for u in train} & {u.speaker for u in test}
    if overlap:
        raise DataError(f"{layout.lists}: speakers {sorted(overlap)[:5]} are in both dev and test lists; "
                        "train and test speakers must be disjoint")
    trials = read_trials(corpus_trials_path(root), {u.key for u in test})
    return Corpus(train, test, trials)


def corpus_trials_path(directory: str | os.PathLike) -> Path:
    """The trial list of a corpus directory (its test part's trials)."""
    return CorpusDir(Path(directory)).trials


def _read_pairs(path: Path, form: str) -> dict[str, tuple[str, int]]:
    """``key -> (rest of line, line number)`` of a two-column Kaldi list."""
    pairs: dict[str, tuple[str, int]] = {}
    for line, fields in _lines(path, maxsplit=1):
        if len(fields) != 2:
            raise DataError(f"{path}:{line}: expected '{form}', got {' '.join(fields)!r}")
        key, value = fields
        if key in pairs:
            raise DataError(f"{path}:{line}: duplicate key {key!r} (first on line {pairs[key][1]})")
        pairs[key] = (value.strip(), line)
    return pairs


def _lines(path: Path, maxsplit: int = -1) -> Iterable[tuple[int, list[str]]]:
    """Non-blank lines as ``(1-based line number, fields)``; a missing or empty file raises.

    Lists are UTF-8; a byte-order mark (as Windows editors write) is dropped
    rather than read as part of the first field.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such list file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc.reason})") from None
    rows = [(i, raw.split(maxsplit=maxsplit)) for i, raw in enumerate(text.splitlines(), 1)
            if raw.strip()]
    if not rows:
        raise DataError(f"{path}: list is empty")
    return rows


__all__ = [
    "VOXCELEB1_TRIALS",
    "Corpus",
    "Trials",
    "Utterance",
    "corpus_trials_path",
    "load_corpus",
    "read_kaldi_lists",
    "read_trials",
    "scan_tree",
    "tree_conversion_command",
    "write_kaldi_lists",
    "write_trials",
]
