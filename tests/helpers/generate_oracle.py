"""What the decoder tests compare against: transformers' `generate`, stopped at the answer line as
the package's decoder stops (the package itself no longer calls `generate`), and the prompts they
share (several scripts, one very short)."""

from __future__ import annotations

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from illusion_checks.backends.base import answer_line_done, answer_text
from illusion_checks.prompts import ff_prompt

PROMPTS = [
    ff_prompt("The Eiffel Tower was finished in 1889 in Paris.", "When was the tower finished?"),
    ff_prompt("Москва — столица России.", "Какой город столица?"),
    ff_prompt("长城位于中国北方。", "长城在哪里？"),
    ff_prompt("القاهرة هي عاصمة مصر.", "ما هي عاصمة مصر؟"),
    ff_prompt("Short.", "Q?"),
]


class AnswerLineStop(StoppingCriteria):
    """Stop a row of `generate` once it has produced a non-empty line (the decoder's answer-line rule)."""

    def __init__(self, tokenizer, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([answer_line_done(t) for t in texts], dtype=torch.bool, device=input_ids.device)


def generate_alone(model, tokenizer, ids: list[int], max_new_tokens: int) -> str:
    """The definition of a greedy answer: one unpadded prompt through generate, stopping at the answer line."""
    with torch.no_grad():
        prompt = torch.tensor([ids])
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([AnswerLineStop(tokenizer, prompt.shape[1])]))
    return answer_text(tokenizer.decode(out[0, prompt.shape[1]:], skip_special_tokens=True), True)
