"""``tfadvq lists``: check every audio file of a data set and write clean Kaldi lists.

The data-preparation step for real data (VoxCeleb trees, ``wav.scp``/``utt2spk``
lists, a generated corpus): every file goes through the checker the training
and evaluation pipelines use (tfadvq.audio.validate_files: the same reader,
formats and rates, plus the device's too-short / silent / clipped checks);
unusable ones (missing, empty, truncated, not audio, NaN/inf, too short,
silent, clipped, undecodable m4a) are skipped and listed with their reason in
``OUT/bad.txt``; the rest go to ``OUT/wav.scp`` and ``OUT/utt2spk``.  With
``--trials`` the trial list is checked against the data (contradictory labels
and self-trials are errors, exact duplicates are dropped and counted) and
written to ``OUT/trials.txt`` without the trials that touch a bad file.

Examples::

    tfadvq lists --wav-root vox1/dev/wav vox1/test/wav --trials list_test_hard2.txt --out lists/vox1
    tfadvq lists --wav-scp data/wav.scp --utt2spk data/utt2spk --out lists/clean
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfadvq.audio_limits import MIN_SECONDS
from tfadvq.config import number


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "lists", help="check audio files, skip and report bad ones, write clean Kaldi lists",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav-root", type=Path, nargs="+",
                        help="VoxCeleb-style tree(s) <root>/<speaker>/<video>/<utt>.wav")
    source.add_argument("--wav-scp", type=Path, help="Kaldi wav.scp (needs --utt2spk)")
    source.add_argument("--corpus", type=Path, help="generated corpus dir (tfadvq data synth)")
    parser.add_argument("--utt2spk", type=Path, help="Kaldi utt2spk for --wav-scp")
    parser.add_argument("--split", choices=["dev", "test"], default="dev",
                        help="which part of --corpus to check (default dev)")
    parser.add_argument("--trials", type=Path, help="trial list to check and filter")
    parser.add_argument("--min-seconds", type=number(float, 0.0), default=MIN_SECONDS,
                        help=f"shortest usable audio (default {MIN_SECONDS} s, the device's)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--force", action="store_true", help="replace the lists already in --out")
    parser.set_defaults(func=lambda a: run(a.out, a.wav_root, a.wav_scp, a.utt2spk, a.corpus, a.split,
                                           a.trials, a.min_seconds, a.force))


def run(out: Path, wav_roots: list[Path] | None = None, wav_scp: Path | None = None,
        utt2spk: Path | None = None, corpus: Path | None = None, split: str = "dev",
        trials_path: Path | None = None, min_seconds: float = MIN_SECONDS, force: bool = False) -> int:
    from tfadvq import rundir
    from tfadvq.audio import validate_files
    from tfadvq.audio_limits import AudioLimits
    from tfadvq.errors import ConfigError

    if wav_scp is not None and utt2spk is None:
        raise ConfigError("--wav-scp needs --utt2spk (Kaldi key -> speaker list)")
    utterances = _utterances(wav_roots, wav_scp, utt2spk, corpus, split)
    good, bad = validate_files([u.path for u in utterances], AudioLimits(min_seconds=min_seconds))
    kept_paths = set(good)
    kept = [u for u in utterances if u.path in kept_paths]
    lists = rundir.ListsDir(out)
    with rundir.claim_dir(out, rundir.ListsDir, force=force, command="tfadvq lists"):
        if lists.wav_scp.exists() and not force:
            raise ConfigError(f"--out {out}: holds lists already ({lists.wav_scp}); pass --force to replace "
                              "them or choose another directory")
        return _write(lists, utterances, kept, bad, trials_path)


def _write(lists, utterances, kept, bad, trials_path: Path | None) -> int:
    import numpy as np

    from tfadvq import rundir
    from tfadvq.report import print_table
    from tfadvq.voxceleb import read_trials, write_kaldi_lists, write_trials

    out = lists.path
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
    row["out"] = str(out)
    print_table([row], title="tfadvq lists")
    if bad:
        print_table([{"file": p, "reason": r} for p, r in bad[:20]],
                    title=f"skipped files ({len(bad)}; all in {lists.bad})")
    return 0


def _utterances(wav_roots: list[Path] | None, wav_scp: Path | None, utt2spk: Path | None,
                corpus: Path | None, split: str) -> list:
    from tfadvq.errors import DataError
    from tfadvq.voxceleb import load_corpus, read_kaldi_lists, scan_tree

    if corpus is not None:
        loaded = load_corpus(corpus, check_files=False)
        return loaded.train if split == "dev" else loaded.test
    if wav_scp is not None:
        return read_kaldi_lists(wav_scp, utt2spk, check_files=False)
    utterances = [u for root in wav_roots for u in scan_tree(root)]
    keys = [u.key for u in utterances]
    if len(set(keys)) != len(keys):
        raise DataError(f"--wav-root {' '.join(map(str, wav_roots))}: the trees share "
                        "utterance keys; pass trees with disjoint speakers")
    return utterances
