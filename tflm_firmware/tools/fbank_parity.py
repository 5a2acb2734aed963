"""Compare the firmware's C++ fbank with tfadvq.features and kaldi-native-fbank.

Shared by tests/test_firmware.py, benchmarks/firmware.py and make_golden.py:
speech from espeak-ng (resampled to 16 kHz by sox), the host build's
``fbank_tool`` for the C++ side, and the two Python references.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import kaldi_native_fbank as knf
import numpy as np
from scipy.io import wavfile

from tfadvq.features import FbankConfig, fbank

FIRMWARE = Path(__file__).resolve().parents[1]
FBANK_TOOL = FIRMWARE / "build" / "host" / "fbank_tool"
MELS = 80


def make(*targets: str) -> None:
    """Build firmware targets (``host``, ``cortex-m4``, ...) with the firmware Makefile."""
    subprocess.run(["make", "-s", "-C", str(FIRMWARE), *targets], check=True,
                   stdout=subprocess.DEVNULL)


def speech(text: str, out: Path, voice: str = "en") -> Path:
    """Write espeak-ng speech of ``text`` as 16 kHz mono 16-bit WAV at ``out``.

    sox runs without dither (``-D``), so the same text always gives the same samples.
    """
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        subprocess.run(["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


def read_pcm(wav: Path) -> np.ndarray:
    """int16 samples of a 16 kHz mono WAV."""
    rate, samples = wavfile.read(wav)
    if rate != 16000 or samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(f"{wav}: need 16 kHz mono int16, got {rate} Hz {samples.dtype} {samples.shape}")
    return samples


def c_fbank(wav: Path, mean_norm: bool = True) -> np.ndarray:
    """Features ``[frames, 80]`` from the host build of the firmware front end."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "features.f32"
        args = [str(FBANK_TOOL), str(wav), str(out)] + ([] if mean_norm else ["--no-mean-norm"])
        subprocess.run(args, check=True, capture_output=True, text=True)
        return np.fromfile(out, np.float32).reshape(-1, MELS)


def python_fbank(pcm: np.ndarray, mean_norm: bool = True) -> np.ndarray:
    """tfadvq.features.fbank of int16 ``pcm`` (as [-1, 1] floats, like load_audio)."""
    waveform = pcm.astype(np.float32)[None] / 32768.0
    return fbank(waveform, FbankConfig(mean_norm=mean_norm)).numpy()[0]


def kaldi_fbank(pcm: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank (dither 0, 80 bins; no mean normalisation) of int16 ``pcm``."""
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0
    opts.frame_opts.samp_freq = 16000
    opts.mel_opts.num_bins = MELS
    online = knf.OnlineFbank(opts)
    online.accept_waveform(16000, pcm.astype(np.float32).tolist())
    online.input_finished()
    return np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])


def parity(wav: Path) -> dict[str, float]:
    """Max/mean absolute log-mel differences of the C++ front end vs both references."""
    pcm = read_pcm(wav)
    c_norm, c_raw = c_fbank(wav, True), c_fbank(wav, False)
    py_norm = python_fbank(pcm, True)
    kaldi = kaldi_fbank(pcm)
    if not c_norm.shape == py_norm.shape == kaldi.shape:
        raise AssertionError(f"{wav}: frame counts differ: C {c_norm.shape}, "
                             f"tfadvq {py_norm.shape}, kaldi {kaldi.shape}")
    vs_python = np.abs(c_norm - py_norm)
    vs_kaldi = np.abs(c_raw - kaldi)
    return {
        "frames": int(c_norm.shape[0]),
        "max_abs_err_vs_tfadvq": float(vs_python.max()),
        "mean_abs_err_vs_tfadvq": float(vs_python.mean()),
        "max_abs_err_vs_kaldi": float(vs_kaldi.max()),
        "mean_abs_err_vs_kaldi": float(vs_kaldi.mean()),
    }
