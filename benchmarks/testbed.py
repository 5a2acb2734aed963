"""The evidence test bed: a generated corpus with enough held-out speakers to rank methods, and its trials.

Corpus: :class:`tfadvq.corpus.synth.SynthConfig` with ``test_speakers=160``
(everything else the default).  Speakers are planned by index from
``(seed, speaker)``, so the 240 training speakers are those of the embedded
default corpus made on the same machine (same voices, sessions and audio:
checked bit-identical on sample files), and speakers 240-279 are its 40 test
speakers; 240-399 are the held-out set here.

Trials (``make_trials``), every one scored from cached utterance embeddings:

* every target pair: each unordered pair of one test speaker's utterances
  (160 x 66 = 10,560 with 12 utterances a speaker);
* non-targets over every pair of test speakers: ``per_pair`` random
  utterance pairs each (8: 12,720 x 8 = 101,760), and *all* 144 utterance
  pairs of the speaker pairs that share their base TTS voice (the hardest
  impostors: same engine voice, only the WORLD re-synthesis and the channel
  differ).  Every non-target trial has a ``kind``: ``same_voice``,
  ``same_language`` (another base voice reading with the same language's
  phonology), ``same_engine`` or ``other``; the report gives the EER on
  ``targets + same_voice`` etc. as well.

The bootstrap group of a trial is the speaker of its test utterance; the
orientation (which side is "test") of a non-target pair is drawn at random,
so every speaker carries about the same share of non-targets.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from tfadvq.corpus.synth import SynthConfig
from tfadvq.errors import DataError
from tfadvq.voxceleb import Corpus, Trials, load_corpus, write_trials

CORPUS = SynthConfig(test_speakers=160)
KINDS = ("target", "same_voice", "same_language", "same_engine", "other")
TRIALS_FILE = "trials/evidence.txt"  # VoxCeleb format, beside the corpus's own trials/test.txt


def voice_traits(voice: dict) -> tuple[str, str, str]:
    """``(engine, base voice, language)`` of a speaker's voice record in ``corpus.json``."""
    engine, name = voice["engine"], voice["engine_voice"]
    if engine == "espeak-ng":
        base = name.split("+")[0]
        return engine, f"{engine}:{base}", base.split("-")[0]
    language = "cs" if name.startswith("czech") else "fi" if "_fi_" in name else "en"
    return engine, f"{engine}:{name}", language


@dataclasses.dataclass
class TrialSet:
    """Trials as indices into ``keys`` (the test utterances, in list order)."""

    keys: list[str]
    enroll: np.ndarray
    test: np.ndarray
    labels: np.ndarray  # int8, 1 = target
    groups: np.ndarray  # speaker index of the test utterance
    kinds: np.ndarray  # index into KINDS

    def __len__(self) -> int:
        return int(self.labels.size)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine score of every trial from unit utterance embeddings ``[len(keys), D]``."""
        return np.einsum("ij,ij->i", embeddings[self.enroll], embeddings[self.test]).astype(np.float64)

    def subset(self, kind: str) -> np.ndarray:
        """Mask of the targets plus the non-targets of ``kind``."""
        return (self.labels == 1) | (self.kinds == KINDS.index(kind))

    def counts(self) -> dict[str, int]:
        return {kind: int(np.sum(self.kinds == i)) for i, kind in enumerate(KINDS)} | {
            "trials": len(self), "speakers": int(np.unique(self.groups).size)}


def make_trials(keys: list[str], speakers: list[str], traits: dict[str, tuple[str, str, str]],
                per_pair: int = 8, seed: int = 0) -> TrialSet:
    """All target pairs; ``per_pair`` non-target pairs per speaker pair, all of them for a shared base voice."""
    names, spk = np.unique(np.asarray(speakers), return_inverse=True)
    per_speaker = np.bincount(spk)
    if per_speaker.min() != per_speaker.max() or per_speaker[0] < 2:
        raise DataError(f"evidence trials: test speakers need the same number (>= 2) of utterances, got "
                        f"{per_speaker.min()}-{per_speaker.max()}; complete the corpus first")
    n = int(per_speaker[0])
    table = np.argsort(spk, kind="stable").reshape(len(names), n)  # utterance indices of each speaker
    rng = np.random.default_rng(seed)
    # targets: every unordered pair within a speaker
    i, j = np.triu_indices(n, 1)
    t_enroll, t_test = table[:, i].ravel(), table[:, j].ravel()
    # non-targets: speaker pairs, per_pair utterance pairs each (all for a shared base voice)
    a, b = np.triu_indices(len(names), 1)
    engine, base, language = (np.array([traits[s][k] for s in names]) for k in range(3))
    same_voice = base[a] == base[b]
    kind = np.where(same_voice, 1, np.where(language[a] == language[b], 2, np.where(engine[a] == engine[b], 3, 4)))
    cells = np.argsort(rng.random((a.size, n * n)), axis=1)  # a random order of the n x n utterance pairs
    take = np.where(same_voice, n * n, min(per_pair, n * n))
    rows = np.repeat(np.arange(a.size), take)
    cell = cells[rows, np.concatenate([np.arange(t) for t in take])] if take.size else np.array([], int)
    left, right = table[a[rows], cell // n], table[b[rows], cell % n]
    flip = rng.random(rows.size) < 0.5
    n_enroll, n_test = np.where(flip, right, left), np.where(flip, left, right)
    enroll = np.concatenate([t_enroll, n_enroll])
    test = np.concatenate([t_test, n_test])
    labels = np.concatenate([np.ones(t_enroll.size, np.int8), np.zeros(n_enroll.size, np.int8)])
    kinds = np.concatenate([np.zeros(t_enroll.size, np.int64), kind[rows]])
    return TrialSet(list(keys), enroll, test, labels, spk[test], kinds)


@dataclasses.dataclass
class TestBed:
    corpus: Corpus
    trials: TrialSet


def load(corpus_dir: str | Path, per_pair: int = 8) -> TestBed:
    """The corpus in ``corpus_dir`` and its evidence trials (also written to ``TRIALS_FILE`` there)."""
    corpus_dir = Path(corpus_dir)
    corpus = load_corpus(corpus_dir)
    voices = json.loads((corpus_dir / "corpus.json").read_text())["speakers"]
    traits = {spk: voice_traits(v["voice"]) for spk, v in voices.items()}
    trials = make_trials([u.key for u in corpus.test], [u.speaker for u in corpus.test], traits, per_pair)
    path = corpus_dir / TRIALS_FILE
    if not path.is_file():
        write_trials(Trials(trials.labels, [trials.keys[i] for i in trials.enroll],
                            [trials.keys[i] for i in trials.test]), path)
    return TestBed(corpus, trials)
