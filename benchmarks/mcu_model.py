"""The device model (issue 15): architecture costs, and one whole ``tfadvq demo`` run measured.

1. **Architectures** (untrained, nothing to train): for the device model
   (``tfadvq/configs/mcu.yaml``), a wider variant and the former demo model
   (TinyResNet) at 100 and 200 input frames -- parameters, multiply-accumulates
   per window (:func:`tfadvq.models.common.multiply_accumulates`) and per
   verification of a 3 s utterance (windows from :mod:`tfadvq.windows`), the
   int8 ``.tflite`` bytes and the arena TFLM allocates for it (measured by the
   Python TFLM interpreter, calibrated on corpus crops), and an instruction
   estimate for a Cortex-M4 with CMSIS-NN: MACs times the instructions per MAC
   measured on QEMU for the TinyResNet int8 ``Invoke()`` (issue 15: 574 M at
   200 frames), plus the firmware's front end (two fbank passes, 5.8 M
   instructions per second of audio each; tflm_firmware/README.md).  The
   firmware helper's benchmarks/firmware.py measures the real figures.
2. **The demo run** (``--workdir``): runs ``tfadvq demo`` into it as one
   child process (unless ``--no-run``: an existing run is read) and records
   CPU seconds (user + system of the child) and wall time, every stage's
   seconds, FP32 and 4-bit Keras EER, the int8 device model's TFLM EER on the
   same trials, the FAR at the shipped threshold next to Keras's at its own,
   and decision agreement.

    nice -n 10 .venv/bin/python benchmarks/mcu_model.py --corpus runs/demo/corpus --workdir runs/mcu_demo

Prints tables and writes ``benchmarks/results/mcu_model.json`` (format: /work/shared/benchmarks.md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from tfadvq import rundir
from tfadvq.report import machine_description, print_table

RESULTS = Path(__file__).parent / "results" / "mcu_model.json"
ROOT = Path(__file__).resolve().parents[1]
VERIFY_SECONDS = 3.0
# TinyResNet int8 on Cortex-M4 + CMSIS-NN, QEMU mps2-an386 (issue 15): one 200-frame Invoke()
M4_TINYRESNET_INSTRUCTIONS = 574e6
FRONT_END_INSTRUCTIONS_PER_SECOND = 2 * 5.8e6  # mean pass + window pass (tflm_firmware/README.md)
CANDIDATES = {
    "McuDFResNet (mcu.yaml)": ("McuDFResNet", None),
    "McuDFResNet widths 8,8,24,48,96": ("McuDFResNet", {"widths": [8, 8, 24, 48, 96]}),
    "TinyResNet (former demo)": ("TinyResNet", {}),
}


def architecture_rows(corpus: Path, frames_list: list[int]) -> list[dict[str, object]]:
    import numpy as np

    from converters.keras_to_tflite import array_representative, corpus_crops, to_int8_tflite
    from converters.tflm import arena_bytes
    from tfadvq.audio_limits import SAMPLE_RATE
    from tfadvq.fbank_config import FbankConfig, num_frames
    from tfadvq.models import build_model
    from tfadvq.models.common import multiply_accumulates
    from tfadvq.train_config import resolve_config
    from tfadvq.windows import window_starts

    mcu = resolve_config("mcu")
    utterance_frames = num_frames(int(VERIFY_SECONDS * SAMPLE_RATE), FbankConfig())
    tiny_macs = sum(multiply_accumulates(build_model("TinyResNet"), 200).values())
    per_mac = M4_TINYRESNET_INSTRUCTIONS / tiny_macs
    rows = []
    for frames in frames_list:
        crops = array_representative(corpus_crops(corpus, frames, 16))
        windows = len(window_starts(utterance_frames, frames, frames))
        for label, (name, args) in CANDIDATES.items():
            model = build_model(name, **(mcu.model_args if args is None else args))
            macs = sum(multiply_accumulates(model, frames).values())
            flatbuffer = to_int8_tflite(model, frames, crops)
            instructions = macs * windows * per_mac + VERIFY_SECONDS * FRONT_END_INSTRUCTIONS_PER_SECOND
            rows.append({"method": "int8_untrained", "model": label, "frames": frames,
                         "params": model.count_params(), "macs_per_window": macs,
                         "windows_per_3s": windows, "macs_per_verification": macs * windows,
                         "int8_tflite_bytes": len(flatbuffer),
                         "arena_bytes": arena_bytes(flatbuffer, (1, frames, 80)),
                         "m4_instructions_per_verification_estimate": float(np.round(instructions, -5))})
    return rows, per_mac


def run_demo(workdir: Path, corpus: Path | None) -> dict[str, float]:
    """Run ``tfadvq demo`` once as a child process; its CPU seconds and wall time."""
    command = [sys.executable, "-c", "import sys; from tfadvq.cli import main; sys.exit(main())",
               "demo", "--workdir", str(workdir)]
    if corpus is not None:
        command += ["--corpus", str(corpus)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1),
            "cpu_seconds_over_2_cores": round(cpu / 2, 1)}


def demo_rows(workdir: Path) -> tuple[list[dict[str, object]], dict[str, float]]:
    def record(stage: str) -> dict:
        return rundir.read_json(workdir / stage / rundir.RECORD)

    stages = json.loads((workdir / "recipe.json").read_text())["stages"]
    seconds = {s["name"]: round(record(s["name"])["seconds"], 1) for s in stages}
    fp, q = record("evaluate")["metrics"], record("evaluate_quantized")["metrics"]
    convert, calibrate = record("convert")["metrics"], record("calibrate")["metrics"]
    rows = [
        {"method": "fp32", "bits": 32, "scoring": "keras", "eer": fp["eer"]},
        {"method": "kmqat", "bits": 4, "scoring": "keras", "eer": q["eer"]},
        {"method": f"kmqat_{convert['activations']}_tflm", "bits": 4, "scoring": "tflm",
         "eer": calibrate["device_eer_percent"], "keras_eer": calibrate["keras_eer_percent"],
         "num_trials": calibrate["num_trials"], "tflite_bytes": convert["tflite_bytes"],
         "arena_bytes": convert["arena_bytes"], "keras_min_cosine": convert["keras_min_cosine"],
         "far_at_shipped_threshold": calibrate["device_far_at_eer_threshold"],
         "keras_far_at_its_threshold": calibrate["keras_far_at_eer_threshold"],
         "far_at_keras_threshold": calibrate["device_far_at_keras_threshold"],
         "far_at_low_far": calibrate["far_at_low_far"], "keras_far_at_low_far": calibrate["keras_far_at_low_far"],
         "decisions_differ_at_eer": calibrate["decisions_differ_at_eer"],
         "decision_agreement_at_eer": calibrate["decision_agreement_at_eer"],
         "device_scoring_max_abs_diff": calibrate["device_scoring_max_abs_diff"]},
    ]
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="corpus for the int8 ranges' crops and the demo "
                                                    "(default: the demo generates its own)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "mcu_demo")
    parser.add_argument("--no-run", action="store_true", help="read a finished demo run instead of running it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    timing = None if args.no_run else run_demo(args.workdir, args.corpus)
    corpus = args.corpus or Path(rundir.read_json(args.workdir / "corpus" / rundir.RECORD)["outputs"]["corpus"])
    rows, seconds = demo_rows(args.workdir)
    print_table(rows, f"tfadvq demo in {args.workdir}: the device model")
    print_table([{"stage": k, "seconds": v} for k, v in seconds.items()], "stage wall seconds")
    architectures, per_mac = architecture_rows(corpus, [100, 200])
    print_table(architectures, "Architectures (untrained, int8; arena measured by the TFLM interpreter)")
    report = {
        "benchmark": "mcu_model",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {"workdir": str(args.workdir), "corpus": str(corpus), "demo_run": timing,
                   "load_average_1_5_15": list(os.getloadavg()), "stage_seconds": seconds,
                   "verification_seconds": VERIFY_SECONDS, "m4_instructions_per_mac": round(per_mac, 3),
                   "estimate_note": "instructions = MACs x windows x (574 M / TinyResNet MACs at 200 frames, "
                                    "measured on QEMU M4 + CMSIS-NN) + 11.6 M per second of audio (front end); "
                                    "an estimate, benchmarks/firmware.py measures"},
        "rows": rows + architectures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write(args.out, (json.dumps(report, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
