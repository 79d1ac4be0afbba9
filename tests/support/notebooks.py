"""Run the repository's notebooks as a user does, on a temporary project, with this environment's Python."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from support import ROOT

NOTEBOOKS = ROOT / "notebooks"
KERNEL = "mlops-tests"


def kernel_spec(where: Path) -> Path:
    """A kernel spec naming this interpreter (the project's venv), in ``where`` (a JUPYTER_PATH entry)."""
    spec = where / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    return where


def execute(name: str, project: Path, jupyter_path: Path, timeout_s: int = 60) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``notebooks/<name>`` with ``project`` as the working directory; every cell within ``timeout_s``.

    Returns the executed notebook (its outputs) and the wall time. A failing cell raises
    ``nbclient.exceptions.CellExecutionError`` with the traceback.
    """
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ["JUPYTER_PATH"] = str(kernel_spec(jupyter_path))
    client = NotebookClient(
        nb, timeout=timeout_s, kernel_name=KERNEL, resources={"metadata": {"path": str(project)}}, allow_errors=False
    )
    started = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - started


def text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed (streams and plain-text results)."""
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                out.append(output.get("text", ""))
            elif "data" in output:
                out.append(output["data"].get("text/plain", ""))
    return "\n".join(out)


def images(nb: nbformat.NotebookNode) -> int:
    """How many PNG images the notebook displayed."""
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
