"""A real-speech evaluation corpus from Debian packages (``tfadvq data real``).

Everything else the project measures is on voices it synthesised; this builds
a test set of people (:data:`tfadvq.corpus.real_sources.SOURCES`: telephone
prompts, volunteers reading, acted game voices; opt-in ``EXTRA_SOURCES``: the
characters of Flight of the Amazon Queen, read from its resource file by
:mod:`tfadvq.corpus.queen`) in the layout
``tfadvq data synth`` writes (docs/architecture.md), so
:func:`tfadvq.voxceleb.load_corpus`, ``tfadvq eval --corpus`` and the recipe's
evaluate stage read it as they read the synthetic one.  By default it has a test
part only (no ``dev`` lists: an evaluation set).  ``train_speakers`` (opt-in,
issue 20's lever "training on a real-speaker split") moves the named speakers'
clips into a ``dev`` part instead, with no trials: a training config then adds
the corpus beside the synthetic one (``data.extra_corpora``,
:class:`tfadvq.train_config.DataConfig`), and the trials test only the others.

* Audio: every clip goes through the one reader
  (:func:`tfadvq.audio.load_checked_audio`: resampled to 16 kHz mono, and
  refused by the same :class:`~tfadvq.audio.AudioLimits` -- too short, silent,
  clipped -- as evaluation and the firmware refuse it); refused clips are
  listed with their reason in corpus.json.  GSM prompts are turned into wav by
  sox first (the reader cannot decode GSM).
* Trials test voices, not channels: a non-target pair is two speakers of the
  same source *and* language (so the codec, the sampling rate or the language
  alone cannot tell them apart); a target pair is two different clips of one
  speaker in one language, from different folders (sessions) where there are.
  Each trial's source and language are written beside the trial list
  (``trials/test_sources.txt``), so :func:`source_report` gives the EER on all
  trials and on the *same-source* trials -- those of the groups that hold two
  or more speakers, where every target competes with non-targets of its own
  recording set-up -- with speaker-level bootstrap intervals.
* Deterministic: which clips a speaker contributes (``max_clips``) and the
  trials are drawn from generators seeded by ``(seed, speaker, language)``, so
  one speaker's clips do not depend on which other sources are built.
* Resumable: a clip's wav appears atomically (:func:`tfadvq.audio.save_wav`)
  and is skipped when present; lists, trials, manifest and README are written
  at the end from what exists.  The settings are kept in a marker
  (:class:`tfadvq.rundir.CorpusDir`), so a re-run with other settings is refused.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import json
import os
import re
import subprocess
import tempfile
import time
import wave
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tfadvq import rundir
from tfadvq.audio import SAMPLE_RATE, AudioLimits, load_checked_audio, save_wav
from tfadvq.config import to_dict
from tfadvq.corpus.real_sources import EXTRA_SOURCES, SOURCES, Reader, Source, source_names
from tfadvq.errors import AudioError, ConfigError, DataError
from tfadvq.voxceleb import Trials, read_trials, write_trials

SPLIT = "test"
TRAIN_SPLIT = "dev"  # the part ``train_speakers`` go to (what load_corpus trains on)
KNOWN = SOURCES + EXTRA_SOURCES  # what --sources accepts (the default builds SOURCES)
_CLIPS, _TRIALS = range(2)


@dataclasses.dataclass(frozen=True)
class RealConfig:
    """What to build: ``sources`` by name (default: every default source, not the opt-in ones);
    ``max_clips`` caps each speaker's clips per language (0: all of them); ``train_speakers`` go to a
    ``dev`` part for training (no trials), so the trials hold only the other speakers."""

    sources: tuple[str, ...] = source_names()
    max_clips: int = 100
    seed: int = 0
    trials_per_utt: int = 3
    min_seconds: float = 0.5  # the device's minimum (AudioLimits)
    train_speakers: tuple[str, ...] = ()

    def validate(self, known: Sequence[str]) -> None:
        unknown = [s for s in self.sources if s not in known]
        checks = [
            (bool(self.sources), f"--sources: give at least one of {', '.join(known)}"),
            (not unknown, f"--sources: unknown source(s) {', '.join(unknown)}; accepted: {', '.join(known)}"),
            (len(set(self.sources)) == len(self.sources), f"--sources: {', '.join(self.sources)} repeats one"),
            (self.max_clips == 0 or self.max_clips >= 2,
             f"--max-clips must be 0 (all) or >= 2 (targets need two clips), got {self.max_clips}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.trials_per_utt >= 1, f"trials_per_utt must be >= 1, got {self.trials_per_utt}"),
            (self.min_seconds > 0, f"min_seconds must be > 0, got {self.min_seconds}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def check_train_speakers(self, sources: Sequence[Source]) -> None:
        """Every ``train_speakers`` name is a speaker of the chosen sources, and some speaker is left to test."""
        speakers = sorted({r.speaker for s in sources for r in s.readers})
        unknown = sorted(set(self.train_speakers) - set(speakers))
        if unknown:
            raise ConfigError(f"--train-speakers: {', '.join(unknown)} not a speaker of --sources "
                              f"{', '.join(self.sources)}; accepted: {', '.join(speakers)}")
        if self.train_speakers and len(set(speakers) - set(self.train_speakers)) < 2:
            raise ConfigError(f"--train-speakers: leaves {len(set(speakers) - set(self.train_speakers))} test "
                              "speaker(s); trials need two or more")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One planned utterance: where it comes from (a file, or an ``entry`` of a resource file)
    and where it goes (``key`` below test/wav)."""

    key: str
    origin: Path
    source: str
    reader: Reader
    entry: str = ""

    @property
    def origin_name(self) -> str:
        return f"{self.origin}:{self.entry}" if self.entry else str(self.origin)


@dataclasses.dataclass
class RealResult:
    """What a build did; ``rows()`` is the CLI summary (one row per source, then the run)."""

    out: Path
    per_source: dict[str, dict[str, Any]]
    written: int
    skipped: int
    rejected: list[tuple[str, str]]
    trials: int
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        rows = [{"source": name, **counts, "dropped_readers": len(counts["dropped_readers"])}
                for name, counts in self.per_source.items()]
        rows.append({"source": "run", "written": self.written, "skipped": self.skipped,
                     "rejected": len(self.rejected), "trials": self.trials, "seconds": round(self.seconds, 1)})
        return rows


# ----------------------------------------------------------------------------- sources


def select_sources(names: Sequence[str], sources: Sequence[Source] = KNOWN) -> list[Source]:
    by_name = {s.name: s for s in sources}
    return [by_name[n] for n in names]


def missing_packages(sources: Sequence[Source]) -> list[str]:
    """The packages none of whose readers finds a clip (not installed, or installed elsewhere)."""
    found: dict[str, bool] = {}
    for reader in (r for s in sources for r in s.readers):
        found[reader.package] = found.get(reader.package, False) or bool(_reader_items(reader))
    return [package for package, any_clip in found.items() if not any_clip]


def ensure_installed(sources: Sequence[Source], install: bool = False) -> None:
    """Raise :class:`ConfigError` naming the apt packages to install; with ``install`` (as root)
    install them the way scripts/setup.sh does instead."""
    missing = missing_packages(sources)
    if not missing:
        return
    command = f"apt-get install --no-install-recommends {' '.join(missing)}"
    names = ", ".join(s.name for s in sources)
    if not install:
        raise ConfigError(f"sources {names}: Debian package(s) not installed: {' '.join(missing)}; install "
                          f"them with `sudo {command}` (or add --install when running as root), "
                          "or pick other --sources")
    if os.geteuid() != 0:
        raise ConfigError(f"--install: installing {' '.join(missing)} needs root; run `sudo {command}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"`{' '.join(args)}` failed: {done.stderr.strip()[-400:]}")
    still = missing_packages(sources)
    if still:
        raise ConfigError(f"after installing, no clips found for {' '.join(still)}; "
                          "the package layout differs from tfadvq/corpus/real_sources.py")


def _reader_items(reader: Reader) -> list[tuple[Path, str]]:
    """The reader's clips as ``(file, entry)``, sorted (its excluded non-speech files left out);
    ``entry`` names a clip inside a resource file, and is empty for a plain audio file."""
    root = Path(reader.directory)
    if reader.decoder == "queen":
        if not root.is_file():
            return []
        names = sorted(_queen_table(root).entries)
        return [(root, name) for name in names if fnmatch.fnmatchcase(name, reader.pattern)]
    if not root.is_dir():
        return []
    return [(p, "") for p in sorted(root.glob(reader.pattern))
            if p.is_file() and not any(p.relative_to(root).match(x) for x in reader.exclude)]


@functools.lru_cache(maxsize=4)
def _queen_table(path: Path):
    from tfadvq.corpus.queen import read_table

    return read_table(path)


# ----------------------------------------------------------------------------- plan


def plan_clips(sources: Sequence[Source], config: RealConfig) -> list[list[Clip]]:
    """Each speaker-and-language's candidate clips in the order they are tried (a seeded
    permutation when ``max_clips`` caps them): the build keeps the first ``max_clips`` the audio
    checks accept.

    A clip's key numbers it among its session's files in sorted order, so it
    does not depend on which other clips were accepted, and a speaker's draw
    depends only on the seed and the speaker.
    """
    groups: dict[tuple[str, str], list[Clip]] = defaultdict(list)
    for source in sources:
        for reader in source.readers:
            numbers: dict[str, int] = defaultdict(int)
            for path, entry in _reader_items(reader):
                session = reader.session or _session(reader, path)
                numbers[session] += 1
                groups[(reader.speaker, reader.language)].append(
                    Clip(f"{reader.speaker}/{session}/{numbers[session]:05d}.wav", path, source.name, reader, entry))
    keys = [c.key for clips in groups.values() for c in clips]
    if len(set(keys)) != len(keys):
        raise ConfigError("real sources: two readers of one speaker share a session folder; give them "
                          "distinct `session` names in tfadvq/corpus/real_sources.py")
    plans = []
    for (speaker, language), clips in groups.items():
        if config.max_clips:
            clips = [clips[i] for i in _rng(config.seed, _CLIPS, speaker, language).permutation(len(clips))]
        plans.append(clips)
    return plans


def _session(reader: Reader, path: Path) -> str:
    """``<language>-<first folder below the reader's directory>`` (``main`` for files at its top)."""
    parts = path.relative_to(reader.directory).parts
    folder = re.sub(r"[^A-Za-z0-9]+", "-", parts[0]).strip("-").lower() if len(parts) > 1 else "main"
    return f"{reader.language}-{folder}"


def _rng(seed: int, stream: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *(zlib.crc32(n.encode()) for n in names)])


# ----------------------------------------------------------------------------- build


def build_real_corpus(out: str | os.PathLike, config: RealConfig = RealConfig(),
                      sources: Sequence[Source] = KNOWN, install: bool = False,
                      progress: bool = True) -> RealResult:
    """Build (or complete) the real-speech corpus in ``out``; see the module docstring."""
    start = time.perf_counter()
    config.validate([s.name for s in sources])
    chosen = select_sources(config.sources, sources)
    config.check_train_speakers(chosen)
    ensure_installed(chosen, install)
    layout = rundir.CorpusDir(Path(out))
    _claim(layout, config)
    limits = AudioLimits(min_seconds=config.min_seconds)
    plans = plan_clips(chosen, config)
    training = set(config.train_speakers)
    present, seconds = [], {}
    written = skipped = 0
    rejected: list[tuple[str, str]] = []
    wanted = [min(len(p), config.max_clips or len(p)) for p in plans]
    with tqdm(total=sum(wanted), desc="real speech", unit="clip", disable=not progress) as bar:
        for candidates, want in zip(plans, wanted):
            accepted = []
            for clip in candidates:
                if len(accepted) == want:
                    break
                target = layout.wav_root(TRAIN_SPLIT if clip.reader.speaker in training else SPLIT) / clip.key
                if target.is_file():
                    skipped += 1
                else:
                    try:
                        save_wav(target, read_clip(clip, limits), SAMPLE_RATE)
                    except AudioError as exc:
                        rejected.append((clip.origin_name, exc.reason))
                        continue
                    written += 1
                accepted.append(clip)
                seconds[clip.key] = _duration(target)
                bar.update()
            present.extend(sorted(accepted, key=lambda c: c.key))
    train = [c for c in present if c.reader.speaker in training]
    test = [c for c in present if c.reader.speaker not in training]
    trials, groups = make_source_trials(test, _rng(config.seed, _TRIALS), config.trials_per_utt)
    _write_lists(layout, test, train, trials, groups)
    result = RealResult(layout.path, _counts(chosen, plans, present, seconds, rejected, trials, groups, training),
                        written, skipped, rejected, len(trials), time.perf_counter() - start)
    _write_manifest(layout, config, chosen, present, result)
    _write_readme(layout, config, chosen, result)
    rundir.write_json(layout.marker, {"settings": to_dict(config), "complete": True})
    return result


def read_clip(clip: Clip, limits: AudioLimits) -> np.ndarray:
    """The clip at 16 kHz mono through the one reader and its checks (GSM through sox first, a
    resource file's entry through a temporary file of its format)."""
    if clip.reader.decoder == "reader":
        return load_checked_audio(clip.origin, limits)
    with tempfile.TemporaryDirectory(prefix="tfadvq-real-") as tmp:
        if clip.reader.decoder == "queen":
            table = _queen_table(clip.origin)
            audio = Path(tmp) / f"clip{table.suffix}"
            audio.write_bytes(table.read(clip.entry))
        else:
            audio = Path(tmp) / "clip.wav"
            done = subprocess.run(["sox", str(clip.origin), "-b", "16", "-e", "signed-integer", str(audio)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise AudioError(clip.origin_name, f"sox cannot decode it ({done.stderr.strip()[-200:]})")
        try:
            return load_checked_audio(audio, limits)
        except AudioError as exc:
            raise AudioError(clip.origin_name, exc.reason) from None


def _claim(layout: rundir.CorpusDir, config: RealConfig) -> None:
    """``out`` must be new, empty, or a real corpus built with the same settings."""
    settings = json.loads(json.dumps(to_dict(config)))  # tuples as the JSON lists they are read back as
    if layout.marker.is_file():
        defaults = json.loads(json.dumps(to_dict(RealConfig())))  # what a marker written before a setting meant
        recorded = {**defaults, **rundir.read_json(layout.marker).get("settings", {})}
        differing = sorted(k for k in settings if recorded.get(k) != settings[k])
        if differing:
            described = ", ".join(f"{k}: {recorded.get(k)} there, {settings[k]} now" for k in differing)
            raise ConfigError(f"{layout.path}: holds a real corpus built with other settings ({described}); "
                              "re-run with the same settings to complete it, or use another --out")
        for stale in (p for split in (SPLIT, TRAIN_SPLIT) for p in layout.wav_root(split).rglob(".*.tmp")):
            stale.unlink()  # a wav half-written when an earlier run was killed
        return
    if layout.path.exists() and (not layout.path.is_dir() or any(layout.path.iterdir())):
        raise ConfigError(f"{layout.path}: exists and is not a corpus of `tfadvq data real` (no "
                          f"{layout.marker.name}); give an empty or new directory as --out")
    rundir.write_json(layout.marker, {"settings": settings, "complete": False})


def _duration(path: Path) -> float:
    with wave.open(str(path), "rb") as src:
        return src.getnframes() / src.getframerate()


# ----------------------------------------------------------------------------- trials


def make_source_trials(clips: Sequence[Clip], rng: np.random.Generator,
                       per_utt: int) -> tuple[Trials, list[tuple[str, str]]]:
    """Trials and each trial's ``(source, language)``: for every clip, up to ``per_utt`` targets
    (other clips of its speaker in that language, other sessions first) and up to ``per_utt``
    non-targets (clips of the other speakers of its source and language; none if it has no other)."""
    group_of = [(c.source, c.reader.language) for c in clips]
    members: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, group in enumerate(group_of):
        members[group].append(i)
    labels, enroll, test, groups = [], [], [], []
    for i, clip in enumerate(clips):
        mates = members[group_of[i]]
        same = [j for j in mates if j != i and clips[j].reader.speaker == clip.reader.speaker]
        other = np.array([j for j in mates if clips[j].reader.speaker != clip.reader.speaker], int)
        session = clip.key.split("/")[1]
        away = np.array([j for j in same if clips[j].key.split("/")[1] != session], int)
        near = np.array([j for j in same if clips[j].key.split("/")[1] == session], int)
        targets = np.concatenate([rng.permutation(away), rng.permutation(near)])[:per_utt]
        nontargets = rng.choice(other, min(per_utt, other.size), replace=False) if other.size else other
        for label, chosen in ((1, targets), (0, nontargets)):
            labels.extend([label] * len(chosen))
            enroll.extend(clips[j].key for j in chosen)
            test.extend([clip.key] * len(chosen))
            groups.extend([group_of[i]] * len(chosen))
    return Trials(np.asarray(labels, np.int8), enroll, test), groups


def _write_lists(layout: rundir.CorpusDir, clips: Sequence[Clip], train: Sequence[Clip], trials: Trials,
                 groups: Sequence[tuple[str, str]]) -> None:
    """The test part's lists and trials; the dev part's lists when there are ``train`` clips."""
    for split, part in ((SPLIT, clips), (TRAIN_SPLIT, train)):
        if part:
            wav = layout.wav_root(split).relative_to(layout.path).as_posix()
            rundir.atomic_write(layout.wav_scp(split), "".join(f"{c.key} {wav}/{c.key}\n" for c in part))
            rundir.atomic_write(layout.utt2spk(split), "".join(f"{c.key} {c.reader.speaker}\n" for c in part))
    layout.trials.parent.mkdir(parents=True, exist_ok=True)
    write_trials(trials, layout.trials)
    rundir.atomic_write(layout.trial_sources, "".join(
        f"{a} {b} {source} {language}\n" for a, b, (source, language) in zip(trials.enroll, trials.test, groups)))


def read_trial_sources(corpus: str | os.PathLike, trials: Trials) -> list[tuple[str, str]]:
    """``(source, language)`` of each of ``trials`` (a list read from this corpus, or a selection of it)."""
    path = rundir.CorpusDir(Path(corpus)).trial_sources
    if not path.is_file():
        raise DataError(f"{path}: no such file; the trials of this corpus carry no sources "
                        "(only `tfadvq data real` writes them)")
    known = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) != 4:
            raise DataError(f"{path}:{number}: expected '<enroll> <test> <source> <language>'")
        known[(fields[0], fields[1])] = (fields[2], fields[3])
    missing = [(a, b) for a, b in zip(trials.enroll, trials.test) if (a, b) not in known]
    if missing:
        raise DataError(f"{path}: {len(missing)} trial(s) have no source, e.g. {' '.join(missing[0])}")
    return [known[(a, b)] for a, b in zip(trials.enroll, trials.test)]


def trial_speakers(trials: Trials) -> np.ndarray:
    """The speaker of each trial, that of its test clip: what the speaker-level bootstraps resample."""
    return np.array([key.split("/")[0] for key in trials.test])


def trial_subsets(labels: np.ndarray, groups: Sequence[tuple[str, str]]) -> list[tuple[str, np.ndarray]]:
    """``(name, mask)`` of the trials reported: ``all``, ``same-source`` (the source/language groups
    holding non-targets, i.e. two or more speakers) and each such group."""
    labels = np.asarray(labels, np.int8)
    names = np.array([f"{s}/{lang}" for s, lang in groups])
    contested = {n for n in set(names) if not labels[names == n].all()}
    subsets = [("all", np.ones(labels.size, bool)), ("same-source", np.isin(names, sorted(contested)))]
    return subsets + [(n, names == n) for n in sorted(contested)]


def source_report(scores: np.ndarray, labels: np.ndarray, trials: Trials,
                  groups: Sequence[tuple[str, str]], resamples: int = 1000) -> list[dict[str, Any]]:
    """EER (percent) with a speaker-level 95 % interval on all trials, on the same-source trials
    (the groups with two or more speakers: each holds non-targets) and on each such group.

    ``scores``/``labels``/``trials``/``groups`` are those of the trials scored
    (``Evaluation.kept`` applied).  The speaker of a trial is that of its test
    clip; :func:`tfadvq.metrics.eer_ci95` resamples speakers with their trials.
    """
    from tfadvq import metrics

    labels = np.asarray(labels, np.int8)
    speakers = trial_speakers(trials)
    rows = []
    for name, mask in trial_subsets(labels, groups):
        row = {"trials": name, "count": int(mask.sum()), "targets": int(labels[mask].sum()),
               "speakers": len(set(speakers[mask]))}
        if row["targets"] and row["targets"] < row["count"]:
            low, high = metrics.eer_ci95(scores[mask], labels[mask], resamples, groups=speakers[mask])
            row.update(eer=round(metrics.compute_eer(scores[mask], labels[mask])[0], 3),
                       eer_ci95=[round(low, 3), round(high, 3)])
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- manifest, README


def _counts(sources: Sequence[Source], plans: Sequence[Sequence[Clip]], clips: Sequence[Clip],
            seconds: dict[str, float],
            rejected: Sequence[tuple[str, str]], trials: Trials,
            groups: Sequence[tuple[str, str]], training: set[str]) -> dict[str, dict[str, Any]]:
    """Per source: its test speakers' clips and trials, what was rejected, and its training part."""
    counts = {}
    for source in sources:
        mine = [c for c in clips if c.source == source.name and c.reader.speaker not in training]
        trained = [c for c in clips if c.source == source.name and c.reader.speaker in training]
        origins = {c.origin_name for plan in plans for c in plan if c.source == source.name}
        in_source = np.array([g[0] == source.name for g in groups], bool)
        counts[source.name] = {
            "speakers": len({c.reader.speaker for c in mine}), "clips": len(mine),
            "minutes": round(sum(seconds[c.key] for c in mine) / 60.0, 2),
            "rejected": sum(1 for path, _ in rejected if path in origins),
            "targets": int(trials.labels[in_source].sum()) if in_source.any() else 0,
            "nontargets": int((trials.labels[in_source] == 0).sum()) if in_source.any() else 0,
            "dropped_readers": sorted({f"{r.speaker} ({r.language})" for r in source.readers}
                                      - {f"{c.reader.speaker} ({c.reader.language})" for c in (*mine, *trained)}),
            "train_speakers": len({c.reader.speaker for c in trained}), "train_clips": len(trained),
        }
    return counts


def _write_manifest(layout: rundir.CorpusDir, config: RealConfig, sources: Sequence[Source],
                    clips: Sequence[Clip], result: RealResult) -> None:
    rundir.write_json(layout.manifest, {
        "generator": "tfadvq data real",
        "settings": to_dict(config),
        "sample_rate": SAMPLE_RATE,
        "splits": [SPLIT, TRAIN_SPLIT] if config.train_speakers else [SPLIT],
        "sources": {s.name: {"licence": s.licence, "labels": s.labels,
                             "packages": {r.package: r.licence for r in s.readers},
                             **result.per_source[s.name]} for s in sources},
        "speakers": {r.speaker: {"source": s.name, "languages": sorted({x.language for x in s.readers
                                                                        if x.speaker == r.speaker}),
                                 "credit": r.credit, "licence": r.licence}
                     for s in sources for r in s.readers},
        "trials": result.trials,
        "utterances": {c.key: c.origin_name for c in clips},
        "rejected": [{"file": f, "reason": why} for f, why in result.rejected],
        "last_run": {"seconds": round(result.seconds, 1), "written": result.written, "skipped": result.skipped},
    })


def _write_readme(layout: rundir.CorpusDir, config: RealConfig, sources: Sequence[Source],
                  result: RealResult) -> None:
    lines = [
        "# Real-speech evaluation corpus (tfadvq data real)", "",
        "Built on this machine from installed Debian packages; the audio is not redistributable as part "
        "of tfadvq and must not be committed. Each clip was decoded by tfadvq's one audio reader, "
        "resampled to 16 kHz mono 16-bit, and dropped if too short, silent or clipped (the device's "
        f"limits, min {config.min_seconds:g} s). At most {config.max_clips or 'all'} clips per speaker "
        f"and language, drawn with seed {config.seed}.", "",
        *([f"Training part (dev lists, no trials): the clips of {', '.join(config.train_speakers)}. The trials "
           "hold only the other speakers; one actor may voice several characters, so a test character can "
           "share a voice with a training one.", ""] if config.train_speakers else []),
        "Trials (trials/test.txt, VoxCeleb format; trials/test_sources.txt gives each trial's source and "
        "language): non-target pairs only between two speakers of the same source and language; target "
        "pairs between two different clips of one speaker (other folders first). 'Same-source' trials are "
        "those of the source/language groups with two or more speakers.", "",
        "Speaker labels are presumed, not verified by listening; how each source's labels are derived "
        "and what could make them wrong:", ""]
    for source in sources:
        counts = result.per_source[source.name]
        lines += [f"## {source.name} ({source.licence})", "", source.labels, "",
                  f"{counts['speakers']} test speakers, {counts['clips']} clips, {counts['minutes']} min "
                  f"({counts['train_speakers']} training speakers, {counts['train_clips']} clips), "
                  f"{counts['rejected']} clips rejected; {counts['targets']} target and "
                  f"{counts['nontargets']} non-target trials.", "",
                  "| speaker | language | package | licence | credited voice |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {r.speaker} | {r.language} | {r.package} | {r.licence} | {r.credit} |" for r in source.readers]
        if counts["dropped_readers"]:
            lines += ["", "No clip of these passed the audio checks (see `rejected` in corpus.json): "
                      + ", ".join(counts["dropped_readers"]) + "."]
        lines.append("")
    rundir.atomic_write(layout.readme, "\n".join(lines))


def report_by_source(result: Any, trials: Trials, corpus: str | os.PathLike,
                     eval_dir: rundir.EvalDir) -> list[dict[str, Any]] | None:
    """EER on all, same-source and each group's trials of an evaluation, into ``eval_dir.by_source``.

    ``result`` is a :class:`tfadvq.evaluation.Evaluation` of ``trials``, the
    corpus's own trial list.  None (and nothing written) when the corpus's
    trials carry no sources (a generated or VoxCeleb corpus): the command and
    the recipe's evaluate stage both call this, so both report a real corpus alike.
    """
    if not rundir.CorpusDir(Path(corpus)).trial_sources.is_file():
        return None
    scored = trials if result.kept is None else trials.select(result.kept)
    rows = source_report(result.scores, result.labels, scored, read_trial_sources(corpus, scored))
    rundir.write_json(eval_dir.by_source, rows)
    return rows


def load_trials_with_sources(corpus: str | os.PathLike) -> tuple[Trials, list[tuple[str, str]]]:
    """The corpus's trial list and each trial's ``(source, language)``."""
    layout = rundir.CorpusDir(Path(corpus))
    trials = read_trials(layout.trials)
    return trials, read_trial_sources(corpus, trials)
