"""The collected tests: per-item checks (produces / recognizes / reaches) and per-language gates."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import pytest

from illusion_checks.gates import Gate

ITEM_CHECKS = ("produces", "recognizes", "reaches")
GATE_NAMES = ("dissociation", "delta_pr", "retention")
GATE_OPTIONS = {"dissociation": "--illusion-max-dissociation", "delta_pr": "--illusion-max-delta-pr",
                "retention": "--illusion-min-retention"}


class IllusionCheckFailure(Exception):
    """An item check or gate failed; its message is the diagnosis."""


class IllusionGroup(pytest.Collector):
    """A node named like a path (`illusion/<lang>/<item-id>` or `illusion/<lang>`)."""

    def __init__(self, *, children: list[tuple[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._children = children

    def collect(self) -> list[pytest.Item]:
        return [cls.from_parent(self, name=name, **kw) for name, (cls, kw) in self._children]


class _IllusionTest(pytest.Item):
    """A generated test: its failure text is the diagnosis, never a traceback into the plugin."""

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, IllusionCheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return self.nodeid.split("::")[0], None, self.nodeid


class ItemCheck(_IllusionTest):
    """Does the compressed model still produce / recognize / reach this reference-both-correct item?"""

    def __init__(self, *, item: Mapping[str, Any], check: str, policy: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item, self.check, self.policy = item, check, policy
        self.add_marker(pytest.mark.illusion)

    def runtest(self) -> None:
        comp = self.item["compressed"]
        if self.check == "reaches" and comp["beam"] is None and comp["sample"] is None and not comp["ff"]["correct"]:
            pytest.skip("reachability was not probed (--illusion-no-reachability)")
        passed = {
            "produces": comp["ff"]["correct"],
            "recognizes": comp["mc"]["correct"],
            "reaches": bool(comp["ff"]["correct"] or (comp["beam"] or {}).get("reached")
                            or (comp["sample"] or {}).get("reached")),
        }[self.check]
        self.user_properties.append(("fate", self.item["fate"]))
        if passed:
            return
        message = diagnosis(self.item, self.check)
        if self.policy == "xfail":
            pytest.xfail(message)
        raise IllusionCheckFailure(message)


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def diagnosis(item: Mapping[str, Any], check: str) -> str:
    """One line that reads like a diagnosis in `-rx`: fate, gold rank before/after, the output."""
    ref, comp = item["reference"], item["compressed"]
    verb = {"produces": "no longer produces", "recognizes": "no longer recognizes", "reaches": "no longer reaches"}[check]
    detail = f"fate={item['fate']} gold={_clip(item['gold'], 40)} rank {ref['gold_rank']}->{comp['gold_rank']}"
    if check == "recognizes":
        chosen = item["options"][comp["mc"]["choice"]]
        return f"{verb} the gold: {detail}; MC picks {_clip(chosen, 40)}"
    return f"{verb} the gold: {detail}; compressed FF says {_clip(comp['ff']['output'])}"


class GateCheck(_IllusionTest):
    """One gate: a metric for one language (or overall) against its threshold."""

    def __init__(self, *, gate: Gate | None, metric: str, lang: str, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate, self.metric, self.lang, self.value = gate, metric, lang, value
        self.add_marker(pytest.mark.illusion)
        self.user_properties.append((f"{metric}[{lang}]", value))
        if gate is not None:
            self.user_properties.extend([("threshold", gate.threshold), ("compared", gate.compared),
                                         ("passed", gate.passed)])

    def runtest(self) -> None:
        if self.gate is None:
            pytest.skip(f"{self.metric}[{self.lang}] = {_fmt(self.value)}: no threshold set ({GATE_OPTIONS[self.metric]})")
        if not self.gate.passed:
            raise IllusionCheckFailure(self.gate.describe())  # describe() carries the reason when undefined


def _fmt(value: Any) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def build_groups(session: pytest.Session, results: Mapping[str, Any], gates: list[Gate],
                 policy: str) -> Iterator[IllusionGroup]:
    """Every illusion collector, in a stable sorted order (identical on every xdist worker)."""
    summary = results["summary"]
    by_key = {(g.name, g.lang): g for g in gates}
    if policy != "off":
        for item in sorted(results["items"], key=lambda i: (i["lang"], i["id"])):
            if not item["both_correct"]:
                continue
            children = [(check, (ItemCheck, {"item": item, "check": check, "policy": policy})) for check in ITEM_CHECKS]
            name = f"illusion/{item['lang']}/{item['id']}"
            yield IllusionGroup.from_parent(session, name=name, nodeid=name, children=children)
    for lang in [*sorted(summary["per_language"]), "overall"]:
        block = summary["overall"] if lang == "overall" else summary["per_language"][lang]
        children = [(metric, (GateCheck, {"gate": by_key.get((metric, lang)), "metric": metric, "lang": lang,
                                          "value": block.get("dissociation_rate" if metric == "dissociation" else metric)}))
                    for metric in GATE_NAMES]
        name = f"illusion/{lang}"
        yield IllusionGroup.from_parent(session, name=name, nodeid=name, children=children)
