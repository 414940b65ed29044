"""The in-process Hugging Face transformers backend: one prefill per FF prompt serves greedy,
MC scoring, the answer-start rank, beam-5 and the samples (`prefix.ff_probes`); the other
prompts are decoded greedily token by token through one continuously refilled batch (`stream.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch

from illusion_checks.backends.base import (
    Advance, AnswerProbes, AnswerRequest, Capabilities, DecodeSettings, Scores, answers,
)
from illusion_checks.backends.hf import prefix as P


class HFBackend:
    """A loaded transformers causal LM and its tokenizer (see `Backend` in backends/base.py)."""

    name: ClassVar[str] = "hf"
    capabilities = Capabilities()  # the whole logits row is at hand: exact rank, beam, seeded samples

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.checkpoint: Path | None = None  # the folder saving copies, when the model came from one as shipped

    @classmethod
    def load(cls, source: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             allow_pickle: bool = False) -> "HFBackend":
        """A model by alias, hub id, directory or .gguf (see `load.load_model`)."""
        from illusion_checks.backends.hf.load import load_model

        loaded = load_model(source, device, dtype, trust_remote_code, allow_pickle)
        return cls(loaded.model, loaded.tokenizer)

    def greedy_tokens(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[list[int]]:
        """Through one continuously refilled batch of `batch_size` rows (`prefix.greedy_tokens`)."""
        return P.greedy_tokens(self.model, self.tokenizer, prompts, settings, advance)

    def greedy(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
               advance: Advance | None = None) -> list[str]:
        """Greedy answers (the answer-line rule applied)."""
        return answers(self.tokenizer, self.greedy_tokens(prompts, settings, advance), settings.stop_at_newline)

    @torch.no_grad()
    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
              ranked: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[Scores]:
        prefix = P.prefill(self.model, prompts, self.tokenizer.pad_token_id)
        results = P.score_rows(self.model, prefix, continuations, ranked)
        return [(r.scores, list(r.path)) for r in results]

    @torch.no_grad()
    def beam(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings) -> list[list[str]]:
        prefix = P.prefill(self.model, prompts, self.tokenizer.pad_token_id)
        return P.beam(self.model, self.tokenizer, prefix, settings)

    @torch.no_grad()
    def samples(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int],
                settings: DecodeSettings) -> list[list[str]]:
        prefix = P.prefill(self.model, prompts, self.tokenizer.pad_token_id)
        return P.samples(self.model, self.tokenizer, prefix, settings, seeds)

    def answer_probes(self, requests: Sequence[AnswerRequest], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[AnswerProbes]:
        """All FF probes on one shared prefill per batch (`prefix.ff_probes`)."""
        found = P.ff_probes(self.model, self.tokenizer, [r.prompt for r in requests], [r.golds for r in requests],
                            settings, [r.seed for r in requests], [r.reach for r in requests], advance)
        return [AnswerProbes(f.output, f.mc.scores, f.target, list(f.mc.path), f.beam, f.sample)
                for f in found]

    def close(self) -> None:
        """Drop the model; accelerator memory is returned once no one else holds it."""
        device = next(self.model.parameters()).device
        self.model = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
