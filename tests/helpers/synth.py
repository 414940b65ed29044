"""Seeded synthetic results files (`illusion-checks/results/v1`) for tests that need no model.

`make_results()` draws items with realistic, language-dependent outcomes (the paper's pattern:
low-resource languages lose greedy production while keeping MC recognition, demoted answers
keep a small gold rank and are often reached by beam search or sampling), then fills
`summary` with `illusion_checks.metrics.summarize`, so the file is exactly what a real run
would write. `with_payloads()` plants hostile strings in every text field, for escaping tests.

Answer-start fields: most FF-correct answers begin with the gold (`ff.begins_with_gold`); those
that do not ("The answer is ...") have the gold ranked below 1 where the answer starts. A profile's
`begins_with_gold` lowers that share (the gold rank becomes uninterpretable below 50%), and
`has_exemplar=False` leaves a language without a 1-shot exemplar: `one_shot` is null and the
results carry a `one_shot` note, as a real run writes them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from illusion_checks.metrics import summarize
from illusion_checks.results import note

# The nine TyDiQA languages of the paper.
DEFAULT_LANGS = ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")


@dataclasses.dataclass(frozen=True)
class LangProfile:
    """How one language fares: reference accuracy and what compression does to it."""

    ref_ff: float  # reference greedy FF accuracy
    ref_mc: float  # reference MC accuracy
    dissociation: float  # P(mc_only | both-correct)
    lost: float  # P(lost | both-correct)
    produced_only: float = 0.03
    demoted_rank: float = 3.5  # median compressed gold rank of MC-only items
    recovery: float = 1.0  # scales how often beam/sampling reach a missed gold
    begins_with_gold: float = 0.9  # P(an FF-correct answer begins with the gold where it starts)
    has_exemplar: bool = True  # False: no item left for a 1-shot exemplar, so one_shot is null


PROFILES: dict[str, LangProfile] = {
    "ar": LangProfile(0.62, 0.90, 0.35, 0.05),
    "bn": LangProfile(0.40, 0.85, 0.50, 0.08, demoted_rank=6, recovery=0.35),
    "en": LangProfile(0.70, 0.94, 0.12, 0.02),
    "fi": LangProfile(0.60, 0.90, 0.22, 0.04),
    "id": LangProfile(0.66, 0.92, 0.18, 0.03),
    "ko": LangProfile(0.55, 0.88, 0.27, 0.05),
    "ru": LangProfile(0.58, 0.90, 0.34, 0.04),
    "sw": LangProfile(0.63, 0.88, 0.39, 0.05),
    "te": LangProfile(0.30, 0.80, 0.30, 0.20, demoted_rank=14, recovery=0.3),
}
_FALLBACK = LangProfile(0.6, 0.9, 0.25, 0.05)

# Letters per script, so passages exercise non-Latin rendering.
_SCRIPTS: dict[str, str] = {
    "ar": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "bn": "কখগঘচছজঝটঠডঢণতথদধনপফবভমযরলশষসহ",
    "ko": "가나다라마바사아자차카타파하고노도로모보소오조",
    "ru": "абвгдежзиклмнопрстуфхцчшщэюя",
    "te": "కఖగఘచఛజఝటఠడఢణతథదధనపఫబభమయరలవశషసహ",
}
_LATIN_SYLLABLES = ("ka", "mo", "ri", "ta", "le", "su", "na", "vi", "ko", "pe", "ja", "do", "mi")

XSS_PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "</textarea><svg onload=window.__pwned=1>",
    "\"'><img src=x onerror=window.__pwned=1>",
    "</script><script>window.__pwned=1</script>",
    "a\u2028b\u2029c & <b>bold</b>",
)


def _word(rng: random.Random, lang: str) -> str:
    if lang in _SCRIPTS:
        return "".join(rng.choice(_SCRIPTS[lang]) for _ in range(rng.randint(2, 6)))
    return "".join(rng.choice(_LATIN_SYLLABLES) for _ in range(rng.randint(1, 3)))


def _phrase(rng: random.Random, lang: str, n_words: int) -> str:
    return " ".join(_word(rng, lang) for _ in range(n_words))


def _rank(rng: random.Random, median: float) -> int:
    """A rank >= 2 drawn log-normally around `median` (demoted, not rank 1)."""
    return max(2, round(math.exp(rng.gauss(math.log(max(median, 2.0)), 0.7))))


def _search(rng: random.Random, correct: bool, rank: int, gold: str, wrong: str, n: int,
            recovery: float, spread: float) -> dict[str, Any]:
    """Beam or sample outputs: greedy successes are reached; failures by a rank-driven chance."""
    p_reach = 1.0 if correct else min(0.95, spread * recovery * rank ** -0.7)
    reached = rng.random() < p_reach
    outputs = [wrong if rng.random() < 0.5 else f"{wrong} {_word(rng, 'en')}" for _ in range(n)]
    if reached:
        outputs[rng.randrange(n)] = gold if rng.random() < 0.7 else f"{gold}."
    return {"reached": reached, "outputs": outputs}


def _gold_token(rng: random.Random, gold: str, produced: bool) -> dict[str, Any]:
    """The ranked token: the gold's first content token (a whitespace-free piece of its first
    word), after the model's own leading whitespace tokens, if any; `produced` when the model's
    answer began with the gold (its own token is ranked)."""
    text = gold.split()[0][:4]
    offset = rng.choices((0, 1, 2), weights=(6, 3, 1))[0]
    return {"id": zlib.crc32(text.encode("utf-8")) % 262_144, "text": text, "offset": offset,
            "conditioned_on": "".join(rng.choice((" ", "\n")) for _ in range(offset)),
            "source": "produced" if produced else "gold", "boundary_ok": rng.random() < 0.95}


def _outcome(rng: random.Random, lang: str, gold: str, options: list[str], gold_index: int,
             ff: bool, mc: bool, cs: bool, one_shot: bool | None, zero_shot_short: bool,
             rank: int, recovery: float, with_search: bool, begins: bool,
             gold_token: dict[str, Any], exemplar_id: str | None) -> dict[str, Any]:
    """One model's outcome on one item, consistent with the given correctness flags.

    `begins`: a correct FF answer starts with the gold ("Paris."), else it is restated ("The
    answer is Paris"). `one_shot` is None (and so is the outcome's `one_shot`) without an exemplar.
    """
    wrong_options = [o for i, o in enumerate(options) if i != gold_index]

    def answer(correct: bool, starts_with_gold: bool | None = None) -> str:
        if correct and starts_with_gold is not None:
            return rng.choice((gold, f"{gold}.")) if starts_with_gold else f"The answer is {gold}"
        if correct:
            return rng.choice((gold, f"{gold}.", f"The answer is {gold}"))
        return rng.choice((rng.choice(wrong_options), _phrase(rng, lang, rng.randint(1, 4))))

    choice = gold_index if mc else options.index(rng.choice(wrong_options))
    scores = [round(-rng.uniform(6.0, 18.0), 3) for _ in options]
    scores[choice] = round(max(scores) + rng.uniform(0.1, 3.0), 3)
    wrong = answer(False)
    ff_output = answer(ff, begins) if ff else wrong
    f1 = 1.0 if ff and ff_output == gold else (rng.uniform(0.4, 0.9) if ff else rng.uniform(0, 0.3))
    margin = rng.uniform(0.2, 4.0) if rank == 1 else -math.log(rank) * rng.uniform(0.3, 1.2)
    return {
        "ff": {"correct": ff, "output": ff_output, "f1": round(f1, 3), "em": ff and ff_output == gold,
               "begins_with_gold": ff and begins},
        "cs": {"correct": cs, "output": answer(cs)},
        "mc": {"correct": mc, "choice": choice, "scores": scores},
        "gold_rank": rank,
        "gold_margin": round(margin, 3),
        "gold_token": gold_token,
        "beam": _search(rng, ff, rank, gold, wrong, 5, recovery, 1.2) if with_search else None,
        "sample": _search(rng, ff, rank, gold, wrong, 10, recovery, 1.6) if with_search else None,
        "one_shot": None if one_shot is None else {
            "correct": one_shot, "output": answer(one_shot), "exemplar_id": exemplar_id,
            "exemplar_source": "dataset"},
        "zero_shot_short": {"correct": zero_shot_short, "output": answer(zero_shot_short)},
        "ablations": {},
    }


def _item(seed: int, lang: str, index: int, golds: list[str], profile: LangProfile,
          with_search: bool, exemplar_id: str | None) -> dict[str, Any]:
    # One RNG per role, so the text and the reference's outcome do not depend on how harsh the
    # compression is: a sweep over `severity` shares its reference, as a real sweep would.
    # Answer-start draws (begins with the gold, the ranked token) have streams of their own.
    text_rng, ref_rng, comp_rng, ref_start, comp_start = (
        random.Random(f"{seed}:{lang}:{index}:{role}")
        for role in ("text", "reference", "compressed", "reference:start", "compressed:start"))
    gold = golds[index]
    options = [gold, *text_rng.sample([g for g in golds if g != gold], 3)]
    text_rng.shuffle(options)
    gold_index = options.index(gold)
    sentences = [_phrase(text_rng, lang, text_rng.randint(6, 14)) for _ in range(text_rng.randint(3, 7))]
    sentences.insert(text_rng.randrange(len(sentences)),
                     f"{_phrase(text_rng, lang, 3)} {gold} {_word(text_rng, lang)}")

    # Reference: FF correct with the profile's accuracy, MC mostly correct when FF is.
    ref_ff = ref_rng.random() < profile.ref_ff
    ref_mc = ref_rng.random() < (0.97 if ref_ff else profile.ref_mc - 0.1)
    ref_cs = ref_rng.random() < min(0.97, profile.ref_ff + 0.2)
    ref_one = ref_rng.random() < min(0.95, profile.ref_ff + 0.08)
    ref_zero = ref_ff if ref_rng.random() < 0.9 else not ref_ff
    ref_rank = 1 if ref_ff else _rank(ref_rng, 17)
    # A restated answer ("The answer is ...") does not start with the gold: ranked lower there.
    ref_begins = ref_ff and ref_start.random() < profile.begins_with_gold
    if ref_ff and not ref_begins:
        ref_rank = _rank(ref_start, 4)
    reference = _outcome(ref_rng, lang, gold, options, gold_index, ref_ff, ref_mc, ref_cs,
                         ref_one if profile.has_exemplar else None, ref_zero, ref_rank, 1.0, with_search,
                         ref_begins, _gold_token(ref_start, gold, ref_begins), exemplar_id)

    both = ref_ff and ref_mc
    fate = None
    if both:
        fate = comp_rng.choices(("kept", "mc_only", "produced_only", "lost"), weights=(
            1 - profile.dissociation - profile.lost - profile.produced_only,
            profile.dissociation, profile.produced_only, profile.lost))[0]
        comp_ff = fate in ("kept", "produced_only")
        comp_mc = fate in ("kept", "mc_only")
    else:
        comp_ff = ref_ff and comp_rng.random() < 0.7
        comp_mc = comp_rng.random() < (0.9 if ref_mc else 0.15)
    comp_begins = comp_ff and comp_start.random() < profile.begins_with_gold
    if comp_ff:
        comp_rank = 1 if comp_begins else _rank(comp_start, 4)
    elif fate == "mc_only":
        comp_rank = _rank(comp_rng, profile.demoted_rank)
    else:
        comp_rank = _rank(comp_rng, 30)
    comp_cs = ref_cs and comp_rng.random() < 1 - profile.dissociation / 2
    comp_one = ref_one and comp_rng.random() < 0.95
    compressed = _outcome(
        comp_rng, lang, gold, options, gold_index, comp_ff, comp_mc, comp_cs,
        comp_one if profile.has_exemplar else None,
        comp_ff if comp_rng.random() < 0.9 else not comp_ff,
        comp_rank, profile.recovery, with_search, comp_begins,
        _gold_token(comp_start, gold, comp_begins), exemplar_id)
    return {
        "id": f"{lang}-{index:04d}", "lang": lang,
        "question": f"{_phrase(text_rng, lang, text_rng.randint(3, 8))}?",
        "context": ". ".join(sentences) + ".", "gold": gold,
        "aliases": [gold.upper()] if text_rng.random() < 0.2 else [],
        "options": options, "gold_index": gold_index,
        "reference": reference, "compressed": compressed,
        "both_correct": both, "fate": fate,
    }


def _scaled(profile: LangProfile, severity: float) -> LangProfile:
    """A milder (< 1) or harsher (> 1) compression of the same language."""
    damage = min(0.95, severity * (profile.dissociation + profile.lost + profile.produced_only))
    share = damage / (profile.dissociation + profile.lost + profile.produced_only)
    return dataclasses.replace(profile, dissociation=profile.dissociation * share,
                               lost=profile.lost * share, produced_only=profile.produced_only * share)


def _profiles(severity: float, profiles: Mapping[str, LangProfile] | None) -> dict[str, LangProfile]:
    """Every known language's profile (the defaults overridden by `profiles`), scaled by severity."""
    return {lang: _scaled(p, severity) for lang, p in {**PROFILES, **(profiles or {})}.items()}


def exemplar_id(lang: str, items_per_language: int) -> str:
    """The 1-shot exemplar: the language's first item that is not evaluated (Appendix C)."""
    return f"{lang}-{items_per_language:04d}"


def make_items(langs: Sequence[str] = DEFAULT_LANGS, items_per_language: int = 200, seed: int = 42,
               *, search_items: int = 100, severity: float = 1.0,
               profiles: Mapping[str, LangProfile] | None = None) -> list[dict[str, Any]]:
    """Seeded items sorted by (lang, id); beam/sample probes run on the first `search_items`.

    `severity` scales how many both-correct items compression damages (1.0: the profiles).
    """
    scaled = _profiles(severity, profiles)
    items = []
    for lang in langs:
        rng = random.Random(f"{seed}:{lang}")
        golds = list(dict.fromkeys(_phrase(rng, lang, rng.randint(1, 3)) for _ in range(items_per_language + 8)))
        while len(golds) < items_per_language + 4:
            golds.append(f"{_phrase(rng, lang, 2)} {len(golds)}")
        profile = scaled.get(lang, _scaled(_FALLBACK, severity))
        exemplar = exemplar_id(lang, items_per_language) if profile.has_exemplar else None
        items += [_item(seed, lang, i, golds, profile, i < search_items, exemplar)
                  for i in range(items_per_language)]
    return sorted(items, key=lambda it: (it["lang"], it["id"]))


def make_notes(langs: Sequence[str], profiles: Mapping[str, LangProfile] | None = None) -> list[dict[str, Any]]:
    """The `one_shot` note a run writes for each language left without a 1-shot exemplar."""
    scaled = _profiles(1.0, profiles)
    return [note("one_shot", lang, f"{lang}: no 1-shot exemplar (every {lang} item of the data set is "
                                   "evaluated), so the 1-shot probe did not run for this language")
            for lang in langs if not scaled.get(lang, _FALLBACK).has_exemplar]


def make_gates(summary: dict[str, Any], langs: Sequence[str]) -> list[dict[str, Any]]:
    """Dissociation (max 0.3, on the CI) per language plus overall ΔPR and retention gates."""
    gates = []
    per = summary["per_language"]
    for lang in langs:
        s = per[lang]
        if s["dissociation_rate"] is None:
            continue
        hi = s["dissociation_ci95"][1]
        gates.append({"name": "dissociation", "lang": lang, "value": s["dissociation_rate"],
                      "ci95": s["dissociation_ci95"], "threshold": 0.3, "direction": "max",
                      "gate_on": "ci95", "compared": hi, "passed": hi <= 0.3})
    overall = summary["overall"]
    if overall["delta_pr"] is not None:
        gates.append({"name": "delta_pr", "lang": "overall", "value": overall["delta_pr"],
                      "ci95": overall["delta_pr_ci95"], "threshold": 0.2, "direction": "max",
                      "gate_on": "point", "compared": overall["delta_pr"],
                      "passed": overall["delta_pr"] <= 0.2})
    if overall["retention"] is not None:
        gates.append({"name": "retention", "lang": "overall", "value": overall["retention"],
                      "ci95": overall["retention_ci95"], "threshold": 0.6, "direction": "min",
                      "gate_on": "point", "compared": overall["retention"],
                      "passed": overall["retention"] >= 0.6})
    return gates


def make_results(langs: Sequence[str] = DEFAULT_LANGS, items_per_language: int = 200, seed: int = 42,
                 *, spec: str = "wanda:0.5", calibration: str = "english", n_resamples: int = 200,
                 search_items: int = 100, severity: float = 1.0, gates: bool = True,
                 profiles: Mapping[str, LangProfile] | None = None,
                 notes: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A complete, valid results dict; `summary` comes from `illusion_checks.metrics.summarize`.

    `notes` come after the `one_shot` notes of languages without an exemplar."""
    items = make_items(langs, items_per_language, seed, search_items=search_items,
                       severity=severity, profiles=profiles)
    summary = summarize(items, n_resamples=n_resamples, seed=seed)
    return {
        "schema": "illusion-checks/results/v1",
        "config": {
            "reference": {"name": "gemma3-270m", "fingerprint": "sha256:" + "0" * 64},
            "compressed": {"name": f"gemma3-270m+{spec}", "spec": spec,
                           "calibration": calibration, "fingerprint": "sha256:" + "1" * 64},
            "dataset": {"name": "synthetic", "sha256": "2" * 64, "langs": list(langs),
                        "items_per_language": items_per_language, "distractors": "standard"},
            "seed": seed,
            "probes": {"max_new_tokens": 32, "max_prompt_tokens": 512, "one_shot_max_prompt_tokens": 1024,
                       "num_beams": 5, "num_samples": 10, "top_p": 0.9, "chat_template": False,
                       "stop_at_newline": True, "ablations": []},
            "package_version": "0.1.0",
            "created": "2026-11-22T06:30:00+00:00",
        },
        "items": items,
        "summary": summary,
        "notes": [*make_notes(langs, profiles), *(dict(n) for n in notes)],
        "gates": make_gates(summary, langs) if gates else [],
    }


def with_payloads(results: dict[str, Any]) -> dict[str, Any]:
    """A deep copy with XSS payloads in model names, the spec, a note and every text field of the
    first items (outputs, the ranked token, the 1-shot exemplar id)."""
    out = copy.deepcopy(results)
    payloads = XSS_PAYLOADS
    out["config"]["reference"]["name"] = payloads[0]
    out["config"]["compressed"]["name"] = payloads[1]
    out["config"]["compressed"]["spec"] = payloads[3]
    out["config"]["compressed"]["calibration"] = payloads[2]
    out["config"]["dataset"]["name"] = payloads[4]
    out["notes"] = [*out.get("notes", []),
                    note("calibration", None, f"calibration file {payloads[0]} has 3 samples, fewer than asked")]
    for k, item in enumerate(out["items"][: len(payloads)]):
        p = payloads[k]
        if k == 1:  # a hostile gold also exercises the highlighter
            item["gold"] = item["options"][item["gold_index"]] = p
        item["question"] = f"{p} question"
        item["context"] = f"start {p} middle {item['gold']} end"
        item["options"][(item["gold_index"] + 1) % 4] = p
        for model in ("reference", "compressed"):
            outcome = out["items"][k][model]
            for probe in ("ff", "cs", "one_shot", "zero_shot_short"):
                if outcome[probe] is not None:
                    outcome[probe]["output"] = f"{p} {outcome[probe]['output']}"
            for probe in ("beam", "sample"):
                if outcome[probe] is not None:
                    outcome[probe]["outputs"][0] = p
            if outcome["one_shot"] is not None:
                outcome["one_shot"]["exemplar_id"] = p
            if outcome["gold_token"] is not None:
                outcome["gold_token"]["text"] = p
    return out
