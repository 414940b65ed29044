"""The in-process Hugging Face transformers backend: one prefill per FF prompt serves greedy,
MC scoring, the answer-start rank, beam-5 and the samples (`prefix.ff_probes`); the other
prompts are decoded greedily token by token (`decode.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch

from illusion_checks.backends.base import (
    Advance, AnswerProbes, AnswerRequest, Backend, Capabilities, CompressOptions, DecodeSettings, LoadOptions,
    PhaseProgress, answers,
)
from illusion_checks.backends.hf import prefix as P
from illusion_checks.backends.hf.decode import decode_tokens, pick_greedy


class HFBackend:
    """A loaded transformers causal LM and its tokenizer (see `Backend` in backends/base.py)."""

    name: ClassVar[str] = "hf"
    capabilities = Capabilities()  # the whole logits row is at hand: exact rank, beam, seeded samples

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer

    @classmethod
    def load(cls, source: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             allow_pickle: bool = False) -> "HFBackend":
        """A model by alias, hub id, directory or .gguf (see `load.load_model`)."""
        from illusion_checks.backends.hf.load import load_model

        loaded = load_model(source, device, dtype, trust_remote_code, allow_pickle)
        return cls(loaded.model, loaded.tokenizer)

    def identity(self) -> dict[str, Any]:
        import transformers

        return {"name": self.name, "version": transformers.__version__}

    @torch.no_grad()
    def greedy_tokens(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[list[int]]:
        """Batched over length-sorted prompts; finished rows leave the batch."""
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        out: list[list[int]] = [[] for _ in prompts]
        for batch in P.batches(order, settings.batch_size):
            prefix = P.prefill(self.model, [prompts[i] for i in batch], self.tokenizer.pad_token_id)
            tokens = decode_tokens(self.model, self.tokenizer, prefix.ids, prefix.mask, prefix.cache, pick_greedy,
                                   settings.max_new_tokens, settings.stop_at_newline)
            for i, row in zip(batch, tokens):
                out[i] = row
            if advance:
                advance(len(batch))
        return out

    def greedy(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
               advance: Advance | None = None) -> list[str]:
        """Greedy answers (the answer-line rule applied)."""
        return answers(self.tokenizer, self.greedy_tokens(prompts, settings, advance), settings.stop_at_newline)

    @torch.no_grad()
    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
              ranked: Sequence[tuple[Sequence[int], int | None]]) -> list[tuple[list[float], int | None, float | None]]:
        prefix = P.prefill(self.model, prompts, self.tokenizer.pad_token_id)
        results = P.score_rows(self.model, prefix, continuations, ranked)
        return [(r.scores, r.gold_rank, r.gold_margin) for r in results]

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
        return [AnswerProbes(f.output, f.mc.scores, f.target, f.mc.gold_rank, f.mc.gold_margin, f.beam, f.sample)
                for f in found]

    def close(self) -> None:
        """Drop the model; accelerator memory is returned once no one else holds it."""
        device = next(self.model.parameters()).device
        self.model = None
        if device.type == "cuda":
            torch.cuda.empty_cache()


class HFEngine:
    """What the evaluation asks of the transformers engine besides probing: a model's identity
    before it loads, loading, in-loop compression of a copy, and saving (see `Engine`)."""

    name = "hf"

    def version(self) -> str:
        import transformers

        return transformers.__version__

    def resolve(self, source: str, allow_pickle: bool) -> tuple[str, str]:
        from illusion_checks.backends.hf.load import resolve_source

        return resolve_source(source, allow_pickle)

    def device_type(self, device: str) -> str:
        from illusion_checks.backends.hf.load import resolve_device

        return resolve_device(device).type

    def check_spec_fits(self, spec: str, source: str, trust_remote_code: bool) -> None:
        from illusion_checks.compress.fit import check_spec_fits

        check_spec_fits(spec, source, trust_remote_code)

    def load(self, source: str, options: LoadOptions) -> HFBackend:
        return HFBackend.load(source, options.device, options.dtype, options.trust_remote_code, options.allow_pickle)

    compress_needs_reference = True  # a deep copy of the loaded reference is compressed

    def compress(self, source: str, reference: Callable[[], Backend], spec: str, texts: list[str] | None,
                 options: CompressOptions, load: LoadOptions, progress: PhaseProgress,
                 log: Callable[[str], None]) -> HFBackend:
        """A compressed deep copy of the loaded reference (which stays as it was); calibration
        warnings go to `log`."""
        import copy
        import warnings

        from illusion_checks.backends.hf.load import resolve_device
        from illusion_checks.compress import calibration_batch, compress_model, parse_spec

        loaded = reference()
        assert isinstance(loaded, HFBackend)
        parsed = parse_spec(spec)
        model = copy.deepcopy(loaded.model)
        calibration = None
        if parsed.needs_calibration:
            context = getattr(model.config, "max_position_embeddings", None) or options.seqlen
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                calibration = calibration_batch(loaded.tokenizer, texts or [], options.samples,
                                                min(options.seqlen, context), options.seed)
            for warning in caught:
                log(str(warning.message))
        report = compress_model(model, parsed, calibration, resolve_device(options.device), progress)
        return HFBackend(report.model, loaded.tokenizer)

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path:
        from illusion_checks.compress import save_compressed

        assert isinstance(backend, HFBackend)
        return save_compressed(backend.model, backend.tokenizer, folder, manifest)

    def saved_manifest(self, folder: Path) -> dict[str, Any] | None:
        from illusion_checks.compress import saved_manifest

        return saved_manifest(folder)
