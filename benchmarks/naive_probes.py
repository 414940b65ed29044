"""The naive baseline: per item, one greedy `generate` and one full forward pass per MC option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from illusion_checks.backends.base import answer_line_done, answer_text
from illusion_checks.prompts import Encoded

GREEDY = dict(do_sample=False, num_beams=1, top_p=None, top_k=None, temperature=None)


class AnswerLineStop(StoppingCriteria):
    """Stop a row once it has produced a non-empty line: the answer is complete."""

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        done = [answer_line_done(text) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class NaiveOutput:
    """One item's greedy answer and summed option log-probabilities."""

    output: str
    scores: list[float]


@torch.no_grad()
def option_logprob(model: Any, prompt_ids: list[int], option_ids: list[int]) -> float:
    """Summed log-probability of an option after its prompt, from one uncached forward pass."""
    ids = torch.tensor([prompt_ids + option_ids])
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return float(logprobs.gather(-1, torch.tensor(option_ids)[:, None]).sum())


@torch.no_grad()
def greedy_answer(model: Any, tokenizer: Any, prompt_ids: list[int], max_new_tokens: int) -> str:
    """One unbatched greedy generation, stopped once an answer line is complete."""
    ids = torch.tensor([prompt_ids])
    stopping = StoppingCriteriaList([AnswerLineStop(tokenizer, ids.shape[1])])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         stopping_criteria=stopping, pad_token_id=tokenizer.pad_token_id, **GREEDY)
    return answer_text(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True), True)


def naive_loop(model: Any, tokenizer: Any, encoded: Sequence[Encoded], max_new_tokens: int) -> list[NaiveOutput]:
    """Every item on its own: no batching, no shared prefill, full logits everywhere."""
    return [NaiveOutput(greedy_answer(model, tokenizer, enc.prompt_ids, max_new_tokens),
                        [option_logprob(model, enc.prompt_ids, option) for option in enc.option_ids])
            for enc in encoded]
