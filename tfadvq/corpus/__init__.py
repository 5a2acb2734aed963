"""The generated speaker corpus (``tfadvq data synth``): the embedded default data set.

Read top-down: :mod:`~tfadvq.corpus.texts` (sentences), :mod:`~tfadvq.corpus.voices`
(per-speaker voice specs), :mod:`~tfadvq.corpus.tts` (engine calls),
:mod:`~tfadvq.corpus.vocoder` (WORLD re-synthesis into the speaker's voice),
:mod:`~tfadvq.corpus.channel` (rooms, microphones, noise, codecs) and
:mod:`~tfadvq.corpus.synth` (plan, parallel rendering, lists, trials, manifest).
"""
from tfadvq.corpus.synth import SynthConfig, SynthResult, synthesize_corpus

__all__ = ["SynthConfig", "SynthResult", "synthesize_corpus"]
