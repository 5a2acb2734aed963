"""``tfadvq lists``: check every audio file of a data set and write clean Kaldi lists.

The data-preparation step for real data (VoxCeleb trees, ``wav.scp``/``utt2spk``
lists, a generated corpus): every file is decoded; unusable ones (missing,
empty, corrupt, NaN/inf, too short, undecodable m4a) are skipped and listed
with their reason in ``OUT/bad.txt``; the rest go to ``OUT/wav.scp`` and
``OUT/utt2spk``.  With ``--trials`` the trial list is checked against the data
and written to ``OUT/trials.txt`` without the trials that touch a bad file.

Examples::

    tfadvq lists --wav-root vox1/dev/wav vox1/test/wav --trials list_test_hard2.txt --out lists/vox1
    tfadvq lists --wav-scp data/wav.scp --utt2spk data/utt2spk --out lists/clean
"""
from __future__ import annotations

import argparse
from pathlib import Path


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
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="shortest usable audio (default 0.5 s)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.audio import validate_files
    from tfadvq.errors import ConfigError
    from tfadvq.report import print_table
    from tfadvq.voxceleb import Trials, read_trials, write_kaldi_lists, write_trials

    if args.wav_scp is not None and args.utt2spk is None:
        raise ConfigError("--wav-scp needs --utt2spk (Kaldi key -> speaker list)")
    utterances = _utterances(args)
    good, bad = validate_files([u.path for u in utterances], min_seconds=args.min_seconds)
    kept_paths = set(good)
    kept = [u for u in utterances if u.path in kept_paths]
    args.out.mkdir(parents=True, exist_ok=True)
    write_kaldi_lists(kept, args.out / "wav.scp", args.out / "utt2spk")
    (args.out / "bad.txt").write_text("".join(f"{path}\t{reason}\n" for path, reason in bad))
    row = {"utterances": len(utterances), "speakers": len({u.speaker for u in utterances}),
           "kept": len(kept), "bad": len(bad)}
    if args.trials is not None:
        trials = read_trials(args.trials, known_keys={u.key for u in utterances})
        usable = {u.key for u in kept}
        keep = [a in usable and b in usable for a, b in zip(trials.enroll, trials.test)]
        clean = Trials(trials.labels[keep],
                       [k for k, ok in zip(trials.enroll, keep) if ok],
                       [k for k, ok in zip(trials.test, keep) if ok])
        write_trials(clean, args.out / "trials.txt")
        row.update(trials=len(trials), trials_kept=len(clean))
    row["out"] = str(args.out)
    print_table([row], title="tfadvq lists")
    if bad:
        print_table([{"file": p, "reason": r} for p, r in bad[:20]],
                    title=f"skipped files ({len(bad)}; all in {args.out / 'bad.txt'})")
    return 0


def _utterances(args: argparse.Namespace) -> list:
    from tfadvq.errors import DataError
    from tfadvq.voxceleb import load_corpus, read_kaldi_lists, scan_tree

    if args.corpus is not None:
        corpus = load_corpus(args.corpus, check_files=False)
        return corpus.train if args.split == "dev" else corpus.test
    if args.wav_scp is not None:
        return read_kaldi_lists(args.wav_scp, args.utt2spk, check_files=False)
    utterances = [u for root in args.wav_root for u in scan_tree(root)]
    keys = [u.key for u in utterances]
    if len(set(keys)) != len(keys):
        raise DataError(f"--wav-root {' '.join(map(str, args.wav_root))}: the trees share "
                        "utterance keys; pass trees with disjoint speakers")
    return utterances
