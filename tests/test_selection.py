"""Which generated tests could run and which a command line names, before any model answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from illusion_checks.spec import EvaluationSpec, GateSpec
from illusion_checks.pytest_plugin.selection import Named, plan_tests, split_args

ALL_METRICS = ("dissociation", "delta_pr", "retention")


@pytest.mark.parametrize("args, kept, named", [
    (["tests"], ["tests"], Named()),
    (["tests/test_x.py"], ["tests/test_x.py"], Named()),
    (["tests/test_x.py::test_y"], ["tests/test_x.py::test_y"], Named(everything=False)),
    (["tests/test_x.py::test_y", "tests/"], ["tests/test_x.py::test_y", "tests/"], Named(everything=False)),
    (["illusion/en::dissociation", "tests"], ["tests"], Named(("illusion/en::dissociation",), everything=False)),
    (["illusion/", "tests/test_x.py::test_y"], ["tests/test_x.py::test_y"], Named(("illusion",), everything=False)),
    (["illusion/en/en-001::produces"], [], Named(("illusion/en/en-001::produces",), everything=False)),
], ids=["folder", "file", "node-id", "node-id-and-folder", "illusion-node-id", "illusion-root", "illusion-only"])
def test_split_args(tmp_path: Path, args: list[str], kept: list[str], named: Named) -> None:
    assert split_args(args, tmp_path) == (kept, named)


def test_a_real_folder_named_illusion_stays_a_path(tmp_path: Path) -> None:
    (tmp_path / "illusion").mkdir()
    assert split_args(["illusion"], tmp_path) == (["illusion"], Named())


def test_a_prefix_names_itself_and_what_lies_below() -> None:
    named = Named(("illusion/en",), everything=False)
    assert "illusion/en::dissociation" in named and "illusion/en/en-001::produces" in named
    assert "illusion/eng::dissociation" not in named and "illusion/overall::retention" not in named
    assert "tests/test_x.py::test_y" in Named() and "illusion/en::retention" not in Named(everything=False)
    assert Named(("illusion/en", "illusion/xx"), everything=False).unmatched(["illusion/en::retention"]) == ["illusion/xx"]


@pytest.mark.parametrize("langs, items, seed", [(None, 3, 42), (("de", "en"), 200, 42), (("zh",), 5, 7)])
def test_the_plan_holds_the_items_the_engine_evaluates(langs: tuple | None, items: int, seed: int) -> None:
    from illusion_checks.datasets import load_dataset
    from illusion_checks.probing import prepare_items
    from illusion_checks.evaluation import probe_settings

    spec = EvaluationSpec(model="m", compress="magnitude:0.5", langs=langs, items=items, seed=seed)
    prepared = prepare_items(load_dataset("fixtures"), list(langs) if langs else None, probe_settings(spec))
    plan = plan_tests(spec)
    assert list(plan.items) == [(p.item.lang, p.item.id) for p in prepared]
    assert [lang for lang, _ in plan.gates] == [*sorted({p.item.lang for p in prepared}), "overall"]


def test_the_plan_holds_a_gate_on_a_language_the_run_lacks() -> None:
    spec = EvaluationSpec(model="m", compress="magnitude:0.5", langs=("en",), items=2)
    gates = GateSpec(max_dissociation={"xx": 0.2, "*": 0.1}, min_retention={"sw": 0.5, "overall": 0.5})
    assert plan_tests(spec, gates).gates == (("en", ALL_METRICS), ("sw", ("retention",)), ("xx", ("dissociation",)),
                                     ("overall", ALL_METRICS))


def test_planning_imports_no_torch() -> None:
    code = ("import sys; from illusion_checks.spec import EvaluationSpec; from illusion_checks.pytest_plugin.selection import plan_tests;"
            " plan_tests(EvaluationSpec(model='m', items=3)); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
