"""One engineer's clone logging training runs to the shared tracking server, ``THREADS`` at once.

Run as ``python -m support.engineer ROOT MODEL_FILE EXPERIMENT REGISTERED WHO THREADS RESULTS`` (the
tests start two, as two engineers on two machines would): each run logs the fitted pipeline in
``MODEL_FILE`` with the clone's contract, registering it as training does here (``MLOPS_REGISTER``).
Writes one JSON line per run to ``RESULTS``: its id and registry version, or the error. Not to
stdout: MLflow prints there from the other threads ("View run ..."), and a print is two writes,
so its text could land between a line and its newline.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pandas as pd

from mlops.core.contract import load_contract
from mlops.core.lineage import registers_here
from mlops.pipeline import tracking


def main(root: Path, model: Path, experiment: str, registered: str, who: str, threads: int, results: Path) -> int:
    contract = load_contract(root / "data/contract.yaml")
    # the trained project's holdout rows (a clone holds only what git tracks)
    example = pd.read_parquet(model.parents[1] / "data/split/holdout.parquet").head(2)[list(contract.features)]
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            record = tracking.log_training(
                root, experiment, registered, pipeline=model, contract=contract, params={"who": who, "i": i},
                metrics={"train_loss": 0.1 * i}, input_example=example, tags={"engineer": who},
                artifacts=[], pip_requirements=["scikit-learn"], register=registers_here(),
            )  # fmt: skip
            out = {"who": who, "i": i, "run": record.run_id, "version": record.model_version}
        except Exception as e:  # report every failure: the test counts what was lost
            out = {"who": who, "i": i, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        with lock, results.open("a") as f:
            f.write(json.dumps(out) + "\n")

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 0


if __name__ == "__main__":
    root, model, experiment, registered, who, threads, results = sys.argv[1:8]
    raise SystemExit(main(Path(root), Path(model), experiment, registered, who, int(threads), Path(results)))
