"""What the `illusion_results` fixture hands user-written tests: a read-only view of the results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from illusion_checks.results import is_multi_run, primary_run, runs_of


@dataclass(frozen=True)
class IllusionResults:
    """What user-written tests get from the `illusion_results` fixture: one compressed run (of a sweep
    or search: the chosen level's, else the first spec's), every run, and the search."""

    raw: Mapping[str, Any]
    runs: tuple["IllusionResults", ...] = ()
    search: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, results: Mapping[str, Any]) -> "IllusionResults":
        if not is_multi_run(results):
            return cls(results, (cls(results),))
        return cls(primary_run(results)[0], tuple(cls(run) for run in runs_of(results)), results.get("search"))

    @property
    def items(self) -> list[Mapping[str, Any]]:
        return self.raw["items"]

    @property
    def summary(self) -> Mapping[str, Any]:
        return self.raw["summary"]

    @property
    def config(self) -> Mapping[str, Any]:
        return self.raw["config"]

    @property
    def gates(self) -> list[Mapping[str, Any]]:
        return self.raw.get("gates", [])

    def fates(self, lang: str | None = None) -> dict[str, int]:
        """Fate counts for one language, or overall."""
        block = self.summary["overall"] if lang is None else self.summary["per_language"][lang]
        return dict(block["fates"])

    def items_with_fate(self, fate: str, lang: str | None = None) -> list[Mapping[str, Any]]:
        """Both-correct items with this fate (optionally in one language)."""
        return [i for i in self.items if i["fate"] == fate and (lang is None or i["lang"] == lang)]
