"""The few exception types gate raises, each carrying an actionable message.

Every error has a one-line message (what went wrong, naming the file or field)
and an optional hint (what to do next). The CLI catches :class:`Error` once, at
its boundary, prints ``diagnostics()`` and exits with ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "EnvironmentBuildError",
    "Error",
    "GateFailure",
    "InputError",
    "ServerError",
    "ToolError",
]


class Error(Exception):
    """Root of every error gate raises on purpose."""

    #: Exit status the CLI uses: 2 means "the input could not be used at all".
    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """Return the message and, when known, what to do about it."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InputError(Error):
    """A file, directory, spec or contract cannot be read or is malformed."""


class EnvironmentBuildError(Error):
    """An isolated environment could not be created or is unusable."""


class ToolError(Error):
    """A subprocess tool (toolkit, converter, evaluator) failed or was killed."""


class ServerError(Error):
    """The serving runtime failed to start, died, hung or answered nonsense."""


class GateFailure(Error):
    """A gate ran and its verdict is "fail" (exit status 1)."""

    exit_code = 1
