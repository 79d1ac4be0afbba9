"""The serving benchmark's parts without TorchServe: wrk against a loopback stand-in server, and
the report that puts every figure beside its target (bench.json and the docs table)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlops.serving import bench, loadgen

pytestmark = pytest.mark.unit


class _Echo(BaseHTTPRequestHandler):
    """A stand-in prediction endpoint: answers 200 to a JSON body with the token, else 400."""

    protocol_version = "HTTP/1.1"  # keep-alive, as TorchServe
    bodies: ClassVar[list[Any]] = []
    tokens: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        _Echo.tokens.add(self.headers.get("Authorization", ""))
        try:
            _Echo.bodies.append(json.loads(data))
            status = 200
        except ValueError:
            status = 400
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(loadgen.wrk_path() is None, reason="wrk is not installed (make setup installs it as root)")
def test_wrk_posts_every_body_with_the_token_and_reports_latency_and_cpu():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        bodies = [{"row": i} for i in range(5)] + [[{"row": 9}] * 3]
        m = loadgen.run_wrk(url, "/predictions/m", "tok", bodies, 2, 1)
    finally:
        server.shutdown()
    assert m.result.requests > 10
    assert m.result.failures == 0
    assert m.result.rps > 0
    assert 0 < m.result.p50_ms <= m.result.p99_ms
    assert _Echo.tokens == {"Bearer tok"}
    assert {json.dumps(b) for b in _Echo.bodies} == {json.dumps(b) for b in bodies}  # each body, as sent
    assert m.cpu_ms_per_request["load generator"] > 0


def report(c16_rps: float, mlflow_rps: float) -> dict[str, Any]:
    def level(rows: int, users: int, rps: float, p50: float) -> dict[str, Any]:
        return {"rows_per_request": rows, "concurrency": users, "rps": rps, "rows_per_s": rps * rows, "p50_ms": p50,
                "p99_ms": p50 * 3, "failures": 0, "cpu_ms_per_request": {"frontend": 0.2, "workers": 0.3}}  # fmt: skip

    served = [level(1, 1, 800, 1.0), level(1, 16, c16_rps, 4.0), level(100, 4, 500, 5.0), level(100, 16, 600, 20.0)]
    mlflow_1 = {
        "rps": mlflow_rps,
        "p50_ms": 100.0,
        "p99_ms": 200.0,
        "failures": 0,
        "cpu_ms_per_request": {"server": 20.0},
    }
    return {
        "time": "2026-01-01 00:00",
        "machine": "2 CPUs",
        "load_generator": "wrk",
        "load_average": 1.0,
        "in_process": {
            "1_row": {"cpu_p50_ms": 0.1, "wall_p50_ms": 0.12},
            "100_rows": {"cpu_p50_ms": 3.5, "wall_p50_ms": 3.6},
            "scoring": "features: compiled, estimator: compiled",
        },
        "served": served,
        "mlflow": {"best": {"rps": mlflow_rps}, "by_workers": {"1": mlflow_1}},
    }


def test_each_figure_stands_beside_its_target_and_says_whether_it_is_met():
    rows = {r["key"]: r for r in bench.summary(report(c16_rps=3000, mlflow_rps=100))}
    assert rows["in_process_1_row_ms"] == {**rows["in_process_1_row_ms"], "value": 0.1, "met": True}
    assert rows["in_process_100_rows_ms"]["met"] is False  # 3.5 ms > 3 ms
    assert rows["served_1_row_c1_p50_ms"]["value"] == 1.0
    assert rows["served_1_row_c16_rps"]["mlflow"] == 100
    assert rows["served_100_rows_rows_per_s"]["value"] == 60_000  # the best concurrency
    assert rows["times_mlflow_c16"]["value"] == 30
    assert rows["times_mlflow_c16"]["target"] == ">= 20x"
    assert bench.summary({"served": []})[0]["met"] is None  # not measured is not a pass


def test_the_docs_table_is_rewritten_between_its_markers_only(tmp_path: Path):
    doc = tmp_path / "serving.md"
    doc.write_text(f"# Serving\n\nbefore\n\n{bench.DOC_START}\nold table\n{bench.DOC_END}\n\nafter\n")
    assert bench.write_doc(doc, bench.markdown(report(c16_rps=3000, mlflow_rps=100)))
    text = doc.read_text()
    assert text.startswith("# Serving\n\nbefore\n\n")
    assert text.endswith(f"{bench.DOC_END}\n\nafter\n")
    assert "old table" not in text
    assert "| TorchServe, 1 row, concurrency 16 | >= 2,000 req/s | 3,000 req/s | yes |" in text
    assert "| `mlflow models serve`, 1 worker(s) | 1 | 16 | 100 |" in text
    assert "frontend 0.20, workers 0.30" in text
    assert not bench.write_doc(tmp_path / "other.md", "x")  # no such page
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not bench.write_doc(tmp_path / "plain.md", "x")
    assert (tmp_path / "plain.md").read_text() == "no markers\n"
