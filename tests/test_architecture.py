"""The layout's rules, checked on the source: the core is engine-free (engines live in backends/,
compression in compress/), and no module or function grows past what one reader can hold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Mapping

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


# -- floors: no import circle ----------------------------------------------------------------------

def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(node: ast.AST, package: list[str], modules: set[str]) -> Iterator[str]:
    """The package modules an import statement loads (`from pkg import name` loads pkg.name when that
    is a module, else pkg); every statement below `node` too, except the body of `if TYPE_CHECKING:`."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names if alias.name in modules)
    elif isinstance(node, ast.ImportFrom):
        base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])]
                        if node.level else [node.module or ""])
        for alias in node.names:
            name = f"{base}.{alias.name}"
            if name in modules or base in modules:
                yield name if name in modules else base
    for child in ast.iter_child_nodes(node):
        if not _is_type_checking(child):
            yield from _imported(child, package, modules)
        else:  # its `else:` runs
            for branch in child.orelse:
                yield from _imported(branch, package, modules)


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """{module: the package modules it imports, at any depth}, from {path such as `pkg/sub/mod.py`: source}.

    Function-level imports count (they run too, only later); imports under `if TYPE_CHECKING:` never
    run and do not count."""
    names = {path: ".".join(Path(path).with_suffix("").parts).removesuffix(".__init__") for path in sources}
    modules = set(names.values())
    graph = {}
    for path, source in sources.items():
        module = names[path]
        package = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
        graph[module] = {name for name in _imported(ast.parse(source), package, modules) if name != module}
    return graph


def import_circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Each import circle as one path `[a, b, ..., a]` through a strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.get(module, ())):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = set()
            while not component or module not in component:
                component.add(stack.pop())
            if len(component) > 1:
                components.append(component)

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_circle_through(graph, component) for component in components]


def _circle_through(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    """The shortest import path from the component's first module back to itself."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        module = queue.pop(0)
        for other in sorted(graph[module] & component):
            if other == start:
                return paths[module] + [start]
            if other not in paths:
                paths[other] = paths[module] + [other]
                queue.append(other)
    raise AssertionError(f"no circle through {sorted(component)}")


def _package_graph() -> dict[str, set[str]]:
    return import_graph({path.relative_to(PACKAGE.parent).as_posix(): path.read_text(encoding="utf-8")
                         for path in _modules()})


def test_no_import_circle_anywhere_in_the_package():
    """An import never runs up a floor (docs/architecture.md, "Floors"): no circle among the package's
    modules, function-level imports included; imports under `if TYPE_CHECKING:` never run, so they are
    left out."""
    circles = import_circles(_package_graph())
    assert circles == [], "import circles (move the shared helper down a floor):\n" + "\n".join(
        " -> ".join(circle) for circle in circles)


def test_the_circle_check_finds_a_planted_back_edge():
    graph = _package_graph()
    graph["illusion_checks.results"] = graph["illusion_checks.results"] | {"illusion_checks.evaluation"}
    circles = import_circles(graph)
    assert any({"illusion_checks.results", "illusion_checks.evaluation"} <= set(circle) for circle in circles)
    planted = import_graph({
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\nfrom . import c\n",  # `from pkg import b` imports the module pkg.b
        "pkg/b.py": "def later():\n    from .a import x\n",  # a function-level import is still an import
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import y\n",  # never runs
    })
    assert planted == {"pkg": set(), "pkg.a": {"pkg.b", "pkg.c"}, "pkg.b": {"pkg.a"}, "pkg.c": set()}
    assert import_circles(planted) == [["pkg.a", "pkg.b", "pkg.a"]]
