"""The real recordings ``tfadvq data real`` reads: Debian packages, one row per presumed speaker.

Each :class:`Reader` is the clips of one presumed speaker in one language:
the files matching ``pattern`` under ``directory``, which the Debian package
``package`` installs.  The speaker labels are *presumed* from how each package
is organised (a folder per voice); :attr:`Source.labels` says how, and what
could make a label wrong -- it goes into the corpus README.  Licences are
those of the packages' ``/usr/share/doc/<package>/copyright`` (checked for
the versions in Debian 12); nothing is redistributed: the builder converts
what the user's machine installed.

:data:`EXTRA_SOURCES` are opt-in: Flight of the Amazon Queen's characters
(labels less certain).  Not used: ``beneath-a-steel-sky`` (speech in its own
resource format, whose reader was not written).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Reader:
    """One presumed speaker reading one language: ``directory``/``pattern`` from ``package``.

    ``decoder`` is ``"reader"`` when :func:`tfadvq.audio.load_audio` reads the
    files directly, ``"sox"`` for GSM 06.10 files (which it cannot decode):
    sox turns each into a 16-bit wav first, which the one reader then reads;
    ``"queen"`` when ``directory`` is a Flight of the Amazon Queen resource file
    (:mod:`tfadvq.corpus.queen`) and ``pattern`` matches the names of its entries.
    ``session`` fixes the session folder of the reader's clips (default: the
    first folder below ``directory``).
    """

    speaker: str        # corpus speaker id (a path component), unique over all sources
    language: str       # ISO 639-1, as presumed from the package or folder name
    package: str        # the Debian package that installs the files
    directory: str
    pattern: str        # glob below ``directory``
    licence: str
    credit: str         # who is speaking, as the package credits it
    decoder: str = "reader"
    exclude: tuple[str, ...] = ()  # globs (relative to ``directory``) of files that are not speech
    session: str = ""


@dataclasses.dataclass(frozen=True)
class Source:
    """A family of recordings with one recording set-up; non-target trials stay inside one."""

    name: str
    licence: str
    labels: str         # how the speaker labels are derived, and their caveats (corpus README)
    readers: tuple[Reader, ...]

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.package for r in self.readers))


_ASTERISK = "/usr/share/asterisk/sounds"
_TUXPAINT = "/usr/share/tuxpaint/stamps"
_HEDGEWARS = "/usr/share/games/hedgewars/Data/Sounds/voices"

_TUXPAINT_LANGUAGES = {"be": "Belarusian", "bg": "Bulgarian", "ca": "Catalan", "da": "Danish", "el": "Greek",
                       "es": "Spanish", "fr": "French", "lt": "Lithuanian", "nl": "Dutch", "ro": "Romanian",
                       "ru": "Russian"}

# pack -> presumed language: the packs without a suffix speak English in an accent the name gives
# (their clips are the English set: Amazing, Boring, ...); the suffix is the language of a translation.
_HEDGEWARS_PACKS = {"British": "en", "Classic": "en", "Default": "en", "HillBilly": "en", "Mobster": "en",
                    "Pirate": "en", "Russian": "en", "Singer": "en", "Surfer": "en", "Default_es": "es",
                    "Default_pl": "pl", "Default_ru": "ru", "Default_uk": "uk", "Russian_pl": "pl"}


# Asterisk's tones, beeps, conference sound effects and silences.
_ASTERISK_NOT_SPEECH = ("silence/*", "beep*", "*-2tone.*", "confbridge-join.*", "confbridge-leave.*")


def _asterisk(speaker: str, language: str, package: str, folder: str, licence: str, credit: str,
              gsm: bool = False) -> Reader:
    return Reader(f"asterisk-{speaker}", language, package, f"{_ASTERISK}/{folder}",
                  "**/*.gsm" if gsm else "**/*.wav", licence, credit, "sox" if gsm else "reader",
                  _ASTERISK_NOT_SPEECH)


# speaker, language, package, folder, licence, credited voice, GSM (decoded by sox)
_ASTERISK_VOICES = (
    ("allison", "en", "asterisk-core-sounds-en-wav", "en_US_f_Allison", "CC-BY-SA-3.0", "Allison Smith", False),
    ("allison", "es", "asterisk-core-sounds-es-wav", "es_MX_f_Allison", "CC-BY-SA-3.0", "Allison Smith", False),
    ("june", "fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", "CC-BY-SA-3.0", "June Wallack", False),
    ("carlo", "it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", "CC-BY-3.0", "Carlo Flora", False),
    ("ivrvoice-ru", "ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", "CC-BY-3.0",
     "a female voice of ivrvoice.ru (provided by Maxim Topal)", False),
    ("menardi", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "CC-BY-SA-3.0",
     "the Menardi prompts (Marco Menardi; voice credited as Paola Dal Zot)", False),
    ("armelle", "fr", "asterisk-prompt-fr-armelle", "fr", "BSD-style (Michel Gutierrez)", "Armelle Desjardins", True),
    ("july", "es", "asterisk-prompt-es-co", "es", "GPL-2", "July E. Jimenez (Avatar Ltda., Colombia)", True),
)

SOURCES: tuple[Source, ...] = (
    Source(
        name="asterisk",
        licence="CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2 / BSD-style, per package (see each speaker)",
        labels=(
            "Professional telephone prompts (8 kHz), one voice per package folder, credited by name in "
            "the package's copyright file. Allison Smith recorded both the English and the Mexican-Spanish "
            "core sounds: one speaker with two languages. Caveats: the es-co and fr-armelle prompts are "
            "GSM 06.10 (decoded with sox), the others 16-bit wav, so within Spanish and French the codec "
            "differs between the two speakers; within Italian a man (Carlo) and a woman (Menardi) are "
            "paired; English and Russian have a single speaker (target trials only). The Russian voice is "
            "credited to the studio ivrvoice.ru, not to a named person (presumed one woman, as the folder "
            "name says)."),
        readers=tuple(_asterisk(*voice) for voice in _ASTERISK_VOICES),
    ),
    Source(
        name="tuxpaint",
        licence="GPL-2",
        labels=(
            "Volunteers reading the names and descriptions of Tux Paint's stamps (ogg, 44.1 kHz), "
            "files <stamp>_desc_<lang>.ogg; presumed one reader per language suffix (not verified by "
            "listening, and the readers are not credited by name in the package; were a language read by "
            "two people, its target trials would be harder than they should be). Each reader used their own "
            "microphone and room, so reader, language and channel coincide: no two readers share a "
            "language, and tuxpaint gives target trials only under the same-source-and-language rule. "
            "Not used: the stamps' sound effects (<stamp>.ogg), the 66 unsuffixed descriptions and the "
            "English letter names (reader unknown)."),
        readers=tuple(Reader(f"tuxpaint-{code}", code, "tuxpaint-stamps-default", _TUXPAINT,
                             f"**/*_desc_{code}.ogg", "GPL-2", f"the {name} reader of the stamp descriptions")
                      for code, name in _TUXPAINT_LANGUAGES.items()),
    ),
    Source(
        name="hedgewars",
        licence="GFDL-1.3",
        labels=(
            "Acted shouts of the game's voice packs (ogg, about 0.3-2 s each), presumed one actor per pack "
            "folder; languages presumed from the pack names (no suffix: English in the accent the name "
            "says; _es/_pl/_ru/_uk: a translation). Caveats: one actor may have voiced several packs "
            "(their non-target trials would then be targets), the acting changes the voice on purpose, "
            "and many shouts are shorter than the 0.5 s the device needs (rejected by the audio checks). "
            "The Robot pack (a processed voice) is left out."),
        readers=tuple(Reader(f"hedgewars-{pack.lower().replace('_', '-')}", language, "hedgewars-data",
                             f"{_HEDGEWARS}/{pack}", "*.ogg", "GFDL-1.3", f"the actor of the {pack} voice pack")
                      for pack, language in _HEDGEWARS_PACKS.items()),
    ),
)


_QUEEN = "/usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
# Dialogue files (.DOG) of Flight of the Amazon Queen and the number their speech entries start with
# (read from the files' headers, Debian package 1.0.0-9); the character is the name without its digits.
_QUEEN_DIALOGUES = {
    "AND1": 2, "APE": 3, "APE2": 4, "APE3": 5, "BOB1": 6, "BOB2": 7, "BOB3": 67, "BOB4": 68, "BOB5": 77,
    "BUD1": 8, "BUD2": 9, "CHEF": 10, "CHIEF1": 11, "CHIEF2": 75, "CHIEF3": 76, "CHIEF4": 19, "DEATH1": 12,
    "DEATH2": 13, "DOG": 14, "FAYE2": 18, "FAYE3": 22, "FAYE4": 20, "FAYE5": 21, "FAYE6": 84, "FRANK": 23,
    "HENRY": 24, "HENRY2": 64, "IAN1": 15, "IAN2": 16, "JIM1": 25, "JIM2": 26, "JIM3": 70, "JOHN1": 27,
    "KLUNK1": 28, "KLUNK2": 80, "LARIS": 29, "LARIS3": 66, "LOLA1": 31, "LOU1": 33, "LOU2": 34, "MAN1": 35,
    "MAN2": 36, "NAOMI": 37, "NAOMI2": 38, "ORACLE1": 39, "ORACLE2": 40, "ORACLE3": 41, "PRIN1": 42,
    "PRIN2": 17, "PRIN4": 45, "SEC1": 48, "SEC2": 49, "SHOWERAM": 50, "SPARKY1": 51, "SPARKY2": 52,
    "SPARKY3": 53, "SPARKY4": 54, "SPARKY5": 55, "SPARKY6": 73, "SPARKY7": 74, "SPARKY8": 79, "TALLPYG": 56,
    "TAM1": 57, "TAM2": 69, "TAM3": 71, "TAM4": 72, "WEDGE": 58, "WITCH1": 59, "WITCH2": 60, "WITCH3": 83,
    "WITCH4": 78, "ZOMBIE1": 61, "ZOMBIE2": 62}
_QUEEN_LINE = "[0-9A-F]" * 4  # the line number within a dialogue (hex)
_QUEEN_LICENCE = "Flight-of-the-Amazon-Queen-License (freeware: free redistribution, no sale of the game itself)"


def _queen_readers() -> tuple[Reader, ...]:
    """Per dialogue: the partner's lines (``<nn><line>P<k>.SB``) and Joe's (``<nn><line>J<k>.SB``);
    Joe's own remarks (``JOE<nnnnn>.SB``) besides."""
    readers = []
    for dialogue, number in _QUEEN_DIALOGUES.items():
        character = dialogue.rstrip("0123456789").lower()
        for who, letter in ((character, "P"), ("joe", "J")):
            readers.append(Reader(f"queen-{who}", "en", "flight-of-the-amazon-queen", _QUEEN,
                                  f"{number:02d}{_QUEEN_LINE}{letter}[0-9].SB", _QUEEN_LICENCE,
                                  f"the actor of {who.upper()} (dialogue {dialogue})", "queen",
                                  session=f"en-{dialogue.lower()}"))
    readers.append(Reader("queen-joe", "en", "flight-of-the-amazon-queen", _QUEEN, "JOE[0-9][0-9][0-9][0-9][0-9].SB",
                          _QUEEN_LICENCE, "the actor of JOE (remarks)", "queen", session="en-remarks"))
    return tuple(readers)


#: Opt-in sources (``--sources amazon-queen``): labels less certain than the default ones'.
EXTRA_SOURCES: tuple[Source, ...] = (
    Source(
        name="amazon-queen",
        licence=_QUEEN_LICENCE,
        labels=(
            "Voice-acted lines of the adventure game Flight of the Amazon Queen (MP3, 11 kHz, inside "
            "queen.1c). Labels: in a dialogue file <name>.DOG the speech entries <nn><line>P<k> are the "
            "partner's lines and <nn><line>J<k> Joe's, where <nn> is the number the .DOG header holds; the "
            "character is the .DOG name without its digits (FAYE2..FAYE6: Faye). Joe's remarks JOE<n> are "
            "Joe too. Cut-scene lines (C<nn>...) and lines with other letters (several speakers) are left "
            "out. Caveats: a few actors voiced many characters, so some non-target pairs may be one actor "
            "in two roles (not checked by listening or clustering), and some names are roles that may be "
            "different people in different dialogues (MAN, SEC, CHIEF). Not in the default set for that "
            "reason."),
        readers=_queen_readers(),
    ),
)


def source_names(sources: tuple[Source, ...] = SOURCES) -> tuple[str, ...]:
    return tuple(s.name for s in sources)
