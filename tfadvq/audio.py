"""Audio file I/O and audio checks: every waveform enters tfadvq here as float32 mono in [-1, 1].

One reader, :func:`load_audio`, serves every path that reads audio -- the
training and evaluation ``tf.data`` pipelines (:mod:`tfadvq.pipeline`),
``tfadvq lists``, ``tfadvq verify``, the converters -- so a file is either
read the same way everywhere or refused everywhere with the same reason:

* wav (RIFF/WAVE) is parsed here, with numpy: integer PCM of 8 (unsigned),
  16, 24 or 32 bits and IEEE float of 32 or 64 bits, plain or
  WAVE_FORMAT_EXTENSIBLE.  Other encodings (A-law, mu-law, ADPCM, ...) are
  refused with the ffmpeg command that converts the file.  Parsing wav here
  (rather than in tensorflow-io) is what lets the checker below decide from
  the header alone what the reader will do.
* flac, ogg/vorbis and MP3 go through one of two decoders, chosen once, on
  the first such file (:func:`available_decoders`; processes that only touch
  wav load neither): tensorflow-io where it is installed and its ops load
  (its wheels are built for TF 2.17: on TF >= 2.18 the ops fail to load with
  undefined symbols, and there are none for Python >= 3.13), else soundfile
  (libsndfile 1.2, bundled in soundfile's wheel with FLAC, Ogg/Vorbis/Opus and
  MP3).  Both give the same samples (flac identical; ogg/vorbis and MP3
  within 2e-7 and 5e-7, measured; tests/test_audio.py) and the same
  :class:`AudioError` reasons, naming the file once.  tensorflow-io decodes
  one file at a time (its decoders crashed the process when called from
  several threads on malformed files); libsndfile needs no such lock.
* m4a/aac (VoxCeleb2's format, which neither can decode) is refused with the
  ffmpeg command that converts it.

Channels are averaged to mono; any other sample rate is resampled (polyphase:
``scipy.signal.resample_poly`` with a Kaiser window, beta 8.0; exact in length,
``ceil(n * new / old)``; content above 1.25x the new Nyquist frequency is
attenuated by more than 60 dB -- measured 73 dB at 10 kHz for 44.1 -> 16 kHz --
and it is two orders of magnitude faster than ``tfio.audio.resample`` on CPU).
Every way a file can be unusable -- missing, empty, truncated, not audio,
NaN/inf samples, too short -- raises ``AudioError(path, reason)``.

Checks (:func:`check_file`, :func:`validate_files`) apply :class:`AudioLimits`,
the same limits and arithmetic as the firmware's ``sv::CheckAudio``
(tflm_firmware/lib/audio_check.h): too short, silent (RMS after removing DC
below 30 int16 units) or clipped (more than 1 % of samples at
``|x| >= 32000``).  A silent or clipped recording still gives an embedding --
just a wrong one -- so ``verify`` and evaluation refuse it rather than score
it.  ``signal=False`` checks only what the reader needs (the header, for
integer-PCM wav: no samples are read), which is what the training data check
uses on large sets.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import struct
import tempfile
import threading
import warnings
import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly
from tqdm import tqdm

from tfadvq.audio_limits import MIN_SECONDS, SAMPLE_RATE, AudioLimits
from tfadvq.errors import AudioError, ConfigError

SUPPORTED_SUFFIXES = (".wav", ".flac", ".ogg")
NEEDS_CONVERSION_SUFFIXES = (".m4a", ".aac", ".mp4")
_KAISER_BETA = 8.0
_INT16_SCALE = 32768.0
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_WAV_ENCODINGS = {(_PCM, 8): "pcm8", (_PCM, 16): "pcm16", (_PCM, 24): "pcm24", (_PCM, 32): "pcm32",
                  (_FLOAT, 32): "float32", (_FLOAT, 64): "float64"}
_ACCEPTED_WAV = "PCM 8/16/24/32-bit or IEEE float 32/64-bit"
_TFIO_LOCK = threading.Lock()
COMPRESSED_DECODERS = ("tensorflow-io", "soundfile")  # in order of preference (module doc)
_DECODE_FAILED = f"cannot be decoded as {'/'.join(s[1:] for s in SUPPORTED_SUFFIXES)}"
_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: ``encoding`` is ``pcm16`` etc. for wav, else the container."""

    path: str
    encoding: str
    sample_rate: int
    channels: int
    frames: int

    def frames_at(self, sample_rate: int) -> int:
        """Samples :func:`load_audio` returns at ``sample_rate`` (the resampler's exact length)."""
        if sample_rate == self.sample_rate:
            return self.frames
        return -(-self.frames * sample_rate // self.sample_rate)


def conversion_command(path: str | os.PathLike) -> str:
    """The ffmpeg command that turns an undecodable file (m4a/aac, A-law wav) into 16 kHz mono wav."""
    path = Path(path)
    out = path.with_suffix(".wav") if path.suffix.lower() != ".wav" else path.with_name(path.stem + "_pcm.wav")
    return f"ffmpeg -v error -i {path} -ac 1 -ar {SAMPLE_RATE} {out}"


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    min_seconds: float = MIN_SECONDS,
) -> np.ndarray:
    """Read an audio file as float32 mono samples in [-1, 1] at ``sample_rate`` (module doc).

    Raises :class:`AudioError` naming the file for anything unusable,
    including fewer than ``min_seconds`` of audio after resampling.
    """
    path = Path(path)
    samples, rate = _decode(path)
    if samples.size == 0:
        raise AudioError(str(path), "contains no samples")
    if not np.isfinite(samples).all():
        bad = int(np.count_nonzero(~np.isfinite(samples)))
        raise AudioError(str(path), f"contains {bad} NaN/inf samples")
    mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    mono = resample(mono, rate, sample_rate)
    _check_length(path, mono.size, sample_rate, min_seconds)
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal from ``rate`` to ``new_rate`` Hz."""
    if rate == new_rate:
        return samples.astype(np.float32, copy=False)
    g = math.gcd(int(rate), int(new_rate))
    out = resample_poly(samples, new_rate // g, rate // g, window=("kaiser", _KAISER_BETA))
    return out.astype(np.float32)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Format, rate, channels and length of an audio file; raises :class:`AudioError` like the reader.

    For wav only the header is read.  flac/ogg have no header reader here:
    they are decoded (once) to learn their length.
    """
    path = Path(path)
    kind = _container(path)
    if kind == "wav":
        layout = _wav_layout(path)
        return AudioInfo(str(path), layout.encoding, layout.rate, layout.channels, layout.frames)
    samples, rate = _decode(path)
    return AudioInfo(str(path), kind, rate, samples.shape[1], samples.shape[0])


def signal_problem(samples: np.ndarray, limits: AudioLimits = AudioLimits()) -> str | None:
    """Why ``samples`` (mono floats in [-1, 1]) would give no trustworthy embedding; None if fine.

    The firmware's ``sv::CheckAudio`` in float64 on the int16 scale: silent if
    the standard deviation (RMS after removing DC) is below ``min_rms``,
    clipped if more than ``max_clipped_fraction`` of the samples reach
    ``clip_level``.  (Length is checked where the sample rate is known.)
    """
    x = np.asarray(samples, np.float64) * _INT16_SCALE
    if x.size == 0:
        return "contains no samples"
    mean = x.mean()
    rms = math.sqrt(max(float(np.mean(x * x)) - mean * mean, 0.0))
    if rms < limits.min_rms:
        return (f"is silent: RMS {rms:.1f} int16 units after removing DC; "
                f"at least {limits.min_rms:g} are required")
    clipped = int(np.count_nonzero(np.abs(x) >= limits.clip_level))
    if clipped > limits.max_clipped_fraction * x.size:
        return (f"is clipped: {100 * clipped / x.size:.1f} % of samples at |x| >= {limits.clip_level} "
                f"int16 units; at most {100 * limits.max_clipped_fraction:g} % are accepted")
    return None


def load_checked_audio(path: str | os.PathLike, limits: AudioLimits | None = None,
                       sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """:func:`load_audio` that also refuses silent and clipped recordings (:func:`signal_problem`)."""
    limits = limits or AudioLimits()
    samples = load_audio(path, sample_rate, limits.min_seconds)
    problem = signal_problem(samples, limits)
    if problem:
        raise AudioError(str(path), problem)
    return samples


def check_file(path: str | os.PathLike, limits: AudioLimits | None = None, *, signal: bool = True,
               sample_rate: int = SAMPLE_RATE) -> None:
    """Raise :class:`AudioError` if ``path`` is not usable audio under ``limits``.

    ``signal=True`` reads the samples and applies the silence and clipping
    checks too (what evaluation and ``tfadvq lists`` use).  ``signal=False``
    decides from the header alone for integer-PCM wav -- :func:`load_audio`
    reads such a file whenever its header is complete -- and decodes only
    float wav (for NaN/inf), flac and ogg; that is the fast check for large
    training sets.
    """
    limits = limits or AudioLimits()
    path = Path(path)
    if signal:
        load_checked_audio(path, limits, sample_rate)
        return
    if _container(path) == "wav":
        layout = _wav_layout(path)
        if layout.format_tag == _PCM:
            if layout.frames == 0:
                raise AudioError(str(path), "contains no samples")
            info = AudioInfo(str(path), layout.encoding, layout.rate, layout.channels, layout.frames)
            _check_length(path, info.frames_at(sample_rate), sample_rate, limits.min_seconds)
            return
    load_audio(path, sample_rate, limits.min_seconds)


def validate_files(
    paths: Iterable[str | os.PathLike],
    limits: AudioLimits | None = None,
    *,
    signal: bool = True,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = True,
) -> tuple[list[str], list[tuple[str, str]]]:
    """:func:`check_file` on every file; return ``(good paths, [(bad path, reason), ...])``.

    Data preparation, evaluation and training use this to skip and report
    unusable files without losing the others; ``good`` keeps the order of
    ``paths`` (a path listed twice is checked once and kept twice).
    Sequential on purpose (see the module doc on tensorflow-io).
    """
    limits = limits or AudioLimits()
    verdicts: dict[str, str | None] = {}
    good: list[str] = []
    bad: list[tuple[str, str]] = []
    for path in tqdm([str(p) for p in paths], desc="checking audio", unit="file", disable=not progress):
        if path not in verdicts:
            try:
                check_file(path, limits, signal=signal, sample_rate=sample_rate)
                verdicts[path] = None
            except AudioError as exc:
                verdicts[path] = exc.reason
                bad.append((path, exc.reason))
        if verdicts[path] is None:
            good.append(path)
    return good, bad


def save_wav(
    path: str | os.PathLike, samples: np.ndarray, sample_rate: int = SAMPLE_RATE
) -> None:
    """Write float samples in [-1, 1] (1-D, or [n, channels]) as 16-bit PCM wav.

    Values outside [-1, 1] are clipped; parent directories are created.  The
    file appears atomically (written to a temporary name, then renamed), so a
    resumed corpus run never mistakes a half-written file for a finished one.
    ``load_audio(save_wav(x))`` returns ``x`` exactly when ``x`` lies on the
    int16 grid (``k / 32768``).
    """
    path = Path(path)
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise AudioError(str(path), f"cannot write samples of shape {samples.shape}; "
                         "expected a non-empty [n] or [n, channels] array")
    if not np.isfinite(samples).all():
        raise AudioError(str(path), "refusing to write NaN/inf samples")
    pcm = np.clip(np.round(samples * _INT16_SCALE), -32768, 32767).astype("<i2")
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh, wave.open(fh, "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(pcm.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- decoding


def _check_length(path: Path, samples: int, sample_rate: int, min_seconds: float) -> None:
    seconds = samples / sample_rate
    if seconds < min_seconds:
        raise AudioError(str(path), f"is {seconds:.3f} s long; at least {min_seconds:g} s are required")


def _container(path: Path) -> str:
    """``wav``, ``flac``, ``ogg`` or ``other`` from the first bytes; unusable files raise."""
    suffix = path.suffix.lower()
    if suffix in NEEDS_CONVERSION_SUFFIXES:
        raise AudioError(str(path), f"{suffix} (AAC) cannot be decoded by tfadvq; "
                         f"convert it first: {conversion_command(path)}")
    if not path.exists():
        raise AudioError(str(path), "no such file")
    if not path.is_file():
        raise AudioError(str(path), "is not a regular file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise AudioError(str(path), f"cannot be read ({exc.strerror})") from None
    if not magic:
        raise AudioError(str(path), "is empty (0 bytes)")
    if magic in (b"RIFF", b"RIFX", b"RF64"):
        return "wav"
    if suffix == ".wav":
        raise AudioError(str(path), f"cannot be decoded as wav: not a RIFF/WAVE file (starts with {magic!r})")
    return {b"fLaC": "flac", b"OggS": "ogg"}.get(magic, "other")


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Samples as float32 ``[n, channels]`` (ints scaled to [-1, 1)) and the file's sample rate."""
    if _container(path) == "wav":
        return _read_wav(path, _wav_layout(path))
    return decode_compressed(path)


@dataclasses.dataclass(frozen=True)
class _WavLayout:
    format_tag: int  # _PCM or _FLOAT (an extensible header's sub-format)
    bits: int
    rate: int
    channels: int
    data_offset: int
    frames: int

    @property
    def encoding(self) -> str:
        return _WAV_ENCODINGS[(self.format_tag, self.bits)]


def _wav_layout(path: Path) -> _WavLayout:
    """Parse the RIFF chunks up to ``data``; refuse what :func:`_read_wav` cannot read, naming why."""
    def bad(reason: str) -> AudioError:
        return AudioError(str(path), f"cannot be decoded as wav: {reason}")

    size = path.stat().st_size
    with open(path, "rb") as fh:
        riff = fh.read(12)
        if len(riff) < 12 or riff[8:12] != b"WAVE":
            raise bad(f"truncated or not a RIFF/WAVE header ({size} bytes)")
        if riff[:4] != b"RIFF":
            raise bad(f"{riff[:4].decode()} wav (big-endian or > 4 GB) is not supported; "
                      f"convert it: {conversion_command(path)}")
        fmt = None
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise bad("no 'data' chunk" if fmt else "no 'fmt ' chunk (truncated header)")
            chunk, length = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk == b"fmt ":
                fmt = fh.read(length)
                if len(fmt) < 16 or len(fmt) < length:
                    raise bad(f"'fmt ' chunk of {len(fmt)} bytes is truncated")
                fh.seek(length & 1, os.SEEK_CUR)
            elif chunk == b"data":
                if fmt is None:
                    raise bad("'data' chunk before the 'fmt ' chunk")
                offset = fh.tell()
                break
            else:
                fh.seek(length + (length & 1), os.SEEK_CUR)
    tag, channels, rate, _, block, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # first two bytes of the sub-format GUID
    if (tag, bits) not in _WAV_ENCODINGS:
        raise AudioError(str(path), f"wav encoding (format tag {tag}, {bits} bits) is not supported; "
                         f"accepted: {_ACCEPTED_WAV}; convert it: {conversion_command(path)}")
    if channels < 1 or rate < 1 or block != channels * bits // 8:
        raise bad(f"inconsistent header ({channels} channels, {rate} Hz, {bits} bits, block {block})")
    available = size - offset
    if length > available:
        raise bad(f"truncated: the header declares {length} bytes of samples, the file holds {available}")
    return _WavLayout(tag, bits, rate, channels, offset, length // block)


def _read_wav(path: Path, layout: _WavLayout) -> tuple[np.ndarray, int]:
    width = layout.bits // 8
    count = layout.frames * layout.channels
    with open(path, "rb") as fh:
        fh.seek(layout.data_offset)
        raw = fh.read(count * width)
    if layout.format_tag == _FLOAT:
        values = np.frombuffer(raw, f"<f{width}").astype(np.float32)
    elif width == 1:  # 8-bit wav is unsigned
        values = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:  # little-endian signed 24-bit: place the 3 bytes in the top of an int32
        padded = np.zeros((count, 4), np.uint8)
        padded[:, 1:] = np.frombuffer(raw, np.uint8).reshape(count, 3)
        values = (padded.view("<i4")[:, 0] / 2.0 ** 31).astype(np.float32)
    else:
        values = (np.frombuffer(raw, f"<i{width}") / float(2 ** (8 * width - 1))).astype(np.float32)
    return values.reshape(layout.frames, layout.channels), layout.rate


@functools.cache
def available_decoders() -> tuple[str, ...]:
    """The flac/ogg decoders usable in this process, preferred first (module doc); decided once.

    tensorflow-io counts where it imports and its op library loads (on TF >=
    2.18 that raises NotImplementedError naming undefined symbols; without the
    package, ImportError); soundfile is a dependency of tfadvq, always there.
    """
    from tfadvq.compat import tf  # TensorFlow through compat before tensorflow-io imports it

    try:
        with warnings.catch_warnings():  # its file-system plugins warn the same failure at import
            warnings.simplefilter("ignore")
            from tensorflow_io.python.ops import core_ops

            core_ops.io_audio_readable_init  # noqa: B018 -- attribute access loads libtensorflow_io.so
    except (ImportError, NotImplementedError, tf.errors.OpError, OSError) as exc:
        _log.info("tensorflow-io's audio ops are not available (%s); flac/ogg are decoded by soundfile",
                  str(exc).splitlines()[0][:200])
        return ("soundfile",)
    return COMPRESSED_DECODERS


def compressed_decoder() -> str:
    """The decoder :func:`load_audio` uses for flac/ogg here: tensorflow-io where its ops load, else soundfile."""
    return available_decoders()[0]


def decode_compressed(path: str | os.PathLike, decoder: str | None = None) -> tuple[np.ndarray, int]:
    """A flac/ogg file as float32 ``[n, channels]`` and its rate, by ``decoder`` (default: :func:`compressed_decoder`).

    Naming the decoder is for comparing the two on the same file; whichever
    decodes, a file it cannot read raises the same :class:`AudioError`.
    """
    decoder = decoder or compressed_decoder()
    if decoder not in available_decoders():
        raise ConfigError(f"audio decoder {decoder!r} is not available here; "
                          f"available: {', '.join(available_decoders())} (of {', '.join(COMPRESSED_DECODERS)})")
    path = Path(path)
    return _decode_tfio(path) if decoder == "tensorflow-io" else _decode_soundfile(path)


def _decode_tfio(path: Path) -> tuple[np.ndarray, int]:
    """flac/ogg (and whatever else tensorflow-io reads), one file at a time (module doc)."""
    import tensorflow_io as tfio

    from tfadvq.compat import tf

    try:
        with _TFIO_LOCK:
            audio = tfio.audio.AudioIOTensor(str(path))
            samples = audio.to_tensor().numpy()
            rate = int(audio.rate.numpy())
    except (tf.errors.OpError, ValueError, UnicodeDecodeError) as exc:
        reason = _tf_message(exc).replace(f": {path}", "")  # "unknown file type: <path>": named already
        raise AudioError(str(path), f"{_DECODE_FAILED} ({reason})") from None
    if samples.ndim == 1:
        samples = samples[:, None]
    return _to_float(samples), rate


def _decode_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """flac/ogg (and whatever else libsndfile reads) through soundfile, as float32 like the tensorflow-io route."""
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.SoundFileError, RuntimeError, ValueError) as exc:
        # libsndfile's own words without soundfile's "Error opening '<path>': " (the path is named already)
        reason = getattr(exc, "error_string", None) or str(exc)
        raise AudioError(str(path), f"{_DECODE_FAILED} ({reason.strip().rstrip('.')})") from None
    return samples, int(rate)


def _to_float(samples: np.ndarray) -> np.ndarray:
    if np.issubdtype(samples.dtype, np.integer):
        scale = float(2 ** (8 * samples.dtype.itemsize - 1))
        offset = scale if np.issubdtype(samples.dtype, np.unsignedinteger) else 0.0
        return ((samples.astype(np.float64) - offset) / scale).astype(np.float32)
    return samples.astype(np.float32, copy=False)


def _tf_message(exc: Exception) -> str:
    """A TF op error's message without its ``{{function_node ...}}`` and ``[Op:...]`` noise."""
    text = getattr(exc, "message", None) or str(exc)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\]\s*(name:\s*)?", "", text).strip() or type(exc).__name__


__all__ = [
    "COMPRESSED_DECODERS",
    "SAMPLE_RATE",
    "AudioInfo",
    "AudioLimits",
    "audio_info",
    "available_decoders",
    "check_file",
    "compressed_decoder",
    "conversion_command",
    "decode_compressed",
    "load_audio",
    "load_checked_audio",
    "resample",
    "save_wav",
    "signal_problem",
    "validate_files",
]
