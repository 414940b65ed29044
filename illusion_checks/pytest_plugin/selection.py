"""Which generated tests could run, and which the command line names, known before any model answers.

The generated tests live under a virtual `illusion/` folder at the rootdir. pytest resolves its
positional arguments as paths, so the node ids it prints for them (`illusion/sw::dissociation`,
`illusion/en/en-007::produces`) or their prefixes (`illusion/sw`, `illusion`) are taken out of the
arguments here and name those tests. A node id of another test (`tests/test_x.py::test_y`) names
that test only, as in any pytest run: then no generated test runs unless it is named too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from illusion_checks.datasets import load_dataset, sample_items, select_langs
from illusion_checks.gates import DEFAULT_KEY, FF_DROP, METRICS, OVERALL
from illusion_checks.spec import EvaluationSpec, GateSpec

ROOT = "illusion"


@dataclass(frozen=True)
class Named:
    """The generated tests a command line asks for: all of them, or those under `prefixes` (none if empty)."""

    prefixes: tuple[str, ...] = ()
    everything: bool = True

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.prefixes

    def __contains__(self, nodeid: str) -> bool:
        return self.everything or any(_under(nodeid, prefix) for prefix in self.prefixes)

    def unmatched(self, nodeids: list[str]) -> list[str]:
        """The prefixes that name none of these node ids (a typo, or a language the run lacks)."""
        return [prefix for prefix in self.prefixes if not any(_under(nodeid, prefix) for nodeid in nodeids)]


def _under(nodeid: str, prefix: str) -> bool:
    # A prefix names itself and what lies below it, like a folder or a file in a node id; the root
    # `illusion` also names every spec's tests of a sweep (`illusion[wanda:0.5]/...`).
    below = (prefix + "::", prefix + "/") + ((ROOT + "[",) if prefix == ROOT else ())
    return nodeid == prefix or nodeid.startswith(below)


def is_generated_node_id(arg: str, invocation_dir: Path) -> bool:
    """`illusion`, `illusion/...`, `illusion::...` or a sweep's `illusion[SPEC]...`, unless a real path of
    that name exists."""
    path = arg.split("::", 1)[0].rstrip("/")
    return (path == ROOT or path.startswith((ROOT + "/", ROOT + "["))) and not (invocation_dir / path).exists()


def split_args(args: list[str], invocation_dir: Path) -> tuple[list[str], Named]:
    """pytest's positional arguments without the generated tests' node ids, and the generated tests they name."""
    kept = [arg for arg in args if not is_generated_node_id(arg, invocation_dir)]
    prefixes = tuple(arg.rstrip("/") for arg in args if is_generated_node_id(arg, invocation_dir))
    if prefixes:
        return kept, Named(prefixes, everything=False)
    return kept, Named(everything=not any("::" in arg for arg in kept))


@dataclass(frozen=True)
class Plan:
    """Every generated test that could exist before the models answer: three checks for each evaluated
    item (only the reference-both-correct ones will be real) and each gate."""

    items: tuple[tuple[str, str], ...]  # (lang, item id), sorted
    gates: tuple[tuple[str, tuple[str, ...]], ...]  # (lang or overall, metric names)


def plan_tests(spec: EvaluationSpec, gates: GateSpec = GateSpec()) -> Plan:
    """The plan for this evaluation and these gates; reads the data set, loads no model (and imports no torch)."""
    langs = list(spec.langs) if spec.langs else None
    dataset = load_dataset(spec.dataset, langs)
    chosen = select_langs(dataset, langs)
    # The same choice as probing.prepare_items makes (tests/test_selection.py holds them equal).
    items = sorted((lang, item.id) for lang in chosen for item in sample_items(dataset.by_lang[lang], spec.items, spec.seed))
    thresholds = {"dissociation": gates.max_dissociation, "delta_pr": gates.max_delta_pr, "retention": gates.min_retention}
    # A gate on a language the run lacks is collected too (it fails, naming the language).
    missing = sorted({lang for spec in thresholds.values() for lang in spec or ()} - {DEFAULT_KEY, OVERALL} - set(chosen))
    metrics = (*METRICS, FF_DROP) if gates.gate_on == "mcnemar" else tuple(METRICS)  # mcnemar: every language
    planned = [(lang, metrics) for lang in chosen]
    planned += [(lang, tuple(m for m in METRICS if lang in (thresholds[m] or ()))) for lang in missing]
    return Plan(tuple(items), (*sorted(planned), (OVERALL, metrics)))
