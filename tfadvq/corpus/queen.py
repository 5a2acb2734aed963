"""The resource file of Flight of the Amazon Queen's compressed release (``queen.1c``): its table.

Layout (big-endian), as ScummVM's compressed Queen releases store it: ``QTBL``,
a 6-byte version, 2 bytes skipped, a compression byte (1 MP3, 2 Ogg Vorbis,
3 FLAC: how the speech entries ``*.SB`` are encoded), the entry count
(uint16), then per entry a 12-byte NUL-padded name, a bundle byte, the offset
and the size (uint32 each).  Only the table is parsed here; an entry's bytes
are a complete audio file of the release's compression, which
:func:`tfadvq.audio.load_audio` decodes (both its decoders, tensorflow-io and soundfile, read MP3, Ogg and FLAC).
"""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from tfadvq.errors import DataError

MAGIC = b"QTBL"
SUFFIXES = {1: ".mp3", 2: ".ogg", 3: ".flac"}
_HEAD = struct.Struct(">4s6s2xBH")
_ENTRY = struct.Struct(">12sBII")


@dataclasses.dataclass(frozen=True)
class QueenTable:
    """``entries[name] = (offset, size)``; ``suffix`` names the speech entries' audio format."""

    path: Path
    suffix: str
    entries: dict[str, tuple[int, int]]

    def read(self, name: str) -> bytes:
        offset, size = self.entries[name]
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(size)
        if len(data) != size:
            raise DataError(f"{self.path}: entry {name} is truncated ({len(data)} of {size} bytes)")
        return data


def read_table(path: str | Path) -> QueenTable:
    """Parse the table of ``path``; a file that is not a compressed Queen release raises :class:`DataError`."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(_HEAD.size)
        if len(head) < _HEAD.size or head[:4] != MAGIC:
            raise DataError(f"{path}: not a compressed Flight of the Amazon Queen resource file "
                            f"(no {MAGIC.decode()} header)")
        _, _, compression, count = _HEAD.unpack(head)
        if compression not in SUFFIXES:
            raise DataError(f"{path}: speech compression {compression} is not one of "
                            f"{', '.join(f'{k} ({v[1:]})' for k, v in SUFFIXES.items())}")
        raw = fh.read(count * _ENTRY.size)
    if len(raw) < count * _ENTRY.size:
        raise DataError(f"{path}: the table of {count} entries is truncated")
    size = path.stat().st_size
    entries = {}
    for name, _, offset, length in _ENTRY.iter_unpack(raw):
        if offset + length > size:
            raise DataError(f"{path}: entry {name.rstrip(bytes(1)).decode('latin-1')} ends past the file")
        entries[name.rstrip(bytes(1)).decode("latin-1")] = (offset, length)
    return QueenTable(path, SUFFIXES[compression], entries)
