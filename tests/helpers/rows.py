"""Hand-written result rows for the metrics tests: one model's outcome with only the fields the
metrics read, an item pairing two of them, and synthetic results read from a top-k server (ranks beyond
k censored)."""

from __future__ import annotations

from illusion_checks.metrics import summarize
from tests.helpers.synth import make_results

K = 20  # the top-k server's k

PROBES = ("ff", "cs", "mc", "one_shot", "zero_shot_short")


def outcome(ff: bool, mc: bool, *, cs: bool = False, one: bool = False, zss: bool = False,
            rank: int = 1, beam: bool | None = None, sample: bool | None = None) -> dict:
    """One model's outcome with only the fields metrics reads."""
    flags = {"ff": ff, "cs": cs, "mc": mc, "one_shot": one, "zero_shot_short": zss}
    out: dict = {p: {"correct": flags[p], "output": ""} for p in PROBES}
    out["gold_rank"] = rank
    out["beam"] = None if beam is None else {"reached": beam, "outputs": []}
    out["sample"] = None if sample is None else {"reached": sample, "outputs": []}
    return out


def item(lang: str, id_: str, ref: dict, comp: dict) -> dict:
    """An item carrying deliberately wrong stored fate fields (summarize must ignore them)."""
    return {"id": id_, "lang": lang, "reference": ref, "compressed": comp,
            "both_correct": False, "fate": "lost"}


def censor(out: dict, k: int = K) -> dict:
    """The outcome as a top-k server writes it when the gold is beyond its top k."""
    out["gold_rank"] = None
    out["gold_rank_above"] = k
    return out


def served_results(k: int = K, roles: tuple[str, ...] = ("compressed",)) -> dict:
    """Synthetic results whose `roles` were read from a top-k server: each of their ranks beyond k
    is censored, and the summary is recomputed from the items."""
    results = make_results(("en", "sw"), 60, n_resamples=20)
    for it in results["items"]:
        for role in roles:
            if it[role]["gold_rank"] is not None and it[role]["gold_rank"] > k:
                censor(it[role], k)
    results["summary"] = summarize(results["items"], n_resamples=20, seed=42)
    return results
