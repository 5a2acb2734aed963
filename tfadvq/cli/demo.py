"""``tfadvq demo [--workdir runs/demo]``: the main job, end to end on the generated corpus.

It runs the packaged recipe ``demo`` (``tfadvq/recipes/demo.yaml``; the same as
``tfadvq run demo --workdir W``): generate the corpus -> train the MCU-class
device model (McuDFResNet, ``tfadvq/configs/mcu.yaml``) -> evaluate (EER,
minDCF, DET, threshold) -> a verification example -> KMQAT 4-bit post-training
with 8-bit activation QAT -> fine-tune -> evaluate the quantized model ->
convert to a LUT ``.tflite`` with int8 activations (ranges from corpus crops)
-> calibrate its thresholds on what TFLM computes (firmware C sources) -> the
verification example under TFLM.  The converted model with the firmware fits a
256 KB RAM / 1 MB flash Cortex-M4.  Finished stages are reused on a re-run; the
options below override the recipe's values (for quick runs).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tfadvq.cli import add_stage_range, renamed_flag, run_and_report
from tfadvq.config import number
from tfadvq.quant.bits import MAX_BITS, MIN_BITS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job: corpus -> train -> evaluate -> quantize (KMQAT) -> convert -> "
                     "calibrate -> device_verify (TFLM)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/demo"),
                        help="where every stage writes (default: runs/demo)")
    parser.add_argument("--speakers", type=number(int, 1), help="corpus training speakers (default: the generator's)")
    parser.add_argument("--test-speakers", type=number(int, 1), help="corpus test speakers (default: the generator's)")
    parser.add_argument("--utts", type=number(int, 1), help="utterances per speaker (default: the generator's)")
    parser.add_argument("--corpus", help="use this existing corpus directory instead of generating one")
    parser.add_argument("--epochs", type=number(int, 1), help="training epochs (default: the demo config's)")
    parser.add_argument("--batch-size", type=number(int, 1), help="training batch size")
    parser.add_argument("--steps-per-epoch", type=number(int, 1), help="training epoch length")
    parser.add_argument("--bits", type=number(int, MIN_BITS, MAX_BITS), help="KMQAT weight bits (default 4)")
    parser.add_argument("--finetune-epochs", type=number(int, 1), help="fine-tune epochs (default 3)")
    parser.add_argument("--finetune-steps", type=number(int, 1), help="fine-tune epoch length")
    parser.add_argument("--frames", type=number(int, 1), help="scoring window = converted model input (default 100)")
    parser.add_argument("--corpus-crops", type=number(int, 1),
                        help="corpus crops the int8 activation ranges are measured on (default 64)")
    renamed_flag(parser, "--calibration-crops", "--corpus-crops")
    parser.add_argument("--real-sources", nargs="+", metavar="SOURCE",
                        help="real-speech sources (default: every default source of tfadvq data real)")
    parser.add_argument("--real-clips", type=number(int, 1),
                        help="real speech: clips per speaker and language (default 100)")
    parser.add_argument("--no-real-speech", action="store_true",
                        help="leave out the real-speech evaluation (the synthetic figures only)")
    parser.add_argument("--firmware", action="store_true",
                        help="end with the model in the real firmware on QEMU (`make firmware-demo`): the device "
                             "stages, then a scripted enroll/verify session beside Python's scores; needs TFLM "
                             "built by tflm_firmware/scripts/build_tflm.sh (or $TFLM_DIR)")
    parser.add_argument("--core", choices=("cortex-m4", "cortex-m55"),
                        help="the core --firmware runs on (default cortex-m4, QEMU mps2-an386)")
    add_stage_range(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfadvq.recipe import demo_recipe

    return run_and_report(demo_recipe(
        speakers=args.speakers, test_speakers=args.test_speakers, utts=args.utts, corpus=args.corpus,
        epochs=args.epochs, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
        bits=args.bits, finetune_epochs=args.finetune_epochs, finetune_steps=args.finetune_steps,
        frames=args.frames, corpus_crops=args.corpus_crops, real_sources=args.real_sources,
        real_clips=args.real_clips, real_speech=not args.no_real_speech, firmware=args.firmware, core=args.core),
        args.workdir, args.from_stage, args.to_stage or ("firmware_session" if args.firmware else None))
