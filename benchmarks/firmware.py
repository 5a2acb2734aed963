"""Firmware front end and library: parity with Python, cost on a Cortex-M4, code size.

* ``frontend_max_abs_err``: the C++ fbank (host build of tflm_firmware) against
  tfadvq.features.fbank on espeak-ng speech (several voices), log-mel units
  after mean normalisation; also against kaldi-native-fbank (no mean norm).
* Front-end instructions per second of audio on the Cortex-M4: bench_fbank.elf
  under QEMU mps2-an386 with ``-icount shift=0``, where one SysTick tick is 40
  instructions (an exact, repeatable count; QEMU has no cycle model, so this is
  instructions, not cycles).  Also the one-off table set-up at boot.
* Code size of the TFLM-independent library (``arm-none-eabi-size`` of
  libsv.a, -O2, Thumb-2, hard-float).

Run: ``.venv/bin/python benchmarks/firmware.py`` (about 30 s); writes
benchmarks/results/firmware.json.
"""
from __future__ import annotations

import datetime
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tfadvq.report import machine_description, print_table

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "tflm_firmware"
RESULTS = Path(__file__).parent / "results" / "firmware.json"
UTTERANCES = [
    ("en", "The quick brown fox jumps over the lazy dog near the river bank."),
    ("en-us", "Please verify my voice before opening the front door."),
    ("de", "Guten Morgen, heute pruefen wir die Sprechererkennung auf dem Mikrocontroller."),
    ("fr", "Bonjour, ceci est un test de verification du locuteur."),
]
QEMU = ["qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native", "-icount", "shift=0"]


def _parity_tool():
    sys.path.insert(0, str(FIRMWARE / "tools"))
    spec = importlib.util.spec_from_file_location("fbank_parity", FIRMWARE / "tools" / "fbank_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parity_rows(tool) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for voice, text in UTTERANCES:
            wav = tool.speech(text, Path(tmp) / f"{voice}.wav", voice=voice)
            errors = tool.parity(wav)
            rows.append({
                "method": "fbank_cpp_host",
                "voice": voice,
                "frames": errors["frames"],
                "frontend_max_abs_err": errors["max_abs_err_vs_tfadvq"],
                "frontend_mean_abs_err": errors["mean_abs_err_vs_tfadvq"],
                "kaldi_max_abs_err": errors["max_abs_err_vs_kaldi"],
                "kaldi_mean_abs_err": errors["mean_abs_err_vs_kaldi"],
            })
    return rows


def m4_row() -> dict:
    elf = FIRMWARE / "build" / "cortex-m4" / "bench_fbank.elf"
    run = subprocess.run(["timeout", "120", *QEMU, "-kernel", str(elf)], capture_output=True,
                         text=True, check=True)
    values = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", run.stdout)}
    seconds = values["samples"] / 16000
    return {
        "method": "fbank_cpp_cortex_m4_qemu",
        "audio_seconds": seconds,
        "frames": values["frames"],
        "frontend_instructions_per_second_audio": round(values["fbank_instructions"] / seconds),
        "frontend_instructions_per_frame": round(values["fbank_instructions"] / values["frames"]),
        "init_instructions": values["init_instructions"],
    }


def size_rows() -> list[dict]:
    library = FIRMWARE / "build" / "cortex-m4" / "libsv.a"
    out = subprocess.run(["arm-none-eabi-size", "-t", str(library)], capture_output=True, text=True,
                         check=True).stdout
    parts = {}
    for line in out.splitlines()[1:]:
        fields = line.split()  # text data bss dec hex name [(ex archive)]
        parts["TOTAL" if "(TOTALS)" in line else fields[5].removesuffix(".o")] = [int(f) for f in fields[:3]]
    front_end = np.sum([parts["fbank"], parts["fft"]], axis=0)
    return [
        {"method": "libsv_cortex_m4", "text_bytes": parts["TOTAL"][0], "data_bytes": parts["TOTAL"][1],
         "bss_bytes": parts["TOTAL"][2]},
        {"method": "fbank_fft_cortex_m4", "text_bytes": int(front_end[0]), "data_bytes": int(front_end[1]),
         "bss_bytes": int(front_end[2])},
    ]


def main() -> None:
    tool = _parity_tool()
    tool.make("host", "cortex-m4")
    parity = parity_rows(tool)
    m4 = m4_row()
    sizes = size_rows()
    print_table(parity, "C++ fbank vs tfadvq.features (frontend_*) and kaldi-native-fbank (kaldi_*)")
    print_table([m4], "Front end on Cortex-M4 (QEMU mps2-an386, -icount shift=0, SysTick x 40)")
    print_table(sizes, "TFLM-independent library, arm-none-eabi-size (-O2, cortex-m4, hard float)")
    summary = {
        "method": "summary",
        "frontend_max_abs_err": max(r["frontend_max_abs_err"] for r in parity),
        "frontend_instructions_per_second_audio": m4["frontend_instructions_per_second_audio"],
        "library_text_bytes": sizes[0]["text_bytes"],
    }
    print_table([summary], "Summary")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "firmware",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {
            "speech": "espeak-ng voices " + ", ".join(v for v, _ in UTTERANCES) + "; sox -D to 16 kHz",
            "frontend": "80 mel, 25/10 ms, povey, 512-pt FFT, mean norm (tfadvq.features defaults)",
            "m4": "QEMU mps2-an386 cortex-m4, -icount shift=0, 0.45 s golden speech, arm-none-eabi-g++ -O2",
            "parity_units": "absolute log-mel difference",
        },
        "rows": parity + [m4] + sizes + [summary],
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
