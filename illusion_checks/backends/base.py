"""The backend seam: what every engine (in-process transformers, vLLM, a served endpoint) must do
for the probes, the settings it is given, and the answer-line rule all of them share.

Core modules talk to a model only through this file's `Backend`; nothing here imports an engine."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from illusion_checks.answer_start import Rank, RankTarget, rank_target, worst
from illusion_checks.prompts import Encoded
from illusion_checks.scoring import after_thinking

DEFAULT_BATCH_SIZE = 16  # prompts per forward pass; `--illusion-batch-size`'s default

Advance = Callable[[int], None]  # called with the number of prompts just finished
PhaseProgress = Callable[[int, int], None]  # (done, total) within one phase
# A scored token: its log-probability, its rank (how many tokens are at least as likely, itself
# included: a tie counts against the gold, as vLLM counts; an `Above` where censored), the best other's.
Position = tuple[float, Rank, float | None]
Scores = tuple[list[float], list[tuple[Rank, float | None]]]  # `Backend.score` per prompt: options; (rank, margin) per path token

_ANSWER_LINE_DONE = re.compile(r"\S[^\n]*\n")


@dataclass(frozen=True)
class DecodeSettings:
    """Generation arguments, named as in transformers."""

    max_new_tokens: int = 32
    num_beams: int = 5
    num_samples: int = 10
    top_p: float = 0.9
    stop_at_newline: bool = True
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def decode_rows(self) -> int:
        """Rows per beam or sampling call: decoding activations are one token per row, so a call
        holds several prompts' worth of beams or samples."""
        return 4 * self.batch_size


def answer_text(text: str, stop_at_newline: bool) -> str:
    """The generated answer, after any think span: its first non-empty line when stopping at newlines."""
    text = after_thinking(text) or ""
    if not stop_at_newline:
        return text.strip()
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def answer_line_done(text: str) -> bool:
    """Whether generated text already holds a complete non-empty line after any think span: the answer is over."""
    answer = after_thinking(text)
    return answer is not None and bool(_ANSWER_LINE_DONE.search(answer))




class Tokenizer(Protocol):
    """The part of a Hugging Face tokenizer the core uses (vLLM's tokenizer is one; a served
    endpoint's `/tokenize` can be wrapped as one)."""

    pad_token_id: int | None
    chat_template: Any

    def __call__(self, text: str, add_special_tokens: bool = True) -> Mapping[str, Any]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...

    def batch_decode(self, rows: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]: ...

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                            tokenize: bool = False, **template_variables: Any) -> str: ...


RANK_EXACT = "exact"  # the rank over the whole vocabulary
RANK_TOP_K = "top-k"  # known only within the top `rank_top_k` tokens; beyond it, `Above(k)`


@dataclass(frozen=True)
class Capabilities:
    """What a backend can measure. A probe it cannot run is recorded as null with the reason
    given here, never approximated silently."""

    rank: str = RANK_EXACT
    rank_top_k: int | None = None
    beam: str | None = None  # None: beam search available; else why not
    sampling: str | None = None  # None: seeded nucleus sampling available; else why not

    def unavailable(self) -> dict[str, str]:
        """Probe name -> why this backend cannot run it."""
        return {probe: reason for probe, reason in (("beam", self.beam), ("sample", self.sampling)) if reason}

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "rank_top_k": self.rank_top_k, "beam": self.beam is None,
                "sampling": self.sampling is None, "unavailable": self.unavailable()}


@dataclass(frozen=True)
class AnswerRequest:
    """One FF prompt with everything read off it: its MC options (`prompt.option_ids`), the golds
    (gold first, then aliases) for the answer-start rank, the item's sampling seed, and whether
    the beam and sampling probes run."""

    prompt: Encoded
    golds: tuple[str, ...]
    seed: int
    reach: bool


@dataclass(frozen=True)
class AnswerProbes:
    """Everything read off one FF prompt: the greedy answer, each option's summed log-probability,
    the gold's rank and margin at the answer start (and what was ranked), beam and sampled answers
    (None when not run: `unavailable` says why when the backend cannot)."""

    output: str
    scores: list[float]
    target: RankTarget
    path_ranks: list[tuple[Rank, float | None]]  # (rank, margin) at each of `target.path`'s positions
    beam: list[str] | None
    sample: list[str] | None
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def gold_rank(self) -> Rank:
        """The worst rank along the path (None when nothing was ranked; `Above` when censored)."""
        return worst(self.path_ranks)[0]

    @property
    def gold_margin(self) -> float | None:
        """The smallest margin along the path."""
        return worst(self.path_ranks)[1]


@runtime_checkable
class Backend(Protocol):
    """One loaded model behind an engine. Every method takes a batch of prepared prompts (token
    ids of the exact prompt); each returns one result per prompt, in order."""

    name: ClassVar[str]
    tokenizer: Tokenizer
    capabilities: Capabilities

    def greedy_tokens(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[list[int]]:
        """Greedy continuations' token ids (at most `max_new_tokens`; the answer-line stop when
        `settings.stop_at_newline`)."""
        ...

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
              ranked: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[Scores]:
        """Per prompt: each continuation's summed log-probability after it, and for `ranked[i] =
        (conditioned_ids, path)` each path token's rank after prompt + conditioned_ids + the path
        before it (1 = most likely) with its log-probability margin over the best other token."""
        ...

    def beam(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings) -> list[list[str]]:
        """`num_beams` beam-search answers per prompt, best first."""
        ...

    def samples(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int],
                settings: DecodeSettings) -> list[list[str]]:
        """`num_samples` nucleus (top_p) answers per prompt, drawn from the prompt's own seed."""
        ...

    def answer_probes(self, requests: Sequence[AnswerRequest], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[AnswerProbes]:
        """Every probe read off the FF prompts (see `compose_answer_probes`, which any backend may
        use; an engine that shares the prompt's prefill across them overrides it)."""
        ...

    def close(self) -> None:
        """Free the model (and its accelerator memory) before another is loaded."""
        ...


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded: device, dtype, and what the user allows to run or unpickle."""

    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    seed: int = 0  # an engine's own sampling seed (per-request seeds are given with each request)
    parallel: tuple[int, int] = (1, 1)  # tensor, pipeline parallel size (engines that shard a model)
    engine_args: tuple[tuple[str, Any], ...] = ()  # extra engine arguments (--illusion-backend-args)


@dataclass(frozen=True)
class CompressOptions:
    """In-loop compression's calibration sizes, seed and device."""

    samples: int = 128
    seqlen: int = 2048
    seed: int = 42
    device: str = "auto"


@dataclass(frozen=True)
class CompressTarget:
    """The compressed model's one identity, computed by the evaluation: the manifest saved with it
    (`fingerprint`, `reference`, `spec`, `calibration`) and `folder`, under the evaluation's cache,
    where an engine that loads models from disk keeps it (reused while its manifest's fingerprint
    matches)."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        """The compressed model's fingerprint: the reference's, the spec and the calibration texts."""
        return str(self.manifest["fingerprint"])


class Engine(Protocol):
    """A kind of backend, before and around the models it loads: what identifies a model source
    without loading it, loading, and (where the engine can) compressing a loaded model's copy
    and saving it. `backends.engine(name)` returns one. The engine's name and version (`version()`)
    are part of every outcome cache key and of the results' `config.backend`: they are known before
    any model loads, so a cached run loads none."""

    name: str

    def version(self) -> str: ...

    def resolve(self, source: str, allow_pickle: bool) -> tuple[str, str]:
        """(where the model is, its fingerprint): fails fast, before anything loads."""
        ...

    def device_type(self, device: str) -> str: ...

    def check_spec_fits(self, spec: str, source: str, trust_remote_code: bool) -> None:
        """Raise ValueError when a compression spec cannot apply to the model at `source`."""
        ...

    def compression_identity(self, spec: str, source: str, trust_remote_code: bool) -> dict[str, Any] | None:
        """What the compressed model's fingerprint and `config.compressed.llmc` add beyond the spec (an llmc
        recipe as it runs, its digest, llmcompressor's version), or None."""
        ...

    def load(self, source: str, options: LoadOptions) -> Backend: ...

    compress_needs_reference: bool  # False: compress reads the reference from its source, so the loaded
    # reference is released first (two engines are never resident at once)

    def compress(self, source: str, reference: Callable[[], Backend], spec: str, target: CompressTarget,
                 texts: list[str] | None, options: CompressOptions, load: LoadOptions, progress: PhaseProgress,
                 log: Callable[[str], None]) -> Backend:
        """A compressed copy of the reference model at `source` (`reference()` gives it loaded, and is
        left as it was), loaded with `load`. `target` is its identity; an engine that loads from a
        folder keeps it in `target.folder` (an in-process engine need not write it)."""
        ...

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path: ...

    def saved_manifest(self, folder: Path) -> dict[str, Any] | None: ...


class ServedEngine(Engine, Protocol):
    """The engine of served models: prompts go out as token ids, built by a tokenizer that must be
    the server's own on the run's text."""

    def check_tokenizer(self, source: str, texts: Mapping[str, str]) -> None:
        """Raise ValueError when the tokenizer that builds prompts for `source` differs from the
        server's on any of `texts` (language -> a passage of the run)."""
        ...


def truncate_answer(tokenizer: Tokenizer, tokens: Sequence[int], eos: set[int], stop_at_newline: bool) -> list[int]:
    """The new tokens as the shared decoder ends them: at an end token (kept), or, when stopping at
    newlines, at the token that completes the first non-empty line. For engines that generate the
    full `max_new_tokens` and cannot stop on the answer-line rule themselves."""
    out: list[int] = []
    for token in tokens:
        out.append(token)
        if token in eos:
            break
        if stop_at_newline and "\n" in tokenizer.decode([token]) and \
                answer_line_done(tokenizer.decode(out, skip_special_tokens=True)):
            break
    return out


def answers(tokenizer: Tokenizer, produced: Sequence[Sequence[int]], stop_at_newline: bool) -> list[str]:
    """Each row's generated token ids as its answer text."""
    texts = tokenizer.batch_decode(produced, skip_special_tokens=True)
    return [answer_text(text, stop_at_newline) for text in texts]


def score_sequences(prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
                    ranked: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[tuple[list[int], int]]:
    """`Backend.score`'s work as whole sequences, each with the position its scored tokens start at:
    per prompt, each option after it, then the ranked path after prompt + conditioned ids (when
    there is one). For engines that score a sequence's own tokens (`prompt_logprobs`, `echo`)."""
    sequences: list[tuple[list[int], int]] = []
    for prompt, options, (conditioned, path) in zip(prompts, continuations, ranked):
        sequences += [([*prompt, *option], len(prompt)) for option in options]
        if path:
            sequences.append(([*prompt, *conditioned, *path], len(prompt) + len(conditioned)))
    return sequences


def gather_scores(continuations: Sequence[Sequence[Sequence[int]]], ranked: Sequence[tuple[Sequence[int], Sequence[int]]],
                  rows: Iterable[Sequence[Position]]) -> list[Scores]:
    """`Backend.score`'s result from `score_sequences`' sequences, scored in order (one row of
    positions each): each option's summed log-probability, then each path token's rank and its
    margin over the best other token (None when the engine named no other)."""
    remaining = iter(rows)
    results: list[Scores] = []
    for options, (_, path) in zip(continuations, ranked):
        scores = [float(sum(logprob for logprob, _, _ in next(remaining))) for _ in options]
        positions = list(next(remaining)) if path else []
        results.append((scores, [(rank, None if other is None else logprob - other)
                                 for logprob, rank, other in positions]))
    return results


def compose_answer_probes(backend: Backend, requests: Sequence[AnswerRequest], settings: DecodeSettings,
                          advance: Advance | None = None) -> list[AnswerProbes]:
    """The FF probes from a backend's separate operations: greedy, then the rank target at the
    greedy answer's start, then one scoring pass (options and rank), then beam and samples for the
    items that reach (those the backend can run). `advance` hears each batch."""
    out: list[AnswerProbes] = []
    unavailable = backend.capabilities.unavailable()
    tok = backend.tokenizer
    for start in range(0, len(requests), settings.batch_size):
        batch = requests[start:start + settings.batch_size]
        prompts = [r.prompt.prompt_ids for r in batch]
        tokens = backend.greedy_tokens(prompts, settings)
        targets = [rank_target(tok, r.prompt.prompt, t, r.golds, r.prompt.chat, r.prompt.prompt_ids)
                   for r, t in zip(batch, tokens)]
        ranked = [(t.conditioned_ids, t.path) for t in targets]
        scored = backend.score(prompts, [r.prompt.option_ids for r in batch], ranked)
        reach = [j for j, r in enumerate(batch) if r.reach]
        beams = dict(zip(reach, backend.beam([prompts[j] for j in reach], settings))) \
            if reach and "beam" not in unavailable else {}
        samples = dict(zip(reach, backend.samples([prompts[j] for j in reach], [batch[j].seed for j in reach],
                                                  settings))) if reach and "sample" not in unavailable else {}
        texts = answers(tok, tokens, settings.stop_at_newline)
        for j, r in enumerate(batch):
            scores, path_ranks = scored[j]
            missing = {probe: why for probe, why in unavailable.items() if r.reach}
            out.append(AnswerProbes(texts[j], scores, targets[j], path_ranks, beams.get(j), samples.get(j), missing))
        if advance:
            advance(len(batch))
    return out
