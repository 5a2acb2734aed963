"""Audio I/O on real files: every supported format, every kind of bad input."""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest

import bad_audio  # tests/ is on sys.path under pytest
from tfadvq import audio
from tfadvq.audio import (
    SAMPLE_RATE,
    AudioLimits,
    audio_info,
    available_decoders,
    check_file,
    conversion_command,
    decode_compressed,
    load_audio,
    load_checked_audio,
    resample,
    save_wav,
    signal_problem,
    validate_files,
)
from tfadvq.errors import AudioError, ConfigError

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


def _sox(tmp_path, name: str, x: np.ndarray, rate: int = SAMPLE_RATE, *args: str):
    src = tmp_path / f"{name}.src.wav"
    save_wav(src, x, sample_rate=rate)
    out = tmp_path / name
    subprocess.run(["sox", str(src), *args, str(out)], check=True)
    return out


def _decoder(name: str) -> str:
    if name not in available_decoders():
        pytest.skip(f"{name} cannot decode here (its ops do not load or it is not installed)")
    return name


def _tfio_ops_should_load() -> bool:
    """tensorflow-io 0.37's wheels are built for TF 2.17: its ops load there and nowhere newer."""
    try:
        importlib.metadata.version("tensorflow-io")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(v) for v in importlib.metadata.version("tensorflow").split(".")[:2])
    return (major, minor) < (2, 18)


def test_the_decoder_is_tensorflow_io_exactly_where_its_ops_load():
    expected = ("tensorflow-io", "soundfile") if _tfio_ops_should_load() else ("soundfile",)
    assert available_decoders() == expected
    assert audio.compressed_decoder() == expected[0]


def test_without_tensorflow_io_flac_and_ogg_go_through_soundfile(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_io", None)  # as if not installed: importing it raises
    monkeypatch.setitem(sys.modules, "tensorflow_io.python.ops", None)
    audio.available_decoders.cache_clear()
    try:
        assert audio.compressed_decoder() == "soundfile"
        with pytest.raises(ConfigError, match="'tensorflow-io' is not available here; available: soundfile"):
            decode_compressed(tmp_path / "x.flac", "tensorflow-io")
        x = bad_audio.tone(0.6, level=0.5)
        if shutil.which("sox"):
            np.testing.assert_allclose(load_audio(_sox(tmp_path, "x.flac", x)), x, atol=1 / 32768)
    finally:
        audio.available_decoders.cache_clear()  # later tests decide again, with tensorflow-io back


@needs_sox
@pytest.mark.parametrize("decoder", ["tensorflow-io", "soundfile"])
@pytest.mark.parametrize("name, args, rate, channels, tol", [
    ("16bit.flac", (), SAMPLE_RATE, 1, 1 / 32768),
    ("24bit_44k_stereo.flac", ("-b", "24"), 44100, 2, 1e-6),
    ("vorbis.ogg", (), SAMPLE_RATE, 1, 0.05),
    ("vorbis_stereo_48k.ogg", (), 48000, 2, 0.05),
])
def test_each_decoder_reads_flac_and_ogg_as_the_source(tmp_path, decoder, name, args, rate, channels, tol):
    x = np.stack([bad_audio.tone(1.0, 440, rate, 0.5), bad_audio.tone(1.0, 1000, rate, 0.25)], axis=1)[:, :channels]
    path = _sox(tmp_path, name, x, rate, *args)
    y, got_rate = decode_compressed(path, _decoder(decoder))
    assert (got_rate, y.shape[1], y.dtype) == (rate, channels, np.float32)
    assert abs(len(y) - len(x)) <= 0.01 * len(x)  # vorbis may pad the last block
    n = min(len(x), len(y))
    assert np.abs(y[:n] - np.round(x[:n] * 32768) / 32768).max() < tol


@needs_sox
def test_both_decoders_give_the_same_samples_on_the_same_files(tmp_path):
    _decoder("tensorflow-io")
    x = bad_audio.tone(1.3, 440, 22050, 0.5) + bad_audio.tone(1.3, 3000, 22050, 0.2)
    files = {"16bit.flac": (), "24bit.flac": ("-b", "24"), "8bit.flac": ("-b", "8"), "vorbis.ogg": (),
             "vorbis_q2.ogg": ("-C", "2")}
    for name, args in files.items():
        path = _sox(tmp_path, name, x, 22050, *args)
        (a, rate_a), (b, rate_b) = (decode_compressed(path, d) for d in ("tensorflow-io", "soundfile"))
        assert rate_a == rate_b == 22050, name
        assert a.shape == b.shape, (name, a.shape, b.shape)
        # flac is lossless: equal up to float rounding; the vorbis decoders' floats differ in their
        # last bits (measured 1.8e-7)
        np.testing.assert_allclose(a, b, atol=1e-6 if name.endswith(".flac") else 1e-5, err_msg=name)
    # MP3 (the real-speech corpus's Amazon Queen release may be MP3), encoded by libsndfile's LAME
    import soundfile

    mp3 = tmp_path / "speech.mp3"
    soundfile.write(mp3, x, 22050, format="MP3")
    (a, _), (b, _) = (decode_compressed(mp3, d) for d in ("tensorflow-io", "soundfile"))
    assert a.shape == b.shape and len(a) >= len(x)
    np.testing.assert_allclose(a, b, atol=1e-5)  # measured 5e-7


@pytest.mark.parametrize("decoder", ["tensorflow-io", "soundfile"])
def test_each_decoder_refuses_broken_flac_and_ogg_with_the_same_reason(tmp_path, decoder):
    files = {"noise.flac": np.random.default_rng(1).bytes(4000), "magic_only.flac": b"fLaC",
             "text.ogg": "speaker notes, not audio: é\n".encode() * 40}
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(AudioError) as info:
            decode_compressed(path, _decoder(decoder))
        assert info.value.path == str(path)
        assert info.value.reason.startswith("cannot be decoded as wav/flac/ogg (") and info.value.reason.endswith(")")
        assert str(path) not in info.value.reason  # named once, by AudioError


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


# --------------------------------------------------------------------------- one reader, one checker


@pytest.mark.parametrize("encoding, tol", [("pcm8", 1 / 128), ("pcm16", 1 / 32768), ("pcm24", 1e-6),
                                           ("pcm32", 1e-6), ("float32", 1e-7), ("float64", 1e-7)])
def test_every_wav_encoding_reads_as_the_same_samples(tmp_path, encoding, tol):
    x = bad_audio.tone(0.6, level=0.5)
    for extensible in (False, True):
        path = bad_audio.write_wav(tmp_path / f"{extensible}.wav", x, encoding=encoding, extensible=extensible)
        np.testing.assert_allclose(load_audio(path), x, atol=tol)
        info = audio_info(path)
        assert (info.encoding, info.sample_rate, info.channels, info.frames) == (encoding, SAMPLE_RATE, 1, len(x))


def test_header_layouts_other_tools_write(tmp_path):
    x = bad_audio.tone(0.6)
    stereo = bad_audio.write_wav(tmp_path / "stereo.wav", np.stack([x, -x / 2], axis=1))
    np.testing.assert_allclose(load_audio(stereo), x / 4, atol=1e-4)
    for where, size in (("before_fmt", 4), ("after_fmt", 26), ("after_fmt", 5)):
        listed = bad_audio.write_wav(tmp_path / f"{where}{size}.wav", x, extra_chunk=where, extra_size=size)
        np.testing.assert_allclose(load_audio(listed), x, atol=1 / 32768)


def test_other_rates_are_resampled_to_exactly_the_length_the_header_predicts(tmp_path):
    for rate in (8000, 22050, 44100, 48000):
        path = bad_audio.write_wav(tmp_path / f"{rate}.wav", bad_audio.tone(0.77, 300, rate), rate=rate)
        y = load_audio(path)
        assert len(y) == audio_info(path).frames_at(SAMPLE_RATE)
        assert _dominant_hz(y, SAMPLE_RATE) == pytest.approx(300, abs=2)


def test_unsupported_wav_encoding_names_what_is_accepted_and_how_to_convert(tmp_path):
    path = bad_audio.write_wav(tmp_path / "alaw.wav", bad_audio.tone(0.6), encoding="alaw")
    with pytest.raises(AudioError, match="format tag 6") as info:
        load_audio(path)
    assert "PCM 8/16/24/32-bit or IEEE float" in info.value.reason and "ffmpeg" in info.value.reason


def test_every_bad_kind_is_refused_by_reader_and_checker_alike(tmp_path):
    source = tmp_path / "src.wav"
    save_wav(source, bad_audio.tone(1.0))
    files = bad_audio.bad_versions(source, tmp_path / "bad")
    signal_only = {"silence", "clipped"}
    for name, (path, reason) in files.items():
        with pytest.raises(AudioError, match=reason) as info:
            check_file(path)
        assert info.value.path == str(path), name
        if name in signal_only:  # readable: only the device's signal checks refuse it
            assert len(load_audio(path)) == SAMPLE_RATE
            check_file(path, signal=False)
            with pytest.raises(AudioError, match=reason):
                load_checked_audio(path)
        else:
            with pytest.raises(AudioError, match=reason):
                load_audio(path)
            with pytest.raises(AudioError, match=reason):
                check_file(path, signal=False)  # the fast check refuses what the reader refuses


def test_fast_check_reads_headers_only_for_integer_pcm(tmp_path, monkeypatch):
    x = bad_audio.tone(0.6)
    pcm = bad_audio.write_wav(tmp_path / "pcm.wav", x)
    floats = bad_audio.write_wav(tmp_path / "float.wav", x, encoding="float32")
    calls = []
    monkeypatch.setattr(audio, "_read_wav", lambda path, layout: calls.append(path) or
                        (np.zeros((layout.frames, layout.channels), np.float32), layout.rate))
    check_file(pcm, signal=False)
    assert calls == []
    check_file(floats, signal=False)  # float wav may hold NaN: decoded
    assert calls == [floats]


def test_fast_check_length_matches_the_reader_at_the_boundary(tmp_path):
    limits = AudioLimits(min_seconds=0.5)
    for rate in (16000, 44100):
        need = int(np.ceil(0.5 * rate))
        for frames, ok in ((need, True), (need - 30, False)):
            path = bad_audio.write_wav(tmp_path / f"{rate}_{frames}.wav", bad_audio.tone(frames / rate, rate=rate),
                                       rate=rate)
            verdicts = []
            for signal in (False, True):
                try:
                    check_file(path, limits, signal=signal)
                    verdicts.append(True)
                except AudioError:
                    verdicts.append(False)
            assert verdicts == [ok, ok], (rate, frames)


def test_signal_checks_follow_the_firmware_limits():
    """sv::CheckAudio (tflm_firmware/lib/audio_check.cc): RMS after DC >= 30, <= 1 % at |x| >= 32000."""
    n = 16000
    limits = AudioLimits()
    assert (limits.min_seconds * SAMPLE_RATE, limits.min_rms, limits.max_clipped_fraction,
            limits.clip_level) == (8000, 30.0, 0.01, 32000)
    square = lambda amplitude, dc=0: (dc + amplitude * np.where(np.arange(n) % 2, 1, -1)) / 32768  # noqa: E731
    assert signal_problem(square(31)) is None
    assert "silent" in signal_problem(square(29))
    assert "silent" in signal_problem(square(29, dc=5000))  # loud DC, quiet signal
    assert signal_problem(square(31, dc=5000)) is None
    for clipped, verdict in ((160, None), (161, "clipped")):
        x = square(1000)
        x[:clipped] = 32000 / 32768
        problem = signal_problem(x)
        assert (problem is None) if verdict is None else (verdict in problem), clipped
    assert "1 %" in signal_problem(np.where(np.arange(n) % 2, 1.0, -1.0))
    with pytest.raises(ConfigError, match="max_clipped_fraction"):
        AudioLimits(max_clipped_fraction=2.0)


def test_validate_files_checks_a_repeated_path_once(tmp_path):
    good = bad_audio.write_wav(tmp_path / "good.wav", bad_audio.tone(0.6))
    silent = bad_audio.write_wav(tmp_path / "silent.wav", np.zeros(SAMPLE_RATE))
    ok, bad = validate_files([good, silent, good, silent], progress=False)
    assert ok == [str(good), str(good)]
    assert [p for p, _ in bad] == [str(silent)]
    ok, bad = validate_files([good, silent], signal=False, progress=False)
    assert ok == [str(good), str(silent)] and bad == []
