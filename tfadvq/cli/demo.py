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

from tfadvq.cli import renamed_flag
from tfadvq.config import number
from tfadvq.errors import ConfigError


def register(subparsers) -> None:
    from tfadvq.cli.run import add_stage_range

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
    parser.add_argument("--bits", type=number(int, 1, 8), help="KMQAT weight bits (default 4)")
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
    from tfadvq.cli.run import run_and_report

    return run_and_report(demo_recipe(
        speakers=args.speakers, test_speakers=args.test_speakers, utts=args.utts, corpus=args.corpus,
        epochs=args.epochs, batch_size=args.batch_size, steps_per_epoch=args.steps_per_epoch,
        bits=args.bits, finetune_epochs=args.finetune_epochs, finetune_steps=args.finetune_steps,
        frames=args.frames, corpus_crops=args.corpus_crops, real_sources=args.real_sources,
        real_clips=args.real_clips, real_speech=not args.no_real_speech, firmware=args.firmware, core=args.core),
        args.workdir, args.from_stage, args.to_stage or ("firmware_session" if args.firmware else None))


def demo_recipe(*, speakers: int | None = None, test_speakers: int | None = None, utts: int | None = None,
                corpus: str | None = None, epochs: int | None = None, batch_size: int | None = None,
                steps_per_epoch: int | None = None, bits: int | None = None,
                finetune_epochs: int | None = None, finetune_steps: int | None = None,
                frames: int | None = None, corpus_crops: int | None = None,
                real_sources: list[str] | None = None, real_clips: int | None = None, real_speech: bool = True,
                firmware: bool = False, core: str | None = None):
    """The packaged demo recipe with the given values replaced (None keeps the recipe's);
    ``real_speech=False`` leaves out the real-speech set and its evaluations; ``firmware=True`` adds the
    ``firmware_session`` stage (on ``core``) after ``device_verify``."""
    import dataclasses

    from tfadvq.recipe import load_recipe, override

    recipe = load_recipe("demo")
    recipe = override(recipe, "corpus", path=corpus, speakers=speakers, test_speakers=test_speakers, utts=utts)
    recipe = override(recipe, "train", epochs=epochs, batch_size=batch_size, steps_per_epoch=steps_per_epoch)
    recipe = override(recipe, "quantize", bits=bits)
    recipe = override(recipe, "finetune", epochs=finetune_epochs, steps_per_epoch=finetune_steps)
    recipe = override(recipe, "convert", corpus_crops=corpus_crops)
    if real_speech:
        recipe = override(recipe, "real_speech", sources=real_sources, max_clips=real_clips)
    else:
        real = {"real_speech"} | {e.name for e in recipe.stages if e.stage.uses().get("corpus") == "real_speech"}
        recipe = dataclasses.replace(recipe, stages=[e for e in recipe.stages if e.name not in real])
    if firmware:
        from tfadvq.recipe import parse_recipe

        data = recipe.to_dict()
        at = recipe.index("device_verify") + 1
        session = {"type": "firmware_session", "model": "calibrate", "corpus": "corpus",
                   **({"core": core} if core else {})}
        data["stages"] = [*data["stages"][:at], session, *data["stages"][at:]]
        recipe = parse_recipe(data, recipe.source)
    elif core:
        raise ConfigError("--core: only with --firmware (the core the firmware session runs on)")
    if frames is not None:
        recipe = dataclasses.replace(recipe, scoring=dataclasses.replace(recipe.scoring, window_frames=frames,
                                                                         hop_frames=frames))
    return recipe
