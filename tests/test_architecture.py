"""The layout's rules, checked on the source: the core is engine-free (engines live in backends/,
compression in compress/), and no module or function grows past what one reader can hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "illusion_checks"
ENGINE_SIDE = ("backends/hf", "backends/vllm", "backends/openai", "compress")  # where torch and transformers may be imported
ENGINES = ("torch", "transformers", "vllm")
# Engine-free modules of compress/ that the core may use: the spec grammar and the choice of
# calibration texts (neither imports torch).
CORE_MAY_USE = ("illusion_checks.compress.spec", "illusion_checks.compress.calibration")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _is_core(path: Path) -> bool:
    return not _relative(path).startswith(ENGINE_SIDE)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every imported module name, at any depth (function-level imports included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def test_the_core_imports_no_engine_anywhere():
    bad = []
    for path in filter(_is_core, _modules()):
        for line, name in _imports(path):
            top = name.split(".")[0]
            engine_side = name.startswith(("illusion_checks.backends.hf", "illusion_checks.compress"))
            if top in ENGINES or (engine_side and not name.startswith(CORE_MAY_USE) and name != "illusion_checks.compress"):
                bad.append(f"{_relative(path)}:{line} imports {name}")
    assert bad == [], "engine imports in the core (go through illusion_checks.backends.engine):\n" + "\n".join(bad)


def test_the_top_level_engine_imports_are_only_in_backends_and_compress():
    """The issue's grep, `^(import|from) (torch|transformers)`, as a test."""
    offenders = [_relative(p) for p in _modules()
                 if any(line.startswith(("import torch", "from torch", "import transformers", "from transformers"))
                        for line in p.read_text(encoding="utf-8").splitlines())
                 and not _relative(p).startswith(("backends/", "compress/"))]
    assert offenders == []


def test_importing_the_core_loads_no_engine():
    core = [".".join(("illusion_checks", *_relative(p)[:-3].split("/"))).removesuffix(".__init__")
            for p in _modules() if _is_core(p) and "/data/" not in f"/{_relative(p)}"]
    code = ("import importlib, sys\n"
            f"for name in {core!r}:\n    importlib.import_module(name)\n"
            f"print(sorted(m for m in {ENGINES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("path", _modules(), ids=_relative)
def test_no_module_or_function_is_too_long(path: Path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []
