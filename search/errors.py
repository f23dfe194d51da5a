"""One exception family for errors a user can fix; the CLI turns each into one line and exit 2."""

from __future__ import annotations

import re
import signal


class FsearchError(Exception):
    """An error with a message that names the thing, the place and the fix."""


class DataError(FsearchError):
    """The dataset is missing, corrupt or unreadable."""


class StorageError(FsearchError):
    """The study storage URL or the study itself is wrong."""


class ConfigError(FsearchError):
    """An option or a configuration is invalid."""


class ModelError(FsearchError):
    """A saved model directory is missing, unsafe, truncated or does not match its config."""


class ImageError(FsearchError):
    """An input image cannot be read (not an image, empty, too large, corrupt)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or a signal a worker received), raised where the search is, so that it unwinds
    exactly like Ctrl+C; ``signum`` gives the shell's exit code, 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def signal_number(exc: KeyboardInterrupt) -> int:
    """The signal behind an interrupt: its own for :class:`Interrupted`, else SIGINT (Ctrl+C)."""
    return exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)


def one_line(text: str) -> str:
    """``text`` made safe to print as one line: line breaks become spaces, other control characters
    (a terminal escape sequence in a file name, say) are shown escaped instead of being obeyed."""
    return _CONTROL.sub(lambda m: " " if m.group() in "\r\n\t" else f"\\x{ord(m.group()):02x}", text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
