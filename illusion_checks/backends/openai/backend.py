"""A served model through `/v1/completions` (see `Backend` in backends/base.py). Prompts are sent as
token ids, so the server sees exactly the prompt the other backends see.

- every decoding request states the neutral sampling state (`discovery.NEUTRAL`: no top-k, min-p or
  penalties) in the fields the server accepts, so no server default from the model's
  generation_config.json applies (`--illusion-server-sampling=server`: none, so they all do);
- greedy: `temperature=0`, `max_tokens=32`, then the answer-line rule on the returned token ids
  (an end token is the last id of a choice that stopped without a stop string);
- MC option log-likelihoods: each option's prompt-token log-probabilities, summed;
- gold rank and margin: vLLM's `prompt_logprobs` rank (exact), or the rank within `echo` +
  `logprobs`' top k, which is `k + 1` when the gold is beyond it (`probing` records that as
  `gold_rank_above: k`, never as a rank);
- beam-5: vLLM's `use_beam_search` (`n=5`); samples: `n=10, top_p=0.9, seed`.
Requests go out concurrently (`--illusion-max-connections`); the server batches them."""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from illusion_checks.answer_start import Above
from illusion_checks.backends.base import (
    Advance, AnswerProbes, AnswerRequest, DecodeSettings, Position, Scores, answer_text, compose_answer_probes,
    gather_scores, score_sequences, truncate_answer,
)
from illusion_checks.backends.openai.client import Client
from illusion_checks.backends.openai.discovery import PROMPT_LOGPROBS, ServerProfile, echo_length
from illusion_checks.errors import ServerError


class OpenAIBackend:
    """One served model (its client, the profile `discover` found, and its tokenizer)."""

    name: ClassVar[str] = "openai"

    def __init__(self, client: Client, profile: ServerProfile, tokenizer: Any) -> None:
        self.client, self.profile, self.tokenizer = client, profile, tokenizer
        self.capabilities = profile.capabilities()
        self.neutral = profile.sent  # stated on every decoding request (discovery.NEUTRAL; none when "server")

    def _complete(self, body: dict[str, Any], expect: int = 1) -> list[dict[str, Any]]:
        reply = self.client.post("/v1/completions", {"model": self.profile.model, **body})
        choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0)) if isinstance(reply, dict) else []
        if len(choices) < expect:
            raise ServerError(f"{self.client.label}: /v1/completions returned {len(choices)} choices, not {expect}")
        return choices

    def greedy_tokens(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[list[int]]:
        def one(prompt: Sequence[int]) -> list[int]:
            body = {"prompt": list(prompt), "max_tokens": settings.max_new_tokens, "temperature": 0, **self.neutral}
            choice = self._complete({**body, "return_token_ids": True} if self.profile.token_ids else body)[0]
            if self.profile.token_ids:
                ids = [int(i) for i in choice["token_ids"]]
            else:
                ids = list(self.tokenizer(choice.get("text") or "", add_special_tokens=False)["input_ids"])
            ended = choice.get("finish_reason") == "stop" and choice.get("stop_reason") is None and self.profile.token_ids
            eos = {ids[-1]} if ended and ids else set()
            if eos and hasattr(self.tokenizer, "special_ids"):
                self.tokenizer.special_ids.update(eos)
            return truncate_answer(self.tokenizer, ids, eos, settings.stop_at_newline)

        out = self.client.map(one, prompts)
        if advance:
            advance(len(prompts))
        return out

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
              ranked: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[Scores]:
        sequences = score_sequences(prompts, continuations, ranked)
        return gather_scores(continuations, ranked, self.client.map(self._prompt_logprobs, sequences))

    def _prompt_logprobs(self, sequence: tuple[list[int], int]) -> list[Position]:
        """Per position from `start`: the token's log-probability, its rank, and the best other token's."""
        ids, start = sequence
        if self.profile.scoring == PROMPT_LOGPROBS:
            entries = self._complete({"prompt": ids, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 2})[0]
            positions = entries.get("prompt_logprobs") or []
            echo_length(self.client.label, "prompt_logprobs", len(positions), len(ids))
            return [_ranked(positions[p], ids[p]) for p in range(start, len(ids))]
        k = self.profile.rank_top_k
        assert k is not None
        echoed = self._complete({"prompt": ids, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": k})[0]
        logprobs = echoed.get("logprobs") or {}
        values, tops, texts = (logprobs.get(key) or [] for key in ("token_logprobs", "top_logprobs", "tokens"))
        echo_length(self.client.label, "echo", len(values) - 1, len(ids))
        return [_within_top(values[p], tops[p] or {}, k, texts[p] if len(texts) == len(values) else None)
                for p in range(start, len(ids))]

    def beam(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings) -> list[list[str]]:
        def one(prompt: Sequence[int]) -> list[str]:
            choices = self._complete({"prompt": list(prompt), "max_tokens": settings.max_new_tokens, "temperature": 0,
                                      "use_beam_search": True, "n": settings.num_beams}, expect=settings.num_beams)
            return [answer_text(c.get("text") or "", settings.stop_at_newline) for c in choices]

        return self.client.map(one, prompts)

    def samples(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int],
                settings: DecodeSettings) -> list[list[str]]:
        def one(job: tuple[Sequence[int], int]) -> list[str]:
            choices = self._complete({"prompt": list(job[0]), "max_tokens": settings.max_new_tokens, "n": settings.num_samples,
                                      "temperature": 1.0, "top_p": settings.top_p, "seed": job[1], **self.neutral},
                                     expect=settings.num_samples)
            return [answer_text(c.get("text") or "", settings.stop_at_newline) for c in choices]

        return self.client.map(one, list(zip(prompts, seeds)))

    def answer_probes(self, requests: Sequence[AnswerRequest], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[AnswerProbes]:
        return compose_answer_probes(self, requests, settings, advance)

    def close(self) -> None:
        self.client.close()


def _ranked(entry: dict[str, Any] | None, token: int) -> Position:
    """A `prompt_logprobs` position: {token id: {logprob, rank}} holding the token and the top 2.
    vLLM's rank counts the tokens at least as likely as this one, itself included: the tool's rule."""
    if not entry or str(token) not in entry:
        raise ServerError(f"the server's prompt_logprobs lack token {token}")
    own = entry[str(token)]
    others = [value["logprob"] for key, value in entry.items() if key != str(token)]
    return float(own["logprob"]), int(own["rank"]), max(others, default=None)


def _within_top(logprob: float, top: dict[str, float], k: int, text: str | None) -> Position:
    """An `echo` position: the token's log-probability, and the top k's keyed by their *text*.

    Tokens of the same text (byte-fallback pieces, say) share one key, so the listed values are
    distinct tokens but not always all of the top k. The rank (tokens at least as likely, itself
    included) is exact only when the k keys are k tokens and the token is among them; beyond a
    full top k it is censored above k; and where keys collided (fewer than k, or the token's own
    text keyed to another value), censored above the tokens seen to be at least as likely."""
    own = top.get(text) == logprob if text is not None else logprob in top.values()
    others = list(top.values())
    if own:
        others.remove(logprob)
    at_least = sum(value >= logprob for value in others)
    best = max(others, default=None)
    if len(top) >= k:
        return float(logprob), at_least + 1 if own else Above(k), best
    return float(logprob), Above(at_least), best
