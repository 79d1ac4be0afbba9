"""The ``mlops`` command: one registry of subcommands, each with its own ``--help``.

Errors become messages and exit codes in one place (``mlops.core.errors.run``).

Exit codes: 0 success; 1 a verdict was negative (failed expectations, a gate, a rejected
deployment, a breached threshold); 2 bad input (``UserError``); 3 a server, network call or
child process failed (``ServiceError``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlops.core.errors import run
from mlops.stages import frozen  # importing it sets the collector's thresholds

Main = Callable[[Sequence[str] | None], int]


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module:function`` taking argv, and its one-line summary."""

    target: str
    summary: str

    def load(self) -> Main:
        module, _, function = self.target.partition(":")
        main: Main = getattr(importlib.import_module(module), function or "main")
        return main


COMMANDS: dict[str, Command] = {
    "init": Command("mlops.commands.init", "make your table the repository's data: contract, params, batches"),
    "data": Command("mlops.commands.data", "the example's loan batches in data/raw (example only); --next lands one"),
    "demo-data": Command("mlops.commands.data", "another name for `data`"),
    "validate": Command("mlops.stages.validate", "validate data/raw against the contract (Great Expectations)"),
    "split": Command("mlops.stages.split", "split validated data into train and holdout"),
    "train": Command("mlops.stages.train", "train the pipeline, log it to MLflow"),
    "evaluate": Command("mlops.stages.evaluate", "score the model on the holdout; metrics and plots"),
    "package": Command("mlops.stages.package", "build the TorchServe model archive (.mar)"),
    "ingest": Command("mlops.commands.ingest", "validate landed batches into data/raw; quarantine the bad ones"),
    "serve": Command("mlops.commands.serve", "start/stop/show local TorchServe environments (up|down|status [ENV])"),
    "deploy": Command("mlops.commands.release:deploy_main", "deploy the model archive to staging, with checks"),
    "promote": Command("mlops.commands.release:promote_main", "promote what passed staging to production; git tag"),
    "rollback": Command("mlops.commands.release:rollback_main", "make the previous version the default again"),
    "reconcile": Command("mlops.commands.release:reconcile_main", "repair an environment: finish an interrupted move"),
    "status": Command("mlops.commands.release:status_main", "what each environment serves, and what differs"),
    "publish": Command("mlops.commands.release:publish_main", "upload the archive where a remote server fetches it"),
    "pending": Command("mlops.commands.release:pending_main", "deploy=true|false: not what production's record names"),
    "bench": Command("mlops.commands.bench", "serving benchmark against an environment"),
    "pr": Command("mlops.commands.pr:pr_main", "what PR CI runs: dvc repro, report vs base and production, gate"),
    "report": Command("mlops.commands.pr:report_main", "the PR report and gate only (no dvc repro)"),
    "monitor": Command("mlops.commands.monitor", "monitor an environment; exit 1 on any breached threshold"),
    "exp": Command("mlops.commands.exp", "exp best --metric M: the DVC experiment to take into a pull request"),
    "cycle": Command("mlops.commands.cycle", "a retraining round of the example: drift, monitor, retrain, deploy"),
}  # fmt: skip


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: mlops COMMAND [options]   (mlops COMMAND --help for each)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``mlops COMMAND ...`` to the registered command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run(COMMANDS[name].load(), rest)


def entry() -> int:
    """The ``mlops`` process (the console script, ``python -m mlops``): ``main`` under the stages' collector policy.

    A command is a short process too (see ``mlops.stages``, whose import set the thresholds): the
    command's imports load first and are frozen out of collection, and so is what it built before
    the interpreter exits. ``main`` stays a plain function for callers with a process of their own (tests).
    """
    args = sys.argv[1:]
    if args and args[0] in COMMANDS:
        COMMANDS[args[0]].load()  # main finds it loaded
    return frozen(lambda: main(args))


if __name__ == "__main__":
    raise SystemExit(entry())
