"""``tfadvq data synth``: generate the VoxCeleb-like speaker corpus (the embedded default data).

Each speaker is one fixed voice (TTS engine voice + WORLD re-synthesis), every
utterance its own recording channel; see tfadvq/corpus/ for the details.
Re-running the same command completes a partial corpus.

Example::

    tfadvq data synth --out data/synth --seed 0            # default: 240 + 40 speakers x 12 utts of 2-4 s
    tfadvq data synth --speakers 20 --test-speakers 5 --utts 6 --out /tmp/small
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    from tfadvq.corpus.synth import SynthConfig

    defaults = SynthConfig()
    parser = subparsers.add_parser("data", help="generate data sets (data synth)",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = sub.add_parser("synth", help="generate the TTS speaker corpus",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--speakers", type=int, default=defaults.speakers,
                       help=f"training speakers (default {defaults.speakers})")
    synth.add_argument("--test-speakers", type=int, default=defaults.test_speakers,
                       help=f"held-out test speakers (default {defaults.test_speakers})")
    synth.add_argument("--utts", type=int, default=defaults.utts,
                       help=f"utterances per speaker (default {defaults.utts})")
    synth.add_argument("--out", type=Path, required=True, help="output corpus directory")
    synth.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 0)")
    synth.add_argument("--workers", type=int,
                       help="worker processes (default: the usable CPU cores; 1 = no subprocesses)")
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
    from tfadvq.report import print_table

    config = SynthConfig(speakers=args.speakers, test_speakers=args.test_speakers,
                         utts=args.utts, seed=args.seed)
    result = synthesize_corpus(args.out, config, workers=args.workers)
    print_table(result.rows(), title=f"tfadvq data synth ({args.out})")
    if result.failed:
        print_table([{"utterance": k, "reason": r} for k, r in result.failed[:20]],
                    title=f"failed utterances ({len(result.failed)}; all in {args.out / 'corpus.json'}; "
                          "re-run to retry them)")
    return 0
