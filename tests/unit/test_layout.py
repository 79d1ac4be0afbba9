"""The architecture, kept visible: rooms import downwards only, dvc.yaml's deps are each stage's
exact import closure, the archive carries only what serving needs, old pickles still load."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml

from mlops.core.contract import load_contract
from mlops.pipeline.features import ContractColumns
from mlops.release import packaging
from mlops.release.packaging import import_closure, pickled_modules, serving_files
from support import FIXTURES, ROOT

pytestmark = pytest.mark.unit

SRC = ROOT / "src" / "mlops"
ROOMS = ["core", "pipeline", "serving", "release", "monitoring", "example"]  # each may import the ones before it
ADAPTERS = {"cli", "commands", "stages", "__main__", "features"}  # above every room; `features` is the old path


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] == "mlops"}


def room_of(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_module_lives_in_a_room_or_is_an_adapter():
    top = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top - {"__init__"} == set(ROOMS) | ADAPTERS


@pytest.mark.parametrize("room", ROOMS)
def test_a_room_imports_only_the_rooms_below_it(room):
    allowed = set(ROOMS[: ROOMS.index(room) + 1])
    wrong = {
        f"{path.relative_to(SRC)} imports {module}"
        for path in (SRC / room).rglob("*.py")
        for module in imports_of(path)
        if room_of(module) not in allowed
    }
    assert not wrong


def trivial(path: Path) -> bool:
    """A package ``__init__`` that holds only its docstring (and so cannot change behaviour)."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body
    )


@pytest.mark.parametrize("room", [*ROOMS, "commands"])
def test_room_packages_are_only_a_docstring_saying_what_lives_there(room):
    init = SRC / room / "__init__.py"
    assert trivial(init)
    assert len(ast.get_docstring(ast.parse(init.read_text())) or "") > 80


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def code_deps(stage: str) -> set[str]:
    deps = {d if isinstance(d, str) else next(iter(d)) for d in dvc_stages()[stage]["deps"]}
    return {d for d in deps if d.startswith("src/")}


def closure(*entries: Path, modules: set[str] = frozenset()) -> set[str]:
    files = import_closure(list(entries), modules) + [e.resolve() for e in entries if e.is_relative_to(SRC)]
    return {str(p.relative_to(ROOT)) for p in files if not (trivial(p) or p == SRC / "__init__.py")}


@pytest.mark.parametrize("stage", ["validate", "split", "train", "evaluate"])
def test_each_stage_depends_on_exactly_the_modules_it_imports(stage):
    assert code_deps(stage) == closure(SRC / "stages" / f"{stage}.py")


def test_the_package_stage_depends_on_its_own_code_and_what_the_archive_carries():
    expected = closure(SRC / "stages" / "package.py") | closure(
        ROOT / "serve" / "handler.py", modules={"mlops.pipeline.features"}
    )
    assert code_deps("package") == expected


def test_the_archive_follows_the_model_name():
    assert "models/${serve.model_name}.mar" in dvc_stages()["package"]["outs"]


@pytest.fixture(scope="module")
def legacy():
    return joblib.load(FIXTURES / "legacy" / "pipeline-0.1.joblib")


def test_a_model_pickled_before_the_rooms_existed_still_loads_and_predicts_the_same(legacy):
    expected = json.loads((FIXTURES / "legacy" / "expected.json").read_text())
    contract = load_contract(FIXTURES / "contract.yaml")
    frame = pd.DataFrame(expected["rows"])[contract.features]
    assert legacy.predict_proba(frame)[:, 1].tolist() == pytest.approx(expected["proba"], abs=0, rel=1e-12)
    assert isinstance(legacy.named_steps["features"].named_steps["select"], ContractColumns)


def test_the_archive_carries_the_handler_closure_and_the_pickled_classes_only(legacy):
    files = {str(p.relative_to(SRC)) for p in serving_files(ROOT / "serve" / "handler.py", legacy)}
    assert pickled_modules(legacy) == {"mlops.pipeline.features"}
    assert {"serving/inference.py", "serving/telemetry.py", "pipeline/features.py", "core/task.py"} <= files
    assert not {f for f in files if f.startswith(("release/", "monitoring/", "example/", "commands/"))}
    assert "serving/torchserve.py" not in files


def copy_package(tmp_path: Path) -> Path:
    dest = tmp_path / "mlops"
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def version_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package_dir: Path) -> str:
    monkeypatch.setattr(packaging, "PACKAGE_DIR", package_dir)
    params = yaml.safe_load((FIXTURES / "params.yaml").read_text())["serve"]
    from mlops.core.config import ServeParams

    files = packaging.archive_files(
        FIXTURES / "legacy" / "pipeline-0.1.joblib",
        FIXTURES / "contract.yaml",
        ROOT / "serve" / "handler.py",
        ServeParams.model_validate(params),
        None,
    )
    return packaging.content_version(files)


def test_editing_the_report_or_deploy_code_keeps_the_model_version(tmp_path, monkeypatch):
    package = copy_package(tmp_path)
    before = version_with(tmp_path, monkeypatch, package)
    for name in ("release/report.py", "release/deploy.py", "monitoring/monitor.py"):
        (package / name).write_text((package / name).read_text() + "\n# an edit\n")
    assert version_with(tmp_path, monkeypatch, package) == before
    (package / "serving/inference.py").write_text((package / "serving/inference.py").read_text() + "\n# an edit\n")
    assert version_with(tmp_path, monkeypatch, package) != before
