"""Varied English sentences for the generated corpus, deterministic per random generator.

A speaker-verification corpus where every speaker reads the same few prompts
lets a model key on the words; VoxCeleb speakers say different things in every
clip.  So each utterance gets its own sentence, drawn from templates (statements,
questions, requests, reports) filled from word lists, with a target word count
that the caller derives from the voice's speaking rate (that is how the
utterances land at 2-4 s).
"""
from __future__ import annotations

import numpy as np

_NAMES = ("Anna", "Marcus", "Leila", "Tomas", "Priya", "Owen", "Greta", "Kofi", "Mei", "Rafael",
          "Ingrid", "Samir", "Nora", "Dmitri", "Chloe", "Jonah", "Amara", "Felix", "Yuki", "Hugo")
_PEOPLE = ("the farmer", "my neighbour", "the young pilot", "our teacher", "the old captain",
           "a tired doctor", "the baker", "her brother", "the new manager", "a quiet student",
           "the driver", "his grandmother", "the engineer", "a local artist", "the mayor")
_ADJECTIVES = ("small", "heavy", "bright", "broken", "silver", "wooden", "strange", "quiet",
               "yellow", "ancient", "empty", "careful", "narrow", "warm", "green", "famous")
_NOUNS = ("basket", "letter", "bicycle", "window", "garden", "violin", "report", "kettle",
          "ladder", "map", "lantern", "blanket", "engine", "painting", "notebook", "bridge",
          "umbrella", "carpet", "bottle", "signal", "package", "clock", "recipe", "ticket")
_VERBS = ("carried", "painted", "repaired", "found", "sold", "opened", "measured", "cleaned",
          "borrowed", "described", "moved", "checked", "wrapped", "photographed", "returned")
_PLACES = ("across the old bridge", "near the harbour", "behind the station", "in the kitchen",
           "at the market", "under the stairs", "along the river", "inside the museum",
           "on the top floor", "beside the fountain", "through the forest", "in the village")
_TIMES = ("before noon", "last winter", "every morning", "after the storm", "on Sunday",
          "late at night", "three days ago", "during the concert", "at half past seven",
          "next summer", "in the spring", "before dinner")
_NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "eleven", "twelve",
            "twenty", "forty", "a hundred")
_REASONS = ("because the road was closed", "since nobody else could", "although it was raining",
            "while the children slept", "so that everyone could see", "when the lights went out")

_TEMPLATES = (
    "{name} {verb} the {noun}.",
    "Where is the {adj} {noun}?",
    "{who} lost {num} {noun}s.",
    "Please bring the {noun} {time}.",
    "Is the {noun} {place}?",
    "{who} {verb} the {adj} {noun} {place}.",
    "{who} {verb} {num} {adj} {noun}s {time}.",
    "{name} {verb} the {noun} {place} {time}.",
    "{name} said that {who} {verb} the {adj} {noun} {reason}.",
    "Did {who} really leave the {adj} {noun} {place}?",
    "Why did {name} bring {num} {noun}s {time}?",
    "Please put the {adj} {noun} {place} {time}.",
    "{time_cap}, {who} {verb} a {adj} {noun} {reason}.",
    "I think {name} {verb} the {noun} {place}, but I am not sure.",
    "We counted {num} {adj} {noun}s {place} {time}.",
    "Could you tell {name} that the {noun} is {place}?",
    "The {adj} {noun} that {who} {verb} was {place} {time}.",
)


_SLOTS = dict(who=_PEOPLE, name=_NAMES, adj=_ADJECTIVES, noun=_NOUNS, verb=_VERBS, place=_PLACES,
              time=_TIMES, num=_NUMBERS, reason=_REASONS, template=_TEMPLATES)
_SIZES = np.array([len(options) for options in _SLOTS.values()])


def sentence(rng: np.random.Generator) -> str:
    """One sentence from a random template with random fillers (one draw for all slots)."""
    picks = {name: options[i] for (name, options), i in zip(_SLOTS.items(), rng.integers(0, _SIZES))}
    time = picks["time"]
    text = picks.pop("template").format(**picks, time_cap=time[0].upper() + time[1:])
    return text[0].upper() + text[1:]


def sentence_of_length(rng: np.random.Generator, words: int, attempts: int = 24) -> str:
    """The sentence whose word count is nearest to ``words`` among ``attempts`` draws.

    Drawing several and keeping the closest keeps the length distribution tight
    without templates per length; ties go to the first draw (deterministic).
    """
    if words < 1:
        raise ValueError(f"words must be >= 1, got {words}")
    candidates = [sentence(rng) for _ in range(attempts)]
    gaps = [abs(len(c.split()) - words) for c in candidates]
    return candidates[int(np.argmin(gaps))]
