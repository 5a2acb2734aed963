"""Checking a data set and writing clean Kaldi lists: what ``tfadvq lists`` runs.

Every file goes through the checker training and evaluation use
(:func:`tfadvq.audio.validate_files`: the one reader, plus the device's too-short / silent / clipped
checks); unusable files are skipped into ``bad.txt`` with their reason, the rest go to ``wav.scp`` and
``utt2spk`` of a :class:`~tfadvq.rundir.ListsDir`; a trial list given is checked against the data and
written without the trials that touch a bad file.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfadvq import rundir
from tfadvq.audio_limits import AudioLimits
from tfadvq.errors import ConfigError, DataError
from tfadvq.voxceleb import Utterance


@dataclasses.dataclass
class CleanLists:
    """What :func:`write_clean_lists` wrote: its summary row and the skipped files ``(path, reason)``."""

    row: dict[str, Any]
    bad: list[tuple[str, str]]
    out: rundir.ListsDir


def data_set(wav_roots: Sequence[Path] | None = None, wav_scp: Path | None = None, utt2spk: Path | None = None,
             corpus: Path | None = None, split: str = "dev") -> list[Utterance]:
    """The utterances of a data set: a generated corpus's ``split`` part, Kaldi lists, or wav trees
    (whose keys must not collide)."""
    from tfadvq.voxceleb import load_corpus, read_kaldi_lists, scan_tree

    if corpus is not None:
        loaded = load_corpus(corpus, check_files=False)
        return loaded.train if split == "dev" else loaded.test
    if wav_scp is not None:
        return read_kaldi_lists(wav_scp, utt2spk, check_files=False)
    utterances = [u for root in wav_roots or () for u in scan_tree(root)]
    keys = [u.key for u in utterances]
    if len(set(keys)) != len(keys):
        raise DataError(f"--wav-root {' '.join(map(str, wav_roots))}: the trees share "
                        "utterance keys; pass trees with disjoint speakers")
    return utterances


def write_clean_lists(utterances: Sequence[Utterance], limits: AudioLimits, out: str | Path,
                      trials_path: Path | None = None, force: bool = False) -> CleanLists:
    """Check every file of ``utterances`` and write the clean lists (module doc) into ``out``; lists
    already there are replaced only with ``force``."""
    from tfadvq.audio import validate_files
    from tfadvq.voxceleb import read_trials, write_kaldi_lists, write_trials

    good, bad = validate_files([u.path for u in utterances], limits)
    kept_paths = set(good)
    kept = [u for u in utterances if u.path in kept_paths]
    lists = rundir.ListsDir(out)
    with rundir.claim_dir(out, rundir.ListsDir, force=force, command="tfadvq lists"):
        if lists.wav_scp.exists() and not force:
            raise ConfigError(f"--out {out}: holds lists already ({lists.wav_scp}); pass --force to replace "
                              "them or choose another directory")
        write_kaldi_lists(kept, lists.wav_scp, lists.utt2spk)
        rundir.write_bad_files(lists.bad, bad)
        row = {"utterances": len(utterances), "speakers": len({u.speaker for u in utterances}),
               "kept": len(kept), "bad": len(bad)}
        if trials_path is not None:
            trials = read_trials(trials_path, known_keys={u.key for u in utterances})
            usable = {u.key for u in kept}
            clean = trials.select(np.array([a in usable and b in usable
                                            for a, b in zip(trials.enroll, trials.test)], bool))
            write_trials(clean, lists.trials)
            row.update(trials=len(trials), trials_kept=len(clean), duplicate_trials=trials.duplicates)
    row["out"] = str(lists.path)
    return CleanLists(row, bad, lists)
