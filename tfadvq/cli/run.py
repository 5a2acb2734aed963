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


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help="run a recipe (a YAML list of stages)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="recipe YAML file or packaged recipe name (demo)")
    parser.add_argument("--workdir", required=True, type=Path, help="where every stage writes")
    add_stage_range(parser)
    parser.set_defaults(func=lambda args: run_and_report(args.recipe, args.workdir, args.from_stage,
                                                         args.to_stage))


def add_stage_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_stage", metavar="STAGE", help="re-run from this stage on")
    parser.add_argument("--to", dest="to_stage", metavar="STAGE", help="stop after this stage")


def run_and_report(recipe, workdir: Path, from_stage: str | None = None, to_stage: str | None = None) -> int:
    """Run ``recipe`` (a :class:`~tfadvq.recipe.Recipe` or its name/path) and print the stage table."""
    from tfadvq.recipe import Recipe, load_recipe, run_recipe
    from tfadvq.report import print_table

    parsed = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    rows = run_recipe(parsed, workdir, from_stage, to_stage,
                      on_stage=lambda name, why: print(f"== stage: {name} ({why})", flush=True))
    print_table(rows, title=f"tfadvq run {parsed.source} ({workdir})")
    return 0
