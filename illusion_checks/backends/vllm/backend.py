"""The vLLM backend: the probes through vLLM's own API, in a worker process (`worker.py`) under a
Python that has vLLM (`ILLUSION_VLLM_PYTHON`; vLLM pins an older transformers than the tool's).

- greedy: `temperature=0`, then the answer-line rule on the token ids (exact);
- MC option log-likelihoods: `prompt_logprobs` summed over each option's tokens (prefix caching
  off, vLLM #42019);
- gold rank and margin: `prompt_logprobs`' rank of the gold token over the whole vocabulary (exact);
- beam-5: the HF backend's beam search (backends/hf/beam.py: generate's rule, with the answer-line
  stop), each step one request for every running beam's next-token top log-probabilities on
  prefix-cached prompts (vLLM's own `LLM.beam_search` has no answer-line stop and keeps and scores
  its candidates by another rule: a different probe);
- samples: `n=10, top_p=0.9` with the item's seed (vLLM's random stream, not the HF backend's).
The tokenizer is the model's own, loaded here with transformers (vLLM uses the same files)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Sequence

from illusion_checks.backends.base import (
    Advance, AnswerProbes, AnswerRequest, Capabilities, DecodeSettings, LoadOptions, Scores, answers,
    compose_answer_probes, gather_scores, score_sequences, truncate_answer,
)
from illusion_checks.backends.hf.load import prepare_tokenizer
from illusion_checks.errors import VLLMError, VLLMSetupError
from illusion_checks.worker_python import worker_python

WORKER = Path(__file__).with_name("worker.py")
PYTHON_ENV = "ILLUSION_VLLM_PYTHON"
MAX_MODEL_LEN = 2048  # the longest prompt (1-shot, 1,024 tokens) plus 32 new ones, with room


def vllm_python() -> str:
    """The Python that runs the worker: `$ILLUSION_VLLM_PYTHON`, else this one when it has vLLM."""
    return worker_python(PYTHON_ENV, "vllm", "vLLM", "--illusion-backend=vllm",
                         "`make vllm` builds .venv-vllm; or `pip install 'illusion-checks[vllm]'`", VLLMSetupError)


class _Worker:
    """One worker process and its request/reply pipe."""

    def __init__(self) -> None:
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.process = subprocess.Popen([vllm_python(), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_tail.append(line.rstrip())

    def call(self, op: str, **request: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps({"op": op, **request}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            last = next((t for t in reversed(self.stderr_tail) if t.strip()), "no output")
            raise VLLMError(f"the vLLM worker stopped during '{op}' (exit {self.process.poll()}): {last}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise VLLMError(f"vLLM '{op}' failed: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("close")
            except VLLMError:
                pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _generation_config(source: str) -> Any:
    """The model's generation config, as the HF engine reads it (its defaults where the folder has none)."""
    from transformers import GenerationConfig  # transformers loads with a model, not with the engine module

    try:
        return GenerationConfig.from_pretrained(source)
    except OSError:
        return GenerationConfig()


def _eos_ids(config: Any, tokenizer: Any) -> set[int]:
    """The ids that end a sequence, from the generation config as the HF decoder reads them."""
    eos = config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


class VLLMBackend:
    """A model loaded in a vLLM worker (see `Backend` in backends/base.py)."""

    name: ClassVar[str] = "vllm"
    capabilities = Capabilities()  # prompt_logprobs ranks over the whole vocabulary; beam search; seeded sampling

    def __init__(self, source: str, options: LoadOptions, seed: int = 0, parallel: tuple[int, int] = (1, 1),
                 args: dict[str, Any] | None = None) -> None:
        from transformers import AutoTokenizer  # transformers loads with a model, not with the engine module

        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=options.trust_remote_code)
        prepare_tokenizer(self.tokenizer)
        self.source = source
        self.worker = _Worker()
        args = dict(args or {})
        try:
            self.info = self.worker.call(
                "load", model=source, dtype=options.dtype, seed=seed,
                max_model_len=args.pop("max_model_len", MAX_MODEL_LEN), tensor_parallel_size=parallel[0],
                pipeline_parallel_size=parallel[1], args={"trust_remote_code": options.trust_remote_code, **args})
        except VLLMError:
            self.worker.close()
            raise
        self.generation_config = _generation_config(source)
        self.eos = _eos_ids(self.generation_config, self.tokenizer)

    def greedy_tokens(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[list[int]]:
        out = []
        for start in range(0, len(prompts), settings.batch_size):
            batch = [list(p) for p in prompts[start:start + settings.batch_size]]
            produced = self.worker.call("greedy", prompts=batch, max_tokens=settings.max_new_tokens)
            out += [truncate_answer(self.tokenizer, row, self.eos, settings.stop_at_newline) for row in produced]
            if advance:
                advance(len(batch))
        return out

    def score(self, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
              ranked: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[Scores]:
        sequences = score_sequences(prompts, continuations, ranked)
        rows = self.worker.call("logprobs", sequences=[ids for ids, _ in sequences],
                                starts=[start for _, start in sequences], top=2)
        # The worker gives each position as [log-probability, rank, the top 2 as [token, log-probability]].
        return gather_scores(continuations, ranked, (
            [(logprob, rank, max((lp for t, lp in top if t != ids[start + k]), default=None))
             for k, (logprob, rank, top) in enumerate(row)] for (ids, start), row in zip(sequences, rows)))

    def beam(self, prompts: Sequence[Sequence[int]], settings: DecodeSettings) -> list[list[str]]:
        import torch

        from illusion_checks.backends.hf.beam import beam_rule, search

        rule = beam_rule(self.generation_config, sorted(self.eos), settings.num_beams, settings.max_new_tokens,
                         settings.stop_at_newline, torch.device("cpu"))
        per_call = max(1, settings.decode_rows // settings.num_beams)
        found: list[list[list[int]]] = []
        for start in range(0, len(prompts), per_call):
            batch = [list(p) for p in prompts[start:start + per_call]]
            found += search(self.tokenizer, len(batch), rule, self._next_log_probs(batch, rule))
        return [answers(self.tokenizer, rows, settings.stop_at_newline) for rows in found]

    def _next_log_probs(self, prompts: list[list[int]], rule: Any) -> Any:
        """A beam step's log-probabilities from the worker: the top `rule.keep` (enough: the search
        keeps that many candidates per prompt over all its beams) of each distinct running beam of
        the prompts that can still change their result, -inf elsewhere."""
        import torch

        def step(index: int, rows: Any, so_far: Any, active: Any) -> Any:
            wanted = {row: prompts[row // rule.num_beams] + tokens for row, tokens in enumerate(so_far.tolist())
                      if active[row // rule.num_beams]}
            distinct = list(dict.fromkeys(map(tuple, wanted.values())))  # at the first step, each prompt once
            tops = dict(zip(distinct, self.worker.call("next_top", sequences=[list(s) for s in distinct],
                                                       top=rule.keep) if distinct else []))
            dense = torch.full((so_far.shape[0], self.info["vocab_size"]), float("-inf"))
            for row, sequence in wanted.items():
                ids, values = zip(*tops[tuple(sequence)])
                dense[row, list(ids)] = torch.tensor(values, dtype=torch.float32)
            return dense
        return step

    def samples(self, prompts: Sequence[Sequence[int]], seeds: Sequence[int],
                settings: DecodeSettings) -> list[list[str]]:
        found = self.worker.call("samples", prompts=[list(p) for p in prompts], seeds=list(seeds),
                                 n=settings.num_samples, top_p=settings.top_p, max_tokens=settings.max_new_tokens)
        return [answers(self.tokenizer, rows, settings.stop_at_newline) for rows in found]

    def answer_probes(self, requests: Sequence[AnswerRequest], settings: DecodeSettings,
                      advance: Advance | None = None) -> list[AnswerProbes]:
        return compose_answer_probes(self, requests, settings, advance)

    def close(self) -> None:
        """Stop the worker: the engine and all its memory go with the process."""
        self.worker.close()
