"""SVG building blocks: marks, a chart record and a linear scale; the template only draws them."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping

_DATA_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
# Attribute names are written unescaped by the template, so only these geometry and styling
# names pass: never an event handler (`onload`), `href` or `style`.
KINDS = ("rect", "line", "text", "circle")
ATTRIBUTES = frozenset({"x", "y", "width", "height", "x1", "y1", "x2", "y2", "cx", "cy", "r", "class",
                        "text-anchor"})


@dataclasses.dataclass(frozen=True)
class Mark:
    """One SVG element: `kind` is the tag, `text` its text (or <title> tooltip), `data` data-* attributes."""

    kind: str
    attrs: Mapping[str, str | float]
    text: str = ""
    data: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Mark kind must be one of {', '.join(KINDS)}, but is {self.kind!r}")
        for name in self.attrs:
            if name not in ATTRIBUTES:
                raise ValueError(f"Mark attribute {name!r} is not allowed on <{self.kind}>; "
                                 f"allowed: {', '.join(sorted(ATTRIBUTES))}")
        for name in self.data:
            if not _DATA_KEY.match(name):
                raise ValueError(f"Mark data key {name!r} must be lowercase letters, digits and '-', "
                                 "starting with a letter")


@dataclasses.dataclass(frozen=True)
class Chart:
    """A titled SVG drawing with an HTML legend of (label, css class) pairs."""

    id: str
    title: str
    width: float
    height: float
    marks: tuple[Mark, ...]
    legend: tuple[tuple[str, str], ...] = ()
    caption: str = ""


def _r(v: float) -> float:
    return round(v, 1)


def rect(x: float, y: float, w: float, h: float, cls: str, title: str = "",
         data: Mapping[str, str] | None = None) -> Mark:
    """A rectangle; negative heights/widths are normalised so bars may grow either way."""
    if w < 0:
        x, w = x + w, -w
    if h < 0:
        y, h = y + h, -h
    return Mark("rect", {"x": _r(x), "y": _r(y), "width": _r(w), "height": _r(h), "class": cls},
                title, data or {})


def line(x1: float, y1: float, x2: float, y2: float, cls: str) -> Mark:
    """A straight line (axes, gridlines, whiskers)."""
    return Mark("line", {"x1": _r(x1), "y1": _r(y1), "x2": _r(x2), "y2": _r(y2), "class": cls})


def text(x: float, y: float, s: str, cls: str = "", anchor: str = "middle",
         data: Mapping[str, str] | None = None) -> Mark:
    """A text label; `cls` picks the font style in report.css."""
    attrs: dict[str, str | float] = {"x": _r(x), "y": _r(y), "text-anchor": anchor}
    if cls:
        attrs["class"] = cls
    return Mark("text", attrs, s, data or {})


def circle(cx: float, cy: float, r: float, cls: str, title: str = "") -> Mark:
    """A dot (point estimates)."""
    return Mark("circle", {"cx": _r(cx), "cy": _r(cy), "r": r, "class": cls}, title)


@dataclasses.dataclass(frozen=True)
class Scale:
    """Maps [lo, hi] linearly onto [start, end] pixels."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, v: float) -> float:
        span = self.hi - self.lo or 1.0
        return self.start + (v - self.lo) / span * (self.end - self.start)


def nice_domain(values: list[float], floor: float = 0.0, ceil: float = 0.1) -> tuple[float, float, float]:
    """(lo, hi, step) covering `values`, 0 and [floor, ceil], with a round tick step."""
    lo = min([floor, 0.0, *values])
    hi = max([ceil, 0.0, *values])
    raw = (hi - lo) / 4 or 1.0
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return (round(math.floor(lo / step + 1e-9) * step, 10), round(math.ceil(hi / step - 1e-9) * step, 10),
            step)


def ticks(lo: float, hi: float, step: float) -> list[float]:
    """Tick values from lo to hi inclusive."""
    n = round((hi - lo) / step)
    return [round(lo + i * step, 10) for i in range(n + 1)]
