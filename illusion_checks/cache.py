"""A disk cache of per-model probe outcomes, keyed by a fingerprint of everything that shapes them."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from illusion_checks.atomic import write_json_atomic

# v2: each entry carries the sha256 of its outcomes, so an entry edited after it was written is recomputed.
CACHE_FORMAT = "illusion-checks/cache/v2"


CACHE_ENV = "ILLUSION_CHECKS_CACHE"


def cache_root() -> Path:
    """The user cache: `$ILLUSION_CHECKS_CACHE` (`~` expanded: CI files set it unexpanded), default
    `~/.cache/illusion-checks`."""
    return Path(os.environ.get(CACHE_ENV, "~/.cache/illusion-checks")).expanduser()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def cache_key(parts: dict[str, Any]) -> str:
    """A stable hash of a JSON-serialisable description."""
    return hashlib.sha256(_canonical(parts).encode()).hexdigest()


def content_hash(outcomes: list[dict[str, Any]]) -> str:
    """`sha256:` and the hex digest of the outcomes' canonical JSON (sorted keys, independent of formatting)."""
    return "sha256:" + hashlib.sha256(_canonical(outcomes).encode()).hexdigest()


def _problem(entry: Any, expected_ids: list[str]) -> str | None:
    """Why an entry cannot be used for these items, or None when it can."""
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        found = entry.get("format") if isinstance(entry, dict) else None
        return f"format {found!r}, expected {CACHE_FORMAT!r}"
    outcomes = entry.get("outcomes")
    if (entry.get("ids") != expected_ids or not isinstance(outcomes, list) or len(outcomes) != len(expected_ids)
            or not all(isinstance(o, dict) and "ff" in o and "mc" in o for o in outcomes)):
        return "its contents do not match the items being evaluated"
    if "sha256" not in entry:
        return "it has no content hash"
    if entry["sha256"] != content_hash(outcomes):
        return "its content hash does not match its outcomes: it was edited after it was written"
    return None


class OutcomeCache:
    """Outcome lists stored as one JSON file per key; unreadable, stale or edited entries are recomputed."""

    def __init__(self, directory: str | Path | None, on_unreadable: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory) if directory else None
        # The plugin routes this to the terminal and pytest's warnings summary.
        self.on_unreadable = on_unreadable or (lambda message: warnings.warn(message, stacklevel=3))

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.json"

    def get(self, key: str, expected_ids: list[str]) -> list[dict[str, Any]] | None:
        """The cached outcomes for `key`, or None when absent, corrupt, edited or for other items."""
        if self.directory is None or not self._path(key).is_file():
            return None
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            reason: str | None = f"{type(error).__name__}: {error}"
        else:
            reason = _problem(entry, expected_ids)
        if reason is not None:
            self.on_unreadable(f"illusion-checks: cache entry {path} is unreadable ({reason}); recomputing it")
            return None
        return entry["outcomes"]

    def put(self, key: str, ids: list[str], outcomes: list[dict[str, Any]], description: dict[str, Any]) -> None:
        """Store atomically: a crash leaves the old entry or none, never half of one."""
        if self.directory is None:
            return
        # Hashed as it will be read back (tuples as lists, keys as strings), so an unedited entry verifies.
        read_back = json.loads(json.dumps(outcomes))
        entry = {"format": CACHE_FORMAT, "key": description, "ids": ids, "outcomes": outcomes,
                 "sha256": content_hash(read_back)}
        write_json_atomic(self._path(key), entry)
