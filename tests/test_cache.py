"""The outcome cache: entries round-trip, and an entry that is unreadable, stale or edited is recomputed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from illusion_checks.cache import OutcomeCache, cache_key
from tests.helpers.synth import make_results

KEY = cache_key({"role": "reference", "model": "tiny"})


@pytest.fixture
def outcomes() -> list[dict[str, Any]]:
    """Three items' reference outcomes, the first one both-correct (so its fate can be edited)."""
    items = sorted(make_results(["en"], 8, 1, n_resamples=0, gates=False)["items"], key=lambda i: not i["both_correct"])
    return [item["reference"] for item in items[:3]]


def stored(tmp_path: Path, outcomes: list[dict[str, Any]]) -> tuple[OutcomeCache, list[str], Path, list[str]]:
    """A cache with one entry for ids a, b, c, its path, and the list its warnings land in."""
    warnings: list[str] = []
    cache = OutcomeCache(tmp_path, on_unreadable=warnings.append)
    ids = ["a", "b", "c"]
    cache.put(KEY, ids, outcomes, {"role": "reference"})
    return cache, ids, tmp_path / f"{KEY}.json", warnings


def test_an_entry_round_trips_with_its_content_hash(tmp_path: Path, outcomes: list) -> None:
    cache, ids, path, warnings = stored(tmp_path, outcomes)
    assert cache.get(KEY, ids) == outcomes
    assert json.loads(path.read_text())["sha256"].startswith("sha256:")
    assert warnings == []
    assert cache.get(KEY, ["a", "b"]) is None  # other items: recomputed, with a warning
    assert "do not match the items being evaluated" in warnings[0]


def edit_fate(entry: dict) -> None:
    # The both-correct item's FF and MC both flip: its fate goes from kept to lost (or back).
    first = entry["outcomes"][0]
    first["ff"]["correct"] = not first["ff"]["correct"]
    first["mc"]["correct"] = not first["mc"]["correct"]


def edit_ff(entry: dict) -> None:
    entry["outcomes"][2]["ff"]["correct"] = not entry["outcomes"][2]["ff"]["correct"]


def drop_hash(entry: dict) -> None:
    del entry["sha256"]


@pytest.mark.parametrize("edit, reason", [
    (edit_fate, "its content hash does not match its outcomes: it was edited after it was written"),
    (edit_ff, "its content hash does not match its outcomes: it was edited after it was written"),
    (drop_hash, "it has no content hash"),
], ids=["fate", "ff.correct", "no-hash"])
def test_an_edited_entry_warns_and_is_recomputed(tmp_path: Path, outcomes: list, edit: Callable[[dict], None],
                                                 reason: str) -> None:
    cache, ids, path, warnings = stored(tmp_path, outcomes)
    entry = json.loads(path.read_text())
    edit(entry)
    path.write_text(json.dumps(entry, indent=2))  # still valid JSON, re-indented as an editor would
    assert cache.get(KEY, ids) is None
    assert warnings == [f"illusion-checks: cache entry {path} is unreadable ({reason}); recomputing it"]


def test_a_reformatted_but_unedited_entry_is_still_used(tmp_path: Path, outcomes: list) -> None:
    cache, ids, path, warnings = stored(tmp_path, outcomes)
    path.write_text(json.dumps(json.loads(path.read_text()), indent=1, sort_keys=True))
    assert cache.get(KEY, ids) == outcomes and warnings == []


def test_the_cache_root_expands_a_home_directory(monkeypatch, tmp_path) -> None:
    from illusion_checks.cache import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ILLUSION_CHECKS_CACHE", "~/ci-cache")  # as a CI file's `variables:` may set it
    assert cache_root() == tmp_path / "ci-cache"
    monkeypatch.delenv("ILLUSION_CHECKS_CACHE")
    assert cache_root() == tmp_path / ".cache" / "illusion-checks"
