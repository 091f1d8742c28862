"""Shared fixtures and helpers. Test files import the helpers: `from conftest import REPO, run`."""
import importlib.util
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")   # never wait on the network in tests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, timeout=None, **kw):
    """Run `python ARGS` from the repository root as a user would: captured text output, this process's
    environment (PYTHONPATH included, so a checkout's package wins) unless `env` is given; no time
    limit unless `timeout` (seconds) is given."""
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, **kw)


def load_script(path):
    """An entry script (a file, not part of the package) as a module, to call its parse_args and main."""
    path = os.path.join(REPO, path)
    spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_error_line(result):
    """The `error: ...` lines a failed script printed on stderr (a user-facing failure has exactly one)."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_error_line(message, *words):
    """A user-facing failure's message: one line `error: ...` holding each of `words` (the fix)."""
    assert message.startswith("error: "), message
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def assert_failed_in_one_line(result, *words):
    """A script that failed as a user should see it: exit 1, no traceback, one `error:` line with `words`."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = one_error_line(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert_error_line(lines[0], *words)


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory):
    """Tiny random-weight pipelines of every kind, saved as real diffusers folders."""
    from spatial_erasure.testing import KINDS, save_tiny_pipeline
    root = tmp_path_factory.mktemp("tiny")
    return {k: save_tiny_pipeline(k, str(root / k)) for k in KINDS}
