"""Exceptions that tfadvq raises on bad input.

One base class so that callers (the CLI, data preparation) can catch every
user-facing problem without swallowing programming errors.  Messages name the
file, layer or argument at fault and what would be accepted.
"""
from __future__ import annotations


class TfadvqError(Exception):
    """Base class of every error tfadvq raises on bad input or configuration."""


class AudioError(TfadvqError):
    """An audio file is missing, unreadable, empty, too short or holds NaN/inf."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ConfigError(TfadvqError):
    """A configuration file or argument has an unknown key or an invalid value."""


class DataError(TfadvqError):
    """A corpus, list or trial file is malformed or inconsistent."""


class QuantizationError(TfadvqError):
    """A layer cannot be quantized as asked (bits, weights, layer type)."""


class ConversionError(TfadvqError):
    """A model cannot be converted for TFLite Micro as asked."""


def describe_os_error(exc: OSError, path: object = None) -> str:
    """``path: reason`` of an ``OSError``, the full disk said plainly (used wherever one is reported)."""
    import errno

    reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    names = [str(n) for n in (path,) if n] or [str(n) for n in (exc.filename, exc.filename2) if n]
    return f"{' -> '.join(names)}: {reason}" if names else reason
