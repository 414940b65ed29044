"""lm-evaluation-harness on the benchmark's items: run inside lm-eval's own virtual environment.

    .bench-venv/bin/python benchmarks/lmeval_runner.py requests.json results.json

`requests.json`: {"model_dir", "batch_size", "max_gen_toks", "items": [{"prompt", "options"}]}, the
options already carrying their leading space. `results.json`: per item the four option
log-likelihoods, the raw greedy text (and, where it came back empty, an untimed rerun without the
newline stop), the seconds and counted work of each request type.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from flop_count import ModelShape, Work, WorkCounter
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM


def loglikelihood_requests(items: list[dict[str, Any]]) -> list[Instance]:
    """Four `loglikelihood` requests per item: the prompt as context, an option as continuation."""
    return [Instance("loglikelihood", {}, (item["prompt"], option), k)
            for item in items for k, option in enumerate(item["options"])]


def generate_requests(items: list[dict[str, Any]], max_gen_toks: int, until: list[str]) -> list[Instance]:
    """One greedy `generate_until` per item."""
    gen_kwargs = {"until": until, "max_gen_toks": max_gen_toks, "do_sample": False}
    return [Instance("generate_until", {}, (item["prompt"], dict(gen_kwargs)), 0) for item in items]


def timed(lm: HFLM, shape: ModelShape, call: str, requests: list[Instance]) -> tuple[list[Any], float, Work]:
    """Run one request type through lm-eval, timing it and counting the model's work."""
    with WorkCounter(lm.model, shape) as counter:
        start = time.perf_counter()
        out = getattr(lm, call)(requests, disable_tqdm=True)
        seconds = time.perf_counter() - start
    return out, seconds, counter.work


def main(request_path: str, result_path: str) -> None:
    spec = json.loads(open(request_path).read())
    items, gen_toks = spec["items"], spec["max_gen_toks"]
    lm = HFLM(pretrained=spec["model_dir"], device="cpu", dtype="float32", batch_size=spec["batch_size"])
    shape = ModelShape.of(lm.model)
    # Warm-up on the first item, as the engine gets: thread pools and allocator start cold.
    lm.loglikelihood(loglikelihood_requests(items[:1]), disable_tqdm=True)
    lm.generate_until(generate_requests(items[:1], gen_toks, ["\n"]), disable_tqdm=True)
    ll, ll_s, ll_work = timed(lm, shape, "loglikelihood", loglikelihood_requests(items))
    gen, gen_s, gen_work = timed(lm, shape, "generate_until", generate_requests(items, gen_toks, ["\n"]))
    # A leading newline ends lm-eval's answer empty, while the engine reads the first non-empty
    # line. For the agreement check only (untimed), regenerate those items stopping at EOS alone.
    empty = [i for i, text in enumerate(gen) if not text.strip()]
    rerun = lm.generate_until(generate_requests([items[i] for i in empty], gen_toks, []), disable_tqdm=True) if empty else []
    n_opt = [len(item["options"]) for item in items]
    starts = [sum(n_opt[:i]) for i in range(len(items))]
    result = {
        "scores": [[float(ll[s + k][0]) for k in range(n)] for s, n in zip(starts, n_opt)],
        "generations": gen,
        "untruncated": {str(i): text for i, text in zip(empty, rerun)},
        "seconds": {"loglikelihood": ll_s, "generate_until": gen_s},
        "work": {"loglikelihood": ll_work.to_dict(), "generate_until": gen_work.to_dict()},
        "threads": torch.get_num_threads(),
    }
    with open(result_path, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
