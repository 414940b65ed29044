"""The collection state machine (pytest_plugin/collection.py): the normal order of its steps, and a step
out of order stopped with a clear internal error. Plain objects stand in for pytest's session; the
end-to-end behaviour (stand-ins, -k / -m, xdist, --illusion-from-results) is in test_selection.py,
test_plugin_citizenship.py and test_plugin_options.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock

import pytest

from illusion_checks.pytest_plugin.collection import Collection, CollectionOrderError, Stage
from illusion_checks.pytest_plugin.config import IllusionConfig
from illusion_checks.pytest_plugin.items import GateCheck, PendingCheck
from illusion_checks.pytest_plugin.selection import Named

NOTHING_NAMED = Named(everything=False)  # a command line naming only other tests: no stand-in is built


def _session(items: list[Any], **options: bool) -> Any:
    """What the collection steps read of pytest's session: its items, failures and options."""
    config = SimpleNamespace(getoption=lambda name, default=None: options.get(name, default))
    return SimpleNamespace(items=items, testsfailed=0, config=config)


def _no_results() -> None:
    raise AssertionError("results were asked for although no generated test is named")


def _planned() -> Collection:
    collection = Collection(IllusionConfig(), NOTHING_NAMED)
    collection.collect(_session([]), [], _no_results)
    return collection


def test_the_normal_order_goes_planned_settled_swapped() -> None:
    collection = Collection(IllusionConfig(), NOTHING_NAMED)
    assert collection.stage is Stage.NEW
    collection.collect(_session([]), [], _no_results)
    assert collection.stage is Stage.PLANNED
    session = _session([Mock(spec=GateCheck)])  # a generated test still selected
    assert collection.settle(session) is True
    assert collection.stage is Stage.SETTLED and collection.not_run_because is None
    collection.swap_in(session, {}, [])  # no stand-ins: nothing to swap
    assert collection.stage is Stage.SWAPPED


@pytest.mark.parametrize(("items", "options", "why"), [
    ([], {}, "no illusion test selected"),
    ([Mock(spec=GateCheck)], {"collectonly": True}, "--collect-only lists the tests that could run"),
], ids=["none-selected", "collect-only"])
def test_settling_without_a_test_to_run_ends_not_run(items: list[Any], options: dict[str, bool], why: str) -> None:
    collection = _planned()
    assert collection.settle(_session(items, **options)) is False
    assert collection.stage is Stage.NOT_RUN and collection.not_run_because == why


def test_settling_after_a_collection_error_stopped_pytest_before_collect() -> None:
    # pytest calls pytest_collection_finish from a `finally`, also when collection failed first.
    collection = Collection(IllusionConfig(), NOTHING_NAMED)
    assert collection.settle(_session([])) is False
    assert collection.stage is Stage.NOT_RUN


def test_only_a_planned_collection_holds_stand_ins_back() -> None:
    collection = Collection(IllusionConfig(), NOTHING_NAMED)
    deselected = [Mock(spec=PendingCheck)]
    collection.hold_back(deselected)
    assert len(deselected) == 1


def _collect(collection: Collection) -> None:
    collection.collect(_session([]), [], _no_results)


def _settle(collection: Collection) -> None:
    collection.settle(_session([]))


def _swap_in(collection: Collection) -> None:
    collection.swap_in(_session([]), {}, [])


@pytest.mark.parametrize(("steps", "message"), [
    ([_collect, _collect], "Collection.collect called when collection is 'planned'; it must be 'new'"),
    ([_swap_in], "Collection.swap_in called when collection is 'new'; it must be 'settled'"),
    ([_collect, _swap_in], "Collection.swap_in called when collection is 'planned'; it must be 'settled'"),
    ([_collect, _settle, _settle], "Collection.settle called when collection is 'not run'; it must be 'new' or 'planned'"),
    ([_collect, _settle, _swap_in], "Collection.swap_in called when collection is 'not run'; it must be 'settled'"),
    ([_collect, _settle, _collect], "Collection.collect called when collection is 'not run'; it must be 'new'"),
], ids=["collect-twice", "swap-first", "swap-unsettled", "settle-twice", "swap-not-run", "collect-after-settle"])
def test_a_step_out_of_order_is_an_internal_error(steps: list[Any], message: str) -> None:
    collection = Collection(IllusionConfig(), NOTHING_NAMED)
    *before, last = steps
    for step in before:
        step(collection)
    stage = collection.stage
    with pytest.raises(CollectionOrderError, match=rf"^illusion-checks internal error: {message}$"):
        last(collection)
    assert collection.stage is stage  # a refused step changes nothing


def test_swapping_in_twice_is_an_internal_error() -> None:
    collection = _planned()
    session = _session([Mock(spec=GateCheck)])
    assert collection.settle(session)
    collection.swap_in(session, {}, [])
    with pytest.raises(CollectionOrderError, match="Collection.swap_in called when collection is 'swapped'"):
        collection.swap_in(session, {}, [])
