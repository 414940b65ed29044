"""The vLLM side of the vLLM backend: runs as a script under a Python that has vLLM
(`ILLUSION_VLLM_PYTHON`), holds one `vllm.LLM`, and answers JSON-line requests on stdin.

It imports only the standard library and vLLM (it is run by path, not as part of the package), so
vLLM's own pins (an older transformers) never meet the tool's. Replies go to the stdout it was
started with; everything else (vLLM's logs, prints) is sent to stderr.

Requests (one JSON object per line) and their results:
  load     {model, dtype, seed, max_model_len, tensor_parallel_size, pipeline_parallel_size, args}
           -> {version, device, dtype, vocab_size}
  greedy   {prompts, max_tokens}                    -> per prompt, its new token ids (an end token kept)
  logprobs {sequences, starts, top}                 -> per sequence, per position >= its start:
                                                       [token logprob, rank over the vocabulary, top: [[id, logprob], ...]]
  next_top {sequences, top}                         -> per sequence, its next token's top log-probabilities,
                                                       [[id, logprob], ...] best first (a beam search step)
  samples  {prompts, seeds, n, top_p, max_tokens}   -> per prompt, n new-token-id lists
  close    {}                                       -> null, then the worker exits
Each reply is {"ok": true, "result": ...} or {"ok": false, "error": "one line"}.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core runs in this process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def _bind_cpu_ranks(ranks: int) -> None:
    """vLLM's CPU backend binds each rank's OpenMP threads to one NUMA node of its own and stops when
    there are fewer nodes than ranks (utils/ompmultiprocessing.py:216). Unless the user bound them
    (VLLM_CPU_OMP_THREADS_BIND), split this process's CPUs among the ranks, in turn when there are
    fewer CPUs than ranks ("0|1|0" for three ranks on two CPUs)."""
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    size = max(1, len(cpus) // ranks)
    groups = [cpus[(k * size) % len(cpus):(k * size) % len(cpus) + size] for k in range(ranks)]
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(",".join(map(str, group)) for group in groups)


class Worker:
    def __init__(self) -> None:
        self.llm: Any = None

    def load(self, model: str, dtype: str, seed: int, max_model_len: int, tensor_parallel_size: int,
             pipeline_parallel_size: int, args: dict[str, Any]) -> dict[str, Any]:
        import vllm
        from vllm.platforms import current_platform

        device = "cpu" if current_platform.is_cpu() else current_platform.device_type
        if dtype == "auto":  # the tool's policy on every backend: float32 on the CPU, bfloat16 on an accelerator
            dtype = "float32" if device == "cpu" else "bfloat16"
        # Prefix caching speeds beam search (every step re-reads its beams' prefixes); the prompt
        # logprob requests never read the cache (`skip_reading_prefix_cache`), since with it their
        # values can depend on request order (vLLM #42019).
        # max_logprobs: a beam step asks for max(2, 1 + #eos) * width candidates (vLLM's default cap is 20).
        ranks = tensor_parallel_size * pipeline_parallel_size
        if device == "cpu" and ranks > 1:
            _bind_cpu_ranks(ranks)
        # Pipeline stages on the CPU need the compiled model runner: an eager one skips the dummy run
        # that allocates the stages' intermediate tensors (vLLM 0.32 v1/worker/cpu_model_runner.py:85),
        # and the second stage's first step fails (gpu_model_runner.py:3174).
        eager = device == "cpu" and pipeline_parallel_size == 1
        options = {"max_model_len": max_model_len, "enforce_eager": eager, "enable_prefix_caching": True,
                   "max_logprobs": 64,
                   # On the CPU, a seeded request whose prefill is split over steps fails ("CPU Generator
                   # does not use offset", vLLM 0.32): keep each prefill whole there. And a prefix-cached
                   # request recomputes its last partial KV block: with the CPU's default 128-token block,
                   # a beam step would prefill up to 127 tokens per beam again; 32 is the CPU attention's
                   # smallest block (a step of 60 beams: 1.4 s instead of 4.2 s on SmolLM2).
                   **({"enable_chunked_prefill": False, "block_size": 32} if device == "cpu" else {}), **args}
        self.llm = vllm.LLM(model=model, tokenizer=model, dtype=dtype, seed=seed,
                            tensor_parallel_size=tensor_parallel_size,
                            pipeline_parallel_size=pipeline_parallel_size, **options)
        vocab = self.llm.llm_engine.model_config.get_vocab_size()
        return {"version": vllm.__version__, "device": device, "dtype": dtype, "vocab_size": vocab}

    def _generate(self, prompts: list[list[int]], params: Any) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False)

    def greedy(self, prompts: list[list[int]], max_tokens: int) -> list[list[int]]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, detokenize=False)
        return [list(out.outputs[0].token_ids) for out in self._generate(prompts, params)]

    def logprobs(self, sequences: list[list[int]], starts: list[int], top: int) -> list[list[Any]]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=top, detokenize=False, skip_reading_prefix_cache=True)
        result = []
        for seq, start, out in zip(sequences, starts, self._generate(sequences, params)):
            rows = []
            for position in range(start, len(seq)):
                entry = out.prompt_logprobs[position]
                own = entry[seq[position]]
                others = sorted(((t, lp.logprob) for t, lp in entry.items()), key=lambda x: -x[1])[:top]
                rows.append([own.logprob, own.rank, [[t, lp] for t, lp in others]])
            result.append(rows)
        return result

    def next_top(self, sequences: list[list[int]], top: int) -> list[list[list[Any]]]:
        """One beam-search step: each sequence's next-token log-probabilities (vLLM's raw log-softmax
        of the logits, before any sampling setting), its `top` best. The sequences share their
        prompt, and each step's share the last step's, so prefix caching prefills only what is new."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=top, detokenize=False)
        outs = self._generate(sequences, params)
        return [sorted(([t, lp.logprob] for t, lp in out.outputs[0].logprobs[0].items()), key=lambda x: -x[1])[:top]
                for out in outs]

    def samples(self, prompts: list[list[int]], seeds: list[int], n: int, top_p: float,
                max_tokens: int) -> list[list[list[int]]]:
        from vllm import SamplingParams

        params = [SamplingParams(n=n, temperature=1.0, top_p=top_p, seed=seed, max_tokens=max_tokens,
                                 detokenize=False) for seed in seeds]
        return [[list(c.token_ids) for c in out.outputs] for out in self._generate(prompts, params)]


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # vLLM's logs and any print go to stderr, never into the replies
    sys.stdout = sys.stderr
    worker = Worker()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "close":
            replies.write(json.dumps({"ok": True, "result": None}) + "\n")
            break
        try:
            reply = {"ok": True, "result": getattr(worker, op)(**request)}
        except Exception as error:  # the client raises it with the worker's one-line reason
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:500]
            reply = {"ok": False, "error": reason}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
