"""Item data for the in-page explorer, embedded as inert JSON that no model output can break out of."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

# JSON is valid JS, but inside <script> the HTML parser only looks for "</script" and "<!--";
# escaping <, > and & as \u escapes makes that impossible. U+2028/2029 are escaped too, since
# older JS engines treat them as line terminators inside string literals.
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TRANSLATION = str.maketrans(_ESCAPES)


def _finite(value: Any) -> Any:
    """Non-finite floats (a -inf log-prob) become strings: JSON.parse rejects Infinity and NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return "-∞" if value < 0 else ("∞" if value > 0 else "NaN")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def script_json(data: Any) -> Markup:
    """`data` as JSON safe to place verbatim inside <script type="application/json">."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.translate(_TRANSLATION))


# The fields the explorer shows; everything else in an item (none today) stays out of the page.
_ITEM_FIELDS = ("id", "lang", "question", "context", "gold", "options", "gold_index",
                "both_correct", "fate", "reference", "compressed")


def explorer_data(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The explorer's payload: the items as in the results file, restricted to shown fields."""
    return {"items": [{**{k: it[k] for k in _ITEM_FIELDS}, "aliases": list(it.get("aliases") or [])}
                      for it in items]}
