"""``python -m mlops``: the same as the ``mlops`` command."""

from mlops.cli import entry

raise SystemExit(entry())
