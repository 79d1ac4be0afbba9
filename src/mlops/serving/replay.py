"""Traffic as clients would send it: replay batches through an environment, landing their labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlops.core.contract import Contract
from mlops.pipeline.datasets import read_batch
from mlops.serving.inference import records
from mlops.serving.torchserve import Client


@dataclass(frozen=True)
class Replayed:
    """One replayed batch: rows sent, requests that did not answer 200."""

    batch: str
    rows: int
    failed_requests: int


def replay(
    client: Client,
    name: str,
    contract: Contract,
    batches: list[Path],
    rows_per_request: int = 20,
    labels_to: Path | None = None,
    progress: Callable[[str], None] = print,
) -> list[Replayed]:
    """Send each batch's rows (id and features) in requests of ``rows_per_request``.

    With ``labels_to``, also write each batch's ground truth (id, target) there, as late
    labels would land.
    """
    out = []
    for path in batches:
        frame = read_batch(path, contract)
        rows = records(frame, [c for c in [contract.id, *contract.features] if c])
        failed = 0
        for start in range(0, len(rows), rows_per_request):
            status, _ = client.predict(name, rows[start : start + rows_per_request])
            failed += status != 200
        out.append(Replayed(path.name, len(rows), failed))
        progress(f"{client.endpoint.name}: replayed {len(rows):,} rows of {path.name} ({failed} failed requests)")
        if labels_to and contract.id:
            labels_to.mkdir(parents=True, exist_ok=True)
            frame[[contract.id, contract.target]].to_csv(labels_to / path.name, index=False)
    return out
