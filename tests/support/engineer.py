"""One engineer's clone logging training runs to the shared tracking server, ``THREADS`` at once.

Run as ``python -m support.engineer ROOT EXPERIMENT MODEL WHO THREADS`` (the tests start two, as
two engineers on two machines would); prints one JSON line per run: its id and registry version,
or the error.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops.pipeline import tracking


def main(root: Path, experiment: str, model: str, who: str, threads: int) -> int:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    fitted = LogisticRegression().fit(X, [0, 0, 1, 1])
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            record = tracking.log_training(
                root, experiment, model, pipeline=fitted, params={"who": who, "i": i},
                metrics={"train_loss": 0.1 * i}, input_example=X.head(2), tags={"engineer": who},
                artifacts=[], pip_requirements=["scikit-learn"],
            )  # fmt: skip
            out = {"who": who, "i": i, "run": record.run_id, "version": record.model_version}
        except Exception as e:  # report every failure: the test counts what was lost
            out = {"who": who, "i": i, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        with lock:
            print(json.dumps(out), flush=True)

    workers = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return 0


if __name__ == "__main__":
    root, experiment, model, who, threads = sys.argv[1:6]
    raise SystemExit(main(Path(root), experiment, model, who, int(threads)))
