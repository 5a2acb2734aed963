"""The real recordings ``tfadvq data real`` reads: Debian packages, one row per presumed speaker.

Each :class:`Reader` is the clips of one presumed speaker in one language:
the files matching ``pattern`` under ``directory``, which the Debian package
``package`` installs.  The speaker labels are *presumed* from how each package
is organised (a folder per voice); :attr:`Source.labels` says how, and what
could make a label wrong -- it goes into the corpus README.  Licences are
those of the packages' ``/usr/share/doc/<package>/copyright`` (checked for
the versions in Debian 12); nothing is redistributed: the builder converts
what the user's machine installed.

Not used (yet): the freeware games ``flight-of-the-amazon-queen`` and
``beneath-a-steel-sky`` keep their speech inside ScummVM resource files
(MP3 / their own format) that would need readers of their own.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Reader:
    """One presumed speaker reading one language: ``directory``/``pattern`` from ``package``.

    ``decoder`` is ``"reader"`` when :func:`tfadvq.audio.load_audio` reads the
    files directly, ``"sox"`` for GSM 06.10 files (which it cannot decode):
    sox turns each into a 16-bit wav first, which the one reader then reads.
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
        readers=(
            _asterisk("allison", "en", "asterisk-core-sounds-en-wav", "en_US_f_Allison", "CC-BY-SA-3.0",
                      "Allison Smith"),
            _asterisk("allison", "es", "asterisk-core-sounds-es-wav", "es_MX_f_Allison", "CC-BY-SA-3.0",
                      "Allison Smith"),
            _asterisk("june", "fr", "asterisk-core-sounds-fr-wav", "fr_CA_f_June", "CC-BY-SA-3.0",
                      "June Wallack"),
            _asterisk("carlo", "it", "asterisk-core-sounds-it-wav", "it_IT_m_Carlo", "CC-BY-3.0",
                      "Carlo Flora"),
            _asterisk("ivrvoice-ru", "ru", "asterisk-core-sounds-ru-wav", "ru_RU_f_IvrvoiceRU", "CC-BY-3.0",
                      "a female voice of ivrvoice.ru (provided by Maxim Topal)"),
            _asterisk("menardi", "it", "asterisk-prompt-it-menardi-wav", "it_IT_f_Menardi", "CC-BY-SA-3.0",
                      "the Menardi prompts (Marco Menardi; voice credited as Paola Dal Zot)"),
            _asterisk("armelle", "fr", "asterisk-prompt-fr-armelle", "fr", "BSD-style (Michel Gutierrez)",
                      "Armelle Desjardins", gsm=True),
            _asterisk("july", "es", "asterisk-prompt-es-co", "es", "GPL-2",
                      "July E. Jimenez (Avatar Ltda., Colombia)", gsm=True),
        ),
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


def source_names(sources: tuple[Source, ...] = SOURCES) -> tuple[str, ...]:
    return tuple(s.name for s in sources)
