"""``tfadvq mixed --model M --target-size 150KB|--avg-bits 3.2 [--msft] --out Q``: mixed precision.

Measures every quantizable tensor's Hessian trace (Hutchinson, on a few
batches of the objective: distillation to the FP32 model on unlabeled input
by default, or AAM with the trained head), chooses the bits per tensor that
minimise the total HAWQ-V2 sensitivity within the budget (exact, a 0/1
programme; ``--avg-bits`` counts the value tables with the indices: it is the
bytes of the quantized weights per weight, times 8), quantizes, converts once to check the ``.tflite`` size against the
target, then fine-tunes (``--finetune-steps``: one-shot QAT; ``--msft``:
multi-stage fine-tuning ordered by the sensitivities).  Prints the bits per
tensor with its sensitivity share and the planned vs converted bytes (the
codebooks are Fisher-weighted k-means, as ``tfadvq quantize`` fits them when
given data, and every width is priced with them; ``--no-weighted``: plain); writes
``bits.yaml`` (usable by ``tfadvq quantize --bits-per-layer``), the
sensitivities and the quantized model into a :class:`~tfadvq.rundir.MixedDir`;
``--plots`` adds the sensitivity/bits and convergence plots.

Hutchinson probes are added (``--probes`` more per batch, at most
``--max-probes``) until every trace's standard error is within
``--trace-tolerance`` of its magnitude; a trace still noisier is reported
``undetermined`` and its tensor gets no width below 4 bits (the default of
``tfadvq quantize``) whatever the budget.

``--per-channel auto``: every width up to 7 bits is offered with per-tensor
and with per-channel value tables, each priced by the bytes the converter
writes for it and by its sensitivity with those codebooks; the exact
allocation picks both, and ``bits.yaml`` records the choice (``per_channel``).

Data: the model's own training data (its ``train.yaml``), ``--corpus C``, or
``--inputs X.npy`` (an array ``[N, ...]`` of the model's own inputs, for a
model whose input is not our fbank; distillation only).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tfadvq.cli import per_channel_flag
from tfadvq.config import number


@dataclasses.dataclass
class MixedArgs:
    """What ``tfadvq mixed`` was asked (typed; see ``--help``)."""

    model: Path
    out: Path
    target_size: str | None = None
    avg_bits: float | None = None
    allowed: str = "1,2,3,4,5,6,8"
    objective: str = "distill"
    corpus: Path | None = None
    inputs: Path | None = None
    train_config: str | None = None
    batches: int = 4
    probes: int = 16
    trace_tolerance: float = 0.25
    max_probes: int | None = None
    per_channel: bool | str = False
    per_weight: bool = False
    weighted: bool = True
    frames: int = 200
    finetune_steps: int = 0
    lr_scale: float = 0.1
    msft: bool = False
    steps_per_stage: int = 100
    stages: int = 4
    plots: bool = False
    force: bool = False


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "mixed", help="mixed-precision bits from Hessian sensitivity under a size budget",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="FP32 embedding model (.keras or a train dir)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--target-size", help="converted .tflite size, e.g. 150KB, 1.5MB, 200KiB or bytes")
    budget.add_argument("--avg-bits", type=number(float, 1.0, 32.0),
                        help="average bits per quantized weight including its value tables (8 x their bytes / "
                             "weights, what model_size counts), e.g. 4.2")
    parser.add_argument("--allowed", default="1,2,3,4,5,6,8", help="allowed bit widths (default 1,2,3,4,5,6,8)")
    parser.add_argument("--objective", choices=["distill", "aam"], default="distill",
                        help="sensitivity (and fine-tune) objective; aam needs the trained head")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--corpus", type=Path, help="use this corpus' training part instead of the model's data")
    data.add_argument("--inputs", type=Path, help=".npy array [N, ...] of the model's own inputs (distill)")
    parser.add_argument("--train-config", help="training YAML or packaged name, for a model without train.yaml")
    parser.add_argument("--batches", type=number(int, 1), default=4, help="batches of the objective for the traces")
    parser.add_argument("--probes", type=number(int, 1), default=16,
                        help="Hutchinson probes per batch, and per round of more probes")
    parser.add_argument("--trace-tolerance", type=number(float, 0.0, above=True), default=0.25,
                        help="more probes until each trace's standard error is within this fraction of it "
                             "(default 0.25); a trace still above at --max-probes is reported undetermined and "
                             "its tensor kept at >= 4 bits")
    parser.add_argument("--max-probes", type=number(int, 1),
                        help="at most this many probes per batch (default 4 x --probes)")
    parser.add_argument("--per-channel", nargs="?", const=True, default=False, type=per_channel_flag,
                        help="one codebook per output channel; 'auto': the allocation chooses per tensor between "
                             "per-tensor and per-channel value tables, each priced by its bytes and its error")
    parser.add_argument("--per-weight", action="store_true", help="bits per weight key instead of per layer")
    parser.add_argument("--weighted", action=argparse.BooleanOptionalAction, default=True,
                        help="Fisher-weighted k-means codebooks, each width priced with them (default; "
                             "--no-weighted: plain k-means)")
    parser.add_argument("--frames", type=number(int, 1), default=200, help="converted input frames (default 200)")
    parser.add_argument("--finetune-steps", type=number(int, 0), default=0,
                        help="one-shot QAT steps (0: post-training)")
    parser.add_argument("--lr-scale", type=number(float, 0.0, above=True), default=0.1,
                        help="fine-tune peak lr = training lr x this")
    parser.add_argument("--msft", action="store_true", help="multi-stage fine-tuning instead of one-shot QAT")
    parser.add_argument("--steps-per-stage", type=number(int, 1), default=100, help="MSFT steps per stage")
    parser.add_argument("--stages", type=number(int, 1), default=4, help="MSFT stages")
    parser.add_argument("--plots", action="store_true", help="write sensitivity and convergence plots to Q/plots")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--force", action="store_true",
                        help="replace a finished result in --out, or write into a directory holding other files")
    parser.set_defaults(func=lambda a: run(MixedArgs(**{f.name: getattr(a, f.name)
                                                         for f in dataclasses.fields(MixedArgs)})))


def run(args: MixedArgs) -> int:
    from tfadvq import rundir

    with rundir.claim_dir(args.out, rundir.MixedDir, force=args.force, command="tfadvq mixed"):
        return _run(args)


def _allowed(text: str) -> list[int]:
    from tfadvq.errors import ConfigError

    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise ConfigError(f"--allowed {text!r}: accepted comma-separated integers 1..8, e.g. 2,3,4,8") from None


def request(args: MixedArgs):
    """The :class:`~tfadvq.stages.mixed.MixedRequest` of these flags (the stage's fields and checks)."""
    from tfadvq.cli import from_flags
    from tfadvq.stages.mixed import MixedRequest

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(MixedRequest)}
    return from_flags(MixedRequest, {**values, "allowed": _allowed(args.allowed)}, "mixed")


def _run(args: MixedArgs) -> int:
    from tfadvq import frontend, rundir
    from tfadvq.config import to_dict
    from tfadvq.errors import ConfigError
    from tfadvq.model_io import open_model
    from tfadvq.quant.finetune import model_inputs
    from tfadvq.report import print_table
    from tfadvq.quant.mixed_run import plot_outcome
    from tfadvq.stages.lineage import Lineage
    from tfadvq.stages.mixed import run_mixed
    from tfadvq.train_config import model_config

    out = rundir.MixedDir(args.out)
    if out.summary.is_file() and not args.force:
        raise ConfigError(f"--out {args.out}: holds a finished result; pass --force to replace it "
                          "or choose another directory")
    asked = request(args)
    source = Lineage.of_model(args.model)
    config = model_config(source.expected_config, args.train_config,
                          data_given=args.corpus is not None or args.inputs is not None, what="tfadvq mixed")
    loaded = open_model(args.model)
    model = loaded.model
    front_end = frontend.for_input(frontend.resolve(loaded.file), model.input_shape, str(loaded.file))
    config = frontend.follow(config, front_end)
    utterances = None
    if args.corpus is not None:
        from tfadvq.voxceleb import load_corpus

        utterances = load_corpus(args.corpus).train
    data = model_inputs(model, config, inputs=str(args.inputs) if args.inputs else None, utterances=utterances,
                        steps_per_epoch=asked.tuning_steps)
    shape = model.input_shape
    # Converted only when the converter can take it ([batch, frames, features]); a fixed length is the model's.
    frames = (shape[1] or args.frames) if isinstance(shape, tuple) and len(shape) == 3 and shape[-1] else None
    outcome = run_mixed(model, asked, args.out, data=data, head=source.head, train_config=config, frames=frames,
                        front_end=front_end, extra={"source_model": str(source.model), "source": loaded.row(),
                                                    "settings": to_dict(args)})
    plan = outcome.plan
    print_table(plan.allocation.rows(plan.choices), title=f"tfadvq mixed: {loaded.describe()}")
    if outcome.tuning:
        rows = outcome.tuning.get("msft") or [outcome.tuning]
        print_table([{k: v for k, v in r.items() if k not in ("bits", "data", "loss_curve")} for r in rows],
                    title="fine-tuning")
    sizes = outcome.size_row(asked.target_bytes)
    if frames is None:
        sizes["tflite_bytes"] = "n/a (input is not [batch, frames, mels]: planned only)"
    print_table([{**sizes, "codebooks": outcome.codebooks, "fp32_bytes": outcome.saved.size.fp32_bytes,
                  "out": str(args.out)}])
    if args.plots:
        for path in plot_outcome(outcome, out.plots):
            print(f"wrote {path}")
    return 0
