"""Recording channels: rooms, microphones, noise and codecs, per session and per utterance.

A VoxCeleb speaker is heard through several videos, each with its own room,
microphone, background and upload codec; and within one video no two clips
sound exactly alike.  We mirror that: a :class:`Session` (drawn once per
speaker session) fixes a room from a shared bank of simulated rooms
(pyroomacoustics image-source RIRs, computed once per run), a microphone
colouration and band limits, the noise type and level, and maybe a codec; each
utterance then draws its own microphone position in that room, SNR and EQ
jitter, noise excerpt and level.  Rooms are shared across speakers on purpose,
so that the room never identifies the speaker.

The acoustic part is a single FFT pass: ``Y = (X * R + g * N) * H`` with speech
``X``, room response ``R``, noise ``N`` scaled to the SNR (Parseval) and
microphone response ``H``.  Codecs (GSM 06.10, mu-law, AMR-NB at 8 kHz, low-rate
Vorbis) are real sox round trips.
"""
from __future__ import annotations

import dataclasses
import subprocess

import numpy as np
import pyroomacoustics
import scipy.fft

from tfadvq.audio_limits import SAMPLE_RATE

EQ_BANDS_HZ = (100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0)
CLOSE_TALK = -1  # Session.room value: microphone at the mouth, no room response
_MAX_IMAGE_ORDER = 12
# codec -> (sox encode output options, sox decode input options)
CODECS = {
    "gsm": (["-r", "8000", "-t", "gsm"], ["-t", "gsm", "-r", "8000", "-c", "1"]),
    "mu-law": (["-r", "8000", "-t", "ul"], ["-t", "ul", "-r", "8000", "-c", "1"]),
    "amr-nb": (["-r", "8000", "-t", "amr-nb"], ["-t", "amr-nb"]),
    "vorbis": (["-t", "ogg", "-C", "-1"], ["-t", "ogg"]),
}
_RAW16 = ["-t", "s16", "-r", str(SAMPLE_RATE), "-c", "1"]


@dataclasses.dataclass(frozen=True)
class Session:
    """The fixed recording conditions of one speaker session ("video")."""

    room: int
    eq_db: tuple[float, ...]
    highpass_hz: float
    lowpass_hz: float | None
    codec: str | None
    noise: str
    noise_colour: float
    snr_db: float


def sample_session(rng: np.random.Generator, rooms: int) -> Session:
    """Draw one session's conditions; ``rooms`` is the size of the RIR bank."""
    codec_names = list(CODECS)
    return Session(
        room=CLOSE_TALK if rng.random() < 0.2 else int(rng.integers(rooms)),
        eq_db=tuple(round(float(g), 2) for g in rng.normal(0.0, 3.0, len(EQ_BANDS_HZ))),
        highpass_hz=round(float(rng.uniform(40.0, 200.0)), 1),
        lowpass_hz=round(float(rng.uniform(3400.0, 7500.0)), 1) if rng.random() < 0.5 else None,
        codec=codec_names[int(rng.integers(len(codec_names)))] if rng.random() < 0.25 else None,
        noise="babble" if rng.random() < 0.35 else "coloured",
        noise_colour=round(float(rng.uniform(0.0, 2.0)), 3),
        snr_db=round(float(rng.uniform(8.0, 35.0)), 2),
    )


def build_rir_bank(rng: np.random.Generator, rooms: int = 48, mics: int = 3,
                   rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[rooms, mics, taps]`` float32 room impulse responses, each peak-normalised.

    Shoebox rooms of 3x3x2.4 to 10x8x4 m with RT60 0.1-0.6 s and microphones
    0.3-2.5 m from the talker (VoxCeleb is mostly near-field, moderately
    reverberant); image order capped at 12, which keeps a bank of 48 rooms near
    half a second of CPU.
    """
    responses = []
    for _ in range(rooms):
        dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 4.0])
        absorption, order = _absorption(rng.uniform(0.1, 0.6), dims)
        room = pyroomacoustics.ShoeBox(dims, fs=rate, materials=pyroomacoustics.Material(absorption),
                                       max_order=min(order, _MAX_IMAGE_ORDER))
        source = rng.uniform(0.5, dims - 0.5)
        directions = rng.normal(size=(mics, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        distances = rng.uniform(0.3, 2.5, (mics, 1))
        room.add_source(source)
        room.add_microphone_array(np.clip(source + directions * distances, 0.3, dims - 0.3).T)
        room.compute_rir()
        responses.extend(np.asarray(r[0], np.float32) / np.max(np.abs(r[0])) for r in room.rir)
    taps = max(len(r) for r in responses)
    bank = np.zeros((rooms * mics, taps), np.float32)
    for i, response in enumerate(responses):
        bank[i, :len(response)] = response
    return bank.reshape(rooms, mics, taps)


def apply_channel(speech: np.ndarray, session: Session, rng: np.random.Generator,
                  rirs: np.ndarray, babble: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """One utterance through ``session``: reverb, noise, microphone, codec, level."""
    n = len(speech)
    if session.room == CLOSE_TALK:
        rir = np.ones(1, np.float32)
    else:
        rir = rirs[session.room, int(rng.integers(rirs.shape[1]))]
        rir = rir[:np.flatnonzero(rir)[-1] + 1]
    nfft = scipy.fft.next_fast_len(n + len(rir) - 1, real=True)
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    reverberant = scipy.fft.rfft(speech, nfft) * scipy.fft.rfft(rir, nfft)
    noise = _noise_spectrum(session, rng, nfft, freqs, babble)
    snr_db = session.snr_db + rng.normal(0.0, 3.0)
    gain = np.sqrt(np.sum(np.abs(reverberant) ** 2) /
                   (np.sum(np.abs(noise) ** 2) * 10.0 ** (snr_db / 10.0) + 1e-20))
    response = _microphone_response(session, rng, freqs)
    y = scipy.fft.irfft((reverberant + gain * noise) * response, nfft)[:n]
    if session.codec is not None:
        y = codec_round_trip(0.9 * y / (np.max(np.abs(y)) + 1e-9), session.codec)[:n]
    return _set_level(y, rng)


def codec_round_trip(samples: np.ndarray, codec: str) -> np.ndarray:
    """Encode 16 kHz ``samples`` with ``codec`` through sox and decode back to 16 kHz."""
    encode, decode = CODECS[codec]
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    coded = _sox(_RAW16, encode, pcm, codec)
    out = np.frombuffer(_sox(decode, _RAW16, coded, codec), "<i2")
    return out.astype(np.float32) / 32768.0


def _sox(input_options: list[str], output_options: list[str], data: bytes, codec: str) -> bytes:
    # -D: no dither, -R: repeatable -- the corpus must be identical per seed.
    command = ["sox", "-D", "-R", *input_options, "-", *output_options, "-"]
    done = subprocess.run(command, input=data, capture_output=True, check=False)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"sox {codec} round trip failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _absorption(rt60: float, dims: np.ndarray) -> tuple[float, int]:
    """Sabine absorption for ``rt60``; rooms too large for it get the longest RT60 they allow."""
    try:
        return pyroomacoustics.inverse_sabine(rt60, dims)
    except ValueError:
        return 0.99, 2


def _noise_spectrum(session: Session, rng: np.random.Generator, nfft: int, freqs: np.ndarray,
                    babble: np.ndarray) -> np.ndarray:
    if session.noise == "babble":
        talkers = int(rng.integers(3, 7))
        starts = rng.integers(0, len(babble), talkers)
        crops = babble[(starts[:, None] + np.arange(nfft)[None, :]) % len(babble)]
        return scipy.fft.rfft(crops.sum(axis=0), nfft)
    white = rng.normal(size=len(freqs)) + 1j * rng.normal(size=len(freqs))
    return white * (np.maximum(freqs, 20.0) / 1000.0) ** (-session.noise_colour / 2.0)


def _microphone_response(session: Session, rng: np.random.Generator, freqs: np.ndarray) -> np.ndarray:
    """Magnitude response: session EQ (+-1 dB per utterance) x 4th-order high/low-pass."""
    eq_db = np.asarray(session.eq_db) + rng.normal(0.0, 1.0, len(EQ_BANDS_HZ))
    log_f = np.log2(np.maximum(freqs, 1.0))
    response = 10.0 ** (np.interp(log_f, np.log2(EQ_BANDS_HZ), eq_db) / 20.0)
    response /= np.sqrt(1.0 + (session.highpass_hz / np.maximum(freqs, 1.0)) ** 8)
    if session.lowpass_hz is not None:
        response /= np.sqrt(1.0 + (freqs / session.lowpass_hz) ** 8)
    return response


def _set_level(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale to a random RMS of -32..-18 dBFS, then down if the peak would clip."""
    rms = np.sqrt(np.mean(y ** 2)) + 1e-9
    y = y * (10.0 ** (rng.uniform(-32.0, -18.0) / 20.0) / rms)
    peak = np.max(np.abs(y))
    return (y / peak * 0.99 if peak > 0.99 else y).astype(np.float32)
