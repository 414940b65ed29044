"""Torch probes: greedy / beam / sampled generation, MC log-likelihoods, gold first-token rank."""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

_ANSWER_LINE_DONE = re.compile(r"\S[^\n]*\n")


@dataclass(frozen=True)
class DecodeSettings:
    """Generation arguments, named as in transformers."""

    max_new_tokens: int = 32
    num_beams: int = 5
    num_samples: int = 10
    top_p: float = 0.9
    stop_at_newline: bool = True
    batch_size: int = 16


@dataclass(frozen=True)
class Encoded:
    """A prompt's token ids and, for each MC option, its continuation ids."""

    prompt_ids: list[int]
    option_ids: list[list[int]]
    gold_token_boundary_ok: bool


class AnswerLineStop(StoppingCriteria):
    """Stop a row once it has produced a non-empty line: the answer is complete."""

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [bool(_ANSWER_LINE_DONE.search(text)) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def answer_text(text: str, stop_at_newline: bool) -> str:
    """The generated answer: its first non-empty line when stopping at newlines."""
    if not stop_at_newline:
        return text.strip()
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def encode_prompt(tokenizer: Any, prompt: str, chat: bool) -> list[int]:
    """Token ids of a prompt; a chat-templated prompt already carries its special tokens."""
    return tokenizer(prompt, add_special_tokens=not chat)["input_ids"]


def encode_continuations(tokenizer: Any, prompt: str, prompt_ids: list[int], options: Sequence[str],
                         chat: bool) -> Encoded:
    """Option ids as the model sees them after the prompt: from the joint encoding of
    prompt + " " + option, checked to extend the prompt's own ids (Appendix B's boundary check)."""
    separator = "" if chat else " "
    option_ids, all_ok = [], True
    for option in options:
        joint = encode_prompt(tokenizer, prompt + separator + option, chat)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            option_ids.append(joint[len(prompt_ids):])
        else:
            # The tokenizer merged across the prompt/answer boundary: fall back to the
            # standalone leading-space encoding so the prompt tokens stay identical.
            all_ok = False
            option_ids.append(tokenizer(separator + option, add_special_tokens=False)["input_ids"])
    return Encoded(prompt_ids, option_ids, all_ok)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A left-padded batch and its attention mask: every row ends at the same position."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _batches(order: list[int], size: int) -> list[list[int]]:
    return [order[start:start + size] for start in range(0, len(order), size)]


@dataclass
class Prefix:
    """Left-padded prompts whose KV cache holds every token but the last: each probe that
    continues a prompt (greedy, beam, samples, MC options) copies it instead of re-prefilling."""

    ids: torch.Tensor
    mask: torch.Tensor
    cache: Any

    def rows(self, index: Sequence[int], repeat: int = 1) -> "Prefix":
        """A copy holding `index` rows, each repeated `repeat` times (as generate expands them)."""
        select = torch.tensor(list(index), device=self.ids.device)
        cache = copy.deepcopy(self.cache)
        if len(index) != self.ids.shape[0] or list(index) != list(range(len(index))):
            cache.batch_select_indices(select)
        if repeat > 1:
            cache.batch_repeat_interleave(repeat)
        return Prefix(self.ids[select], self.mask[select], cache)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch, exactly as transformers' generate derives them."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


@torch.no_grad()
def prefill(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> Prefix:
    """Run every prompt token but the last once; the LM head runs on one position only."""
    device = next(model.parameters()).device
    ids, mask = left_pad(rows, pad_id, device)
    out = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions(mask)[:, :-1],
                use_cache=True, logits_to_keep=1)
    return Prefix(ids, mask, out.past_key_values)


def _generate(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings, **kwargs: Any) -> list[str]:
    """Continue a prefix with transformers' generate (it feeds only the uncached last token)."""
    width = prefix.ids.shape[1]
    stopping = StoppingCriteriaList([AnswerLineStop(tokenizer, width)]) if settings.stop_at_newline else None
    out = model.generate(
        input_ids=prefix.ids, attention_mask=prefix.mask, past_key_values=prefix.cache,
        max_new_tokens=settings.max_new_tokens, stopping_criteria=stopping, pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [answer_text(text, settings.stop_at_newline) for text in texts]


GREEDY = dict(do_sample=False, num_beams=1, top_p=None, top_k=None, temperature=None)


@torch.no_grad()
def greedy(model: Any, tokenizer: Any, prompts: Sequence[list[int]], settings: DecodeSettings,
           progress: Callable[[int], None] | None = None) -> list[str]:
    """Greedy continuations, batched over length-sorted prompts."""
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    outputs: list[str] = [""] * len(prompts)
    for batch in _batches(order, settings.batch_size):
        prefix = prefill(model, [prompts[i] for i in batch], tokenizer.pad_token_id)
        for i, text in zip(batch, _generate(model, tokenizer, prefix, settings, **GREEDY)):
            outputs[i] = text
        if progress:
            progress(len(batch))
    return outputs


def item_seed(seed: int, key: str) -> int:
    """A per-item seed, so samples do not depend on which items share a batch."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)


class SeededNucleus(LogitsProcessor):
    """Nucleus (top-p) sampling with one generator per row, done as Gumbel-max over the nucleus:
    each row's draw depends only on its own seed, never on which rows share the batch.

    Sorting the whole vocabulary (262k for Gemma) every step cost more than the model itself, so
    each row sorts only the tokens above a probability floor, once those alone hold `top_p` of
    the mass: every token below the floor then has at least `top_p` ranked above it, so it is
    outside the nucleus, and the result is exact."""

    FLOORS = (1e-4, 1e-6)

    def __init__(self, top_p: float, seeds: Sequence[int]) -> None:
        self.top_p = top_p
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def _ranked(self, probs: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per row, its top tokens in descending order: enough of them to hold the nucleus."""
        ranked: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * probs.shape[0]
        for floor in self.FLOORS:
            pending = [row for row, done in enumerate(ranked) if done is None]
            if not pending:
                break
            rows = probs if len(pending) == probs.shape[0] else probs[pending]  # no copy in the usual case
            above = rows > floor
            mass = torch.where(above, rows, 0.0).sum(-1).tolist()
            for j, row in enumerate(pending):
                if mass[j] >= self.top_p:
                    candidates = above[j].nonzero().squeeze(-1)
                    values, order = probs[row, candidates].sort(descending=True)
                    ranked[row] = (values, candidates[order])
        return [r if r is not None else probs[row].sort(descending=True) for row, r in enumerate(ranked)]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ranked = self._ranked(torch.softmax(scores.float(), dim=-1))
        chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
        for row, ((values, index), generator) in enumerate(zip(ranked, self.generators)):
            # Keep a token while the mass ranked above it is below top_p (transformers' rule).
            kept = int(((values.cumsum(-1) - values) < self.top_p).sum())
            uniform = torch.rand(kept, generator=generator).clamp(1e-20, 1.0 - 1e-7).to(scores.device)
            noisy = values[:kept].log() - torch.log(-torch.log(uniform))
            chosen[row] = index[int(noisy.argmax())]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0], device=scores.device), chosen] = 0.0
        return out


def _beam(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings) -> list[list[str]]:
    n = settings.num_beams
    expanded = prefix.rows(range(prefix.ids.shape[0]), repeat=n)
    expanded = Prefix(prefix.ids, prefix.mask, expanded.cache)  # generate expands ids and mask itself
    texts = _generate(model, tokenizer, expanded, settings, do_sample=False, num_beams=n,
                      num_return_sequences=n, top_p=None, top_k=None, temperature=None)
    return [texts[j * n:(j + 1) * n] for j in range(prefix.ids.shape[0])]


def _samples(model: Any, tokenizer: Any, prefix: Prefix, settings: DecodeSettings, seeds: Sequence[int],
             items_per_call: int) -> list[list[str]]:
    n, outputs = settings.num_samples, []
    for chunk in _batches(list(range(prefix.ids.shape[0])), items_per_call):
        part = prefix.rows(chunk, repeat=n)
        part = Prefix(part.ids.repeat_interleave(n, 0), part.mask.repeat_interleave(n, 0), part.cache)
        row_seeds = [seeds[j] * 1000 + k for j in chunk for k in range(n)]
        processors = LogitsProcessorList([SeededNucleus(settings.top_p, row_seeds)])
        texts = _generate(model, tokenizer, part, settings, logits_processor=processors, **GREEDY)
        outputs.extend(texts[k * n:(k + 1) * n] for k in range(len(chunk)))
    return outputs


@dataclass(frozen=True)
class MCResult:
    """Summed option log-probabilities and the gold first token's rank and margin."""

    scores: list[float]
    gold_rank: int
    gold_margin: float


def _score_options(model: Any, prefix: Prefix, encoded: Sequence[Encoded], gold_indices: Sequence[int]) -> list[MCResult]:
    """Each option as a continuation of its cached prompt (4 options batched); the prompt's last
    position gives the next-token distribution for the gold rank. The LM head sees only scored rows."""
    n_opt = len(encoded[0].option_ids)
    cache = prefix.rows(range(prefix.ids.shape[0]), repeat=n_opt).cache
    conts = [option for enc in encoded for option in enc.option_ids]
    width = 1 + max(len(c) for c in conts)
    last = prefix.ids[:, -1].repeat_interleave(n_opt)
    ids = torch.full((len(conts), width), 0, dtype=torch.long, device=prefix.ids.device)
    new_mask = torch.zeros_like(ids)
    for r, cont in enumerate(conts):
        ids[r, 0] = last[r]
        ids[r, 1:1 + len(cont)] = torch.tensor(cont, dtype=torch.long)
        new_mask[r, :1 + len(cont)] = 1
    past_mask = prefix.mask[:, :-1].repeat_interleave(n_opt, 0)
    start = positions(prefix.mask)[:, -1].repeat_interleave(n_opt)
    logits = model(input_ids=ids, attention_mask=torch.cat([past_mask, new_mask], 1),
                   position_ids=start[:, None] + torch.arange(width, device=ids.device),
                   past_key_values=cache, use_cache=True).logits
    results = []
    for j, enc in enumerate(encoded):
        scores, rank, margin = [], 0, 0.0
        for k, cont in enumerate(enc.option_ids):
            r = j * n_opt + k
            logprobs = torch.log_softmax(logits[r, :len(cont)].float(), dim=-1)
            targets = torch.tensor(cont, device=logprobs.device)
            scores.append(float(logprobs.gather(-1, targets[:, None]).sum()))
            if k == gold_indices[j]:
                rank, margin = _rank_and_margin(logprobs[0], cont[0])
        results.append(MCResult(scores, rank, margin))
    return results


@dataclass(frozen=True)
class FFProbes:
    """Everything read off one FF prompt: greedy output, MC, gold rank, beam and samples."""

    output: str
    mc: MCResult
    beam: list[str] | None
    sample: list[str] | None


@torch.no_grad()
def ff_probes(model: Any, tokenizer: Any, encoded: Sequence[Encoded], gold_indices: Sequence[int],
              settings: DecodeSettings, seeds: Sequence[int], reach: Sequence[bool],
              progress: Callable[[int], None] | None = None) -> list[FFProbes]:
    """One prefill per FF prompt serves greedy FF, MC scoring, the gold rank, beam-5 and sampling;
    `reach[i]` says whether item i gets the beam and sampling probes."""
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i].prompt_ids), i))
    results: list[FFProbes | None] = [None] * len(encoded)
    for batch in _batches(order, settings.batch_size):
        prefix = prefill(model, [encoded[i].prompt_ids for i in batch], tokenizer.pad_token_id)
        greedy_out = _generate(model, tokenizer, prefix.rows(range(len(batch))), settings, **GREEDY)
        mc = []
        for part in _batches(list(range(len(batch))), max(1, settings.batch_size // 2)):
            mc += _score_options(model, prefix.rows(part), [encoded[batch[j]] for j in part],
                                 [gold_indices[batch[j]] for j in part])
        reached = [j for j, i in enumerate(batch) if reach[i]]
        beams: dict[int, list[str]] = {}
        samples: dict[int, list[str]] = {}
        for part in _batches(reached, max(1, settings.batch_size // 2)):
            beams.update(zip(part, _beam(model, tokenizer, prefix.rows(part), settings)))
            sampled = _samples(model, tokenizer, prefix.rows(part), settings, [seeds[batch[j]] for j in part],
                               max(1, settings.batch_size // 4))
            samples.update(zip(part, sampled))
        for j, i in enumerate(batch):
            results[i] = FFProbes(greedy_out[j], mc[j], beams.get(j), samples.get(j))
        if progress:
            progress(len(batch))
    return [r for r in results if r is not None]


def _rank_and_margin(logprobs: torch.Tensor, token: int) -> tuple[int, float]:
    target = logprobs[token]
    rank = int((logprobs > target).sum()) + 1
    others = logprobs.clone()
    others[token] = float("-inf")
    return rank, float(target - others.max())
