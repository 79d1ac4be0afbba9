"""Fault injection for crash tests: ``MLOPS_FAULT=<step>`` kills the process (SIGKILL) at that step boundary.

Deploy, promote, rollback and reconcile call ``reached(step)`` after each step that changes
a server or a record (the names are in ``STEPS``). A SIGKILL runs no cleanup, exactly like a
crash, an OOM kill or a cancelled CI job; the tests kill at every boundary and check that the
next command converges to the recorded state.
"""

from __future__ import annotations

import os
import signal
import sys

VARIABLE = "MLOPS_FAULT"

STEPS = (
    "after-register",  # the new version is registered, not yet checked
    "after-checks",  # checks passed, nothing recorded yet
    "after-intent",  # the ledger holds the intent
    "after-tag",  # git holds the record (and the remote has it, with --push)
    "after-set-default",  # the server serves the new version
    "after-alias",  # the MLflow alias is moved
    "after-outcome",  # the ledger holds the outcome
    "after-retire",  # older versions are unregistered
)


def kill() -> None:
    """Die at once, as a crash would (tests replace this to stop in-process instead)."""
    os.kill(os.getpid(), signal.SIGKILL)


def reached(step: str) -> None:
    """A step boundary: die here when ``MLOPS_FAULT`` names it."""
    if os.environ.get(VARIABLE) == step:
        sys.stdout.flush()
        sys.stderr.flush()
        kill()
