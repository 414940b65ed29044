"""Plain-language findings derived from the numbers, for the top of the report.

"Demoted, not erased" is claimed only when the evidence supports it: the MC-only items' gold
first token still ranks near the top (paper Fig. 3: median 3.5 after pruning, versus 17 for
items the reference already failed) and beam search or sampling reaches a good share of them
(Sec. 3.4). Evidence pointing the other way says "erased"; mixed evidence says so. The rank is
read where the model's answer starts, so it is no evidence for a language whose correct answers
mostly do not begin with the gold (`rank_interpretable` false): there, recovery alone decides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.ranks import RANK_INTERPRETABLE_SHARE
from illusion_checks.report.formats import pct, rank, signed
from illusion_checks.report.item_stats import Recovery

# A median rank within the 5-8 bucket is still a near miss; from 17 on it is where the
# reference's own failures sit (Fig. 3).
DEMOTED_MAX_RANK = 8
ERASED_MIN_RANK = 17
# Share of MC-only items that beam-5 or 10 samples reach.
DEMOTED_MIN_RECOVERY = 0.4
ERASED_MAX_RECOVERY = 0.15
# A share of "lost in both formats" worth a sentence of its own.
NOTABLE_LOST = 0.10
# Fewer MC-only items (or probed MC-only items, for recovery) than this support no verdict.
MIN_ITEMS_FOR_VERDICT = 5

VERDICTS = {
    "demoted": "the answers are demoted, not erased.",
    "erased": "these answers look erased, not merely demoted.",
    "mixed": "some answers are demoted, others look lost.",
}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One language's sentence and its verdict: demoted, erased, mixed, none (no MC-only) or empty."""

    lang: str
    text: str
    verdict: str
    dissociation_rate: float | None


def _verdict(median_rank: float | None, recovery: float | None) -> str | None:
    """'demoted' / 'erased' when all available evidence agrees, 'mixed' otherwise, None without any."""
    says = []
    if median_rank is not None:
        says.append("near" if median_rank <= DEMOTED_MAX_RANK else
                    "far" if median_rank >= ERASED_MIN_RANK else "between")
    if recovery is not None:
        says.append("near" if recovery >= DEMOTED_MIN_RECOVERY else
                    "far" if recovery < ERASED_MAX_RECOVERY else "between")
    if not says:
        return None
    if all(s == "near" for s in says):
        return "demoted"
    if all(s == "far" for s in says):
        return "erased"
    return "mixed"


def rank_interpretable(s: Mapping[str, Any]) -> bool:
    """Whether a summary block's gold ranks may be read (true, or unknown in older results)."""
    return s.get("rank_interpretable") is not False


def rank_not_interpretable(lang: str, s: Mapping[str, Any], chat_template: bool = False) -> str:
    """Why `lang`'s gold rank is withheld, with each model's answer-start counts."""
    shares, silent = [], []
    for model, who in (("reference", "the reference"), ("compressed", "the compressed model")):
        block = s["answer_start"][model]
        if block["n_ff_correct"]:
            shares.append(f"{pct(block['share'])} ({block['n_begins_with_gold']} of {block['n_ff_correct']}) "
                          f"of {who}'s")
        else:
            silent.append(who)
    text = f"{lang}: the gold rank is not interpretable for this model and prompt: "
    if shares:
        text += (f"only {' and '.join(shares)} correct answers begin with the gold where the answer "
                 f"starts (at least {pct(RANK_INTERPRETABLE_SHARE)} needed)")
        text += f", and {' and '.join(silent)} produced no correct answer. " if silent else ". "
    else:
        text += "neither model produced a correct answer whose start could be checked. "
    return text + ("Try a 1-shot prompt." if chat_template else "Try --illusion-chat-template or a 1-shot prompt.")


def _evidence(rec: Recovery, median_rank: float | None, interpretable: bool = True) -> str:
    """'; beam-5 recovers 55% of them, 10-sample decoding 70%; their gold first token has median rank 3'."""
    parts = []
    if rec.beam is not None and rec.sample is not None:
        parts.append(f"beam-5 recovers {pct(rec.beam)} of them, 10-sample decoding {pct(rec.sample)}")
    elif rec.beam is not None:
        parts.append(f"beam-5 recovers {pct(rec.beam)} of them")
    elif rec.sample is not None:
        parts.append(f"10-sample decoding recovers {pct(rec.sample)} of them")
    if parts and _probed(rec) < rec.n_items:
        parts[-1] += f" (of the {_probed(rec)} probed)"
    if not interpretable:
        parts.append("their gold rank is not interpretable here (too few correct answers begin with "
                     "the gold where the answer starts)")
    elif median_rank is not None:
        parts.append(f"their gold first token has median rank {rank(median_rank)}")
    return "".join(f"; {p}" for p in parts)


def _probed(rec: Recovery) -> int:
    return max(rec.n_beam, rec.n_sample)


def language_finding(lang: str, s: Mapping[str, Any], rec: Recovery) -> Finding:
    """What compression did to one language's both-correct items, in one or two sentences."""
    n = s["n_both_correct"]
    if n == 0:
        return Finding(lang, f"{lang}: the reference answered no item correctly in both FF and MC, "
                             "so there are no fates to track.", "empty", None)
    fates = s["fates"]
    lost = fates["lost"] / n
    lost_text = f"{pct(lost)} of the {n} answers the reference produced are lost in both formats"
    if fates["mc_only"] == 0:
        if lost >= NOTABLE_LOST:
            text = f"{lang}: no answer became MC-only, but {lost_text}."
        else:
            text = (f"{lang}: no answer became MC-only; {pct(s['retention'])} of the {n} answers "
                    "the reference produced are still produced.")
        return Finding(lang, text, "none", s["dissociation_rate"])

    interpretable = rank_interpretable(s)
    median_rank = s["median_gold_rank"]["mc_only"] if interpretable else None
    # Recovery measured on a handful of probed items is printed but does not decide the verdict.
    recoveries = [r for r in (rec.beam, rec.sample) if r is not None]
    enough = recoveries and _probed(rec) >= MIN_ITEMS_FOR_VERDICT
    verdict = _verdict(median_rank, max(recoveries) if enough else None)
    text = (f"{lang}: {pct(s['dissociation_rate'])} of the answers the reference produced are now "
            f"MC-only ({fates['mc_only']} of {n}){_evidence(rec, median_rank, interpretable)}")
    if fates["mc_only"] < MIN_ITEMS_FOR_VERDICT:
        verdict = None
        text += ": too few to tell whether they are demoted or erased."
    elif verdict is None:
        text += "."
    else:
        text += f": {VERDICTS[verdict]}"
        if not recoveries:
            text = text[:-1] + " (beam search and sampling did not run to confirm)."
        elif not enough:
            text = text[:-1] + " (too few items were probed to confirm by search)."
    if lost >= NOTABLE_LOST:
        text += f" Another {pct(lost)} are lost in both formats."
    return Finding(lang, text, verdict or "unknown", s["dissociation_rate"])


def headline(summary: Mapping[str, Any], findings: Sequence[Finding], spec: str) -> list[str]:
    """Two to four sentences: the pooled dissociation, ΔPR's direction, the worst languages."""
    overall = summary["overall"]
    n = overall["n_both_correct"]
    where = f"in {findings[0].lang}" if len(findings) == 1 else f"across {len(findings)} languages"
    if n == 0:
        return [f"The reference answered no item correctly in both FF and MC {where}, "
                "so compression fates cannot be tracked."]
    out = [f"After {spec}, {pct(overall['dissociation_rate'])} of the {n:,} answers the reference both "
           f"produced and recognized ({where}) are MC-only: still picked from the options, "
           "no longer produced."]
    dpr, ci = overall["delta_pr"], overall["delta_pr_ci95"]
    if dpr is not None:
        sure = " (the 95% interval excludes 0)" if ci is not None and (ci[0] > 0 or ci[1] < 0) else ""
        if dpr > 0:
            out.append(f"ΔPR is {signed(dpr)}{sure}: open generation degrades more than MC scoring, "
                       "so an MC benchmark overstates this model.")
        else:
            out.append(f"ΔPR is {signed(dpr)}{sure}: MC scoring degrades as much as open generation, "
                       "so this looks like lost knowledge rather than an MC illusion.")
    if len(findings) > 1:
        worst = sorted((f for f in findings if f.verdict not in ("empty", "none")),
                       key=lambda f: -(f.dissociation_rate or 0.0))
        out += [f.text for f in worst[:2]]
    else:
        out.append(findings[0].text)
    return out
