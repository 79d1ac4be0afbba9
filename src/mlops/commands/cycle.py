"""``mlops cycle``: one continuous-training round of the example, locally (after ``make demo``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mlops.commands.common import parser, site
from mlops.example.cycle import play


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("cycle", "play one continuous-training round of the example locally (after make demo)")
    p.add_argument("--periods", type=int, default=3, help="new periods that arrive (default: %(default)s)")
    p.add_argument("--drift", type=float, default=1.5, help="their downturn size (default: %(default)s)")
    args = p.parse_args(argv)
    result = play(site(args, "cycle"), args.periods, args.drift)
    print(json.dumps(result, indent=2))
    return 0
