"""The core and the pytest glue: the core (every module outside `pytest_plugin/`) never imports the
glue or pytest, and every option of the glue is a field whose default is written once."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "illusion_checks"
GLUE = "pytest_plugin"


def _imported(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every module an import statement of `path` (or of `source`, as if it were at `path`) names, at
    any depth (function-level imports included); relative imports resolved against the module's
    package, `from X import y` also as `X.y`."""
    package = ["illusion_checks", *path.relative_to(PACKAGE).parent.parts]
    names = []
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names += [(node.lineno, module)] + [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return names


def test_core_never_imports_the_pytest_glue():
    core = [path for path in sorted(PACKAGE.rglob("*.py")) if GLUE not in path.relative_to(PACKAGE).parts]
    assert any(path.name == "evaluation.py" for path in core)
    bad = [f"{path.relative_to(PACKAGE)}:{line} imports {name}" for path in core for line, name in _imported(path)
           if name.split(".")[0] in ("pytest", "_pytest") or name.startswith(f"illusion_checks.{GLUE}")]
    assert bad == [], "the core imports the pytest glue:\n" + "\n".join(bad)


def test_the_import_scan_sees_relative_and_function_level_imports():
    source = "def f():\n    import pytest\n    from ..pytest_plugin import config\n    from . import spec\n"
    names = [name for _, name in _imported(PACKAGE / "compress" / "x.py", source)]
    assert "pytest" in names and "illusion_checks.pytest_plugin.config" in names
    assert "illusion_checks.compress.spec" in names


def test_every_option_is_one_field_and_every_default_is_the_fields():
    from illusion_checks.pytest_plugin.config import OPTIONS, IllusionConfig
    from illusion_checks.spec import EvaluationSpec, GateSpec

    owners = {item.name: cls for cls in (EvaluationSpec, GateSpec, IllusionConfig) for item in fields(cls)
              if item.name not in ("spec", "gates", "extra")}
    assert sorted(option.name for option in OPTIONS) == sorted(owners)
    for option in OPTIONS:
        field = next(item for item in fields(owners[option.name]) if item.name == option.name)
        assert option.default == field.default, option.flag
    backend = next(option for option in OPTIONS if option.flag == "--illusion-backend")
    assert backend.default == "hf"
