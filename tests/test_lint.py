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


def functions_with_parameter(name, but=()):
    """'path:line function' of every function in spatial_erasure/ with a parameter `name`, but those named
    in `but`."""
    import ast
    from pathlib import Path
    takers = []
    for path in sorted(Path(REPO, "spatial_erasure").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in but:
                params = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                if any(a.arg == name for a in params):
                    takers.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    return takers


def test_no_library_function_but_a_scripts_main_takes_the_argparse_namespace():
    """Below a script's `main` the library takes typed configs or plain values (spatial_erasure.configs):
    no function of spatial_erasure/ has a parameter `args` except `main`."""
    takers = functions_with_parameter("args", but=("main",))
    assert not takers, takers


def test_no_library_function_takes_a_toy_flag():
    """What differs for the toy model comes from its World (spatial_erasure.worlds: world_of(pipe)), not
    from a boolean: no function of spatial_erasure/ has a parameter `toy`."""
    takers = functions_with_parameter("toy")
    assert not takers, takers
