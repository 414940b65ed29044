"""A disk cache of per-model probe outcomes, keyed by a fingerprint of everything that shapes them."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable

from illusion_checks.results import write_json_atomic

CACHE_FORMAT = "illusion-checks/cache/v1"


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hash of a JSON-serialisable description."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class OutcomeCache:
    """Outcome lists stored as one JSON file per key; unreadable entries are recomputed."""

    def __init__(self, directory: str | Path | None, on_unreadable: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory) if directory else None
        # The plugin routes this to the terminal and pytest's warnings summary.
        self.on_unreadable = on_unreadable or (lambda message: warnings.warn(message, stacklevel=3))

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.json"

    def get(self, key: str, expected_ids: list[str]) -> list[dict[str, Any]] | None:
        """The cached outcomes for `key`, or None when absent, corrupt or for other items."""
        if self.directory is None or not self._path(key).is_file():
            return None
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            outcomes = entry["outcomes"]
            ok = entry.get("format") == CACHE_FORMAT and entry.get("ids") == expected_ids
            ok = ok and isinstance(outcomes, list) and len(outcomes) == len(expected_ids)
            ok = ok and all(isinstance(o, dict) and "ff" in o and "mc" in o for o in outcomes)
        except (OSError, ValueError, KeyError, TypeError) as error:
            ok, outcomes = False, None
            reason = f"{type(error).__name__}: {error}"
        else:
            reason = "its contents do not match the items being evaluated"
        if not ok:
            self.on_unreadable(f"illusion-checks: cache entry {path} is unreadable ({reason}); recomputing it")
            return None
        return outcomes

    def put(self, key: str, ids: list[str], outcomes: list[dict[str, Any]], description: dict[str, Any]) -> None:
        """Store atomically: a crash leaves the old entry or none, never half of one."""
        if self.directory is None:
            return
        entry = {"format": CACHE_FORMAT, "key": description, "ids": ids, "outcomes": outcomes}
        write_json_atomic(self._path(key), entry)
