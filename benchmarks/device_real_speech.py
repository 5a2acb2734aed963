"""The device's decisions on real people: the firmware on QEMU beside the Python TFLM interpreter.

A calibrated conversion (``model.tflite`` + ``model.json``, e.g. the demo's
``calibrate`` stage) is built into the semihosting firmware with the default
options (3 s of frames kept as int16 codes: a recording up to 3 s in one
front-end pass, a longer one computing the frames beyond them again) but
``SV_MAX_SECONDS`` long enough that no recording is cut, with the TFLM that
``tflm_firmware/scripts/build_tflm.sh`` built.  For
each of ``--trials`` trials drawn from a real-speech corpus (``tfadvq data
real``; half target, half non-target, seeded) the device enrolls the enrollment
recording under a fresh name, verifies the test recording at its shipped
threshold and deletes the name; Python scores the same pair with
:func:`tfadvq.evaluation.verify` under the ``tflite_micro`` interpreter.
Reported: the device's false-accept and false-reject rates, the Python
interpreter's, their decision agreement and the largest score difference; a
recording the device's audio checks refuse is refused by both and counted.

Run: ``.venv/bin/python benchmarks/device_real_speech.py --model runs/demo/calibrate --corpus data/real``;
the row is merged into benchmarks/results/firmware.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from converters.firmware import FirmwareError, build_firmware, fields, find_tflm, run_session, score
from tfadvq import rundir
from tfadvq.report import machine_description, print_table

RESULTS = Path(__file__).parent / "results" / "firmware.json"
MAX_SECONDS = 60  # longer than any real-speech clip: both sides score the whole recording


def pick_trials(trials, n: int, seed: int) -> list[int]:
    """``n`` trial indices, half target and half non-target, drawn without replacement."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(trials.labels)
    half = n // 2
    chosen = [rng.choice(np.flatnonzero(labels == k), size=min(half, int((labels == k).sum())), replace=False)
              for k in (1, 0)]
    return sorted(int(i) for i in np.concatenate(chosen))


def main() -> None:
    from converters.c_array import write_c_arrays
    from converters.metadata import read_json
    from converters.tflm import tflm_embedder
    from tfadvq.errors import AudioError
    from tfadvq.evaluation import verify
    from tfadvq.frontend import FrontEnd
    from tfadvq.voxceleb import load_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="calibrated conversion dir (model.tflite + model.json)")
    parser.add_argument("--corpus", type=Path, required=True, help="real-speech corpus (tfadvq data real)")
    parser.add_argument("--trials", type=int, default=300, help="trials run on the device (default 300)")
    parser.add_argument("--core", default="cortex-m4", help="cortex-m4 (QEMU mps2-an386) or cortex-m55")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    metadata = read_json(args.model / "model.json")
    tflite = (args.model / "model.tflite").read_bytes()
    if metadata.thresholds is None:
        raise SystemExit(f"{args.model}: model.json has no calibrated thresholds")
    threshold = metadata.thresholds.eer_threshold
    try:
        tflm = find_tflm()
    except FirmwareError as exc:
        raise SystemExit(f"{exc}: the device rows need the firmware") from exc
    corpus = load_corpus(args.corpus)
    paths = {u.key: Path(u.path) for u in corpus.test}
    picked = pick_trials(corpus.trials, args.trials, args.seed)
    embed = tflm_embedder(tflite, FrontEnd(metadata.feature, str(args.model / "model.json")))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_c_arrays(tflite, metadata, tmp / "model")
        options = {"SV_MAX_SECONDS": MAX_SECONDS}
        elf = build_firmware(args.core, tflm, tmp / "model", tmp / "build", "semihosting", options)
        names: dict[str, str] = {}
        for i in picked:
            for key in (corpus.trials.enroll[i], corpus.trials.test[i]):
                if key not in names:
                    names[key] = f"a/{len(names)}.wav"
                    (tmp / "a").mkdir(exist_ok=True)
                    shutil.copyfile(paths[key], tmp / names[key])
        commands = "".join(f"enroll t{n} {names[corpus.trials.enroll[i]]}\nverify t{n} {names[corpus.trials.test[i]]}\n"
                           f"delete t{n}\n" for n, i in enumerate(picked))
        print(f"{len(picked)} trials on QEMU {args.core} ...", flush=True)
        lines = run_session(args.core, elf, commands, cwd=tmp, timeout=6 * 3600)
        ready = fields(next(x for x in lines if x.startswith("READY")))
        replies = [x for x in lines if x.startswith(("OK", "ERR"))]
    if len(replies) != 3 * len(picked):
        raise SystemExit(f"the device answered {len(replies)} of {3 * len(picked)} commands")

    device, python, labels, refused = [], [], [], 0
    for n, i in enumerate(picked):
        enrolled, verified = replies[3 * n], replies[3 * n + 1]
        try:
            reference = verify(embed, [paths[corpus.trials.enroll[i]]], paths[corpus.trials.test[i]], threshold,
                               metadata.scoring)
        except AudioError:
            reference = None
        if reference is None or not enrolled.startswith("OK") or score(verified) is None:
            refused += 1
            if (reference is None) != (not enrolled.startswith("OK") or score(verified) is None):
                print(f"trial {i}: refused by only one side: device {enrolled!r} / {verified!r}")
            continue
        device.append(score(verified))
        python.append(reference["score"])
        labels.append(int(corpus.trials.labels[i]))
    device, python, labels = np.asarray(device), np.asarray(python), np.asarray(labels, bool)

    def rates(scores: np.ndarray) -> tuple[float, float]:
        accept = scores >= threshold
        return float(accept[~labels].mean()), float((~accept[labels]).mean())

    (far_d, frr_d), (far_p, frr_p) = rates(device), rates(python)
    row = {"method": "device_real_speech", "target": args.core, "model": args.model.name,
           "corpus": str(args.corpus), "trials": len(picked), "scored": int(labels.size),
           "target_trials": int(labels.sum()), "refused_by_audio_checks": refused, "threshold": threshold,
           "device_far": round(far_d, 4), "device_frr": round(frr_d, 4),
           "python_tflm_far": round(far_p, 4), "python_tflm_frr": round(frr_p, 4),
           "decision_agreement": round(float(np.mean((device >= threshold) == (python >= threshold))), 4),
           "max_score_abs_diff": round(float(np.max(np.abs(device - python))), 6),
           "capture_seconds": int(ready["capture_seconds"]), "max_seconds": int(ready["max_seconds"]),
           "model_bytes": len(tflite)}
    print_table([row], f"The device on real speech (QEMU {args.core}) beside the Python TFLM interpreter")
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"config": {}, "rows": []}
    rows = [r for r in old["rows"] if not (r.get("method") == row["method"] and r.get("target") == row["target"])]
    rundir.atomic_write(RESULTS, json.dumps({**old, "date": datetime.date.today().isoformat(),
                                             "machine": machine_description(), "rows": rows + [row]}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
