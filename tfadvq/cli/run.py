"""``tfadvq run RECIPE --workdir W [--from S] [--to S]``: run a recipe's stages (see :mod:`tfadvq.recipe`).

RECIPE is a YAML file or a packaged recipe name (``demo``).  Stages whose
config and inputs are unchanged since their last run, and whose outputs still
match the digests in their records, are reused (the table says why a stage
ran); ``--from S``
re-runs S and everything after it; ``--to S`` stops after S.  Every stage
writes its outputs and a record into ``W/<stage name>``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfadvq.cli import add_stage_range, run_and_report


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run a recipe (a YAML list of stages)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML file or packaged recipe name (demo)")
    parser.add_argument("--workdir", required=True, type=Path, help="where every stage writes")
    add_stage_range(parser)
    parser.set_defaults(func=lambda args: run_and_report(args.recipe, args.workdir, args.from_stage,
                                                         args.to_stage))
