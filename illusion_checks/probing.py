"""The paired probe engine: the same items, prompts and probes for both models."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from illusion_checks import prompts as P
from illusion_checks.datasets import Dataset, QAItem, exemplar_for, load_dataset, sample_items, select_langs
from illusion_checks.choices import build_options, unrelated_candidates
from illusion_checks.backends.base import DecodeSettings
from illusion_checks.prompts import encode_continuations, encode_prompt
from illusion_checks.scoring import exact_match, is_correct, token_f1

ABLATIONS = ("distractors_only", "unrelated")
ANSWER_SCOPES = ("line", "full")
# Bumped whenever a probe's definition changes, so cached outcomes of the old one are not reused.
PROBE_PROTOCOL = 2
Progress = Callable[[str, int, int], None]  # (phase, done, total)
Notice = Callable[[str, "str | None", str], None]  # (kind, lang, message)


@dataclass(frozen=True)
class ProbeSettings:
    """Everything that changes what a model is asked; part of every cache key."""

    decode: DecodeSettings = DecodeSettings()
    prompts: P.PromptSettings = P.PromptSettings()
    seed: int = 42
    items_per_language: int = 200
    distractors: str = "standard"
    ablations: tuple[str, ...] = ()
    reachability: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The `config.probes` block of the results JSON. The batch size is left out: it changes no choice,
        greedy output or rank, only scores in their last digits and sampled text (so the cache key adds it)."""
        decode = {k: v for k, v in asdict(self.decode).items() if k != "batch_size"}
        return {"protocol": PROBE_PROTOCOL, **decode, **asdict(self.prompts), "answer_scope": self.answer_scope,
                "ablations": list(self.ablations), "reachability": self.reachability}

    @property
    def answer_scope(self) -> str:
        """`line`: the answer is the first non-empty line (default); `full`: Appendix B literally,
        normalized containment anywhere in the 32 new tokens."""
        return "line" if self.decode.stop_at_newline else "full"


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
        for item in evaluated:
            options, gold_index = build_options(item, pool, settings.distractors, settings.seed)
            candidates: dict[str, list[str]] = {}
            if "distractors_only" in settings.ablations:
                candidates["distractors_only"] = [o for k, o in enumerate(options) if k != gold_index]
            if "unrelated" in settings.ablations:
                candidates["unrelated"] = unrelated_candidates(item, others or pool, settings.seed)
            prepared.append(PreparedItem(item, options, gold_index, exemplar, candidates, source))
    return sorted(prepared, key=lambda p: (p.item.lang, p.item.id))


def _prompt_ids(tokenizer: Any, settings: P.PromptSettings, build: Callable[[str], str], context: str,
                cap: int) -> tuple[str, list[int]]:
    wrapped = lambda c: P.wrap(tokenizer, build(c), settings)  # noqa: E731
    prompt, _ = P.fit_context(tokenizer, wrapped, context, cap)
    return prompt, encode_prompt(tokenizer, prompt, settings.chat_template)


def _generation(output: str, item: QAItem) -> dict[str, Any]:
    return {"correct": is_correct(output, item.golds), "output": output}


def probe_model(model: Any, tokenizer: Any, items: Sequence[PreparedItem], settings: ProbeSettings,
                progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run every probe for one model; returns one Outcome dict per item (results schema v1)."""
    from illusion_checks.backends.hf import prefix as probes

    ps, decode = settings.prompts, settings.decode
    chat = ps.chat_template
    total = len(items)

    counts: dict[str, int] = {}

    def tick(phase: str) -> Callable[[int], None]:
        def advance(n: int) -> None:  # probes report batches done; progress takes running totals
            counts[phase] = counts.get(phase, 0) + n
            if progress:
                progress(phase, counts[phase], total)
        return advance

    ff_text, ff_ids, cs_ids, one_ids, zero_ids = [], [], [], [], []
    for p in items:
        it = p.item
        text, ids = _prompt_ids(tokenizer, ps, lambda c: P.ff_prompt(c, it.question), it.context, ps.max_prompt_tokens)
        ff_text.append(text)
        ff_ids.append(ids)
        cs_ids.append(_prompt_ids(tokenizer, ps, lambda c: P.cs_prompt(c, it.question, p.options), it.context,
                                  ps.max_prompt_tokens)[1])
        zero_ids.append(_prompt_ids(tokenizer, ps, lambda c: P.short_prompt(c, it.question), it.context,
                                    ps.one_shot_max_prompt_tokens)[1])
        if p.exemplar is not None:
            shot = (p.exemplar.context, p.exemplar.question, p.exemplar.gold)
            one_ids.append(_prompt_ids(tokenizer, ps, lambda c: P.one_shot_prompt(shot, c, it.question), it.context,
                                       ps.one_shot_max_prompt_tokens)[1])

    encoded = [encode_continuations(tokenizer, ff_text[i], ff_ids[i], p.options, chat) for i, p in enumerate(items)]
    seeds = [item_seed(settings.seed, f"{p.item.lang}:{p.item.id}") for p in items]
    ff = probes.ff_probes(model, tokenizer, encoded, [p.item.golds for p in items], decode, seeds,
                          [settings.reachability] * total, tick("FF, MC, rank, beam, samples"))
    ff_out = [r.output for r in ff]
    mc = [r.mc for r in ff]
    cs_out = probes.greedy(model, tokenizer, cs_ids, decode, tick("CS"))
    one_iter = iter(probes.greedy(model, tokenizer, one_ids, decode, tick("1-shot")))
    one_out = [next(one_iter) if p.exemplar is not None else None for p in items]
    zero_out = probes.greedy(model, tokenizer, zero_ids, decode, tick("0-shot short"))
    ablation_out: dict[str, list[str]] = {}
    for name in settings.ablations:
        ab_ids = [_prompt_ids(tokenizer, ps, lambda c, p=p: P.cs_prompt(c, p.item.question, p.ablation_candidates[name]),
                              p.item.context, ps.max_prompt_tokens)[1] for p in items]
        ablation_out[name] = probes.greedy(model, tokenizer, ab_ids, decode, tick(f"CS {name}"))

    outcomes = []
    for i, p in enumerate(items):
        it, result = p.item, mc[i]
        choice = max(range(len(result.scores)), key=lambda k: result.scores[k])
        target = ff[i].target
        one_shot = None
        if p.exemplar is not None:
            one_shot = {**_generation(one_out[i], it), "exemplar_id": p.exemplar.id,
                        "exemplar_source": p.exemplar_source}
        outcome: dict[str, Any] = {
            "ff": {**_generation(ff_out[i], it), "f1": token_f1(ff_out[i], it.golds),
                   "em": exact_match(ff_out[i], it.golds), "begins_with_gold": target.begins_with_gold},
            "cs": _generation(cs_out[i], it),
            "mc": {"correct": choice == p.gold_index, "choice": choice, "scores": result.scores,
                   "boundary_ok": encoded[i].gold_token_boundary_ok},
            "gold_rank": result.gold_rank,
            "gold_margin": result.gold_margin,
            "gold_token": target.to_dict(tokenizer),
            "gold_token_boundary_ok": target.boundary_ok,
            "beam": None,
            "sample": None,
            "one_shot": one_shot,
            "zero_shot_short": _generation(zero_out[i], it),
            "ablations": {name: _generation(out[i], it) for name, out in ablation_out.items()},
        }
        for probe, outputs in (("beam", ff[i].beam), ("sample", ff[i].sample)):
            if outputs is not None:
                outcome[probe] = {"reached": any(is_correct(o, it.golds) for o in outputs), "outputs": outputs}
        outcomes.append(outcome)
    return outcomes


def item_record(p: PreparedItem, reference: dict[str, Any], compressed: dict[str, Any]) -> dict[str, Any]:
    """One entry of `items` in the results JSON."""
    from illusion_checks.fates import Fate

    it = p.item
    both = reference["ff"]["correct"] and reference["mc"]["correct"]
    fate = Fate.of(compressed["ff"]["correct"], compressed["mc"]["correct"]).value if both else None
    return {
        "id": it.id, "lang": it.lang, "question": it.question, "context": it.context, "gold": it.gold,
        "aliases": list(it.aliases), "options": p.options, "gold_index": p.gold_index,
        "reference": reference, "compressed": compressed, "both_correct": both, "fate": fate,
    }


def item_seed(seed: int, key: str) -> int:
    """A per-item seed, so samples do not depend on which items share a batch."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)
