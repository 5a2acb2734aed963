"""Per-speaker voice specifications: which TTS engine and voice, and how WORLD re-shapes it.

Why so many knobs: a small ResNet trained on 250 *plain* TTS voices reached
4-6 % EER on held-out TTS voices but ~15 % on real speech, no better than
comparing mean fbank statistics -- plain engine voices differ in too few ways.
So a speaker here is a point in a wide space: a base engine voice (espeak-ng
language x variant x pitch/rate/word gap, flite voices with their own duration
and pitch targets, festival diphone/HTS voices), then a fixed WORLD vocoder
re-synthesis (:mod:`tfadvq.corpus.vocoder`) with a vocal-tract length warp,
an F0 level and contour style (range, jitter, vibrato), breathiness and spectral
tilt.  Each field is drawn independently per speaker from ``(seed, speaker)``,
so two speakers never share a voice and speaker ``i`` is the same voice
whatever the corpus size.

Which engine voices a machine really has differs (festival's ``czech_ph`` is
not a Debian package set-up installs): :class:`VoiceSet` names the candidates,
:func:`tfadvq.corpus.tts.probe_voices` keeps the ones that work here, and
:func:`sample_voice` draws only from those -- with every candidate working,
exactly the draws it always made.
"""
from __future__ import annotations

import dataclasses

import numpy as np

ESPEAK, FLITE, FESTIVAL = "espeak-ng", "flite", "festival"
ENGINE_WEIGHTS = {ESPEAK: 0.72, FLITE: 0.18, FESTIVAL: 0.10}

_ESPEAK_ENGLISH = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                   "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# Latin-script languages: they read English text with their own phonology (an accent).
_ESPEAK_OTHER = ("af", "cs", "cy", "da", "de", "eo", "es", "es-419", "et", "eu", "fi", "fr-fr",
                 "fr-be", "ga", "hr", "hu", "id", "is", "it", "lt", "lv", "ms", "nb", "nl", "pl",
                 "pt", "pt-br", "ro", "sk", "sl", "sq", "sv", "sw", "tr")
# Human-sounding variants of espeak-ng's voices/!v (whisper and robot variants left out).
_ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "Alex", "Alicia", "Andrea", "Andy",
    "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee",
    "Marco", "Mario", "Michael", "Mike", "Nguyen", "Storm", "adam", "anika", "announcer",
    "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "ed", "edward",
    "edward2", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul",
    "pedro", "quincy", "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3",
    "travis", "victor", "zac")
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
# Installed festvox voices that synthesize English text without errors (the Italian
# diphone voices fail on '?', the Indic ones produce no audio, Russian crashes).
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts", "hy_fi_mv_diphone",
                   "suo_fi_lj_diphone", "czech_dita", "czech_krb", "czech_machac", "czech_ph")


@dataclasses.dataclass(frozen=True)
class VoiceSet:
    """The engine voices speakers are drawn from (each a tuple; an empty one drops that choice)."""

    espeak_english: tuple[str, ...] = _ESPEAK_ENGLISH
    espeak_other: tuple[str, ...] = _ESPEAK_OTHER
    espeak_variants: tuple[str, ...] = _ESPEAK_VARIANTS
    flite: tuple[str, ...] = FLITE_VOICES
    festival: tuple[str, ...] = FESTIVAL_VOICES

    def engines(self) -> dict[str, float]:
        """:data:`ENGINE_WEIGHTS` of the engines with at least one voice, renormalised."""
        usable = {ESPEAK: bool((self.espeak_english or self.espeak_other) and self.espeak_variants),
                  FLITE: bool(self.flite), FESTIVAL: bool(self.festival)}
        weights = {engine: w for engine, w in ENGINE_WEIGHTS.items() if usable[engine]}
        total = sum(weights.values())
        return {engine: w / total for engine, w in weights.items()}

    def removed(self, other: VoiceSet) -> list[str]:
        """``field:voice`` of the voices in ``other`` that this set lacks."""
        return [f"{field.name}:{name}" for field in dataclasses.fields(self)
                for name in getattr(other, field.name) if name not in getattr(self, field.name)]


CANDIDATES = VoiceSet()


@dataclasses.dataclass(frozen=True)
class Voice:
    """One speaker's fixed voice.

    ``engine_voice`` is what the engine is asked for (``en-gb+m3``, ``slt``,
    ``kal_diphone``); ``speed`` scales the engine's speaking rate (1 = its
    default) and ``engine_pitch`` (espeak-ng ``-p``, 0-99) its intonation base.
    The remaining fields drive the WORLD re-synthesis:

    * ``vtl_warp``: spectral-envelope frequency scale (formants move by this
      factor; > 1 = shorter vocal tract), 0.85-1.2;
    * ``f0_mean``: target mean F0 in Hz; ``f0_range``: scale of log-F0
      excursions around the utterance mean (monotone < 1 < lively);
    * ``jitter``: per-frame random log-F0 deviation; ``vibrato_hz`` and
      ``vibrato_depth``: a slow sinusoidal log-F0 modulation;
    * ``breathiness``: 0 (clear) to 1 (breathy), the speaker's aperiodicity
      curve on voiced frames;
    * ``tilt_db_per_octave``: spectral slope around 1 kHz (bright > 0 > dull).
    """

    engine: str
    engine_voice: str
    speed: float
    engine_pitch: int
    word_gap: int
    vtl_warp: float
    f0_mean: float
    f0_range: float
    jitter: float
    vibrato_hz: float
    vibrato_depth: float
    breathiness: float
    tilt_db_per_octave: float

    @property
    def words_per_second(self) -> float:
        """Approximate speaking rate, used to size sentences to the wanted duration."""
        # words/s at speed 1 without word gaps, measured on 90 generated sentences
        base = {ESPEAK: 3.5, FLITE: 3.7, FESTIVAL: 3.0}[self.engine]
        return base * self.speed / (1.0 + 0.25 * self.word_gap)


def sample_voice(rng: np.random.Generator, engine: str | None = None, voices: VoiceSet = CANDIDATES) -> Voice:
    """Draw one voice from ``voices``; ``rng`` should be seeded from ``(seed, speaker)`` only.

    ``engine`` forces the base engine (the babble bank uses fast espeak-ng only);
    by default it is drawn with :data:`ENGINE_WEIGHTS` (of the engines ``voices`` has).
    """
    if engine is None:
        weights = voices.engines()
        if not weights:
            raise ValueError("no TTS voice to draw from")
        engines = list(weights)
        engine = engines[int(rng.choice(len(engines), p=list(weights.values())))]
    if engine == ESPEAK:
        english = rng.random() < 0.5
        languages = (voices.espeak_english if english else voices.espeak_other) or \
            voices.espeak_english or voices.espeak_other
        engine_voice = f"{_choice(rng, languages)}+{_choice(rng, voices.espeak_variants)}"
    else:
        engine_voice = _choice(rng, voices.flite if engine == FLITE else voices.festival)
    # A latent "vocal size" couples vocal-tract length and F0 loosely, as in people,
    # while independent noise keeps every combination possible.
    size = rng.uniform(-1.0, 1.0)
    warp = float(np.clip(1.02 + 0.12 * size + rng.normal(0.0, 0.04), 0.85, 1.2))
    f0_mean = float(np.exp(np.log(150.0) + 0.45 * size + rng.normal(0.0, 0.15)))
    return Voice(
        engine=engine,
        engine_voice=engine_voice,
        speed=round(float(rng.uniform(0.8, 1.25)), 3),
        engine_pitch=int(rng.integers(20, 80)),
        word_gap=int(rng.choice([0, 0, 0, 1, 2])),
        vtl_warp=round(warp, 4),
        f0_mean=round(float(np.clip(f0_mean, 70.0, 330.0)), 2),
        f0_range=round(float(rng.uniform(0.4, 1.6)), 3),
        jitter=round(float(rng.uniform(0.0, 0.025)), 4),
        vibrato_hz=round(float(rng.uniform(3.0, 7.0)), 3),
        vibrato_depth=round(float(rng.uniform(0.0, 0.03) if rng.random() < 0.5 else 0.0), 4),
        breathiness=round(float(rng.beta(1.5, 4.0)), 3),
        tilt_db_per_octave=round(float(rng.uniform(-3.0, 2.0)), 2),
    )


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]
