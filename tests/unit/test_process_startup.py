"""The stages and the CLI run as short processes: the collector policy they set, and what they import first.

Their effect on time is a benchmark (`make bench-pipeline`: `make pr` after one train param);
these tests keep the mechanisms in place.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_a_stage_process_freezes_its_imports_and_what_it_built_and_keeps_its_exit_code():
    # a stage module's __main__ is `entry(main)`: the imports (scikit-learn's and pandas' objects)
    # frozen out of collection before main, everything frozen after it, main's code the exit code
    done = _python(
        "import atexit, gc, sys\n"
        "import mlops.stages as stages\n"
        "import pandas, sklearn.base\n"
        "assert gc.get_threshold() == stages.GC_THRESHOLDS, gc.get_threshold()\n"
        "def main(argv):\n"
        "    print('frozen before main', gc.get_freeze_count())\n"
        "    global kept\n"
        "    kept = [[i] for i in range(100_000)]\n"
        "    return 3\n"
        "atexit.register(lambda: print('frozen at exit', gc.get_freeze_count()))\n"
        "stages.entry(main)\n"
    )
    assert done.returncode == 3, done.stderr
    before = int(done.stdout.split("frozen before main ")[1].split()[0])
    after = int(done.stdout.split("frozen at exit ")[1].split()[0])
    assert before > 100_000  # pandas and scikit-learn alone are far more objects than that
    assert after > before + 90_000  # main's lists, frozen before the interpreter's last collections


def test_a_stage_error_still_reports_through_run():
    done = _python(
        "from mlops.core.errors import UserError\n"
        "from mlops.stages import entry\n"
        "def main(argv):\n"
        "    raise UserError('column \"x\" is missing')\n"
        "entry(main)\n"
    )
    assert done.returncode == 2
    assert done.stderr.strip() == 'error: column "x" is missing'


def test_the_mlops_process_sets_the_policy_and_freezes_the_command_it_loaded():
    done = _python(
        "import atexit, gc, sys\n"
        "sys.argv = ['mlops', 'train', '--help']\n"
        "from mlops import cli\n"
        "atexit.register(lambda: print('threshold', gc.get_threshold()[0], 'frozen', gc.get_freeze_count()))\n"
        "cli.entry()\n"
    )
    assert done.returncode == 0, done.stderr
    assert "usage: mlops train" in done.stdout
    words = done.stdout.split()
    assert int(words[words.index("threshold") + 1]) == 100_000
    assert int(words[words.index("frozen") + 1]) > 100_000  # the train stage's scikit-learn and pandas


def test_the_cli_and_pr_command_load_without_the_reports_libraries():
    # `mlops pr` starts `dvc repro` first and imports the report (scikit-learn, DVC, matplotlib)
    # while the pipeline runs: importing the command must not pull them in
    done = _python(
        "import sys\n"
        "import mlops.cli, mlops.commands.pr\n"
        "heavy = [m for m in ('sklearn', 'dvc.repo', 'matplotlib', 'mlops.release.report') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
