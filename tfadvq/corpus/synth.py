"""Generate the VoxCeleb-like speaker corpus (``tfadvq data synth``).

Layout (docs/architecture.md)::

    DIR/dev/wav/<spk>/<session>/<nnnnn>.wav    training speakers
    DIR/test/wav/<spk>/<session>/<nnnnn>.wav   held-out speakers
    DIR/lists/{dev,test}_wav.scp, {dev,test}_utt2spk   paths relative to DIR
    DIR/trials/test.txt                          "1|0 enroll test", keys relative to test/wav
    DIR/corpus.json                              settings, timing, voices and sessions

Determinism: every random draw comes from its own generator seeded by
``(seed, stream, speaker, utterance)``, so utterance ``j`` of speaker ``i``
is the same audio whatever the corpus size, the worker count or the order in
which workers finish -- that is also what makes resuming exact.

Voices: before any speaker is assigned a voice, the engines are asked which
of the candidate voices work on this machine (:func:`tfadvq.corpus.tts.probe_voices`);
speakers draw only from those, the ones left out are listed in the summary
and ``corpus.json``, and a corpus begun with another set is not resumed with
this one.  A corpus that misses clips the settings asked for is written (so a
re-run completes it) but reported as an error naming what is missing.

Resuming: wav files appear atomically (``save_wav`` writes a temporary file and
renames it), existing ones are skipped, and the lists, trials and corpus.json
are written only at the end, from the files that exist.  ``DIR/.synth.json``
records the settings so a re-run with other settings cannot mix two corpora.

Work unit: one speaker per task (festival starts once per speaker); workers
are forked processes, because spawning would re-import the ``tfadvq`` package
(and TensorFlow, ~7 s) in every worker.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import tempfile
import time
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfadvq.audio import resample, save_wav
from tfadvq.audio_limits import MIN_SECONDS, SAMPLE_RATE
from tfadvq.corpus.channel import Session, apply_channel, build_rir_bank, sample_session
from tfadvq.corpus.texts import sentence_of_length
from tfadvq import rundir
from tfadvq.corpus.tts import SynthesisError, probe_voices, synthesize
from tfadvq.corpus.vocoder import revoice
from tfadvq.corpus.voices import CANDIDATES, ESPEAK, FESTIVAL, Voice, VoiceSet, sample_voice
from tfadvq.errors import AudioError, ConfigError, DataError
from tfadvq.voxceleb import Trials, corpus_trials_path, write_trials

SPLITS = ("dev", "test")
# Random streams: each kind of draw has its own generator family.
_VOICE, _SESSIONS, _TEXT, _RENDER, _BANKS, _TRIALS = range(6)
_BABBLE_SENTENCES = 16


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """What to generate.  The defaults are the embedded default corpus.

    240 training speakers (>= 200 asked) and 40 test speakers, 12 utterances
    of 2-4 s each (3360 utterances, 2.9 h, 2880 balanced trials): enough
    classes for a speaker embedding, and the most that fits the 5-minute budget.
    Measured for seed 0: 427 CPU-seconds (user+sys) in all, so about 3.7 min
    on two idle cores; 16.4 min wall while ~8 other jobs loaded the machine
    (load average 7).  The wall time of each run is kept in corpus.json.
    """

    speakers: int = 240
    test_speakers: int = 40
    utts: int = 12
    seed: int = 0
    min_seconds: float = 2.0
    max_seconds: float = 4.0
    trials_per_utt: int = 3
    rooms: int = 48

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first unusable argument."""
        checks = [
            (self.speakers >= 2, f"--speakers must be >= 2 (training needs classes), got {self.speakers}"),
            (self.test_speakers >= 2, "--test-speakers must be >= 2 (non-target trials need two "
                                      f"speakers), got {self.test_speakers}"),
            (self.utts >= 2, f"--utts must be >= 2 (target trials need two utterances per "
                             f"speaker), got {self.utts}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (MIN_SECONDS <= self.min_seconds <= self.max_seconds,
             f"need {MIN_SECONDS} <= min_seconds <= max_seconds, got {self.min_seconds} and {self.max_seconds}"),
            (self.trials_per_utt >= 1, f"trials_per_utt must be >= 1, got {self.trials_per_utt}"),
            (self.rooms >= 1, f"rooms must be >= 1, got {self.rooms}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclasses.dataclass(frozen=True)
class UtterancePlan:
    """Where utterance ``index`` of a speaker goes, its session and its sentence length."""

    key: str          # <spk>/<session>/<nnnnn>.wav
    index: int
    session: int
    words: int


@dataclasses.dataclass(frozen=True)
class SpeakerPlan:
    """Everything a worker needs to render one speaker (cheap to make and to pickle)."""

    speaker: str
    split: str
    index: int
    seed: int
    max_seconds: float
    voice: Voice
    sessions: tuple[Session, ...]
    utterances: tuple[UtterancePlan, ...]


@dataclasses.dataclass
class SpeakerResult:
    speaker: str
    split: str
    written: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    audio_seconds: float = 0.0


@dataclasses.dataclass
class SynthResult:
    """What a run did; ``rows()`` is the CLI summary table."""

    out: Path
    speakers: dict[str, int]
    utterances: dict[str, int]
    audio_seconds: dict[str, float]
    written: int
    skipped: int
    failed: list[tuple[str, str]]
    trials: int
    seconds: float
    requested: dict[str, int] = dataclasses.field(default_factory=dict)  # speakers per split asked for
    utts: int = 0  # utterances per speaker asked for
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)  # "engine voice": why not used

    def rows(self) -> list[dict]:
        rows = [{"split": split, "speakers": self.speakers[split], "asked": self.requested.get(split),
                 "utterances": self.utterances[split], "asked_utts": self.requested.get(split, 0) * self.utts,
                 "hours": round(self.audio_seconds[split] / 3600.0, 3),
                 "mean_utt_s": round(self.audio_seconds[split] / max(self.utterances[split], 1), 2)}
                for split in SPLITS]
        rows.append({"split": "run", "written": self.written, "skipped": self.skipped,
                     "failed": len(self.failed), "trials": self.trials,
                     "seconds": round(self.seconds, 1)})
        return rows

    def shortfall(self) -> str:
        """How the corpus differs from its settings ("" when every speaker has all its clips)."""
        missing = [f"{split}: {self.speakers[split]} of {self.requested[split]} speakers, "
                   f"{self.utterances[split]} of {self.requested[split] * self.utts} utterances"
                   for split in SPLITS if self.utterances[split] < self.requested.get(split, 0) * self.utts]
        if not missing:
            return ""
        first = f" (first: {self.failed[0][0]}: {self.failed[0][1]})" if self.failed else ""
        return (f"{self.out}: the corpus is incomplete -- {'; '.join(missing)}; {len(self.failed)} clips "
                f"failed{first}. What was made is kept (all failures in {rundir.CorpusDir(self.out).manifest}); "
                "re-run the same command to retry the missing clips")

    def require_complete(self) -> None:
        """Raise :class:`DataError` when the corpus is not what its settings asked for."""
        if self.shortfall():
            raise DataError(self.shortfall())


def speaker_id(index: int) -> str:
    return f"id{index:05d}"


def plan_corpus(config: SynthConfig, voices: VoiceSet = CANDIDATES) -> list[SpeakerPlan]:
    """Every speaker's voice (drawn from ``voices``), sessions and utterance slots (cheap; no audio, no text)."""
    config.validate()
    total = config.speakers + config.test_speakers
    return [_plan_speaker(config, index, "dev" if index < config.speakers else "test", voices)
            for index in range(total)]


def _plan_speaker(config: SynthConfig, index: int, split: str, voices: VoiceSet) -> SpeakerPlan:
    voice = sample_voice(_rng(config.seed, _VOICE, index), voices=voices)
    session_rng = _rng(config.seed, _SESSIONS, index)
    sessions = tuple(sample_session(session_rng, config.rooms)
                     for _ in range(int(session_rng.integers(2, 5))))
    utterances = []
    seconds = session_rng.uniform(config.min_seconds, config.max_seconds, config.utts)
    for j in range(config.utts):
        session = j % len(sessions)
        key = f"{speaker_id(index)}/s{session + 1:02d}/{j // len(sessions) + 1:05d}.wav"
        words = max(3, round(seconds[j] * voice.words_per_second))
        utterances.append(UtterancePlan(key, j, session, words))
    return SpeakerPlan(speaker_id(index), split, index, config.seed, config.max_seconds, voice,
                       sessions, tuple(utterances))


def synthesize_corpus(out: str | Path, config: SynthConfig = SynthConfig(),
                      workers: int | None = None, progress: bool = True,
                      candidates: VoiceSet = CANDIDATES) -> SynthResult:
    """Generate (or complete) the corpus in ``out``; see the module docstring.

    ``workers`` defaults to the usable CPU cores; 1 runs in this process.
    Speakers draw from the ``candidates`` that work on this machine.  The
    result's :meth:`~SynthResult.require_complete` says whether every speaker
    got its clips.
    """
    start = time.perf_counter()
    config.validate()
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    voices, unavailable = probe_voices(candidates)
    if not voices.engines() or not voices.espeak_variants or not (voices.espeak_english or voices.espeak_other):
        raise ConfigError("no working text-to-speech voice on this machine (espeak-ng is needed for the "
                          f"babble, and at least one engine voice for the speakers): {unavailable}; install "
                          "the engines with scripts/setup.sh")
    previous_seconds = _claim(out, config, voices)
    plans = plan_corpus(config, voices)
    banks = _build_banks(config, voices)
    results = list(_run_speakers(plans, out, banks, workers, progress))
    by_speaker = {r.speaker: r for r in results}
    trials = _write_lists(out, plans, by_speaker, config.seed, config.trials_per_utt)
    seconds = time.perf_counter() - start
    result = SynthResult(
        out=out,
        speakers={s: sum(1 for r in results if r.split == s and (r.written or r.skipped))
                  for s in SPLITS},
        utterances={s: sum(len(r.written) + len(r.skipped) for r in results if r.split == s)
                    for s in SPLITS},
        audio_seconds={s: sum(r.audio_seconds for r in results if r.split == s) for s in SPLITS},
        written=sum(len(r.written) for r in results),
        skipped=sum(len(r.skipped) for r in results),
        failed=[f for r in results for f in r.failed],
        trials=trials,
        seconds=seconds,
        requested={"dev": config.speakers, "test": config.test_speakers},
        utts=config.utts,
        unavailable=unavailable,
    )
    _write_manifest(out, config, voices, plans, result, previous_seconds + seconds)
    return result


# ----------------------------------------------------------------------------- output dir


def _claim(out: Path, config: SynthConfig, voices: VoiceSet) -> float:
    """Check ``out`` is empty or a corpus with the same settings and voices; return earlier runs' seconds."""
    marker = rundir.CorpusDir(out).synth_marker
    settings = dataclasses.asdict(config)
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        differing = {k: (recorded["settings"].get(k), v) for k, v in settings.items()
                     if recorded["settings"].get(k) != v}
        if differing:
            described = ", ".join(f"{k}: {old} there, {new} now" for k, (old, new) in differing.items())
            raise ConfigError(f"{out}: holds a corpus made with other settings ({described}); "
                              "re-run with the same settings to complete it, or use another --out")
        before = recorded.get("voices")  # absent in corpora begun before voices were probed
        if before is not None and VoiceSet(**{k: tuple(v) for k, v in before.items()}) != voices:
            then = VoiceSet(**{k: tuple(v) for k, v in before.items()})
            raise ConfigError(f"{out}: was begun where other TTS voices worked (missing here: "
                              f"{voices.removed(then) or 'none'}; new here: {then.removed(voices) or 'none'}); its "
                              "speakers would get other voices here: finish it there, or use another --out")
        for stale in (p for split in SPLITS for p in (out / split).rglob(".*.tmp")):
            stale.unlink()  # a wav half-written when an earlier run was killed
        return float(recorded.get("generation_seconds", 0.0))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not a tfadvq corpus (no {marker.name}); "
                          "give an empty or new directory as --out")
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(marker, {"settings": settings, "voices": dataclasses.asdict(voices),
                               "generation_seconds": 0.0})
    return 0.0


# ----------------------------------------------------------------------------- workers


@dataclasses.dataclass(frozen=True)
class Banks:
    """Shared by all speakers: ``rirs [rooms, mics, taps]`` and a 1-D ``babble`` track (16 kHz)."""

    rirs: np.ndarray
    babble: np.ndarray


_WORKER_BANKS: Banks | None = None


def _build_banks(config: SynthConfig, voices: VoiceSet) -> Banks:
    """Room responses and a babble track (espeak-ng talkers), shared by all speakers."""
    rng = _rng(config.seed, _BANKS)
    rirs = build_rir_bank(rng, rooms=config.rooms, rate=SAMPLE_RATE)
    talkers = [sample_voice(rng, engine=ESPEAK, voices=voices) for _ in range(_BABBLE_SENTENCES)]
    tracks = []
    with tempfile.TemporaryDirectory(prefix="tfadvq-babble-") as tmp:
        for i, voice in enumerate(talkers):
            text = " ".join(sentence_of_length(rng, 10) for _ in range(3))
            (audio, rate), = synthesize(voice, [text], Path(tmp) / str(i))
            track = resample(audio, rate, SAMPLE_RATE)
            tracks.append(track / (np.sqrt(np.mean(track ** 2)) + 1e-9))
    return Banks(rirs, np.concatenate(tracks).astype(np.float32))


def _init_worker(banks: Banks) -> None:
    global _WORKER_BANKS
    _WORKER_BANKS = banks


def _run_speakers(plans: Sequence[SpeakerPlan], out: Path, banks: Banks, workers: int,
                  progress: bool) -> Iterator[SpeakerResult]:
    # Festival speakers first: they are the longest tasks, so the pool ends balanced.
    tasks = [(plan, out) for plan in sorted(plans, key=lambda p: p.voice.engine != FESTIVAL)]
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=sum(len(p.utterances) for p in plans), unit="utt",
                                       desc="synth", disable=not progress))
        if workers == 1:
            _init_worker(banks)
            results = map(_render_task, tasks)
        else:
            pool = stack.enter_context(multiprocessing.get_context("fork").Pool(
                workers, initializer=_init_worker, initargs=(banks,)))
            results = pool.imap_unordered(_render_task, tasks)
        for result in results:
            bar.update(len(result.written) + len(result.skipped) + len(result.failed))
            yield result


def _render_task(task: tuple[SpeakerPlan, Path]) -> SpeakerResult:
    plan, out = task
    return render_speaker(plan, out, _WORKER_BANKS)


def render_speaker(plan: SpeakerPlan, out: Path, banks: Banks) -> SpeakerResult:
    """Write the speaker's missing utterances; existing files are kept as they are."""
    result = SpeakerResult(plan.speaker, plan.split)
    root = rundir.CorpusDir(out).wav_root(plan.split)
    missing = []
    for utt in plan.utterances:
        if (root / utt.key).is_file():
            result.skipped.append(utt.key)
            result.audio_seconds += _duration(root / utt.key)
        else:
            missing.append(utt)
    if not missing:
        return result
    with tempfile.TemporaryDirectory(prefix="tfadvq-tts-") as tmp:
        texts = [utterance_text(plan, utt) for utt in missing]
        try:
            spoken = synthesize(plan.voice, texts, Path(tmp))
        except SynthesisError as exc:
            result.failed.extend((u.key, str(exc)) for u in missing)
            return result
    for utt, text, audio in zip(missing, texts, spoken):
        if audio is None:
            result.failed.append((utt.key, f"{plan.voice.engine} wrote no audio for {text!r}"))
            continue
        try:
            samples = render_utterance(plan, utt, *audio, banks)
            save_wav(root / utt.key, samples, SAMPLE_RATE)
        except (RuntimeError, AudioError) as exc:
            result.failed.append((utt.key, str(exc)))
            continue
        result.written.append(utt.key)
        result.audio_seconds += len(samples) / SAMPLE_RATE
    return result


def utterance_text(plan: SpeakerPlan, utt: UtterancePlan) -> str:
    """The sentence of ``utt`` (drawn in the worker: 3000+ draws would serialise the start)."""
    return sentence_of_length(_rng(plan.seed, _TEXT, plan.index, utt.index), utt.words)


def render_utterance(plan: SpeakerPlan, utt: UtterancePlan, samples: np.ndarray, rate: int,
                     banks: Banks) -> np.ndarray:
    """Engine audio -> trimmed and capped -> speaker's voice (WORLD) -> session channel."""
    rng = _rng(plan.seed, _RENDER, plan.index, utt.index)
    speech = trim_silence(samples, rate)[:int(plan.max_seconds * rate)]
    if len(speech) < MIN_SECONDS * rate:
        raise AudioError(utt.key, f"{plan.voice.engine} ({plan.voice.engine_voice}) produced only "
                                  f"{len(speech) / rate:.2f} s of speech")
    voiced = revoice(speech, rate, plan.voice, rng, SAMPLE_RATE)
    return apply_channel(voiced, plan.sessions[utt.session], rng, banks.rirs, banks.babble,
                         SAMPLE_RATE)


def trim_silence(samples: np.ndarray, rate: int, floor_db: float = 45.0,
                 margin_seconds: float = 0.1) -> np.ndarray:
    """Cut leading/trailing frames more than ``floor_db`` below the loudest 10 ms frame."""
    hop = rate // 100
    frames = samples[:len(samples) // hop * hop].reshape(-1, hop)
    if len(frames) == 0:
        return samples
    energy_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(energy_db > energy_db.max() - floor_db)
    margin = int(margin_seconds * rate)
    return samples[max(active[0] * hop - margin, 0):(active[-1] + 1) * hop + margin]


def _duration(path: Path) -> float:
    with wave.open(str(path), "rb") as src:
        return src.getnframes() / src.getframerate()


def _rng(seed: int, stream: int, *indices: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *indices])


# ----------------------------------------------------------------------------- lists, trials


def _write_lists(out: Path, plans: Sequence[SpeakerPlan], results: dict[str, SpeakerResult],
                 seed: int, per_utt: int) -> int:
    """Kaldi lists of the utterances that exist, and the trial list; returns the trial count."""
    layout = rundir.CorpusDir(out)
    layout.lists.mkdir(parents=True, exist_ok=True)
    present = {split: [] for split in SPLITS}
    for plan in plans:
        done = set(results[plan.speaker].written) | set(results[plan.speaker].skipped)
        present[plan.split].extend((u.key, plan.speaker) for u in plan.utterances if u.key in done)
    for split, rows in present.items():
        wav = layout.wav_root(split).relative_to(out).as_posix()
        layout.wav_scp(split).write_text("".join(f"{k} {wav}/{k}\n" for k, _ in rows))
        layout.utt2spk(split).write_text("".join(f"{k} {s}\n" for k, s in rows))
    trials = make_trials([k for k, _ in present["test"]], [s for _, s in present["test"]],
                         _rng(seed, _TRIALS), per_utt)
    write_trials(trials, corpus_trials_path(out))
    return len(trials)


def make_trials(keys: Sequence[str], speakers: Sequence[str], rng: np.random.Generator,
                per_utt: int) -> Trials:
    """For every test utterance, ``per_utt`` target and as many non-target enrolment utterances.

    Targets come from the same speaker's other utterances, non-targets from all
    other speakers'; when a speaker has fewer than ``per_utt`` other utterances,
    that utterance gets fewer non-targets too, so the list stays exactly balanced.
    """
    speakers_arr = np.asarray(speakers)
    labels, enroll, test = [], [], []
    for i, key in enumerate(keys):
        same = np.flatnonzero(speakers_arr == speakers_arr[i])
        same = same[same != i]
        other = np.flatnonzero(speakers_arr != speakers_arr[i])
        count = min(per_utt, len(same), len(other))
        for label, pool in ((1, same), (0, other)):
            chosen = rng.choice(pool, count, replace=False)
            labels.extend([label] * count)
            enroll.extend(keys[c] for c in chosen)
            test.extend([key] * count)
    return Trials(np.asarray(labels, np.int8), enroll, test)


def _write_manifest(out: Path, config: SynthConfig, voices: VoiceSet, plans: Sequence[SpeakerPlan],
                    result: SynthResult, total_seconds: float) -> None:
    settings = dataclasses.asdict(config)
    layout = rundir.CorpusDir(out)
    rundir.write_json(layout.synth_marker, {"settings": settings, "voices": dataclasses.asdict(voices),
                                            "generation_seconds": total_seconds})
    rundir.write_json(layout.manifest, {
        "generator": "tfadvq data synth",
        "settings": settings,
        "complete": not result.shortfall(),
        "unavailable_voices": result.unavailable,
        "sample_rate": SAMPLE_RATE,
        "generation_seconds": round(total_seconds, 1),
        "last_run": {"seconds": round(result.seconds, 1), "written": result.written,
                     "skipped": result.skipped},
        "speakers_per_split": result.speakers,
        "utterances_per_split": result.utterances,
        "audio_hours": round(sum(result.audio_seconds.values()) / 3600.0, 4),
        "trials": result.trials,
        "failed": [{"key": k, "reason": r} for k, r in result.failed],
        "speakers": {p.speaker: {"split": p.split, "voice": dataclasses.asdict(p.voice),
                                 "sessions": {f"s{i + 1:02d}": dataclasses.asdict(s)
                                              for i, s in enumerate(p.sessions)}}
                     for p in plans},
    })
