"""The collected tests: per-item checks (produces / recognizes / reaches) and per-language gates."""

from __future__ import annotations

import itertools
import re
from typing import Any, Iterable, Iterator, Mapping

import pytest

from illusion_checks.gates import FF_DROP, METRICS, OVERALL, Gate
from illusion_checks.results import is_multi_run, run_label, runs_of

ITEM_CHECKS = ("produces", "recognizes", "reaches")
# Characters a node name cannot hold as text: "::" and "[" are pytest's node-id syntax, "/" our
# path separator, and control characters would garble the terminal and JUnit XML.
_NOT_IN_NODE_NAMES = re.compile(r"[:\[\]/\\\x00-\x1f\x7f-\x9f]")


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
        # An expected failure is its message too: pytest would format a traceback for each one and
        # throw it away (0.2 s apiece, most of a cached re-run's time).
        if isinstance(excinfo.value, (IllusionCheckFailure, pytest.xfail.Exception)):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return self.nodeid.split("::")[0], None, self.nodeid


class ItemCheck(_IllusionTest):
    """Does the compressed model still produce / recognize / reach this reference-both-correct item?"""

    def __init__(self, *, item: Mapping[str, Any], check: str, policy: str, renamed: bool, spec: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item, self.check, self.policy, self.renamed, self.spec = item, check, policy, renamed, spec
        self.add_marker(pytest.mark.illusion)
        self.user_properties.append(("item_id", item["id"]))

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
        if self.renamed:  # the node name is not the id: say which item this is
            message += f"; item id {self.item['id']!r}"
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

    def __init__(self, *, gate: Gate | None, metric: str, lang: str, value: Any, spec: str | None = None,
                 as_result: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate, self.metric, self.lang, self.value = gate, metric, lang, value
        self.spec, self.as_result = spec, as_result  # as_result: a search level, where failing is the point
        self.add_marker(pytest.mark.illusion)
        self.user_properties.append((f"{metric}[{lang}]", value))
        if gate is not None:
            self.user_properties.extend([("threshold", gate.threshold), ("compared", gate.compared),
                                         ("passed", gate.passed)])

    def runtest(self) -> None:
        if self.gate is None:
            pytest.skip(f"{self.metric}[{self.lang}] = {_fmt(self.value)}: no threshold set ({METRICS[self.metric].option})")
        if not self.gate.passed:
            if self.as_result:
                pytest.xfail(f"{self.spec}: {self.gate.describe()} (a search level: its gates are results)")
            raise IllusionCheckFailure(self.gate.describe())  # describe() carries the reason when undefined


def _fmt(value: Any) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def node_names(keys: Iterable[str]) -> dict[str, str]:
    """A node name for each key (an item id or a language: user text), unique among these keys.

    Offending characters become "_"; a key that needs no change keeps its name, and a changed one
    that would collide gets the first free "-2", "-3", ... suffix.
    """
    keys = sorted(set(keys))
    names = {key: key for key in keys if not _NOT_IN_NODE_NAMES.search(key)}
    taken = set(names.values())
    for key in keys:
        if key in names:
            continue
        base = name = _NOT_IN_NODE_NAMES.sub("_", key)
        suffix = 2
        while name in taken:
            name, suffix = f"{base}-{suffix}", suffix + 1
        names[key] = name
        taken.add(name)
    return names


def build_groups(session: pytest.Session, results: Mapping[str, Any], gates: list[Gate],
                 policy: str, spec: str | None = None, as_result: bool = False) -> Iterator[IllusionGroup]:
    """Every illusion collector, in a stable sorted order (identical on every xdist worker).

    Every gate asked for is collected, also for a language the results lack (it fails, saying so).
    """
    per_language = results["summary"]["per_language"]
    by_key = {(g.name, g.lang): g for g in gates}
    langs = sorted(set(per_language) | {g.lang for g in gates if g.lang != OVERALL})
    lang_names = node_names([*langs, *(item["lang"] for item in results["items"])])
    lang_names[OVERALL] = OVERALL
    if policy != "off":
        both = sorted((i for i in results["items"] if i["both_correct"]), key=lambda i: (i["lang"], i["id"]))
        for lang, group in itertools.groupby(both, key=lambda i: i["lang"]):
            in_lang = list(group)
            id_names = node_names(item["id"] for item in in_lang)  # ids are unique within a language
            for item in in_lang:
                kw = {"item": item, "policy": policy, "renamed": id_names[item["id"]] != item["id"], "spec": spec}
                children = [(check, (ItemCheck, {**kw, "check": check})) for check in ITEM_CHECKS]
                name = f"{root(spec)}/{lang_names[lang]}/{id_names[item['id']]}"
                yield IllusionGroup.from_parent(session, name=name, nodeid=name, children=children)
    for lang in [*langs, OVERALL]:
        block = results["summary"]["overall"] if lang == OVERALL else per_language.get(lang)
        # A language missing from the results has only the gates asked for: each fails, naming it.
        metrics = [m for m in METRICS if block is not None or (m, lang) in by_key]
        metrics += [FF_DROP] if (FF_DROP, lang) in by_key else []  # --illusion-gate-on=mcnemar
        children = [(metric, (GateCheck, {"gate": by_key.get((metric, lang)), "metric": metric, "lang": lang,
                                          "value": _gate_value(by_key.get((metric, lang)), metric, block),
                                          "spec": spec, "as_result": as_result}))
                    for metric in metrics]
        name = f"{root(spec)}/{lang_names[lang]}"
        yield IllusionGroup.from_parent(session, name=name, nodeid=name, children=children)


def _gate_value(gate: Gate | None, metric: str, block: Mapping[str, Any] | None) -> Any:
    """The gated value (a JUnit property; the skip message of a metric without a threshold)."""
    return gate.value if gate is not None else (block or {}).get(METRICS[metric].value_key)


SEARCH = "search"


def root(spec: str | None) -> str:
    """The generated tests' root: `illusion`, or `illusion[wanda:0.5]` for one spec of a sweep."""
    return "illusion" if spec is None else f"illusion[{spec}]"


class SearchCheck(_IllusionTest):
    """Did the search find a level whose gates all pass? (`illusion[search]::best`)"""

    def __init__(self, *, search: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.search = search
        self.add_marker(pytest.mark.illusion)
        self.user_properties.append(("best", search.get("best")))

    def runtest(self) -> None:
        search = self.search
        if search.get("best") is None:
            ran = ", ".join(level["spec"] for level in search.get("levels", []))
            raise IllusionCheckFailure(f"no level of {search['method']}:{search['low']:g}..{search['high']:g} passes "
                                       f"its gates (levels run: {ran})")


def build_all_groups(session: pytest.Session, results: Mapping[str, Any], gates: list[Gate],
                     policy: str) -> Iterator[IllusionGroup]:
    """The groups of one run, or of every run of a sweep (`illusion[SPEC]/...`) or search (its levels'
    gates are results; item checks only for the chosen level; and `illusion[search]::best`)."""
    if not is_multi_run(results):
        yield from build_groups(session, results, gates, policy)
        return
    search = results.get("search")
    for run in runs_of(results):
        label = run_label(run)
        chosen = search is None or label == search.get("best")
        yield from build_groups(session, run, [Gate.from_dict(g) for g in run["gates"]], policy if chosen else "off",
                                spec=label, as_result=search is not None)
    if search is not None:
        yield IllusionGroup.from_parent(session, name=root(SEARCH), nodeid=root(SEARCH),
                                        children=[("best", (SearchCheck, {"search": search}))])


class PendingCheck(_IllusionTest):
    """A generated test that may exist once the results are known. It stands in for it while -k, -m
    and --lf deselect and --collect-only lists, and is swapped for the real test (or dropped, when
    the reference does not get the item right) before any test runs."""

    def __init__(self, *, key: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.add_marker(pytest.mark.illusion)

    def runtest(self) -> None:
        raise AssertionError(f"illusion-checks: the stand-in {self.nodeid} ran before the results were known")


def check_key(node: pytest.Item) -> tuple[Any, ...]:
    """What a generated test checks, the same for its stand-in: (spec, check, lang, item id) or
    (spec, metric, lang); the spec is None in a run of one spec, SEARCH for the search's verdict."""
    if isinstance(node, PendingCheck):
        return node.key
    if isinstance(node, ItemCheck):
        return (node.spec, node.check, node.item["lang"], node.item["id"])
    if isinstance(node, SearchCheck):
        return (SEARCH, "best")
    assert isinstance(node, GateCheck), node
    return (node.spec, node.metric, node.lang)


def build_pending_groups(session: pytest.Session, items: Iterable[tuple[str, str]],
                         gates: Iterable[tuple[str, Iterable[str]]], policy: str,
                         spec: str | None = None) -> Iterator[IllusionGroup]:
    """Stand-ins for every test that could exist (`selection.Plan`: each evaluated item's checks,
    each gate), named and ordered as build_groups names and orders the real ones."""
    items, gates = sorted(items), list(gates)
    lang_names = node_names([*(lang for lang, _ in gates if lang != OVERALL), *(lang for lang, _ in items)])
    lang_names[OVERALL] = OVERALL
    if policy != "off":
        for lang, in_lang in itertools.groupby(items, key=lambda pair: pair[0]):
            ids = [item_id for _, item_id in in_lang]
            id_names = node_names(ids)
            for item_id in ids:
                children = [(check, (PendingCheck, {"key": (spec, check, lang, item_id)})) for check in ITEM_CHECKS]
                name = f"{root(spec)}/{lang_names[lang]}/{id_names[item_id]}"
                yield IllusionGroup.from_parent(session, name=name, nodeid=name, children=children)
    for lang, metrics in gates:
        children = [(metric, (PendingCheck, {"key": (spec, metric, lang)})) for metric in metrics]
        name = f"{root(spec)}/{lang_names[lang]}"
        yield IllusionGroup.from_parent(session, name=name, nodeid=name, children=children)


def pending_search_group(session: pytest.Session) -> IllusionGroup:
    """The stand-in for the search's verdict: the levels it will run are not known before it runs."""
    name = root(SEARCH)
    return IllusionGroup.from_parent(session, name=name, nodeid=name,
                                     children=[("best", (PendingCheck, {"key": (SEARCH, "best")}))])
