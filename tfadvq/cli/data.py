"""``tfadvq data synth`` / ``tfadvq data real``: the speaker corpora (generated, and real speech).

``data synth`` generates the VoxCeleb-like corpus (the embedded default data).

Each speaker is one fixed voice (TTS engine voice + WORLD re-synthesis), every
utterance its own recording channel; see tfadvq/corpus/ for the details.
Re-running the same command completes a partial corpus.

Example::

    tfadvq data synth --out data/synth --seed 0            # default: 240 + 40 speakers x 12 utts of 2-4 s
    tfadvq data synth --speakers 20 --test-speakers 5 --utts 6 --out /tmp/small

``data real`` builds an evaluation corpus of real people from installed Debian packages
(tfadvq/corpus/real_sources.py: asterisk prompts, Tux Paint readers, Hedgewars voices) in the
same layout, test part only (``--train-speakers``: those speakers' clips form a dev part to train
on instead); see tfadvq/corpus/real.py and the README it writes::

    tfadvq data real --out data/real                       # every source, <= 100 clips per speaker
    tfadvq data real --out /tmp/real --sources asterisk --max-clips 20
    tfadvq data real --out /tmp/queen --sources amazon-queen --train-speakers queen-joe queen-bob
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfadvq.config import number


def register(subparsers) -> None:
    from tfadvq.corpus.synth import SynthConfig

    defaults = SynthConfig()
    parser = subparsers.add_parser("data", help="build data sets (data synth, data real)",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    synth = sub.add_parser("synth", help="generate the TTS speaker corpus",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--speakers", type=number(int, 1), default=defaults.speakers,
                       help=f"training speakers (default {defaults.speakers})")
    synth.add_argument("--test-speakers", type=number(int, 1), default=defaults.test_speakers,
                       help=f"held-out test speakers (default {defaults.test_speakers})")
    synth.add_argument("--utts", type=number(int, 1), default=defaults.utts,
                       help=f"utterances per speaker (default {defaults.utts})")
    synth.add_argument("--out", type=Path, required=True, help="output corpus directory")
    synth.add_argument("--seed", type=number(int, 0), default=defaults.seed, help="random seed (default 0)")
    synth.add_argument("--workers", type=number(int, 1),
                       help="worker processes (default: the usable CPU cores; 1 = no subprocesses)")
    synth.set_defaults(func=run_synth)
    _register_real(sub)


def _register_real(sub) -> None:
    from tfadvq.corpus.real import RealConfig
    from tfadvq.corpus.real_sources import EXTRA_SOURCES

    defaults = RealConfig()
    real = sub.add_parser("real", help="build the real-speech evaluation corpus from Debian packages",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    real.add_argument("--out", type=Path, required=True, help="output corpus directory")
    real.add_argument("--sources", nargs="+", default=list(defaults.sources), metavar="SOURCE",
                      help=f"sources to build (default: {' '.join(defaults.sources)}; opt-in: "
                           f"{' '.join(s.name for s in EXTRA_SOURCES)}, labels less certain)")
    real.add_argument("--max-clips", type=number(int, 0), default=defaults.max_clips,
                      help=f"clips per speaker and language, drawn by --seed (0: all; default {defaults.max_clips})")
    real.add_argument("--seed", type=number(int, 0), default=defaults.seed, help="random seed (default 0)")
    real.add_argument("--train-speakers", nargs="+", default=[], metavar="SPEAKER",
                      help="opt-in: these speakers' clips form a dev part to train on (no trials); the trials "
                           "hold the others (e.g. half of the amazon-queen characters)")
    real.add_argument("--install", action="store_true",
                      help="as root: install missing source packages with apt-get (as scripts/setup.sh does)")
    real.set_defaults(func=lambda a: run_real(a.out, tuple(a.sources), a.max_clips, a.seed, a.install,
                                              tuple(a.train_speakers)))


def run_synth(args: argparse.Namespace) -> int:
    from tfadvq import rundir
    from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
    from tfadvq.report import print_table

    config = SynthConfig(speakers=args.speakers, test_speakers=args.test_speakers,
                         utts=args.utts, seed=args.seed)
    result = synthesize_corpus(args.out, config, workers=args.workers)
    print_table(result.rows(), title=f"tfadvq data synth ({args.out})")
    if result.unavailable:
        print_table([{"voice": v, "why": why} for v, why in result.unavailable.items()],
                    title="TTS voices not working on this machine (no speaker was given one)")
    if result.failed:
        print_table([{"utterance": k, "reason": r} for k, r in result.failed[:20]],
                    title=f"failed utterances ({len(result.failed)}; all in {rundir.CorpusDir(args.out).manifest}; "
                          "re-run to retry them)")
    result.require_complete()  # a corpus short of its settings is an error, not a quiet footnote
    return 0


def run_real(out: Path, sources: tuple[str, ...], max_clips: int, seed: int, install: bool,
             train_speakers: tuple[str, ...] = ()) -> int:
    from tfadvq import rundir
    from tfadvq.corpus.real import RealConfig, build_real_corpus
    from tfadvq.report import print_table

    result = build_real_corpus(out, RealConfig(sources=sources, max_clips=max_clips, seed=seed,
                                                    train_speakers=train_speakers), install=install)
    print_table(result.rows(), title=f"tfadvq data real ({out}; labels and licences: {rundir.CorpusDir(out).readme})")
    if result.rejected:
        print_table([{"file": f, "reason": r} for f, r in result.rejected[:10]],
                    title=f"rejected clips ({len(result.rejected)}; all in {rundir.CorpusDir(out).manifest})")
    return 0
