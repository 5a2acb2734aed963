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
    """Check the flags, run :func:`tfadvq.clean_lists.write_clean_lists` and print the summary."""
    from tfadvq.audio_limits import AudioLimits
    from tfadvq.clean_lists import data_set, write_clean_lists
    from tfadvq.errors import ConfigError
    from tfadvq.report import print_table

    if wav_scp is not None and utt2spk is None:
        raise ConfigError("--wav-scp needs --utt2spk (Kaldi key -> speaker list)")
    done = write_clean_lists(data_set(wav_roots, wav_scp, utt2spk, corpus, split),
                             AudioLimits(min_seconds=min_seconds), out, trials_path, force)
    print_table([done.row], title="tfadvq lists")
    if done.bad:
        print_table([{"file": p, "reason": r} for p, r in done.bad[:20]],
                    title=f"skipped files ({len(done.bad)}; all in {done.out.bad})")
    return 0
