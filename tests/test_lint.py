"""The code passes `ruff check` with the settings in pyproject.toml ([tool.ruff]: line length 120)."""
import subprocess
import sys

from conftest import REPO


def test_ruff_check_passes():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"ruff check found problems (fix them, or run `ruff check --fix .`):\n{r.stdout[-4000:]}"
