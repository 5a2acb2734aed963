"""Audio I/O on real files: every supported format, every kind of bad input."""
from __future__ import annotations

import shutil
import subprocess
import wave

import numpy as np
import pytest

from tfadvq.audio import (
    SAMPLE_RATE,
    conversion_command,
    load_audio,
    resample,
    save_wav,
    validate_files,
)
from tfadvq.errors import AudioError

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


def _tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def test_save_then_load_is_exact_on_int16_grid(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-32768, 32767, size=SAMPLE_RATE).astype(np.float32) / 32768
    path = tmp_path / "a" / "b" / "x.wav"
    save_wav(path, x)
    np.testing.assert_array_equal(load_audio(path), x)
    with wave.open(str(path)) as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, SAMPLE_RATE)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temporary left behind


def test_save_clips_out_of_range_and_rejects_nan(tmp_path):
    save_wav(tmp_path / "loud.wav", np.full(SAMPLE_RATE, 3.0, np.float32))
    assert load_audio(tmp_path / "loud.wav").max() == pytest.approx(32767 / 32768)
    with pytest.raises(AudioError, match="NaN"):
        save_wav(tmp_path / "nan.wav", np.array([0.0, np.nan] * 8000))
    assert not (tmp_path / "nan.wav").exists()


@needs_sox
@pytest.mark.parametrize("fmt", ["flac", "ogg", "wav24", "wav8", "float.wav"])
def test_other_formats_match_the_16bit_source(tmp_path, fmt):
    x = _tone(440, 1.0, SAMPLE_RATE)
    src = tmp_path / "src.wav"
    save_wav(src, x)
    out = tmp_path / f"out.{fmt.replace('24', '').replace('8', '')}"
    extra = {"wav24": ["-b", "24"], "wav8": ["-b", "8", "-e", "unsigned"],
             "float.wav": ["-e", "floating-point", "-b", "32"]}.get(fmt, [])
    subprocess.run(["sox", str(src), *extra, str(out)], check=True)
    y = load_audio(out)
    assert abs(len(y) - len(x)) <= 0.01 * len(x)  # vorbis may pad the last block
    n = min(len(x), len(y))
    tol = {"ogg": 0.05, "wav8": 1 / 64}.get(fmt, 1e-3)
    assert np.abs(y[:n] - x[:n]).max() < tol


@needs_sox
def test_stereo_44k_is_mixed_down_and_resampled(tmp_path):
    left, right = _tone(1000, 1.0, 44100), _tone(3000, 1.0, 44100)
    path = tmp_path / "stereo.wav"
    save_wav(path, np.stack([left, right], axis=1), sample_rate=44100)
    y = load_audio(path)
    assert len(y) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(y))  # 1 Hz bins: both tones present at half amplitude
    assert set(np.argsort(spectrum)[-2:]) == {1000, 3000}
    np.testing.assert_allclose(spectrum[[1000, 3000]] / (len(y) / 2), 0.25, rtol=0.02)


def test_resampling_keeps_tones_and_rejects_aliases():
    rate = 44100
    y = resample(_tone(1000, 2.0, rate), rate, SAMPLE_RATE)
    assert len(y) == 2 * SAMPLE_RATE
    assert _dominant_hz(y, SAMPLE_RATE) == pytest.approx(1000, abs=1)
    alias = resample(_tone(10000, 2.0, rate), rate, SAMPLE_RATE)  # 1.25x the new Nyquist
    core = slice(1000, -1000)  # edges carry the filter's start-up transient
    assert 20 * np.log10(np.abs(alias[core]).max() / 0.5) < -60


def _bad_files(tmp_path):
    good = tmp_path / "good.wav"
    save_wav(good, _tone(300, 1.0, SAMPLE_RATE))
    raw = good.read_bytes()
    files = {
        "no such file": tmp_path / "missing.wav",
        "empty": tmp_path / "empty.wav",
        "cannot be decoded": tmp_path / "header.wav",
        "cannot be decoded ": tmp_path / "noise.flac",
        "NaN/inf": tmp_path / "nan.wav",
        "at least 0.5 s": tmp_path / "short.wav",
        "ffmpeg": tmp_path / "voxceleb2.m4a",
    }
    files["empty"].write_bytes(b"")
    files["cannot be decoded"].write_bytes(raw[:30])  # truncated RIFF header
    files["cannot be decoded "].write_bytes(np.random.default_rng(1).bytes(4000))
    with wave.open(str(files["NaN/inf"]), "wb") as w:  # IEEE-float wav holding NaN
        w.setnchannels(1), w.setsampwidth(4), w.setframerate(SAMPLE_RATE)
        w.writeframes(np.full(SAMPLE_RATE, np.nan, "<f4").tobytes())
    header = bytearray(files["NaN/inf"].read_bytes())
    header[20:22] = (3).to_bytes(2, "little")  # WAVE_FORMAT_IEEE_FLOAT
    files["NaN/inf"].write_bytes(bytes(header))
    save_wav(files["at least 0.5 s"], _tone(300, 0.3, SAMPLE_RATE))
    files["ffmpeg"].write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    return good, files


def test_each_bad_input_raises_audio_error_naming_the_file(tmp_path):
    _, files = _bad_files(tmp_path)
    for reason, path in files.items():
        with pytest.raises(AudioError) as info:
            load_audio(path)
        assert info.value.path == str(path)
        assert reason.strip() in info.value.reason, (path.name, info.value.reason)
        assert str(path) in str(info.value)
    assert conversion_command(files["ffmpeg"]) in str(info.value)


def test_validate_files_skips_and_reports_bad_ones_keeping_the_rest(tmp_path):
    good, files = _bad_files(tmp_path)
    good2 = tmp_path / "good2.wav"
    save_wav(good2, _tone(500, 0.6, SAMPLE_RATE))
    ok, bad = validate_files([good, *files.values(), good2], progress=False)
    assert ok == [str(good), str(good2)]
    assert [p for p, _ in bad] == [str(p) for p in files.values()]
    assert all(reason for _, reason in bad)
