"""Text-to-speech engine calls: espeak-ng, flite and festival (Debian packages).

Every engine writes wav files into a scratch directory and we read them back.
espeak-ng and flite start in milliseconds, so they run once per sentence;
festival takes ~0.3 s to start, so all of a speaker's sentences go through one
festival process (a generated Scheme script).  The engines are deterministic:
the same voice and text give the same samples.
"""
from __future__ import annotations

import subprocess
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfadvq.corpus.voices import ESPEAK, FESTIVAL, FLITE, Voice

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
