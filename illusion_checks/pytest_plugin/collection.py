"""Collecting the generated tests, as a state machine over pytest's collection hooks.

Before any model answers, stand-ins for every test that could exist are collected (`selection.Plan`);
-k, -m and --lf deselect them like any test; once collection settles, the results are obtained only if a
generated test is still selected and pytest will run tests, and the real tests then take the
stand-ins' places. With results at hand when pytest collects (--illusion-from-results, an xdist worker)
the real tests are collected at once and there is nothing to swap.

    NEW --collect--> PLANNED --settle--> SETTLED --swap_in--> SWAPPED
                             --settle--> NOT_RUN  (no generated test runs: no model loads)
"""

from __future__ import annotations

import enum
from typing import Any, Callable, Mapping

import pytest

from illusion_checks.gates import OVERALL, Gate
from illusion_checks.pytest_plugin.config import IllusionConfig
from illusion_checks.pytest_plugin.items import (GateCheck, ItemCheck, PendingCheck, SearchCheck, build_all_groups,
                                                 build_pending_groups, check_key, pending_search_group)
from illusion_checks.pytest_plugin.selection import Named, Plan, plan_tests
from illusion_checks.results import runs_of

# Options under which pytest runs no test: the generated tests are listed, never evaluated.
RUNS_NO_TEST = {"collectonly": "--collect-only lists the tests that could run", "showfixtures": "--fixtures runs no test",
                "show_fixtures_per_test": "--fixtures-per-test runs no test", "setupplan": "--setup-plan runs no test",
                "setuponly": "--setup-only runs no test"}
GENERATED = (PendingCheck, ItemCheck, GateCheck, SearchCheck)
# The results and their gates, when they can be had without a model; else None.
ResultsAtHand = Callable[[], tuple[Mapping[str, Any], list[Gate]] | None]


class Stage(enum.Enum):
    """Where collection stands."""

    NEW = "new"  # pytest has not reached our collection hook
    PLANNED = "planned"  # the named tests are collected (stand-ins, or the real tests); deselection under way
    SETTLED = "settled"  # collection is over and a generated test will run: the results are needed
    SWAPPED = "swapped"  # the real tests are in the session's items (final)
    NOT_RUN = "not run"  # collection is over and no generated test runs: no model loads (final)


class CollectionOrderError(RuntimeError):
    """A collection step called in the wrong stage: a bug in the plugin, never the user's doing."""


class Collection:
    """The generated tests through collection: the state the collection hooks share, and its stage."""

    def __init__(self, cfg: IllusionConfig, named: Named) -> None:
        self.cfg, self.named = cfg, named
        self.stage = Stage.NEW
        self.not_run_because: str | None = None  # why no generated test runs, for the terminal summary
        self._stand_ins: list[pytest.CollectReport] = []  # reported once collection settles
        self._selected: list[pytest.Item] = []  # the generated tests still selected when it settles

    def _enter(self, step: str, allowed: tuple[Stage, ...], to: Stage) -> None:
        """Move to stage `to`; a step called in another stage than `allowed` is a bug, stopped here."""
        if self.stage not in allowed:
            expected = " or ".join(repr(stage.value) for stage in allowed)
            raise CollectionOrderError(f"illusion-checks internal error: Collection.{step} called when collection is "
                                       f"{self.stage.value!r}; it must be {expected}")
        self.stage = to

    def collect(self, session: pytest.Session, items: list[pytest.Item], results_at_hand: ResultsAtHand) -> None:
        """NEW -> PLANNED: add the generated tests the command line names, before -k, -m and --lf deselect.
        With results at hand they are the real tests; otherwise stand-ins for every test that could exist,
        counted once collection settles, so that deselecting them all loads no model."""
        self._enter("collect", (Stage.NEW,), Stage.PLANNED)
        if self.named.nothing:
            return
        at_hand = results_at_hand()  # reads a file at most: no model
        if at_hand is not None:
            results, gates = at_hand
            reports = [_collect(session, group, self.named)
                       for group in build_all_groups(session, results, gates, self.cfg.item_policy)]
            langs = sorted(runs_of(results)[0]["summary"]["per_language"])
            for report in reports:
                session.ihook.pytest_collectreport(report=report)
        else:
            plan = self._plan()
            groups = self._stand_in_groups(session, plan)
            reports = self._stand_ins = [_collect(session, group, self.named) for group in groups]
            langs = [lang for lang, _ in plan.gates if lang != OVERALL]
        nodes = [node for report in reports for node in report.result]
        unknown = self.named.unmatched([node.nodeid for node in nodes])
        if unknown:
            raise pytest.UsageError(f"illusion-checks: {', '.join(unknown)} names no generated test of this run "
                                    f"(its languages: {', '.join(langs)})")
        items.extend(nodes)

    def _plan(self) -> Plan:
        try:
            return plan_tests(self.cfg.spec, self.cfg.gates)
        except ValueError as error:  # a data set that cannot load, a language it lacks
            raise pytest.UsageError(f"illusion-checks: {error}") from error

    def _stand_in_groups(self, session: pytest.Session, plan: Plan) -> list[pytest.Collector]:
        """Stand-ins: the plan's tests (for each spec of a sweep), or the search's verdict."""
        spec, policy = self.cfg.spec, self.cfg.item_policy
        if spec.search:
            return [pending_search_group(session)]
        sweep = spec.compress_specs if len(spec.compress_specs) > 1 else (None,)
        return [group for label in sweep for group in build_pending_groups(session, plan.items, plan.gates, policy, label)]

    def hold_back(self, deselected: list[pytest.Item]) -> None:
        """While PLANNED, stand-ins that -k, -m or --lf deselect are counted when collection settles, not now;
        in any other stage (our own deselection included) nothing is held back."""
        if self.stage is Stage.PLANNED and self._stand_ins:
            deselected[:] = [node for node in deselected if not isinstance(node, PendingCheck)]

    def settle(self, session: pytest.Session) -> bool:
        """PLANNED -> SETTLED, True: a generated test is still selected and pytest will run tests, so the
        results are needed and `swap_in` follows. Else -> NOT_RUN, False: the stand-ins are counted as
        they are (what could run). From NEW too: pytest settles after a collection error stopped it first."""
        self._enter("settle", (Stage.NEW, Stage.PLANNED), Stage.SETTLED)
        self._selected = [node for node in session.items if isinstance(node, GENERATED)]
        why_not = self._why_no_test_runs(session) if self._selected else "no illusion test selected"
        if why_not is None:
            return True
        self.stage, self.not_run_because = Stage.NOT_RUN, why_not
        stand_ins, self._stand_ins = self._stand_ins, []
        for report in stand_ins:
            session.ihook.pytest_collectreport(report=report)
        chosen = set(self._selected)
        _deselect(session, [node for report in stand_ins for node in report.result if node not in chosen])
        return False

    def _why_no_test_runs(self, session: pytest.Session) -> str | None:
        for option, reason in RUNS_NO_TEST.items():
            if session.config.getoption(option, False):
                return reason
        if session.testsfailed and not session.config.getoption("continue_on_collection_errors", False):
            return "errors during collection stop the run"
        return None

    def swap_in(self, session: pytest.Session, results: Mapping[str, Any], gates: list[Gate]) -> None:
        """SETTLED -> SWAPPED: each selected stand-in becomes its real test, or goes (an item the reference
        does not get right); the real tests whose stand-ins were deselected are reported deselected, as -k
        would. Real tests collected at once have nothing to swap."""
        self._enter("swap_in", (Stage.SETTLED,), Stage.SWAPPED)
        stand_ins, self._stand_ins = self._stand_ins, []
        if not stand_ins:
            return
        real: dict[tuple[Any, ...], pytest.Item] = {}
        for group in build_all_groups(session, results, gates, self.cfg.item_policy):
            report = _collect(session, group, self.named)
            session.ihook.pytest_collectreport(report=report)
            real.update((check_key(node), node) for node in report.result)
        planned = {check_key(node) for report in stand_ins for node in report.result}
        chosen = {check_key(node) for node in self._selected}
        session.items[:] = [real[check_key(node)] if isinstance(node, PendingCheck) else node for node in session.items
                            if not isinstance(node, PendingCheck) or check_key(node) in real]
        # A real test the plan did not foresee runs: a gate is never hidden (the plan foresees them all).
        session.items.extend(node for key, node in real.items() if key not in planned)
        _deselect(session, [node for key, node in real.items() if key in planned and key not in chosen])


def _collect(session: pytest.Session, group: pytest.Collector, named: Named) -> pytest.CollectReport:
    """A group collected through pytest's hooks, holding only the tests the command line names;
    reporting it (`pytest_collectreport`) counts them in "collected N items"."""
    session.ihook.pytest_collectstart(collector=group)
    report = session.ihook.pytest_make_collect_report(collector=group)
    report.result = [node for node in report.result if node.nodeid in named]
    return report


def _deselect(session: pytest.Session, nodes: list[pytest.Item]) -> None:
    if nodes:
        session.ihook.pytest_deselected(items=nodes)
