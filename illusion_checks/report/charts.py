"""Generic chart geometry: grouped bars, 100% stacked rows and point-with-interval rows.

Each builder takes plain numbers and returns an `svg.Chart`; `figures.py` and `sweep.py`
decide what to plot. Value labels carry `data-metric` / `data-lang` attributes so tests (and
curious readers) can check every number on a chart against the results JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import illusion_checks.report.svg as svg
from illusion_checks.report.formats import NA

Fmt = Callable[[float | None], str]
Data = Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Series:
    """One bar series (or stack segment): its legend label and css class."""

    label: str
    cls: str


def grouped_bars(chart_id: str, title: str, groups: Sequence[str], series: Sequence[Series],
                 values: Sequence[Sequence[float | None]], fmt: Fmt, *,
                 data: Sequence[Sequence[Data]] | None = None, notes: Sequence[str] = (),
                 domain: tuple[float, float] | None = None, tick_fmt: Fmt | None = None,
                 bar_width: float = 20, height: float = 220, show_values: bool = True,
                 caption: str = "") -> svg.Chart:
    """Vertical bars, one cluster per group; bars grow up or down from zero."""
    left, top, bottom, group_gap = 46.0, 16.0, 36.0 if notes else 24.0, 18.0
    group_w = bar_width * len(series) + group_gap
    width = left + group_w * len(groups) + 8
    flat = [v for row in values for v in row if v is not None]
    if domain is None:
        lo, hi, step = svg.nice_domain(flat)
    else:
        lo, hi = domain
        step = (hi - lo) / 4
    y = svg.Scale(lo, hi, height - bottom, top)
    tick_fmt = tick_fmt or fmt
    marks: list[svg.Mark] = []
    for t in svg.ticks(lo, hi, step):
        marks.append(svg.line(left, y(t), width - 8, y(t), "grid"))
        marks.append(svg.text(left - 4, y(t) + 3, tick_fmt(t), "tick", "end"))
    for g, group in enumerate(groups):
        x0 = left + g * group_w + group_gap / 2
        for s, ser in enumerate(series):
            v = values[g][s]
            x = x0 + s * bar_width
            label_data = data[g][s] if data else {}
            if v is None:
                marks.append(svg.text(x + bar_width / 2, y(0) - 3, NA, "val muted", data=label_data))
                continue
            marks.append(svg.rect(x + 1, y(0), bar_width - 2, y(v) - y(0), ser.cls,
                                  f"{group} · {ser.label}: {fmt(v)}"))
            if show_values:
                ly = y(v) - 3 if v >= 0 else y(v) + 10
                marks.append(svg.text(x + bar_width / 2, ly, fmt(v), "val", data=label_data))
        marks.append(svg.text(x0 + bar_width * len(series) / 2, height - bottom + 14, group, "group"))
        if notes:
            marks.append(svg.text(x0 + bar_width * len(series) / 2, height - bottom + 27, notes[g], "note"))
    marks.append(svg.line(left, y(0), width - 8, y(0), "axis"))
    legend = tuple((s.label, s.cls) for s in series)
    return svg.Chart(chart_id, title, width, height, tuple(marks), legend, caption)


@dataclasses.dataclass(frozen=True)
class StackRow:
    """One 100% stacked bar: segment counts in `Series` order, and an optional highlighted label."""

    label: str
    counts: Sequence[int]
    highlight: int | None = None  # index of the segment whose share is labelled
    highlight_text: str = ""
    highlight_data: Data = dataclasses.field(default_factory=dict)
    empty_text: str = "no items"


def stacked_rows(chart_id: str, title: str, series: Sequence[Series], rows: Sequence[StackRow], *,
                 width: float = 760, row_h: float = 26, caption: str = "") -> svg.Chart:
    """Horizontal 100% stacked bars, one per row, with counts in wide segments."""
    left, right, top = 96.0, 104.0, 8.0
    x = svg.Scale(0, 1, left, width - right)
    marks: list[svg.Mark] = []
    for r, row in enumerate(rows):
        y0 = top + r * (row_h + 8)
        mid = y0 + row_h / 2 + 4
        total = sum(row.counts)
        marks.append(svg.text(left - 6, mid, row.label, "group", "end"))
        marks.append(svg.text(width - right + 6, mid, f"n={total}", "note", "start"))
        if total == 0:
            marks.append(svg.text(left + 4, mid, row.empty_text, "val muted", "start"))
            if row.highlight is not None:
                marks.append(svg.text(width - right + 56, mid, row.highlight_text, "val", "start",
                                      row.highlight_data))
            continue
        start = 0
        labelled = row.highlight is None
        for s, (ser, count) in enumerate(zip(series, row.counts)):
            x0, x1 = x(start / total), x((start + count) / total)
            start += count
            if count == 0:
                continue
            marks.append(svg.rect(x0, y0, x1 - x0, row_h, ser.cls,
                                  f"{row.label} · {ser.label}: {count} of {total}"))
            if s == row.highlight and x1 - x0 >= 8 * len(row.highlight_text) + 6:
                marks.append(svg.text((x0 + x1) / 2, mid, row.highlight_text, "val on-bar", "middle",
                                      row.highlight_data))
                labelled = True
            elif s != row.highlight and x1 - x0 >= 22:
                marks.append(svg.text((x0 + x1) / 2, mid, str(count), "count on-bar"))
        if not labelled:
            # Too narrow (or empty) a segment: the share goes right of the bar, after n.
            marks.append(svg.text(width - right + 56, mid, row.highlight_text, "val", "start",
                                  row.highlight_data))
    height = top + len(rows) * (row_h + 8) + 4
    legend = tuple((s.label, s.cls) for s in series)
    return svg.Chart(chart_id, title, width, height, tuple(marks), legend, caption)


@dataclasses.dataclass(frozen=True)
class IntervalRow:
    """A point estimate with its 95% interval."""

    label: str
    value: float | None
    ci: Sequence[float] | None
    data: Data = dataclasses.field(default_factory=dict)
    emphasis: bool = False


def interval_rows(chart_id: str, title: str, rows: Sequence[IntervalRow], fmt: Fmt, *,
                  width: float = 520, row_h: float = 22, domain: tuple[float, float] | None = None,
                  caption: str = "") -> svg.Chart:
    """Dot-and-whisker rows sharing one x axis, with the value written to the right."""
    # The label column fits the longest label (about 6.5 px per character at 11 px).
    left = max(56.0, 6.5 * max((len(r.label) for r in rows), default=0) + 14)
    right, top, bottom = 84.0, 8.0, 22.0
    width += left - 56.0
    flat = [v for row in rows for v in (row.value, *(row.ci or ())) if v is not None]
    if domain is None:
        lo, hi, step = svg.nice_domain(flat, ceil=0.1)
    else:
        lo, hi = domain
        step = (hi - lo) / 4
    height = top + len(rows) * row_h + bottom
    x = svg.Scale(lo, hi, left, width - right)
    marks: list[svg.Mark] = []
    for t in svg.ticks(lo, hi, step):
        marks.append(svg.line(x(t), top, x(t), height - bottom, "axis" if t == 0 else "grid"))
        marks.append(svg.text(x(t), height - bottom + 13, fmt(t), "tick"))
    for r, row in enumerate(rows):
        cy = top + r * row_h + row_h / 2
        marks.append(svg.text(left - 6, cy + 4, row.label, "group strong" if row.emphasis else "group", "end"))
        marks.append(svg.text(width - right + 6, cy + 4, fmt(row.value), "val", "start", row.data))
        if row.value is None:
            continue
        if row.ci is not None:
            marks.append(svg.line(x(row.ci[0]), cy, x(row.ci[1]), cy, "whisker"))
            for end in row.ci:
                marks.append(svg.line(x(end), cy - 4, x(end), cy + 4, "whisker"))
        tip = f"{row.label}: {fmt(row.value)}"
        if row.ci is not None:
            tip += f", 95% CI [{fmt(row.ci[0])}, {fmt(row.ci[1])}]"
        marks.append(svg.circle(x(row.value), cy, 4.5 if row.emphasis else 3.5, "point", tip))
    return svg.Chart(chart_id, title, width, height, tuple(marks), (), caption)
