"""``mlops serve up|down|status|request|replay [ENV]``: the local TorchServe environments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mlops.commands.common import contract_arg, parser, site
from mlops.core import paths
from mlops.core.config import load_params
from mlops.core.contract import load_contract
from mlops.core.errors import UserError
from mlops.core.progress import Progress
from mlops.pipeline.datasets import read_table
from mlops.release.environments import restore
from mlops.serving.inference import records
from mlops.serving.replay import replay
from mlops.serving.torchserve import ENVIRONMENTS, Client, LocalServer, local_server


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("serve", "start, stop or show the local TorchServe environments")
    p.add_argument(
        "action",
        choices=["up", "down", "status", "request", "replay"],
        help="request: print a ready-to-paste curl; replay: send --batch rows as traffic",
    )
    p.add_argument("env", nargs="?", choices=ENVIRONMENTS, help="one environment (default: both)")
    p.add_argument("--batch", type=Path, action="append", default=[], help="replay: CSV batch(es) to send")
    p.add_argument("--rows-per-request", type=int, default=20)
    p.add_argument("--labels-to", type=Path, help="replay: also write the batch's ground truth here (late labels)")
    p.add_argument("--holdout", type=Path, default=paths.HOLDOUT)
    contract_arg(p)
    args = p.parse_args(argv)
    progress = Progress("serve")
    for env in [args.env] if args.env else list(ENVIRONMENTS):
        server = local_server(env, args.serve_dir, args.runtime_dir)
        if args.action == "up":
            ep = server.up()
            progress(f"{env}: up, inference {ep.inference_url}, management {ep.management_url}")
            progress(f"{env}: tokens in {server.home / 'key_file.json'}")
            if args.params == paths.PARAMS and not args.params.exists():  # servers for elsewhere: no records here
                progress(f"{env}: no {paths.PARAMS} here, so no records to restore: serving nothing yet")
                continue
            restored = restore(site(args, "serve"), env)  # serve what the records say it serves
            if restored.record is not None:
                progress(f"{env}: serves {restored.serving or 'nothing'}; the record says {restored.record.version}")
        elif args.action == "down":
            progress(f"{env}: {'stopped' if server.down() else 'was not running'}")
        elif args.action == "replay":
            name = load_params(args.params).serve.model_name
            contract = load_contract(args.contract)
            replay(
                Client(server.endpoint()), name, contract, args.batch, args.rows_per_request, args.labels_to, progress
            )
        elif args.action == "request":
            print(_curl(server, load_params(args.params).serve.model_name, args.contract, args.holdout))
        else:
            state = f"up (pid {server.pid()})" if server.pid() else "down"
            progress(f"{env}: {state}, inference {server.props['inference_address']}")
    return 0


def _curl(server: LocalServer, name: str, contract: Path, holdout: Path) -> str:
    """A request a person can paste: the first holdout row, with this environment's token."""
    endpoint = server.endpoint()
    if not endpoint.inference_token:
        raise UserError(f"{server.name} is not running (`mlops serve up {server.name}`)")
    c = load_contract(contract)
    row = records(read_table(holdout).head(1), [c.id, *c.features] if c.id else c.features)[0]
    return (
        f"curl -s {endpoint.inference_url}/predictions/{name} \\\n"
        f"  -H 'Authorization: Bearer {endpoint.inference_token}' -H 'Content-Type: application/json' \\\n"
        f"  -d '{json.dumps(row)}'"
    )
