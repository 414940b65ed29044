"""The paper's prompts (Appendix B and C), with context truncation to a token budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

ANSWER_CUE = "Answer in a few words:"
EXEMPLAR_CHARS = 300
EVAL_CHARS = 500


@dataclass(frozen=True)
class PromptSettings:
    """How prompts are built and capped."""

    max_prompt_tokens: int = 512
    one_shot_max_prompt_tokens: int = 1024
    chat_template: bool = False
    thinking: bool = False  # the chat template's enable_thinking (Qwen3): off, as the paper evaluates


def ff_prompt(context: str, question: str) -> str:
    """Open generation (FF): Appendix B's prompt."""
    return f"Context: {context}\n\nQuestion: {question}\n\n{ANSWER_CUE}"


def cs_prompt(context: str, question: str, candidates: Sequence[str]) -> str:
    """Candidate-shown generation (CS): the FF prompt with the options listed before the cue."""
    listed = "\n".join(f"- {candidate}" for candidate in candidates)
    return f"Context: {context}\n\nQuestion: {question}\n\nCandidate answers:\n{listed}\n\n{ANSWER_CUE}"


def short_prompt(context: str, question: str, answer: str | None = None, chars: int = EVAL_CHARS) -> str:
    """Appendix C's compact format; with `answer` it is the 1-shot exemplar."""
    prompt = f"Context: {context[:chars]}\nQuestion: {question}\n{ANSWER_CUE}"
    return prompt if answer is None else f"{prompt} {answer}"


def one_shot_prompt(exemplar: tuple[str, str, str], context: str, question: str) -> str:
    """One exemplar (context cut to 300 characters), a blank line, then the item (500)."""
    shot = short_prompt(exemplar[0], exemplar[1], exemplar[2], chars=EXEMPLAR_CHARS)
    return f"{shot}\n\n{short_prompt(context, question)}"


def wrap(tokenizer: Any, prompt: str, settings: PromptSettings) -> str:
    """Wrap in the model's chat template when asked (instruction-tuned models). The template gets
    `enable_thinking` (a template that does not read it ignores it): off, a Qwen3 template writes an
    empty think span into the prompt and the model answers at once (paper Appendix B(7))."""
    if not settings.chat_template:
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("--illusion-chat-template was given but the tokenizer has no chat template")
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         enable_thinking=settings.thinking)


def fit_context(tokenizer: Any, build: Any, context: str, max_tokens: int) -> tuple[str, str, bool]:
    """Shorten the passage (never the question or the cue) until `build(context)` fits the cap:
    (the prompt, the passage it holds, whether the passage was cut)."""
    truncated = False
    for _ in range(20):
        prompt = build(context)
        n_tokens = len(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        if n_tokens <= max_tokens or not context:
            return prompt, context, truncated
        keep = max(0, int(len(context) * max_tokens / n_tokens * 0.95) - 1)
        context, truncated = context[:keep], True
    return build(context), context, truncated


@dataclass(frozen=True)
class Encoded:
    """A prompt (text and token ids) and, for each MC option, its continuation ids."""

    prompt_ids: list[int]
    option_ids: list[list[int]]
    gold_token_boundary_ok: bool
    prompt: str = ""
    chat: bool = False


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
    return Encoded(prompt_ids, option_ids, all_ok, prompt, chat)
