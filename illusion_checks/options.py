"""Option names: the one rule from a spec field to its `--illusion-*` command-line flag, on the bottom
floor so that every module whose errors name an option can use it."""

from __future__ import annotations

OPTION_PREFIX = "--illusion-"


def flag(name: str) -> str:
    """The command-line option of a field: `calibration_samples` -> `--illusion-calibration-samples`."""
    return OPTION_PREFIX + name.replace("_", "-")
