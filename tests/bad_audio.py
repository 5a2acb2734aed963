"""Real audio files of every kind the readers must accept or refuse, written byte by byte.

Shared by the audio, pipeline, evaluation and CLI tests.  ``write_wav`` writes
the RIFF layout itself (not through ``save_wav``), so the files are what other
tools write: 8/24/32-bit and float wav, WAVE_FORMAT_EXTENSIBLE, A-law, extra
chunks, other rates.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from tfadvq.audio import SAMPLE_RATE, load_audio, resample

_TAGS = {"pcm8": (1, 8), "pcm16": (1, 16), "pcm24": (1, 24), "pcm32": (1, 32),
         "float32": (3, 32), "float64": (3, 64), "alaw": (6, 8)}


def tone(seconds: float, hz: float = 440.0, rate: int = SAMPLE_RATE, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def encode(samples: np.ndarray, encoding: str) -> bytes:
    """Little-endian sample bytes of floats in [-1, 1] (``[n]`` or ``[n, channels]``)."""
    x = np.asarray(samples, np.float64)
    if encoding in ("float32", "float64"):
        return x.astype("<f4" if encoding == "float32" else "<f8").tobytes()
    bits = _TAGS[encoding][1]
    if encoding == "pcm8":
        return np.clip(np.round(x * 128 + 128), 0, 255).astype(np.uint8).tobytes()
    if encoding == "alaw":
        return np.full(x.size, 0xD5, np.uint8).tobytes()  # A-law "zero"; never decoded here
    ints = np.clip(np.round(x * 2.0 ** (bits - 1)), -2 ** (bits - 1), 2 ** (bits - 1) - 1).astype(np.int64)
    if bits == 24:
        raw = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        return raw.tobytes()
    return ints.astype(f"<i{bits // 8}").tobytes()


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE, encoding: str = "pcm16",
              extensible: bool = False, extra_chunk: str | None = None, extra_size: int = 4) -> Path:
    """A wav file of ``samples`` in ``encoding``; the header is written field by field.

    ``extra_chunk`` ``"before_fmt"`` or ``"after_fmt"`` adds a ``LIST`` chunk of
    ``extra_size`` bytes (padded to even length, as RIFF asks) there.
    """
    samples = np.asarray(samples)
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    tag, bits = _TAGS[encoding]
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits)
    if extensible:  # cbSize, valid bits, channel mask, sub-format GUID (tag + the standard suffix)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes.fromhex(
            "000000001000800000aa00389b71")
    data = encode(samples, encoding)
    extra = b"LIST" + struct.pack("<I", extra_size) + b"I" * (extra_size + extra_size % 2)
    body = (b"WAVE" + (extra if extra_chunk == "before_fmt" else b"")
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + (extra if extra_chunk == "after_fmt" else b"")
            + b"data" + struct.pack("<I", len(data)) + data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def convertible_versions(source: Path, directory: Path) -> dict[str, Path]:
    """``source`` (a 16 kHz wav) as 8-bit, 44.1 kHz, float32 and extensible wav: files to read, not refuse."""
    x = load_audio(source, min_seconds=0)
    return {
        "8-bit": write_wav(directory / "pcm8.wav", x, encoding="pcm8"),
        "44.1 kHz": write_wav(directory / "44k.wav", resample(x, SAMPLE_RATE, 44100), rate=44100),
        "float32": write_wav(directory / "float.wav", x, encoding="float32"),
        "extensible": write_wav(directory / "extensible.wav", x, extensible=True),
    }


def bad_versions(source: Path, directory: Path) -> dict[str, tuple[Path, str]]:
    """Unusable files made from ``source``: name -> (path, a fragment of the reason given)."""
    x = load_audio(source, min_seconds=0)
    directory.mkdir(parents=True, exist_ok=True)
    raw = write_wav(directory / "tmp.wav", x).read_bytes()
    (directory / "tmp.wav").unlink()
    files = {
        "truncated header": (directory / "header.wav", "truncated"),
        "truncated data": (directory / "data.wav", "truncated"),
        "text named .wav": (directory / "text.wav", "not a RIFF/WAVE file"),
        "0.1 s clip": (directory / "short.wav", "at least 0.5 s"),
        "silence": (directory / "silent.wav", "is silent"),
        "clipped": (directory / "clipped.wav", "is clipped"),
        "a-law": (directory / "alaw.wav", "format tag 6"),
    }
    files["truncated header"][0].write_bytes(raw[:30])
    files["truncated data"][0].write_bytes(raw[: len(raw) // 2])
    files["text named .wav"][0].write_text("speaker notes, not audio: é\n" * 40)
    write_wav(files["0.1 s clip"][0], x[: SAMPLE_RATE // 10])
    write_wav(files["silence"][0], np.zeros_like(x) + 3 / 32768)  # DC only: silent after removing it
    write_wav(files["clipped"][0], np.clip(20 * x, -1, 1))
    write_wav(files["a-law"][0], x, encoding="alaw")
    return files
