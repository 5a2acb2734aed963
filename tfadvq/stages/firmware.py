"""The ``firmware_session`` stage: the calibrated model in the real firmware, on QEMU, beside Python.

``make firmware-demo`` (``tfadvq demo --firmware``) ends the demo with it: the
calibrate stage's C sources are built into the semihosting firmware with a
prebuilt TFLM (:func:`converters.firmware.find_tflm`: the one
``tflm_firmware/scripts/build_tflm.sh`` built, or ``$TFLM_DIR``), and a
scripted exchange runs on a Cortex-M under QEMU: format the store, enroll two
test speakers, list, verify each against its own and the other's recording,
delete one, list and claim it again.  Each reply keeps its instruction
count (QEMU ``-icount``: exact and repeatable), and each verify reply is shown
beside the score and decision of the same recordings under the TFLM Python
interpreter at the same threshold, so a user sees the device do what the
evaluation measured.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, ClassVar

from tfadvq import rundir
from tfadvq.errors import ConfigError, DataError
from tfadvq.recipe import StageBase, StageContext, StageResult, register_stage
from tfadvq.stages.lineage import lineage
from tfadvq.stages.modelling import corpus_of


@register_stage("firmware_session")
@dataclasses.dataclass
class FirmwareSessionStage(StageBase):
    """A scripted enroll / verify / list / delete exchange with the firmware on QEMU (module doc)."""

    produces: ClassVar[tuple[str, ...]] = ("transcript", "session")
    needs: ClassVar[dict[str, str]] = {"model": "c_array", "corpus": "corpus"}

    model: str = "calibrate"
    corpus: str = "corpus"
    core: str = "cortex-m4"
    tflm_dir: str | None = None  # default: $TFLM_DIR, else what build_tflm.sh built

    def __post_init__(self) -> None:
        from converters.firmware import CORES

        if self.core not in CORES:
            raise ConfigError(f"firmware_session: core {self.core!r}; accepted: {', '.join(CORES)}")

    def uses(self) -> dict[str, str]:
        return {"model": self.model, "corpus": self.corpus}

    def fingerprint(self, ctx: StageContext) -> dict[str, Any]:
        from converters.firmware import find_tflm

        library = find_tflm(self.tflm_dir).library(self.core)
        return {"tflm_library": str(library), "tflm_library_stat": rundir.stat_digest(library)}

    def run(self, ctx: StageContext) -> StageResult:
        from converters import firmware
        from converters.metadata import read_json

        made = lineage(ctx, self.model)
        tflite, metadata_file = made.device_model(ctx.name)
        metadata = read_json(metadata_file)
        if metadata.thresholds is None:
            raise ConfigError(f"stage {ctx.name}: {self.model!r} has no calibrated thresholds (use a calibrate stage)")
        out = rundir.SessionDir(ctx.out)
        script = _script(_speakers(corpus_of(ctx, self.corpus)), out.audio)
        commands = "".join(f"{line}\n" for line, _ in script)
        rundir.atomic_write(out.commands, commands)
        tflm = firmware.find_tflm(self.tflm_dir)
        print(f"building the {self.core} firmware with TFLM {tflm.root} ...", flush=True)
        elf = firmware.build_firmware(self.core, tflm, made.c_array, out.build)
        print(f"running the session on QEMU {firmware.CORES[self.core]['machine']} ...", flush=True)
        lines = firmware.run_session(self.core, elf, commands, cwd=out.path)
        expected = _python_scores(tflite.read_bytes(), made.device_front_end(), script,
                                  metadata.thresholds.eer_threshold, ctx.scoring)
        exchange = _exchange(script, lines, expected)
        rundir.atomic_write(out.transcript, _transcript(lines, exchange))
        print(out.transcript.read_text(), flush=True)
        verified = [e for e in exchange if e["python_score"] is not None]
        session = {"core": self.core, "machine": firmware.CORES[self.core]["machine"], "elf": str(elf),
                   "ready": next((x for x in lines if x.startswith("READY")), ""), "exchange": exchange,
                   "max_score_abs_diff": max(abs(e["device_score"] - e["python_score"]) for e in verified),
                   "decisions_agree": all(e["device_decision"] == e["python_decision"] for e in verified)}
        rundir.write_json(out.session, session)
        return StageResult(
            outputs={"transcript": str(out.transcript), "session": str(out.session)},
            metrics={k: session[k] for k in ("core", "machine", "max_score_abs_diff", "decisions_agree")},
            summary=f"{len(exchange)} commands on QEMU {session['machine']}; device vs Python TFLM: max |score "
                    f"difference| {session['max_score_abs_diff']:.1e}, decisions "
                    + ("agree" if session["decisions_agree"] else "DIFFER") + f"; {out.transcript}")


def _speakers(corpus) -> list[tuple[str, list[Path]]]:
    """Two test speakers with three recordings each: (id, [two to enroll, one to test])."""
    by_speaker: dict[str, list[Path]] = {}
    for u in corpus.test:
        by_speaker.setdefault(u.speaker, []).append(Path(u.path))
    rich = [(s, paths[:3]) for s, paths in by_speaker.items() if len(paths) >= 3]
    if len(rich) < 2:
        raise DataError("firmware_session: the corpus's test part needs 2 speakers with >= 3 recordings each")
    return rich[:2]


def _script(speakers: list[tuple[str, list[Path]]], audio: Path) -> list[tuple[str, tuple | None]]:
    """The exchange: ``(protocol line, (enrollment files, test file) for a verify, else None)``.

    A enrolls two recordings, B one; each is verified against its own third
    recording and the other's; B is deleted and claimed once more (refused).
    Recordings are copied to short names under ``audio`` (a protocol line holds
    256 bytes; semihosting opens them relative to the stage directory).
    """
    (a, (a1, a2, a3)), (b, (b1, b2, _)) = [(_store_name(s, f), p) for (s, p), f in zip(speakers, "ab")]
    audio.mkdir(parents=True, exist_ok=True)
    name = {}
    for i, path in enumerate((a1, a2, a3, b1, b2)):
        shutil.copyfile(path, audio / f"{i}{path.suffix}")
        name[path] = f"{audio.name}/{i}{path.suffix}"
    return [("format", None),
            (f"enroll {a} {name[a1]}", None), (f"enroll {a} {name[a2]}", None), (f"enroll {b} {name[b1]}", None),
            ("list", None),
            (f"verify {a} {name[a3]}", ((a1, a2), a3)), (f"verify {a} {name[b2]}", ((a1, a2), b2)),
            (f"verify {b} {name[b2]}", ((b1,), b2)), (f"verify {b} {name[a3]}", ((b1,), a3)),
            (f"delete {b}", None), ("list", None), (f"verify {b} {name[b2]}", None)]


def _store_name(speaker: str, fallback: str) -> str:
    """A store name for ``speaker``: its id when the protocol takes it (letters, digits, ``_``; <= 15)."""
    return speaker if speaker.replace("_", "").isalnum() and len(speaker) <= 15 else fallback


def _python_scores(tflite: bytes, frontend, script, threshold: float, scoring) -> list[dict | None]:
    """Per script line, the Python TFLM interpreter's score and decision of a verify, else None."""
    from converters.tflm import tflm_embedder
    from tfadvq.evaluation import verify

    embed = tflm_embedder(tflite, frontend)
    return [None if claim is None else verify(embed, list(claim[0]), claim[1], threshold, scoring)
            for _, claim in script]


def _exchange(script, lines: list[str], expected: list[dict | None]) -> list[dict[str, Any]]:
    """Pair each command with the device's reply (one per command, after the READY line)."""
    from converters.firmware import fields, score

    replies = [x for x in lines if x.startswith(("OK", "ERR"))]
    if len(replies) != len(script):
        raise ConfigError(f"the device answered {len(replies)} of {len(script)} commands:\n" + "\n".join(lines[-12:]))
    rows = []
    for (command, _), reply, python in zip(script, replies, expected):
        device = score(reply)
        rows.append({"command": command, "reply": reply.rsplit(" instructions=", 1)[0],
                     "instructions": int(fields(reply).get("instructions", 0)),
                     "device_score": device, "python_score": python and python["score"],
                     "device_decision": None if device is None else ("accept" if " ACCEPT " in reply else "reject"),
                     "python_decision": python and python["decision"]})
    return rows


def _transcript(lines: list[str], exchange: list[dict[str, Any]]) -> str:
    width = max(len(e["command"]) for e in exchange)
    out = [f"device: {x}" for x in lines if x.startswith("READY")]
    for e in exchange:
        line = f"> {e['command']:<{width}}  < {e['reply']}  [{e['instructions']:,} instructions]"
        if e["python_score"] is not None:
            line += f"  (Python TFLM: score={e['python_score']:.4f} {e['python_decision']})"
        out.append(line)
    out.extend(x for x in lines if x.startswith("BYE"))
    return "\n".join(out) + "\n"
