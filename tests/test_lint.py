"""The code passes `ruff check` with the settings in pyproject.toml ([tool.ruff]: line length 120), and
its imports keep the layers declared for import-linter ([tool.importlinter])."""
import os
import subprocess
import sys

from conftest import REPO


def test_ruff_check_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"ruff check found problems (fix them, or run `ruff check --fix .`):\n{r.stdout[-4000:]}"


def test_imports_keep_the_declared_layers():
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    r = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"an import runs against the layers in pyproject.toml:\n{r.stdout[-4000:]}"
    assert "0 broken" in r.stdout, r.stdout[-2000:]
