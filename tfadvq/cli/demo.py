"""``tfadvq demo [--workdir runs/demo]``: the main job, end to end on the generated corpus.

Stages (each a function of the shared :class:`Demo` state, run in order, each
reported in the closing summary table):

1. ``corpus``   generate the speaker corpus (``tfadvq data synth``), reused when complete;
2. ``train``    train the demo model (``tfadvq/configs/demo.yaml``), reused when the
                saved model was trained with the same config, resumed if interrupted;
3. ``evaluate`` EER/minDCF on the corpus' test trials, DET plot, calibrated threshold;
4. ``verify``   one genuine and one impostor verification example.

Later stages (quantize, convert, ...) are added by appending ``(name, function)``
to :data:`STAGES`; a stage returns the summary row fields it wants shown.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class Demo:
    """What the stages share: options, paths, and results earlier stages left for later ones."""

    workdir: Path
    speakers: int | None = None
    utts: int | None = None
    seed: int = 0
    epochs: int | None = None
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def corpus(self) -> Path:
        return self.workdir / "corpus"

    @property
    def model_dir(self) -> Path:
        return self.workdir / "model"


def stage_corpus(demo: Demo) -> dict[str, Any]:
    from tfadvq.corpus.synth import SynthConfig, synthesize_corpus
    from tfadvq.errors import TfadvqError
    from tfadvq.voxceleb import load_corpus

    try:  # complete = the generator wrote its manifest last, and every listed file exists
        reused = (demo.corpus / "corpus.json").is_file()
        corpus = load_corpus(demo.corpus) if reused else None
    except TfadvqError:
        reused = False
    if not reused:
        sizes = {k: v for k, v in (("speakers", demo.speakers), ("utts", demo.utts)) if v}
        synthesize_corpus(demo.corpus, SynthConfig(seed=demo.seed, **sizes))
        corpus = load_corpus(demo.corpus)
    demo.state["corpus"] = corpus
    return {"result": f"{len({u.speaker for u in corpus.train})} train speakers, "
                      f"{len(corpus.train)} utts; {len(corpus.trials)} test trials",
            "reused": reused}


def stage_train(demo: Demo) -> dict[str, Any]:
    import json

    from tfadvq.config import to_dict
    from tfadvq.training import CONFIG_FILE, MODEL_FILE, load_config, packaged_config, train

    config = load_config(packaged_config("demo"))
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, corpus=str(demo.corpus)))
    if demo.epochs:
        config = dataclasses.replace(config, epochs=demo.epochs)
    model_path = demo.model_dir / MODEL_FILE
    reused = model_path.is_file() and (demo.model_dir / CONFIG_FILE).is_file() and \
        to_dict(load_config(demo.model_dir / CONFIG_FILE)) == to_dict(config)
    if not reused:
        model_path = train(config, demo.model_dir)
    demo.state["model_path"] = model_path
    history_file = demo.model_dir / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else {}
    loss = history.get("loss", [float("nan")])[-1]
    return {"result": f"{config.model}, {config.epochs} epochs, final loss {loss:.3f}",
            "reused": reused}


def stage_evaluate(demo: Demo) -> dict[str, Any]:
    from tfadvq.evaluation import evaluate, load_embedding_model, store_threshold, write_outputs

    corpus = demo.state["corpus"]
    model = load_embedding_model(demo.state["model_path"])
    result = evaluate(model, corpus.trials, corpus.test)
    files = write_outputs(result, corpus.trials, demo.workdir / "eval", title="demo model, test trials")
    store_threshold(demo.state["model_path"], result, demo.corpus / "trials" / "test.txt")
    demo.state.update(model=model, evaluation=result)
    return {"result": f"EER {result.eer:.2f} %, minDCF(0.01) {result.min_dcf[0.01]:.3f}, "
                      f"minDCF(0.05) {result.min_dcf[0.05]:.3f}; DET {files['det.png']}",
            "reused": False}


def stage_verify(demo: Demo) -> dict[str, Any]:
    from tfadvq.errors import DataError
    from tfadvq.evaluation import verify

    by_speaker: dict[str, list] = {}
    for u in demo.state["corpus"].test:
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = [s for s, utts in by_speaker.items() if len(utts) >= 3]
    if len(by_speaker) < 2 or not speakers:
        raise DataError("verify example: the test part needs 2 speakers, one with >= 3 utterances")
    claimed = speakers[0]
    own, other = by_speaker[claimed], next(u for s, u in by_speaker.items() if s != claimed)
    enroll, genuine, impostor = [u.path for u in own[:2]], own[2].path, other[0].path
    threshold = demo.state["evaluation"].cosine_threshold
    outcomes = [verify(demo.state["model"], enroll, test, threshold) for test in (genuine, impostor)]
    return {"result": f"speaker {claimed}: genuine score {outcomes[0]['score']:.3f} -> "
                      f"{outcomes[0]['decision']}, impostor {outcomes[1]['score']:.3f} -> "
                      f"{outcomes[1]['decision']} (threshold {threshold:.3f})",
            "reused": False}


STAGES: list[tuple[str, Callable[[Demo], dict[str, Any]]]] = [
    ("corpus", stage_corpus),
    ("train", stage_train),
    ("evaluate", stage_evaluate),
    ("verify", stage_verify),
]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job: corpus -> train -> evaluate -> verify (~15 min on 2 cores)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"),
                        help="where the corpus, model and results go (default: runs/demo)")
    parser.add_argument("--speakers", type=int, help="corpus speakers (default: the generator's)")
    parser.add_argument("--utts", type=int, help="utterances per speaker (default: the generator's)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--epochs", type=int, help="override the demo config's epochs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.report import print_table

    demo = Demo(args.workdir, args.speakers, args.utts, args.seed, args.epochs)
    demo.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, stage in STAGES:
        print(f"== demo stage: {name}", flush=True)
        start = time.perf_counter()
        row = stage(demo)
        rows.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), **row})
    print_table(rows, title=f"tfadvq demo ({demo.workdir})")
    return 0
