"""The paired probe engine: the same items, prompts and probes for both models."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from illusion_checks import prompts as P
from illusion_checks import records as R
from illusion_checks.answer_start import Above
from illusion_checks.fates import Fate, gold_cut
from illusion_checks.datasets import Dataset, QAItem, exemplar_for, load_dataset, sample_items, select_langs
from illusion_checks.choices import build_options, unrelated_candidates
from illusion_checks.backends.base import (
    DEFAULT_BATCH_SIZE, Advance, AnswerProbes, AnswerRequest, Backend, DecodeSettings, Tokenizer,
    answers,
)
from illusion_checks.prompts import Encoded, encode_continuations, encode_prompt
from illusion_checks.scoring import exact_match, is_correct, token_f1
from illusion_checks.spec import EvaluationSpec, Progress

# Bumped whenever a probe's definition changes, so cached outcomes of the old one are not reused.
# 3: the gold rank is the worst along the path to the gold's first content token (issue 22).
# 4: one rank rule (a tied token counts above the gold); no option holds the gold; CS reads FF's
# passage; truncation and distinct searched answers recorded (issues 23, 24).
PROBE_PROTOCOL = 4
# --illusion-thinking=on: the answer follows the think span, so the budget grows by this much.
THINKING_TOKENS = 1024
Notice = Callable[[str, "str | None", str], None]  # (kind, lang, message)
# --illusion-answer-scope's values as the decoders' `stop_at_newline`, the one place the two meet:
# `line`, the answer is the first non-empty line (default); `full`, Appendix B literally (normalized
# containment anywhere in the 32 new tokens).
STOPS_AT_NEWLINE = {"line": True, "full": False}


@dataclass(frozen=True)
class ProbeSettings:
    """Everything that changes what a model is asked; part of every cache key."""

    decode: DecodeSettings = DecodeSettings()
    prompts: P.PromptSettings = P.PromptSettings()
    seed: int = EvaluationSpec.seed  # the defaults are the options' (spec.py owns them)
    items_per_language: int = EvaluationSpec.items
    distractors: str = EvaluationSpec.distractors
    ablations: tuple[str, ...] = EvaluationSpec.ablations
    reachability: bool = not EvaluationSpec.no_reachability

    def to_dict(self) -> dict[str, Any]:
        """The `config.probes` block of the results JSON. The batch size is left out: it changes no choice,
        greedy output or rank, only scores in their last digits and sampled text (so the cache key adds it)."""
        decode = {k: v for k, v in asdict(self.decode).items() if k != "batch_size"}
        return {"protocol": PROBE_PROTOCOL, **decode, **asdict(self.prompts), "answer_scope": self.answer_scope,
                "ablations": list(self.ablations), "reachability": self.reachability}

    @property
    def answer_scope(self) -> str:
        """The --illusion-answer-scope these settings decode with (see `STOPS_AT_NEWLINE`)."""
        return next(scope for scope, stops in STOPS_AT_NEWLINE.items() if stops == self.decode.stop_at_newline)


@dataclass(frozen=True)
class PreparedItem:
    """An item with its MC options, 1-shot exemplar (None: no 1-shot probe) and ablation
    candidates fixed; `exemplar_source` says where the exemplar came from."""

    item: QAItem
    options: list[str]
    gold_index: int
    exemplar: QAItem | None
    ablation_candidates: dict[str, list[str]] = field(default_factory=dict)
    exemplar_source: str | None = None


def _exemplar(dataset: Dataset, lang: str, evaluated: list[QAItem], notice: Notice) -> tuple[QAItem | None, str | None]:
    """Appendix C's exemplar: the data set's lowest-index unevaluated item of the language; when
    every item is evaluated, the embedded fixture set's; else none (the 1-shot probe is skipped).
    Never an evaluated item: fixture items are also refused by id, passage or question."""
    exemplar = exemplar_for(dataset.by_lang[lang], evaluated)
    if exemplar is not None:
        return exemplar, "dataset"
    fixtures = load_dataset("fixtures").by_lang.get(lang, [])
    taken = {text for item in evaluated for text in (item.id, item.context, item.question)}
    exemplar = next((f for f in fixtures if not {f.id, f.context, f.question} & taken), None)
    if exemplar is not None:
        notice("one_shot", lang, f"{lang}: every item of the data set is evaluated, so the 1-shot exemplar is "
                                 f"the embedded fixture item {exemplar.id!r}")
        return exemplar, "fixtures"
    notice("one_shot", lang, f"{lang}: no 1-shot exemplar: every item of the data set is evaluated and the "
                             "embedded fixture set has none left in this language; the 1-shot probe is skipped "
                             "(evaluate fewer items to leave one)")
    return None, None


def prepare_items(dataset: Dataset, langs: list[str] | None, settings: ProbeSettings,
                  notice: Notice | None = None) -> list[PreparedItem]:
    """Sample each language's fixed subset and attach what every probe needs; `notice` hears
    where the 1-shot exemplar had to come from elsewhere, or could not be found."""
    prepared = []
    chosen = select_langs(dataset, langs)
    for lang in chosen:
        pool = dataset.by_lang[lang]
        evaluated = sample_items(pool, settings.items_per_language, settings.seed)
        exemplar, source = _exemplar(dataset, lang, evaluated, notice or (lambda kind, lang, message: None))
        others = [item for other in chosen if other != lang for item in dataset.by_lang[other]]
        if "unrelated" in settings.ablations and not others:
            others = _unrelated_from_fixtures(lang, notice or (lambda kind, lang, message: None))
        for item in evaluated:
            options, gold_index = build_options(item, pool, settings.distractors, settings.seed)
            candidates: dict[str, list[str]] = {}
            if "distractors_only" in settings.ablations:
                candidates["distractors_only"] = [o for k, o in enumerate(options) if k != gold_index]
            unrelated = unrelated_candidates(item, others, settings.seed) if "unrelated" in settings.ablations else []
            if unrelated:
                candidates["unrelated"] = unrelated
            elif "unrelated" in settings.ablations and notice:
                notice("unrelated", lang, f"{lang}: item {item.id!r} has no unrelated answer that does not overlap "
                                          "its gold; its unrelated ablation is null")
            prepared.append(PreparedItem(item, options, gold_index, exemplar, candidates, source))
    return sorted(prepared, key=lambda p: (p.item.lang, p.item.id))


def _unrelated_from_fixtures(lang: str, notice: Notice) -> list[QAItem]:
    """The `unrelated` ablation's answers when the run has one language: the embedded fixture set's
    other languages (the same language's answers are related by construction)."""
    fixtures = load_dataset("fixtures")
    items = [item for other, rows in sorted(fixtures.by_lang.items()) if other != lang for item in rows]
    notice("unrelated", lang, f"{lang}: the run has no other language, so the unrelated ablation's answers come from "
                              "the embedded fixture set's other languages")
    return items


@dataclass(frozen=True)
class Fitted:
    """One prompt fitted to its token cap: its text and ids, the passage it holds, whether that was cut."""

    prompt: str
    ids: list[int]
    context: str
    cut: bool

    def record(self, item: QAItem) -> dict[str, bool]:
        """`{cut, gold_kept}`: gold_kept is false only where a gold span of the passage was cut away."""
        had = any(gold in item.context for gold in item.golds)
        return {"cut": self.cut, "gold_kept": not had or any(gold in self.context for gold in item.golds)}


def _fit(tokenizer: Tokenizer, settings: P.PromptSettings, build: Callable[[str], str], context: str,
         cap: int) -> Fitted:
    wrapped = lambda c: P.wrap(tokenizer, build(c), settings)  # noqa: E731
    prompt, kept, cut = P.fit_context(tokenizer, wrapped, context, cap)
    return Fitted(prompt, encode_prompt(tokenizer, prompt, settings.chat_template), kept, cut)


@dataclass(frozen=True)
class ItemPrompts:
    """The token ids of every prompt one item is asked, as `probe_model` sends them."""

    ff: Encoded  # the FF prompt with its MC options' continuation ids
    cs: list[int]
    zero_shot_short: list[int]
    one_shot: list[int] | None
    ablations: dict[str, list[int]]
    truncation: dict[str, dict[str, bool]]  # prompt kind -> {cut, gold_kept} (cs: + same_as_ff)


def item_prompts(tokenizer: Tokenizer, p: PreparedItem, settings: ProbeSettings) -> ItemPrompts:
    """Build and encode (truncating the passage to each prompt's token budget) every prompt of an item.
    The CS prompts read FF's passage as FF has it (the options added); a CS prompt that must cut it
    further to fit is recorded (`same_as_ff` false)."""
    ps, it = settings.prompts, p.item
    cap, cap_short = ps.max_prompt_tokens, ps.one_shot_max_prompt_tokens
    ff = _fit(tokenizer, ps, lambda c: P.ff_prompt(c, it.question), it.context, cap)

    def cs(candidates: Sequence[str]) -> Fitted:
        return _fit(tokenizer, ps, lambda c: P.cs_prompt(c, it.question, candidates), ff.context, cap)

    shown, zero = cs(p.options), _fit(tokenizer, ps, lambda c: P.short_prompt(c, it.question), it.context, cap_short)
    one = None
    if p.exemplar is not None:
        shot = (p.exemplar.context, p.exemplar.question, p.exemplar.gold)
        one = _fit(tokenizer, ps, lambda c: P.one_shot_prompt(shot, c, it.question), it.context, cap_short)
    truncation = {"ff": ff.record(it), "cs": {**shown.record(it), "cut": ff.cut or shown.cut, "same_as_ff": not shown.cut},
                  **({"one_shot": one.record(it)} if one is not None else {}), "zero_shot_short": zero.record(it)}
    return ItemPrompts(
        ff=encode_continuations(tokenizer, ff.prompt, ff.ids, p.options, ps.chat_template),
        cs=shown.ids,
        zero_shot_short=zero.ids,
        one_shot=one.ids if one is not None else None,
        ablations={name: cs(p.ablation_candidates[name]).ids for name in settings.ablations
                   if name in p.ablation_candidates},
        truncation=truncation,
    )


def probe_settings(cfg: EvaluationSpec) -> ProbeSettings:
    """Probe settings from the evaluation spec."""
    batch = cfg.batch_size if isinstance(cfg.batch_size, int) else DEFAULT_BATCH_SIZE
    thinking = cfg.thinking == "on"
    return ProbeSettings(
        decode=DecodeSettings(batch_size=batch, stop_at_newline=STOPS_AT_NEWLINE[cfg.answer_scope],
                              max_new_tokens=DecodeSettings.max_new_tokens + (THINKING_TOKENS if thinking else 0)),
        prompts=P.PromptSettings(chat_template=cfg.chat_template, thinking=thinking),
        seed=cfg.seed, items_per_language=cfg.items, distractors=cfg.distractors, ablations=cfg.ablations,
        reachability=not cfg.no_reachability)


def _generation(output: str, item: QAItem) -> R.Generation:
    return R.Generation(correct=is_correct(output, item.golds), output=output)


def _ticker(progress: Progress | None, total: int) -> Callable[..., Advance]:
    """Per phase, a callback taking rows done and reporting running totals in items; a phase of
    `rows` rows (several per item) reports the share of its rows done, in items."""
    counts: dict[str, int] = {}

    def tick(phase: str, rows: int = total) -> Advance:
        def advance(n: int) -> None:
            counts[phase] = counts.get(phase, 0) + n
            if progress:
                progress(phase, counts[phase] * total // max(1, rows), total)
        return advance
    return tick


def _greedy_all(backend: Backend, kinds: dict[str, list[list[int] | None]], settings: DecodeSettings,
                tick: Callable[..., Advance]) -> dict[str, list[str | None]]:
    """Every greedy prompt kind in one call, so an engine keeps one queue (the HF engine's batch
    stays full across kinds); per kind, the answers, None where an item has no such prompt."""
    flat = [(kind, i) for kind, prompts in kinds.items() for i, q in enumerate(prompts) if q is not None]
    phase = "CS, 1-shot, 0-shot short" + (", ablations" if len(kinds) > 3 else "")
    tokens = backend.greedy_tokens([kinds[kind][i] for kind, i in flat], settings, tick(phase, len(flat)))
    out: dict[str, list[str | None]] = {kind: [None] * len(prompts) for kind, prompts in kinds.items()}
    for (kind, i), text in zip(flat, answers(backend.tokenizer, tokens, settings.stop_at_newline)):
        out[kind][i] = text
    return out


def probe_outcomes(backend: Backend, items: Sequence[PreparedItem], settings: ProbeSettings,
                   progress: Progress | None = None) -> list[R.Outcome]:
    """Run every probe for one model: one Outcome record per item."""
    decode, tick = settings.decode, _ticker(progress, len(items))
    prompts = [item_prompts(backend.tokenizer, p, settings) for p in items]
    requests = [AnswerRequest(q.ff, tuple(p.item.golds), item_seed(settings.seed, f"{p.item.lang}:{p.item.id}"),
                              settings.reachability) for p, q in zip(items, prompts)]
    ff = backend.answer_probes(requests, decode, tick("FF, MC, rank, beam, samples"))
    greedy = _greedy_all(backend, {"cs": [q.cs for q in prompts], "one": [q.one_shot for q in prompts],
                                   "zero": [q.zero_shot_short for q in prompts],
                                   **{f"ablation {name}": [q.ablations.get(name) for q in prompts]
                                      for name in settings.ablations}}, decode, tick)
    return [_outcome(p, q, ff[i], greedy["cs"][i], greedy["one"][i], greedy["zero"][i],
                     {name: greedy[f"ablation {name}"][i] for name in settings.ablations})
            for i, (p, q) in enumerate(zip(items, prompts))]


def probe_model(backend: Backend, items: Sequence[PreparedItem], settings: ProbeSettings,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """`probe_outcomes` as the results JSON writes them: one Outcome dict per item (schema v1)."""
    return [outcome.to_dict() for outcome in probe_outcomes(backend, items, settings, progress)]


def _reach(outputs: list[str] | None, item: QAItem) -> R.Reach | None:
    if outputs is None:
        return None
    return R.Reach(reached=any(is_correct(o, item.golds) for o in outputs), outputs=tuple(outputs),
                   distinct=len(set(outputs)))


def _outcome(p: PreparedItem, q: ItemPrompts, ff: AnswerProbes, cs: str, one: str | None,
             zero: str, ablations: dict[str, str | None]) -> R.Outcome:
    """One model's Outcome record for one item. A censored rank (a backend that knows ranks only
    within its top k, or where same-text tokens hide each other) is no rank, only `gold_rank_above`."""
    it = p.item
    choice = max(range(len(ff.scores)), key=lambda k: ff.scores[k])
    one_shot = None
    if p.exemplar is not None and one is not None:
        one_shot = R.OneShot(correct=is_correct(one, it.golds), output=one, exemplar_id=p.exemplar.id,
                             exemplar_source=p.exemplar_source)
    gold_token = ff.target.to_dict(ff.path_ranks)
    rank = ff.gold_rank
    return R.Outcome(
        ff=R.FFGeneration(correct=is_correct(ff.output, it.golds), output=ff.output, f1=token_f1(ff.output, it.golds),
                          em=exact_match(ff.output, it.golds), begins_with_gold=ff.target.begins_with_gold),
        cs=_generation(cs, it),
        mc=R.MCChoice(correct=choice == p.gold_index, choice=choice, scores=tuple(ff.scores),
                      boundary_ok=q.ff.gold_token_boundary_ok),
        gold_rank=None if isinstance(rank, Above) else rank, gold_margin=ff.gold_margin,
        gold_token=R.GoldToken.from_dict(gold_token) if gold_token is not None else None,
        gold_rank_above=rank.bound if isinstance(rank, Above) else R.ABSENT,
        gold_token_boundary_ok=ff.target.boundary_ok,
        beam=_reach(ff.beam, it), sample=_reach(ff.sample, it), one_shot=one_shot,
        zero_shot_short=_generation(zero, it),
        ablations={name: _generation(out, it) for name, out in ablations.items() if out is not None},
        unavailable=dict(ff.unavailable) if ff.unavailable else R.ABSENT,
        truncation=q.truncation,
    )


def paired_item(p: PreparedItem, reference: R.Outcome, compressed: R.Outcome) -> R.ItemRecord:
    """One entry of `items`: the item as evaluated, both models' outcomes, and its fate."""
    it = p.item
    both = reference.ff.correct and reference.mc.correct and not (gold_cut(reference.truncation)
                                                                     or gold_cut(compressed.truncation))
    fate = Fate.of(compressed.ff.correct, compressed.mc.correct) if both else None
    return R.ItemRecord(
        id=it.id, lang=it.lang, question=it.question, context=it.context, gold=it.gold, aliases=tuple(it.aliases),
        options=tuple(p.options), gold_index=p.gold_index, reference=reference, compressed=compressed,
        both_correct=both, fate=fate,
    )


def item_record(p: PreparedItem, reference: dict[str, Any], compressed: dict[str, Any]) -> dict[str, Any]:
    """`paired_item` of outcomes as the results JSON holds them (`probe_model`'s), as its JSON entry."""
    return paired_item(p, R.Outcome.from_dict(reference), R.Outcome.from_dict(compressed)).to_dict()


def item_seed(seed: int, key: str) -> int:
    """A per-item seed, so samples do not depend on which items share a batch."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
