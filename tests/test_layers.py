"""The layers of src/lazarus: the import-linter contracts hold on the real tree and fail on a
planted upward import or cycle; lazarus's own imports sit at the top of each module; `--help`
answers without numpy or torch."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PYPROJECT = REPO / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")  # import-linter's entry point
CONTRACTS = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
NAMES = {contract["type"]: contract["name"] for contract in CONTRACTS["contracts"]}


def lint_imports(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` over the `lazarus` package found in `src`, with `config`'s contracts."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
                          cwd=config.parent, env=env, capture_output=True, text=True,
                          timeout=120)


def planted_copy(tmp_path: Path, module: str, after: str, line: str) -> tuple[Path, int]:
    """A copy of src/lazarus and pyproject.toml in `tmp_path`, with `line` added to `module`
    right after the line `after`: the copy's pyproject.toml, and the planted line's number."""
    shutil.copytree(SRC / "lazarus", tmp_path / "src" / "lazarus",
                    ignore=shutil.ignore_patterns("__pycache__", "demo_model"))
    shutil.copy(PYPROJECT, tmp_path / "pyproject.toml")
    path = tmp_path / "src" / "lazarus" / module
    text = path.read_text(encoding="utf-8")
    assert after + "\n" in text  # the anchor is there, so the plant lands where meant
    planted = text.replace(after + "\n", f"{after}\n{line}\n", 1)
    path.write_text(planted, encoding="utf-8")
    return tmp_path / "pyproject.toml", planted.splitlines().index(line) + 1


def test_the_tree_keeps_every_contract():
    result = lint_imports(SRC, PYPROJECT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS['contracts'])} kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path):
    config, number = planted_copy(tmp_path, "io/files.py", "from __future__ import annotations",
                                  "from lazarus.api import Model  # planted: io is below api")
    result = lint_imports(tmp_path / "src", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{NAMES['layers']} BROKEN" in result.stdout
    assert "lazarus.io is not allowed to import lazarus.api:" in result.stdout
    assert f"- lazarus.io.files -> lazarus.api (l.{number})" in result.stdout


def test_a_cycle_inside_a_layer_breaks_the_acyclic_contract(tmp_path: Path):
    # engine.checks imports engine.placement; the plant makes placement import checks back.
    config, _ = planted_copy(tmp_path, "engine/placement.py",
                             "from __future__ import annotations",
                             "from lazarus.engine.checks import LAYERS  # planted: a cycle")
    result = lint_imports(tmp_path / "src", config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{NAMES['layers']} KEPT" in result.stdout  # within one layer: allowed
    assert f"{NAMES['acyclic_siblings']} BROKEN" in result.stdout
    assert "No cycles are allowed in lazarus.engine." in result.stdout
    # The import named to break the cycle is one of its two edges, whichever import-linter picks.
    breakers = re.findall(r"^- \.(\w+) -> \.(\w+) \(", result.stdout, flags=re.MULTILINE)
    assert len(breakers) == 1, result.stdout
    assert set(breakers[0]) == {"checks", "placement"}


def imports_inside_functions(path: Path, root: Path) -> list[str]:
    """`file:line` (relative to `root`) of each `import lazarus…`, `from lazarus…` or relative
    import that stands inside a function body."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            if any(name.split(".")[0] in ("lazarus", "") for name in names):
                found.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return found


def test_lazarus_imports_itself_only_at_module_top():
    modules = sorted((SRC / "lazarus").rglob("*.py"))
    assert len(modules) > 50  # the walk did find the package
    inside = sorted({place for path in modules for place in imports_inside_functions(path, SRC)})
    assert inside == []


def test_the_ast_check_sees_an_import_inside_a_function(tmp_path: Path):
    module = tmp_path / "lazarus" / "planted.py"
    module.parent.mkdir()
    module.write_text("import os\n\n\ndef run():\n    import json\n"
                      "    from lazarus.engine import configs\n    from . import text\n",
                      encoding="utf-8")
    assert imports_inside_functions(module, tmp_path) == ["lazarus/planted.py:6",
                                                          "lazarus/planted.py:7"]


HELP_SCREENS = [["--help"], ["--version"], ["introspect", "--help"], ["cache", "--help"],
                *(["introspect", name, "--help"]
                  for name in ("neurons", "probe", "ablate", "steer", "examples", "patch"))]


@pytest.mark.integration
def test_help_screens_import_neither_numpy_nor_torch():
    code = (
        "import sys\n"
        "from lazarus.cli.main import main\n"
        f"for argv in {HELP_SCREENS!r}:\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, (argv, stop.code)\n"
        "heavy = ('numpy', 'torch', 'transformers', 'pandas', 'matplotlib', 'ray', 'pyarrow')\n"
        "print(sorted(name for name in heavy if name in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"


def test_the_handle_has_all_the_analyses_may_ask_of_it():
    """Analyses are typed against `ModelHandle`; the one implementation (and so `Model`) must
    have every attribute and method it names, with the methods callable on a config-only
    handle where they need no weights."""
    import inspect

    from lazarus.api import Model
    from lazarus.engine.handle import Handle, ModelHandle

    asked = set(ModelHandle.__annotations__) | {
        name for name, _ in inspect.getmembers(ModelHandle) if not name.startswith("_")}
    handle = Handle("lazarus:demo")
    assert sorted(name for name in asked if not hasattr(handle, name)) == []
    assert issubclass(Model, Handle)
    assert handle.layers(-1) == (handle.layer_count - 1,)
    assert handle.loads == 0  # nothing above needed the weights
