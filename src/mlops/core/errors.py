"""The error hierarchy: every failure the CLI reports is an ``MlopsError``.

``UserError`` means the input was wrong (params, contract, data, arguments): the fix is in
the user's hands, exit code 2. ``ServiceError`` means something we talk to failed (a server,
the network, a child process): the message says which and what to try, exit code 3.
"""

import sys
from collections.abc import Callable, Sequence


class MlopsError(Exception):
    """Base class of the errors the CLI turns into one message and an exit code."""

    exit_code = 1


class UserError(MlopsError):
    """Bad input (params, contract, data, arguments): one clear message, exit 2."""

    exit_code = 2


class ServiceError(MlopsError):
    """A server, network call or child process failed: say which and what to try, exit 3."""

    exit_code = 3


def quoted(value: object, limit: int = 80) -> str:
    """A value for a message: its repr, or the repr of its first ``limit`` characters and its length."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(value)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def run(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a command or stage; an ``MlopsError`` becomes one ``error:`` line and its exit code.

    The one place errors are reported: ``mlops.cli`` and every stage's ``__main__`` use it.
    """
    try:
        return main(argv)
    except MlopsError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
