"""User-facing errors. The CLI prints them as one paragraph and exits non-zero."""

from __future__ import annotations


class DifeError(Exception):
    """An error the user can act on. ``exit_code`` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg} {self.hint}" if self.hint else msg


class PluginError(DifeError):
    """A plugin registered something invalid or clashing."""


class NotFoundError(DifeError):
    """A named thing (loader, interface, checkpoint, file) does not exist."""

    exit_code = 2


class InvalidInputError(DifeError):
    """Malformed input: a spec, a checkpoint file, a dataset."""

    exit_code = 2


class UnsafeCheckpointError(DifeError):
    """A checkpoint was refused because loading it could run code."""

    exit_code = 3


def available(names) -> str:
    names = sorted(names)
    return "available: " + (", ".join(names) if names else "(none)")
