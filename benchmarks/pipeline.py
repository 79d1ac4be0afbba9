"""Pipeline benchmarks: validate on 1,000,000 rows, train + evaluate, a no-op `dvc repro`.

Run with `make bench-pipeline` (after `make demo`); writes reports/bench-pipeline.json.
Figures, not pass/fail: a busy machine makes timings noisy, so no test asserts them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlops.core.config import DataParams, load_params
from mlops.core.contract import load_contract
from mlops.example.data import generate
from mlops.pipeline.validation import validate_dir

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    params = load_params(ROOT / "params.yaml")
    contract = load_contract(ROOT / "data" / "contract.yaml")
    results: dict[str, float | int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        big = DataParams.model_validate(params.data.model_dump() | {"periods": 12, "rows_per_period": 83_334})
        raw = Path(tmp) / "raw"
        generate(big, raw)
        t0 = time.perf_counter()
        report = validate_dir(raw, contract)
        results["validate_rows"] = sum(report.rows.values())
        results["validate_1m_rows_s"] = round(time.perf_counter() - t0, 2)
        assert report.success, "the generated data should validate"

        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "mlartifacts", "mlflow.db"), symlinks=True)
        stage = [sys.executable, "-m"]
        results["train_s"] = round(timed([*stage, "mlops.stages.train", "--no-mlflow"], copy), 2)
        results["evaluate_s"] = round(timed([*stage, "mlops.stages.evaluate", "--no-mlflow"], copy), 2)
    results["noop_dvc_repro_s"] = round(min(timed(["dvc", "repro"], ROOT) for _ in range(3)), 2)
    out = ROOT / "reports" / "bench-pipeline.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    width = max(map(len, results))
    for k, v in results.items():
        print(f"{k:<{width}}  {v:>10,}")
    print(f"-> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
