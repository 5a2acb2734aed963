"""``tfadvq demo [--workdir runs/demo]``: the main job, end to end on the generated corpus.

Stages (each a function of the shared :class:`Demo` state, run in order, each
reported in the closing summary table):

1. ``corpus``        generate the speaker corpus (``tfadvq data synth``), reused when complete
                     (``--corpus DIR`` uses an existing one instead);
2. ``train``         train the demo model (``tfadvq/configs/demo.yaml``), reused when the
                     saved model was trained with the same config, resumed if interrupted;
3. ``evaluate``      EER/minDCF on the corpus' test trials, DET plot, calibrated threshold;
4. ``verify``        one genuine and one impostor verification example;
5. ``quantize``      KMQAT at ``--bits`` (4): post-training codebooks, then a short
                     quantization-aware fine-tune (``--finetune-epochs``, AAM objective
                     starting from the trained head), stripped; EER beside FP32, size and
                     compression, one DET plot of both; outputs in ``WORKDIR/quant`` (as
                     ``tfadvq quantize`` writes them), reused when made from the same model
                     with the same settings;
6. ``convert``       ``tfadvq convert``: LUT-compressed ``.tflite`` with float activations,
                     thresholds calibrated on the quantized model's trial scores, metadata
                     JSON and firmware C arrays in ``WORKDIR/tflite``;
7. ``device_verify`` the flashed model under the real TFLite-Micro interpreter on fbank
                     windows (as the firmware feeds them): the same speaker claim as
                     ``verify``, decided against the calibrated EER threshold, and the
                     cosine between TFLM and Keras embeddings of those windows
                     (``WORKDIR/device_verify.json``).

Further stages are added by appending ``(name, function)`` to :data:`STAGES`;
a stage returns the summary row fields it wants shown.
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
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    corpus_dir: Path | None = None  # an existing corpus instead of WORKDIR/corpus
    bits: int = 4
    finetune_epochs: int = 1
    frames: int = 200  # input window of the converted model (what the firmware feeds)
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def corpus(self) -> Path:
        return self.corpus_dir or self.workdir / "corpus"

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
    if demo.steps_per_epoch:
        config = dataclasses.replace(config, steps_per_epoch=demo.steps_per_epoch)
    if demo.batch_size:
        config = dataclasses.replace(
            config, pipeline=dataclasses.replace(config.pipeline, batch_size=demo.batch_size))
    model_path = demo.model_dir / MODEL_FILE
    reused = model_path.is_file() and (demo.model_dir / CONFIG_FILE).is_file() and \
        to_dict(load_config(demo.model_dir / CONFIG_FILE)) == to_dict(config)
    if not reused:
        model_path = train(config, demo.model_dir)
    demo.state.update(model_path=model_path, train_config=config)
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


def _example_claim(demo: Demo) -> tuple[str, list[Path], Path, Path]:
    """The verification example both ``verify`` and ``device_verify`` run: claimed speaker,
    enrollment recordings, a genuine and an impostor test recording (all from the test part)."""
    from tfadvq.errors import DataError

    by_speaker: dict[str, list] = {}
    for u in demo.state["corpus"].test:
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = [s for s, utts in by_speaker.items() if len(utts) >= 3]
    if len(by_speaker) < 2 or not speakers:
        raise DataError("verify example: the test part needs 2 speakers, one with >= 3 utterances")
    claimed = speakers[0]
    own, other = by_speaker[claimed], next(u for s, u in by_speaker.items() if s != claimed)
    return claimed, [Path(u.path) for u in own[:2]], Path(own[2].path), Path(other[0].path)


def stage_verify(demo: Demo) -> dict[str, Any]:
    from tfadvq.evaluation import verify

    claimed, enroll, genuine, impostor = _example_claim(demo)
    threshold = demo.state["evaluation"].cosine_threshold
    outcomes = [verify(demo.state["model"], enroll, test, threshold) for test in (genuine, impostor)]
    return {"result": f"speaker {claimed}: genuine score {outcomes[0]['score']:.3f} -> "
                      f"{outcomes[0]['decision']}, impostor {outcomes[1]['score']:.3f} -> "
                      f"{outcomes[1]['decision']} (threshold {threshold:.3f})",
            "reused": False}


def _file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_quantize(demo: Demo) -> dict[str, Any]:
    import json

    from tfadvq.evaluation import write_outputs
    from tfadvq.evaluation import evaluate as evaluate_model
    from tfadvq.plots import plot_dets
    from tfadvq.quant import api, outputs
    from tfadvq.quant.finetune import finetune_utterances
    from tfadvq.training import HEAD_FILE

    out = demo.workdir / "quant"
    # The outputs are reusable when they were made from this very model with these settings.
    settings = {"bits": demo.bits, "finetune_epochs": demo.finetune_epochs, "objective": "aam",
                "model_sha256": _file_sha256(demo.state["model_path"])}
    summary_file = out / outputs.SUMMARY_FILE
    reused = summary_file.is_file() and (out / outputs.WRAPPED_FILE).is_file() and \
        json.loads(summary_file.read_text()).get("settings") == settings
    if reused:
        quantized, summary = outputs.load(out)
        tuned = summary["finetune"]
    else:
        wrapped = api.ptq(demo.state["model"], demo.bits)
        tuned = finetune_utterances(wrapped, demo.state["corpus"].train, demo.state["train_config"],
                                    demo.finetune_epochs, "aam",
                                    head_weights=demo.model_dir / HEAD_FILE) \
            if demo.finetune_epochs else None
        quantized = outputs.save(wrapped, out, finetune=tuned, settings=settings)
    corpus, fp32 = demo.state["corpus"], demo.state["evaluation"]
    result = evaluate_model(quantized.plain, corpus.trials, corpus.test)
    label = f"KMQAT {demo.bits}-bit"
    files = write_outputs(result, corpus.trials, demo.workdir / "quant_eval",
                          title=f"{label} demo model, test trials")
    det = plot_dets({"FP32": (fp32.scores, fp32.labels), label: (result.scores, result.labels)},
                    demo.workdir / "det_fp32_vs_quant.png", title=f"FP32 vs {label}, test trials")
    demo.state.update(quantized=quantized, quant_evaluation=result,
                      trial_scores=files["trial_scores.txt"], quant_dir=out)
    size = quantized.size
    tuning = (f"fine-tune {tuned['steps']} steps, final loss {tuned['last_loss']:.3f}" if tuned
              else "post-training only")
    return {"result": f"{label}: EER {result.eer:.2f} % (FP32 {fp32.eer:.2f} %), "
                      f"minDCF(0.01) {result.min_dcf[0.01]:.3f}; {tuning}; "
                      f"{size.size_bytes / 1024:.1f} KiB vs {size.fp32_bytes / 1024:.1f} KiB FP32 "
                      f"({size.compression:.2f}x); DET {det}",
            "reused": reused}


def stage_convert(demo: Demo) -> dict[str, Any]:
    from tfadvq.cli import convert
    from tfadvq.quant.outputs import WRAPPED_FILE

    out = demo.workdir / "tflite"
    tflite = out / "model.tflite"
    parser = argparse.ArgumentParser(prog="tfadvq")
    convert.register(parser.add_subparsers())
    args = parser.parse_args([
        "convert", "--model", str(demo.state["quant_dir"] / WRAPPED_FILE), "--out", str(tflite),
        "--frames", str(demo.frames), "--trial-scores", str(demo.state["trial_scores"]),
        "--c-array", str(out / "c_array")])
    # converts, checks the LUT model against Keras under TFLM, writes the files
    result, metadata = convert.convert_files(args)
    demo.state.update(tflite=tflite, metadata=metadata)
    return {"result": f"{tflite}: {len(result.model)} bytes (ideal {result.ideal_bytes}, float "
                      f"{len(result.float_model)}), arena {metadata.arena_bytes} bytes, {metadata.activations} "
                      f"activations, threshold {metadata.thresholds.eer:.3f} at EER "
                      f"{100 * metadata.thresholds.eer_rate:.2f} %",
            "reused": False}


def stage_device_verify(demo: Demo) -> dict[str, Any]:
    import json

    import numpy as np

    from converters.keras_to_tflite import fbank_window
    from converters.verify import cosine_rows, run_tflm

    metadata = demo.state["metadata"]
    claimed, enroll, genuine, impostor = _example_claim(demo)
    windows = np.stack([fbank_window(path, metadata.input_frames)
                        for path in (*enroll, genuine, impostor)])
    device = run_tflm(demo.state["tflite"].read_bytes(), windows)
    keras_out = demo.state["quantized"].plain(windows, training=False).numpy()
    agreement = float(cosine_rows(device, keras_out).min())
    unit = device / np.linalg.norm(device, axis=1, keepdims=True)
    enrolled = unit[:len(enroll)].mean(axis=0)
    scores = unit[len(enroll):] @ (enrolled / np.linalg.norm(enrolled))
    # Calibrated on whole-utterance (window-averaged) scores; the device scores one window.
    threshold = metadata.thresholds.eer
    decisions = ["accept" if score >= threshold else "reject" for score in scores]
    outcome = {"speaker": claimed, "enroll": [str(p) for p in enroll], "genuine": str(genuine),
               "impostor": str(impostor), "scores": [float(x) for x in scores],
               "decisions": decisions, "threshold": threshold, "tflm_keras_cosine": agreement}
    (demo.workdir / "device_verify.json").write_text(json.dumps(outcome, indent=1))
    return {"result": f"TFLM, speaker {claimed}: genuine score {scores[0]:.3f} -> {decisions[0]}, "
                      f"impostor {scores[1]:.3f} -> {decisions[1]} (threshold {threshold:.3f}); "
                      f"TFLM vs Keras embeddings: min cosine {agreement:.6f}",
            "reused": False}


STAGES: list[tuple[str, Callable[[Demo], dict[str, Any]]]] = [
    ("corpus", stage_corpus),
    ("train", stage_train),
    ("evaluate", stage_evaluate),
    ("verify", stage_verify),
    ("quantize", stage_quantize),
    ("convert", stage_convert),
    ("device_verify", stage_device_verify),
]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job: corpus -> train -> evaluate -> verify -> quantize (4-bit KMQAT) "
                     "-> convert (LUT .tflite) -> device_verify (TFLM)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"),
                        help="where the corpus, model and results go (default: runs/demo)")
    parser.add_argument("--speakers", type=int, help="corpus speakers (default: the generator's)")
    parser.add_argument("--utts", type=int, help="utterances per speaker (default: the generator's)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    parser.add_argument("--corpus", type=Path, help="use this existing corpus instead of WORKDIR/corpus")
    parser.add_argument("--epochs", type=int, help="override the demo config's epochs")
    parser.add_argument("--batch-size", type=int, help="override the demo config's batch size")
    parser.add_argument("--steps-per-epoch", type=int, help="override the demo config's epoch length")
    parser.add_argument("--bits", type=int, default=4, help="KMQAT weight bits (default 4)")
    parser.add_argument("--finetune-epochs", type=int, default=1,
                        help="quantization-aware fine-tune epochs after PTQ (default 1; 0: PTQ only)")
    parser.add_argument("--frames", type=int, default=200,
                        help="fbank frames the converted model takes per invoke (default 200 = 2 s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.report import print_table

    demo = Demo(args.workdir, args.speakers, args.utts, args.seed, args.epochs, args.batch_size,
                args.steps_per_epoch, args.corpus, args.bits, args.finetune_epochs, args.frames)
    demo.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, stage in STAGES:
        print(f"== demo stage: {name}", flush=True)
        start = time.perf_counter()
        row = stage(demo)
        rows.append({"stage": name, "seconds": round(time.perf_counter() - start, 1), **row})
    print_table(rows, title=f"tfadvq demo ({demo.workdir})")
    return 0
