"""Exceptions that avvos raises for bad input: each carries a message meant for the user."""

from __future__ import annotations


class AvvosError(Exception):
    """Base class: the CLI prints the message and exits with status 2, without a traceback."""


class CheckpointError(AvvosError):
    """A weights file that is missing, corrupt, truncated, unsafe or of the wrong architecture."""


class MaskError(AvvosError):
    """A mask of the wrong size, with no object, with bad labels, or unreadable."""


class InputError(AvvosError):
    """Frames or videos that cannot be read, or that change shape mid-sequence."""


class DeviceError(AvvosError):
    """A device that was asked for but is not available (e.g. ``cuda`` on a CPU-only machine)."""


class SourceError(AvvosError):
    """A live source (a microphone, an audio device) that is missing or cannot be opened.

    The live app may go on without it (e.g. without audio).
    """
