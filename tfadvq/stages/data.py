"""Stages that provide data: the generated corpus (or an existing one), and the real-speech evaluation set."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from tfadvq import rundir
from tfadvq.config import bounded
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage


def corpus_digest(path: Path) -> str:
    """What a corpus's use depends on: its lists, trials and manifest (not every audio file)."""
    layout = rundir.CorpusDir(path)
    parts = [rundir.tree_digest(part) for part in (layout.lists, layout.trials.parent, layout.manifest)
             if part.exists()]
    return "".join(parts)


@register_stage("corpus")
@dataclasses.dataclass
class CorpusStage(StageBase):
    """The generated speaker corpus (``tfadvq data synth``), or an existing corpus at ``path``.

    Sizes left null take the generator's defaults (the embedded default corpus).
    """

    produces: ClassVar[tuple[str, ...]] = ("corpus",)

    path: str | None = None
    speakers: int | None = bounded(None, 2)
    test_speakers: int | None = bounded(None, 2)
    utts: int | None = bounded(None, 2)
    seed: int = bounded(0, 0)
    workers: int | None = bounded(None, 1)

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        return {"external": corpus_digest(Path(self.path))} if self.path else {}

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
        from tfadvq.voxceleb import load_corpus

        if self.path is not None:
            directory = Path(self.path)
        else:
            directory = rundir.CorpusRun(ctx.out).corpus
            sizes = {k: v for k, v in (("speakers", self.speakers), ("test_speakers", self.test_speakers),
                                       ("utts", self.utts)) if v is not None}
            synthesize_corpus(directory, SynthConfig(seed=self.seed, **sizes), workers=self.workers).require_complete()
        corpus = ctx.cached(f"corpus:{directory}", lambda: load_corpus(directory))
        speakers = len({u.speaker for u in corpus.train})
        return StageResult(
            outputs={"corpus": str(directory)},
            metrics={"train_speakers": speakers, "train_utterances": len(corpus.train),
                     "test_utterances": len(corpus.test), "trials": len(corpus.trials)},
            summary=f"{speakers} train speakers, {len(corpus.train)} utts; {len(corpus.trials)} test trials")


@register_stage("real_corpus")
@dataclasses.dataclass
class RealCorpusStage(StageBase):
    """The real-speech evaluation set (``tfadvq data real``): real people, built on this machine.

    Test speakers only (never trained on): evaluate a model on it beside the
    synthetic trials.  ``sources`` by name (null: every default source);
    ``install`` lets the stage install missing source packages with apt when run
    as root (otherwise it stops naming them).
    """

    produces: ClassVar[tuple[str, ...]] = ("corpus",)

    sources: list[str] | None = None
    max_clips: int = bounded(100, 0)
    seed: int = bounded(0, 0)
    install: bool = False

    def __post_init__(self) -> None:
        from tfadvq.corpus import real

        self.config().validate([s.name for s in real.KNOWN])

    def config(self):
        from tfadvq.corpus.real import RealConfig

        chosen = {} if self.sources is None else {"sources": tuple(self.sources)}
        return RealConfig(max_clips=self.max_clips, seed=self.seed, **chosen)

    def run(self, ctx: StageContext) -> StageResult:
        from tfadvq.corpus import real
        from tfadvq.voxceleb import load_corpus

        directory = rundir.CorpusRun(ctx.out).corpus
        result = real.build_real_corpus(directory, self.config(), sources=real.KNOWN, install=self.install)
        corpus = ctx.cached(f"corpus:{directory}", lambda: load_corpus(directory))
        speakers = len({u.speaker for u in corpus.test})
        return StageResult(outputs={"corpus": str(directory)},
                           metrics={"test_speakers": speakers, "test_utterances": len(corpus.test),
                                    "trials": result.trials},
                           summary=f"real speech: {speakers} speakers, {len(corpus.test)} clips, "
                                   f"{result.trials} trials ({', '.join(self.config().sources)})")

