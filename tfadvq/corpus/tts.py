"""Text-to-speech engine calls: espeak-ng, flite and festival (Debian packages).

Every engine writes wav files into a scratch directory and we read them back.
espeak-ng and flite start in milliseconds, so they run once per sentence;
festival takes ~0.3 s to start, so all of a speaker's sentences go through one
festival process (a generated Scheme script).  The engines are deterministic:
the same voice and text give the same samples.
"""
from __future__ import annotations

import functools
import re
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tfadvq.corpus.voices import CANDIDATES, ESPEAK, FESTIVAL, FLITE, Voice, VoiceSet

_ESPEAK_DEFAULT_WPM = 175
_TIMEOUT_SECONDS = 120


class SynthesisError(RuntimeError):
    """A TTS engine failed; the message names the engine, voice and the engine's stderr."""


def synthesize(voice: Voice, texts: Sequence[str], workdir: Path) -> list[tuple[np.ndarray, int] | None]:
    """Speak each text with ``voice``: ``(float32 samples in [-1, 1], sample rate)`` per text.

    An entry is ``None`` when the engine produced no audio for that text (it is
    reported as a failed utterance); a failing engine process raises
    :class:`SynthesisError`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [workdir / f"tts_{i:03d}.wav" for i in range(len(texts))]
    if voice.engine == FESTIVAL:
        _run(["festival", "-b", str(_festival_script(voice, texts, paths, workdir))], voice)
    else:
        for text, path in zip(texts, paths):
            _run(_command(voice, text, path), voice)
    return [_read_wav(path) if path.is_file() and path.stat().st_size > 44 else None
            for path in paths]


def _command(voice: Voice, text: str, path: Path) -> list[str]:
    if voice.engine == ESPEAK:
        return ["espeak-ng", "-v", voice.engine_voice, "-s", str(round(_ESPEAK_DEFAULT_WPM * voice.speed)),
                "-p", str(voice.engine_pitch), "-g", str(voice.word_gap), "-w", str(path), text]
    if voice.engine == FLITE:
        return ["flite", "-voice", voice.engine_voice,
                "--setf", f"duration_stretch={1.0 / voice.speed:.3f}", "-t", text, "-o", str(path)]
    raise ValueError(f"unknown TTS engine {voice.engine!r}; expected {ESPEAK}, {FLITE} or {FESTIVAL}")


def _festival_script(voice: Voice, texts: Sequence[str], paths: Sequence[Path], workdir: Path) -> Path:
    lines = [f"(voice_{voice.engine_voice})",
             f"(Parameter.set 'Duration_Stretch {1.0 / voice.speed:.3f})"]
    for text, path in zip(texts, paths):
        quoted = text.replace("\\", " ").replace('"', " ")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{path}" \'riff)')
    script = workdir / "synth.scm"
    script.write_text("\n".join(lines) + "\n")
    return script


def _run(command: list[str], voice: Voice) -> None:
    try:
        done = subprocess.run(command, capture_output=True, timeout=_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SynthesisError(f"{voice.engine} ({voice.engine_voice}): {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()[-300:]
        raise SynthesisError(f"{voice.engine} ({voice.engine_voice}) exited with "
                             f"{done.returncode}: {reason}")


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM mono wav as float32 (every engine here writes exactly that)."""
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2:
            raise SynthesisError(f"{path}: engine wrote {8 * src.getsampwidth()}-bit audio, "
                                 "expected 16-bit PCM")
        pcm = np.frombuffer(src.readframes(src.getnframes()), "<i2")
        samples = pcm.reshape(-1, src.getnchannels()).mean(axis=1)
        return (samples / 32768.0).astype(np.float32), src.getframerate()


# --------------------------------------------------------------------------- which voices work here

_PROBE_TEXT = "Hello there."


@functools.lru_cache(maxsize=4)
def probe_voices(candidates: VoiceSet = CANDIDATES) -> tuple[VoiceSet, dict[str, str]]:
    """The candidates that work on this machine, and ``{"engine voice": why not}`` for the others.

    A festival voice or espeak-ng language that is not installed fails only when
    a speaker's sentences are spoken (``SIOD ERROR: unbound variable``), so each
    is asked to say a short sentence now.  flite and espeak-ng fall back to
    another voice without an error for an unknown voice or variant, so those
    are checked against the engines' own lists.  An engine that is missing
    altogether loses all its voices.  Cached per process: it takes ~2 s.
    """
    unavailable: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="tfadvq-probe-") as tmp, ThreadPoolExecutor(4) as pool:
        def spoken(engine: str, names: tuple[str, ...], voice_of) -> tuple[str, ...]:
            results = list(pool.map(lambda name: _speaks(voice_of(name), Path(tmp) / f"{engine}-{name}"), names))
            unavailable.update({f"{engine} {name}": why for name, why in zip(names, results) if why})
            return tuple(name for name, why in zip(names, results) if not why)

        english = spoken(ESPEAK, candidates.espeak_english, lambda n: _probe_voice(ESPEAK, n))
        other = spoken(ESPEAK, candidates.espeak_other, lambda n: _probe_voice(ESPEAK, n))
        festival = spoken(FESTIVAL, candidates.festival, lambda n: _probe_voice(FESTIVAL, n))
    variants = _listed(ESPEAK, candidates.espeak_variants, ["espeak-ng", "--voices=variant"],
                       r"!v/(\S+)", unavailable)
    flite = _listed(FLITE, candidates.flite, ["flite", "-lv"], r"(\S+)", unavailable)
    return VoiceSet(english, other, variants, flite, festival), unavailable


def _probe_voice(engine: str, name: str) -> Voice:
    return Voice(engine, name, 1.0, 50, 0, 1.0, 150.0, 1.0, 0.0, 5.0, 0.0, 0.0, 0.0)


def _speaks(voice: Voice, workdir: Path) -> str:
    """"" if ``voice`` says the probe sentence, else why not."""
    try:
        audio = synthesize(voice, [_PROBE_TEXT], workdir)[0]
    except SynthesisError as exc:
        return str(exc).splitlines()[0][-200:]
    return "" if audio is not None and len(audio[0]) else "no audio"


def _listed(engine: str, names: tuple[str, ...], command: list[str], pattern: str,
            unavailable: dict[str, str]) -> tuple[str, ...]:
    """The ``names`` the engine's own voice list (``command``'s output) holds."""
    try:
        listing = subprocess.run(command, capture_output=True, timeout=30, check=False).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable.update({f"{engine} {name}": f"{engine} cannot run ({exc})" for name in names})
        return ()
    known = set(re.findall(pattern, listing.replace("Voices available:", "")))
    unavailable.update({f"{engine} {name}": f"not in `{' '.join(command)}`" for name in names if name not in known})
    return tuple(name for name in names if name in known)
