"""tf.data pipelines: random fixed-length training crops with augmentation, and whole-utterance evaluation.

Reading.  Files enter through :func:`check_utterances` first: the checker of
:mod:`tfadvq.audio` (header reads for integer-PCM wav, a full decode for
float wav, flac and ogg) splits them into usable ones and ``(path, reason)``
pairs, so one bad file is skipped and reported instead of ending a run with
a TensorFlow traceback.  The pipelines then read what the checker passed with
the one reader, :func:`tfadvq.audio.load_audio` -- every format and rate it
accepts is read (resampled, mixed down) the same way here as in ``tfadvq
lists``, ``verify`` and the converters -- with one shortcut: a file whose
header is plain 16-bit PCM at the pipeline's sample rate (the 44-byte header
that ``save_wav``, the corpus generator and sox write, or one extra chunk
such as ffmpeg's ``LIST`` before the data) is decoded in the graph by
``tf.audio.decode_wav``, which gives exactly load_audio's samples
(int16 / 32768) without Python.  Everything else goes through
``tf.numpy_function(load_audio)``.

Measured on 2 shared cores (load 4-5), generated corpus (24 speakers x 12
utterances), interleaved runs timed with benchmarks/data_pipeline.py's own
``rate`` and demo trainer: the reader alone does ~3200 files/s with
``decode_wav`` and ~2000 files/s through ``numpy_function`` (GIL-bound), but
with every augmentation on the reader is lost in the noise -- pipeline
batches/s over demo training steps/s was 10.6, 11.4 and 10.4 with the
shortcut, 11.1, 7.9 and 9.6 with every file through ``numpy_function`` (the
benchmark asks >= 2).  The shortcut is kept not for speed but because
TensorFlow's ``py_func`` has a known race at interpreter exit
(tensorflow#21277; reproduced here, about 1 exit in 4, with a busy iterator
still alive at exit): a process that exits while a ``numpy_function`` call
is in flight can hang.  A pipeline of plain 16-bit wav never takes that risk.

Training (:func:`train_dataset`), per epoch:

1. the utterance list is reshuffled (full shuffle: the elements are just paths);
2. each file is read in parallel (AUTOTUNE), mixed to mono, and a random
   ``crop_seconds`` window is cut; utterances that are too short are
   repeated (tiled) to fill it;
3. optional speed perturbation (factors 0.9 / 1.1, as in Kaldi/WeSpeaker SV
   recipes): the crop is read at ``speed`` samples per output sample (linear
   interpolation), which shifts pitch and tempo; each factor counts as new
   speakers, so labels are offset by ``factor_index * num_speakers``;
4. batches are augmented as whole tensors (vectorised): additive noise at a
   random SNR (coloured noise with a random spectral tilt, or babble made of
   other utterances of the batch) and simple reverberation (convolution with
   an exponentially decaying noise impulse response of random RT60, via FFT);
5. fbank features (:mod:`tfadvq.features`), then SpecAugment time and
   frequency masks (masked values set to 0, the mean after mean normalisation);
6. prefetch.

Randomness is stateless and derived from ``PipelineConfig.seed`` through a
per-element seed stream that is redrawn every epoch: the same seed yields the
same batches, and parallel decoding does not change them.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from tfadvq.audio import SAMPLE_RATE, AudioLimits, load_audio, validate_files
from tfadvq.fbank_config import FbankConfig
from tfadvq.compat import tf
from tfadvq.errors import DataError
from tfadvq.features import fbank
from tfadvq.train_config import SPEED_FACTORS, PipelineConfig
from tfadvq.voxceleb import Utterance

AUTOTUNE = tf.data.AUTOTUNE


def speaker_labels(utterances: Sequence[Utterance]) -> dict[str, int]:
    """Speaker id -> class index, in sorted speaker order (stable across runs)."""
    return {speaker: i for i, speaker in enumerate(sorted({u.speaker for u in utterances}))}


def num_classes(num_speakers: int, config: PipelineConfig) -> int:
    """Classes the softmax head needs: speed perturbation triples the speakers."""
    return num_speakers * (len(SPEED_FACTORS) if config.speed_perturb else 1)


def check_utterances(
    utterances: Sequence[Utterance],
    limits: AudioLimits | None = None,
    *,
    signal: bool = False,
    sample_rate: int = SAMPLE_RATE,
    progress: bool = True,
) -> tuple[list[Utterance], list[tuple[str, str]]]:
    """Split ``utterances`` into the ones the pipelines can read and ``[(path, reason), ...]``.

    The checking pass to run before :func:`train_dataset` / :func:`eval_dataset`
    (:func:`tfadvq.audio.validate_files` under ``limits``, default
    :class:`~tfadvq.audio.AudioLimits`: at least 0.5 s).  ``signal=False``
    (training) reads only headers where it can; ``signal=True`` (evaluation)
    also refuses silent and clipped recordings, reading every file.
    ``sample_rate`` is the pipeline's (``config.fbank.sample_rate``).  Order is
    kept; a file shared by several utterances is checked and reported once.
    """
    good, bad = validate_files([u.path for u in utterances], limits, signal=signal,
                               sample_rate=sample_rate, progress=progress)
    usable = set(good)
    return [u for u in utterances if u.path in usable], bad


def train_dataset(
    utterances: Sequence[Utterance],
    config: PipelineConfig | None = None,
    speakers: Mapping[str, int] | None = None,
) -> tf.data.Dataset:
    """One epoch of ``(features [B, crop_frames, mel] float32, labels [B] int32)`` batches.

    ``speakers`` maps speaker id to label (default :func:`speaker_labels`);
    the last incomplete batch is dropped so every step sees ``batch_size``.
    Iterating again (next epoch) reshuffles and redraws all randomness.
    ``utterances`` should have passed :func:`check_utterances`: a file that
    fails to read anyway stops iteration with an error naming it.
    """
    config = config or PipelineConfig()
    speakers = speakers if speakers is not None else speaker_labels(utterances)
    paths = _paths(utterances)
    missing = sorted({u.speaker for u in utterances} - set(speakers))
    if missing:
        raise DataError(f"train_dataset: speakers {missing[:5]} have no label in `speakers`")
    labels = np.array([speakers[u.speaker] for u in utterances], np.int32)
    n_spk = len(speakers)
    files = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(
        len(paths), seed=config.seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip((files, seeds)).map(
        lambda item, seed: _read_crop(item[0], item[1], seed, config, n_spk),
        num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(config.batch_size, drop_remainder=True)
    dataset = dataset.map(lambda w, y, s: (_augment_batch(w, s[0], config), y),
                          num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def eval_dataset(
    utterances: Sequence[Utterance],
    fbank_config: FbankConfig | None = None,
    max_seconds: float | None = None,
) -> tf.data.Dataset:
    """Whole utterances, in list order, as ``(features [1, frames, mel], key [1])``.

    One utterance per element because lengths differ and mean normalisation
    is per utterance; ``max_seconds`` keeps only the start of very long files.
    """
    config = fbank_config or FbankConfig()
    paths = _paths(utterances)
    limit = -1 if max_seconds is None else int(max_seconds * config.sample_rate)

    def load(path: tf.Tensor, key: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        wave = _decode(path, config.sample_rate)
        wave = wave if limit < 0 else wave[:limit]
        return fbank(wave, config)[tf.newaxis], key[tf.newaxis]

    keys = [u.key for u in utterances]
    dataset = tf.data.Dataset.from_tensor_slices((paths, keys))
    return dataset.map(load, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def read_error_message(exc: Exception) -> str:
    """The cause of a failed read inside a pipeline (a TF op error), without TF's noise.

    A file that passed :func:`check_utterances` fails only if it changed
    since; this recovers the :class:`~tfadvq.errors.AudioError` message that
    ``load_audio`` raised inside ``numpy_function``, or TF's own message.
    """
    text = getattr(exc, "message", None) or str(exc)
    found = re.search(r"AudioError: ([^\n]*)", text)
    if found:
        return found.group(1)
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text).split("\n")[0].strip()


def spec_augment(features: tf.Tensor, seed: tf.Tensor, config: PipelineConfig) -> tf.Tensor:
    """Zero random frequency bands and time spans of ``features [B, T, F]`` (SpecAugment).

    Each example gets ``freq_masks`` bands of width ``U[0, freq_mask_max]``
    and ``time_masks`` spans of width ``U[0, time_mask_max]``.
    """
    batch = tf.shape(features)[0]
    keep = tf.ones_like(features, dtype=tf.bool)
    for axis, count, widest in ((2, config.freq_masks, config.freq_mask_max),
                                (1, config.time_masks, config.time_mask_max)):
        size = tf.shape(features)[axis]
        for i in range(count):
            u = tf.random.stateless_uniform([2, batch], _sub_seed(seed, 10 + 10 * axis + i))
            width = tf.cast(u[0] * (widest + 1), tf.int32)
            start = tf.cast(u[1] * tf.cast(size - width + 1, tf.float32), tf.int32)
            pos = tf.range(size)[tf.newaxis]
            band = (pos >= start[:, None]) & (pos < (start + width)[:, None])
            band = band[:, tf.newaxis, :] if axis == 2 else band[:, :, tf.newaxis]
            keep &= ~band
    return tf.where(keep, features, tf.zeros_like(features))


def add_noise(waves: tf.Tensor, seed: tf.Tensor, config: PipelineConfig) -> tf.Tensor:
    """Add noise at ``U[snr_db]`` dB to a ``noise_prob`` share of ``waves [B, N]``.

    The noise is coloured (Gaussian noise with a random spectral tilt, amplitude
    ``f^-a/2`` with ``a ~ U[0, 2]``: white to brown, made in the frequency
    domain) or, for a ``babble_prob`` share, the sum of three other utterances
    of the batch.  Only the chosen rows are computed.
    """
    batch, length = tf.shape(waves)[0], tf.shape(waves)[1]
    u = tf.random.stateless_uniform([4, batch], _sub_seed(seed, 1))

    def noisy(rows: tf.Tensor) -> tf.Tensor:
        clean = tf.gather(waves, rows)
        bins = length // 2 + 1
        shape = tf.stack([tf.size(rows), bins])
        spectrum = tf.complex(tf.random.stateless_normal(shape, _sub_seed(seed, 2)),
                              tf.random.stateless_normal(shape, _sub_seed(seed, 5)))
        freqs = tf.maximum(tf.linspace(0.0, 1.0, bins), 1.0 / tf.cast(length, tf.float32))
        tilt = tf.pow(freqs[tf.newaxis], -tf.gather(u[0], rows)[:, None])
        coloured = tf.signal.irfft(spectrum * tf.cast(tilt, tf.complex64), [length])
        babble = tf.add_n([tf.gather(waves, (rows + k) % batch) for k in (1, 2, 3)])
        noise = tf.where((tf.gather(u[1], rows) < config.babble_prob)[:, None], babble, coloured)
        low, high = config.snr_db
        snr = low + (high - low) * tf.gather(u[2], rows)
        gain = tf.sqrt(_power(clean) / (_power(noise) * tf.pow(10.0, snr / 10.0)))
        return clean + gain[:, None] * noise

    return _on_rows(waves, u[3] < config.noise_prob, noisy)


def add_reverb(waves: tf.Tensor, seed: tf.Tensor, config: PipelineConfig) -> tf.Tensor:
    """Reverberate a ``reverb_prob`` share of ``waves [B, N]``, keeping each one's energy.

    Impulse response: a unit direct path followed by Gaussian noise decaying
    by 60 dB over ``RT60 ~ U[rt60_seconds]``, ``rir_seconds`` long; applied
    as a linear convolution via FFT and truncated to the input length.  Only
    the chosen rows are computed.
    """
    batch, length = tf.shape(waves)[0], tf.shape(waves)[1]
    taps = int(config.rir_seconds * config.fbank.sample_rate)
    u = tf.random.stateless_uniform([2, batch], _sub_seed(seed, 3))

    def reverberant(rows: tf.Tensor) -> tf.Tensor:
        dry = tf.gather(waves, rows)
        low, high = config.rt60_seconds
        rt60 = low + (high - low) * tf.gather(u[0], rows)
        t = tf.range(taps, dtype=tf.float32)[tf.newaxis] / config.fbank.sample_rate
        decay = tf.exp(-3.0 * math.log(10.0) * t / rt60[:, None])  # -60 dB at t = rt60
        noise = tf.random.stateless_normal(tf.stack([tf.size(rows), taps]), _sub_seed(seed, 4))
        rir = tf.concat([tf.ones_like(noise[:, :1]), (0.3 * noise * decay)[:, 1:]], axis=1)
        fft = ((length + taps + 511) // 512 * 512)[tf.newaxis]  # >= linear-convolution length
        wet = tf.signal.irfft(tf.signal.rfft(dry, fft) * tf.signal.rfft(rir, fft), fft)[:, :length]
        return wet * tf.sqrt(_power(dry) / _power(wet))[:, None]

    return _on_rows(waves, u[1] < config.reverb_prob, reverberant)


def _on_rows(waves: tf.Tensor, chosen: tf.Tensor, transform) -> tf.Tensor:
    """``waves`` with the rows where ``chosen`` is true replaced by ``transform(rows)``."""
    rows = tf.cast(tf.where(chosen)[:, 0], tf.int32)
    return tf.tensor_scatter_nd_update(waves, rows[:, None], transform(rows))


def _power(waves: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.square(waves), axis=1) + 1e-10


def _paths(utterances: Sequence[Utterance]) -> list[str]:
    if not utterances:
        raise DataError("pipeline: the utterance list is empty (or every file was bad)")
    return [u.path for u in utterances]


def _decode(path: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """Mono float32 samples of a checked file: in-graph for plain 16-bit wav, else load_audio."""
    contents = tf.io.read_file(path)

    def by_load_audio() -> tf.Tensor:
        def read(file: bytes | np.ndarray) -> np.ndarray:  # bytes in graphs, a 0-d array eagerly
            return load_audio(np.asarray(file).item().decode(), sample_rate, min_seconds=0.0)

        wave = tf.numpy_function(read, [path], tf.float32, stateful=False, name="load_audio")
        return tf.ensure_shape(wave, [None])

    return tf.cond(_plain_pcm16(contents, sample_rate),
                   lambda: tf.reduce_mean(tf.audio.decode_wav(contents)[0], axis=1), by_load_audio)


def _plain_pcm16(contents: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """True if ``contents`` is complete 16-bit PCM at ``sample_rate`` in the common plain layout.

    That is RIFF/WAVE, a 16-byte ``fmt`` chunk (format 1, 16 bits) and the
    ``data`` chunk right behind it or behind one even-sized chunk (ffmpeg's
    ``LIST``), holding whole frames that the file really contains: exactly
    what ``tf.audio.decode_wav`` reads as :func:`tfadvq.audio.load_audio` does.
    Anything else is left to load_audio.
    """
    size = tf.cast(tf.strings.length(contents), tf.int64)

    def read(at: tf.Tensor | int, count: int) -> tf.Tensor:
        """``count`` bytes at ``at`` (zeros past the end) as int64 values."""
        at = tf.minimum(tf.cast(at, tf.int64), size)
        piece = tf.strings.join([tf.strings.substr(contents, at, count), tf.constant(bytes(count))])
        return tf.cast(tf.io.decode_raw(tf.strings.substr(piece, 0, count), tf.uint8), tf.int64)

    def uint(b: tf.Tensor, at: int, count: int) -> tf.Tensor:
        return tf.add_n([b[at + i] * (256 ** i) for i in range(count)])

    def tag(b: tf.Tensor, at: int, text: bytes) -> tf.Tensor:
        return tf.reduce_all(tf.equal(b[at:at + len(text)], tf.constant(list(text), tf.int64)))

    head = read(0, 44)
    channels = uint(head, 22, 2)
    plain_fmt = (tag(head, 0, b"RIFF") & tag(head, 8, b"WAVEfmt ") & (uint(head, 16, 4) == 16)
                 & (uint(head, 20, 2) == 1) & (uint(head, 34, 2) == 16) & (channels > 0)
                 & (uint(head, 32, 2) == 2 * channels) & (uint(head, 24, 4) == sample_rate))
    direct = tag(head, 36, b"data")
    skipped = 44 + uint(head, 40, 4)  # the chunk after one extra chunk at 36
    behind = read(skipped, 8)
    data_at = tf.where(direct, tf.constant(44, tf.int64), skipped + 8)
    data_bytes = tf.where(direct, uint(head, 40, 4), uint(behind, 4, 4))
    found = direct | (tag(behind, 0, b"data") & (tf.math.floormod(skipped, 2) == 0))
    return (plain_fmt & found & (data_bytes > 0) & (data_bytes <= size - data_at)
            & (tf.math.floormod(data_bytes, tf.maximum(2 * channels, 1)) == 0))


def _read_crop(path: tf.Tensor, label: tf.Tensor, seed: tf.Tensor, config: PipelineConfig,
               num_speakers: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """A random ``crop_samples`` window (speed-perturbed if configured) and its label."""
    wave = _decode(path, config.fbank.sample_rate)
    u = tf.random.stateless_uniform([2], _sub_seed(seed, 0))
    choices = len(SPEED_FACTORS) if config.speed_perturb else 1
    index = tf.minimum(tf.cast(u[0] * choices, tf.int32), choices - 1)
    speed = tf.gather(tf.constant(SPEED_FACTORS, tf.float32), index)
    out = config.crop_samples
    needed = tf.cast(tf.math.ceil(out * speed), tf.int32) + 1  # source samples read
    n = tf.shape(wave)[0]
    wave = tf.tile(wave, [(needed + n - 1) // n])  # repeat short utterances
    start = tf.cast(u[1] * tf.cast(tf.shape(wave)[0] - needed, tf.float32), tf.int32)
    offset = tf.range(out, dtype=tf.float32) * speed
    left = start + tf.cast(offset, tf.int32)
    frac = offset - tf.floor(offset)
    crop = tf.gather(wave, left) * (1 - frac) + tf.gather(wave, left + 1) * frac
    return tf.ensure_shape(crop, [out]), label + index * num_speakers, seed


def _augment_batch(waves: tf.Tensor, seed: tf.Tensor, config: PipelineConfig) -> tf.Tensor:
    if config.noise_prob > 0:
        waves = add_noise(waves, seed, config)
    if config.reverb_prob > 0:
        waves = add_reverb(waves, seed, config)
    features = fbank(waves, config.fbank)
    if config.spec_augment:
        features = spec_augment(features, seed, config)
    return features


def _sub_seed(seed: tf.Tensor, stream: int) -> tf.Tensor:
    """A stateless seed pair for an independent random stream of one element/batch."""
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])


__all__ = [
    "PipelineConfig",
    "SPEED_FACTORS",
    "add_noise",
    "add_reverb",
    "check_utterances",
    "eval_dataset",
    "num_classes",
    "read_error_message",
    "spec_augment",
    "speaker_labels",
    "train_dataset",
]
