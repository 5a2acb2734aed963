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
* The whole firmware with TFLM (``--tflm-dir``, built outside the project as the
  README says), per core (``cortex-m4`` on QEMU mps2-an386, ``cortex-m55`` on
  mps3-an547) and per converted model (``--model NAME=DIR``, a calibrated
  ``tfadvq convert``/calibrate directory holding ``model.tflite`` +
  ``model.json``):
  - ``ram_bytes`` = .data + .bss and ``flash_bytes`` = code + read-only data +
    .data image (the model included) of the *board* build (UART console, store
    on flash: what is flashed; the store's flash sectors are
    ``store_flash_bytes`` besides), scoring up to ``SV_MAX_SECONDS``, with a
    capture of ``capture_seconds`` (``SV_CAPTURE_SECONDS``: the fbank frames kept, for
    ``@buffer`` and one-pass scoring of files; 0: file-fed, one window of frames, or
    ``sv_kept_frames`` of them with ``SV_KEPT_FRAMES``; ``frames_kept``: what the build keeps);
    ``arena_bytes`` is the arena compiled in (converter's figure + margin),
    ``arena_used_bytes`` what TFLM allocated in it;
  - ``stack_used_bytes``: the deepest the stack (painted at reset) got in the session;
  - ``instructions_per_enrollment`` / ``instructions_per_verification``: one
    ``enroll`` / ``verify`` of a fixed 3.0 s utterance (file read, one fbank
    pass when its frames fit in the frames kept, else the frames not kept
    computed again, every window's Invoke) on the semihosting build under QEMU
    ``-icount shift=0`` (SysTick x 1e9 / SYSCLK: instructions, not cycles);
  - ``score_abs_diff``: the device's verify score against the same pipeline in
    Python (``tfadvq.scoring`` with the ``tflite_micro`` interpreter).
  Without ``--tflm-dir`` (TFLM absent) these rows are not measured and the
  script says so; the committed ones are kept.
* ``--lever NAME=COMMIT`` (repeatable): the same Cortex-M4 rows for the
  ``tflm_firmware`` tree of another commit (``git archive``), method
  ``firmware_tflm_lever``: what each change to the firmware bought, one by one.

Run: ``.venv/bin/python benchmarks/firmware.py [--tflm-dir DIR --corpus DIR --model NAME=DIR ...
--lever NAME=COMMIT ...] [--skip-frontend]``; rows are merged into benchmarks/results/firmware.json.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from converters.firmware import CORES, FirmwareError, Tflm, build_firmware, find_tflm, run_session, section_sizes
from tfadvq import rundir
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


UTTERANCE_SAMPLES = 48000  # the fixed 3.0 s utterance
MAX_SECONDS = 3            # the longest utterance the measured non-default builds score: the utterance fits
DEFAULT = None             # SV_CAPTURE_SECONDS of the build users get: no option at all (the firmware's defaults)
# The builds measured, (SV_CAPTURE_SECONDS, SV_KEPT_FRAMES): the default build (SV_MAX_SECONDS=6,
# SV_CAPTURE_SECONDS=3: 3 s of frames kept as int16 codes for "@buffer" and one-pass scoring of files, longer files
# computing the frames beyond them again: any length) and a file-fed one (SV_MAX_SECONDS=3, SV_CAPTURE_SECONDS=0:
# one window of frames, files in two passes; RAM does not grow with the utterance).  (n, k): SV_KEPT_FRAMES=k too.
BUILDS = ((DEFAULT, 0), (0, 0))
LEVER_BUILDS = ((MAX_SECONDS, 0), (0, 0))  # options every measured commit has: 3 s of frames kept; file-fed
ELF_FLASH = (".isr_vector", ".text", ".ARM.exidx", ".ARM.extab", ".init_array", ".data")


def utterances(corpus: Path, out: Path) -> list[Path]:
    """Two fixed 3.0 s utterances of one test speaker (the first 48000 samples): enroll, verify."""
    from tfadvq.audio import load_audio, save_wav

    by_speaker: dict[str, list[Path]] = {}
    for path in sorted((corpus / "test").rglob("*.wav")):
        by_speaker.setdefault(path.relative_to(corpus / "test").parts[-3], []).append(path)
    for paths in by_speaker.values():
        long = [p for p in paths if load_audio(p).size >= UTTERANCE_SAMPLES][:2]
        if len(long) == 2:
            written = []
            for i, p in enumerate(long):
                written.append(out / f"utt3s_{i}.wav")
                save_wav(written[-1], load_audio(p)[:UTTERANCE_SAMPLES])
            return written
    raise SystemExit(f"{corpus}: no test speaker with two utterances of >= 3 s")


def python_score(tflite: bytes, scoring, enroll: Path, verify: Path) -> float:
    """The device's verify score computed in Python: tfadvq's scoring under the TFLM interpreter."""
    from converters.tflm import tflm_embedder
    from tfadvq.scoring import embed_files

    e, v = embed_files(tflm_embedder(tflite), [enroll, verify], scoring)
    return float(np.dot(e, v) / np.linalg.norm(e) / np.linalg.norm(v))


def input_type(tflite: bytes) -> str:
    """The converted model's input tensor type ("int8": quantised by the caller; "float32")."""
    from converters.tflm import make_interpreter

    return np.dtype(make_interpreter(tflite).get_input_details(0)["dtype"]).name


def tflm_rows(tflm: Tflm, corpus: Path, models: dict[str, Path], cores: list[str],
              sources: Path = FIRMWARE, builds: tuple[tuple[int, int], ...] = BUILDS) -> list[dict]:
    from converters.c_array import write_c_arrays
    from converters.metadata import read_json
    from tfadvq.windows import window_starts

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enroll, verify = utterances(corpus, tmp)
        for name, source in models.items():
            metadata = read_json(source / "model.json")
            tflite = (source / "model.tflite").read_bytes()
            model_dir = tmp / name
            write_c_arrays(tflite, metadata, model_dir)
            reference = python_score(tflite, metadata.scoring, enroll, verify)
            for core, (capture, kept) in ((c, b) for c in cores for b in dict.fromkeys(builds)):
                if not tflm.libraries[core].is_file():
                    print(f"{core}: no TFLM library at {tflm.libraries[core]}; skipped")
                    continue
                build = tmp / f"build_{name}_{capture}_{kept}"
                options = {} if capture is DEFAULT else {"SV_MAX_SECONDS": MAX_SECONDS, "SV_CAPTURE_SECONDS": capture,
                                                         **({"SV_KEPT_FRAMES": kept} if kept else {})}
                board = section_sizes(build_firmware(core, tflm, model_dir, build, "board", options, sources))
                elf = build_firmware(core, tflm, model_dir, build, "semihosting", options, sources)
                lines = run_session(core, elf, f"format\nenroll alice {enroll}\nverify alice {verify}\n", tmp)
                ready = dict(re.findall(r"(\w+)=(\S+)", next(x for x in lines if x.startswith("READY"))))
                enrolled = next(x for x in lines if x.startswith("OK enrolled"))
                verified = next(x for x in lines if x.startswith("OK ACCEPT") or x.startswith("OK REJECT"))
                score = float(re.search(r"score=(-?[\d.]+)", verified).group(1))
                stack = int(re.search(r"stack_used=(\d+)", next(x for x in lines if x.startswith("BYE"))).group(1))
                frames = 1 + (UTTERANCE_SAMPLES - 400) // 160
                rows.append({
                    "method": "firmware_tflm", "target": core, "machine": CORES[core]["machine"], "model": name,
                    "activations": metadata.activations, "kernels": "cmsis_nn", "window_frames": metadata.input_frames,
                    "hop_frames": metadata.scoring.hop, "build": "default" if capture is DEFAULT else "options",
                    "max_seconds": int(ready.get("max_seconds", MAX_SECONDS)),
                    "capture_seconds": int(ready.get("capture_seconds", capture or 0)),
                    **({"sv_kept_frames": kept} if kept else {}), "frames_kept": int(ready.get("kept_frames", 0)),
                    "input_type": input_type(tflite),
                    "model_bytes": len(tflite), "utterance_seconds": UTTERANCE_SAMPLES / 16000,
                    "windows_per_utterance": len(window_starts(frames, metadata.input_frames,
                                                               metadata.scoring.hop)),
                    "ram_bytes": board[".data"] + board[".bss"],
                    "flash_bytes": sum(board.get(k, 0) for k in ELF_FLASH),
                    "store_flash_bytes": board.get(".sv_store", 0),
                    "stack_used_bytes": stack, "ram_with_stack_bytes": board[".data"] + board[".bss"] + stack,
                    "text_bytes": board[".text"], "data_bytes": board[".data"], "bss_bytes": board[".bss"],
                    "arena_bytes": int(ready["arena"]), "arena_used_bytes": int(ready["arena_used"]),
                    "instructions_per_enrollment": int(re.search(r"instructions=(\d+)", enrolled).group(1)),
                    "instructions_per_verification": int(re.search(r"instructions=(\d+)", verified).group(1)),
                    "device_score": score, "python_tflm_score": round(reference, 6),
                    "score_abs_diff": round(abs(score - reference), 6),
                })
    return rows


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` rows with every re-measured (method, target, model) replaced by its ``new`` row."""
    key = lambda r: (r.get("method"), r.get("target"), r.get("model"), r.get("voice"),  # noqa: E731
                     r.get("capture_seconds", r.get("max_seconds")), r.get("max_seconds"), r.get("sv_kept_frames", 0),
                     r.get("lever"))
    fresh = {key(r) for r in new}
    return [r for r in old if key(r) not in fresh] + new


def lever_rows(tflm: Tflm, corpus: Path, models: dict[str, Path], levers: dict[str, str]) -> list[dict]:
    """The Cortex-M4 rows of :func:`tflm_rows` for the ``tflm_firmware`` tree of each commit."""
    rows = []
    for lever, commit in levers.items():
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "tflm_firmware"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            for row in tflm_rows(tflm, corpus, models, ["cortex-m4"], Path(tmp) / "tflm_firmware", LEVER_BUILDS):
                rows.append({**row, "method": "firmware_tflm_lever", "lever": lever, "commit": commit})
    return rows


def frontend_rows() -> list[dict]:
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
    return parity + [m4] + sizes + [summary]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflm-dir", type=Path,
                        help="tflite-micro tree with microlite built per core (default: $TFLM_DIR, else what "
                             "tflm_firmware/scripts/build_tflm.sh built)")
    parser.add_argument("--corpus", type=Path, help="corpus whose test utterances give the fixed 3 s audio")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                        help="calibrated conversion directory (model.tflite + model.json); repeatable")
    parser.add_argument("--core", action="append", choices=sorted(CORES), help="default: every core")
    parser.add_argument("--lever", action="append", default=[], metavar="NAME=COMMIT",
                        help="also measure the M4 firmware of another commit's tflm_firmware (repeatable)")
    parser.add_argument("--skip-frontend", action="store_true", help="keep the committed front-end rows")
    args = parser.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"config": {}, "rows": []}
    rows = old["rows"] if args.skip_frontend else merge(old["rows"], frontend_rows())
    config = dict(old.get("config", {}))
    try:
        tflm = find_tflm(args.tflm_dir)
    except FirmwareError as exc:
        tflm = None
        print(f"{exc}: the whole-firmware rows (ram/flash/arena/instructions per target) are not measured; "
              "the committed ones are kept.")
    if tflm is not None and args.model:
        if args.corpus is None:
            raise SystemExit("--model needs --corpus (the fixed 3 s utterances come from its test set)")
        models = dict(m.split("=", 1) for m in args.model)
        models = {k: Path(v) for k, v in models.items()}
        measured = tflm_rows(tflm, args.corpus, models, args.core or sorted(CORES))
        measured += lever_rows(tflm, args.corpus, models, dict(m.split("=", 1) for m in args.lever))
        print_table(measured, "Whole firmware with TFLM (CMSIS-NN): board build sizes, QEMU -icount instructions")
        rows = merge(rows, measured)
        config["tflm"] = ("tflite-micro 90b983c, OPTIMIZED_KERNEL_DIR=cmsis_nn, arm-none-eabi-gcc 12.2 -O2; sizes of "
                          f"PLATFORM=board builds: the default options, or SV_MAX_SECONDS={MAX_SECONDS} with "
                          "(SV_CAPTURE_SECONDS, SV_KEPT_FRAMES) "
                          f"{' or '.join(str(b) for b in BUILDS if b[0] is not DEFAULT)}; instructions of PLATFORM="
                          "semihosting builds under QEMU -icount shift=0 (SysTick x 1e9/SYSCLK)")
        config["utterance"] = f"first 3.0 s of two test utterances of one speaker of {args.corpus}"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    rundir.atomic_write(RESULTS, json.dumps({
        "benchmark": "firmware",
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "config": {**config,
                   "speech": "espeak-ng voices " + ", ".join(v for v, _ in UTTERANCES) + "; sox -D to 16 kHz",
                   "frontend": "80 mel, 25/10 ms, povey, 512-pt FFT, mean norm (tfadvq.features defaults)",
                   "m4": "QEMU mps2-an386 cortex-m4, -icount shift=0, 0.45 s golden speech, arm-none-eabi-g++ -O2",
                   "parity_units": "absolute log-mel difference"},
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
