"""Calibration text for pruning: pick passages, check they never overlap evaluated items, cut token windows."""

from __future__ import annotations

import hashlib
import json
import random
import warnings
from pathlib import Path

import torch

SHARED = "*"  # key of the one calibration set shared by all languages
SOURCES = ("english", "balanced", "per-language")
ENGLISH = "en"


def _read_file(path: Path) -> list[str]:
    """Passages of a .jsonl file (a "text" field or a bare string per line) or a text file (blank-line separated)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        passages = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if isinstance(record, dict):
                if "text" not in record:
                    raise ValueError(f"calibration file {path} line {number} has no 'text' field")
                record = record["text"]
            passages.append(str(record))
        return passages
    return [block.strip() for block in raw.split("\n\n") if block.strip()]


def _pool_of(pool: dict[str, list[str]], lang: str, source: str) -> list[str]:
    if not pool.get(lang):
        raise ValueError(f"calibration source {source!r} needs passages in {lang!r}, but the pool has none for it")
    return list(pool[lang])


def check_no_overlap(passages: list[str], eval_contexts: set[str], where: str) -> None:
    """Raise ValueError if a calibration passage equals or contains an evaluated item's context."""
    contexts = [c for c in eval_contexts if c.strip()]
    for index, passage in enumerate(passages):
        for context in contexts:
            if context in passage:
                raise ValueError(
                    f"calibration passage {index} of {where} overlaps an evaluated item: it contains the context "
                    f"{context[:60]!r}...; calibration must not see evaluated items"
                )


def calibration_texts(
    source: str, pool: dict[str, list[str]], eval_contexts: set[str], langs: list[str], seed: int
) -> dict[str, list[str]]:
    """Calibration passages by key: "*" for one shared set, or one key per language for `per-language`.

    source: `english` (default, the paper's setup), `balanced` (an equal number of passages per
    evaluated language), `per-language`, or a path to a .txt / .jsonl file. `pool` maps a language
    to passages from items that are not evaluated.
    """
    rng = random.Random(seed)
    if source == "english":
        texts = {SHARED: _pool_of(pool, ENGLISH, source)}
    elif source == "balanced":
        if not langs:
            raise ValueError("calibration source 'balanced' needs at least one evaluated language, but langs is empty")
        per_lang = {lang: _pool_of(pool, lang, source) for lang in langs}
        share = min(len(passages) for passages in per_lang.values())
        texts = {SHARED: [p for lang in langs for p in rng.sample(per_lang[lang], share)]}
    elif source == "per-language":
        texts = {lang: _pool_of(pool, lang, source) for lang in langs}
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(
                f"calibration source must be one of {', '.join(SOURCES)} or a text/JSONL file, but is {source!r}"
            )
        texts = {SHARED: _read_file(path)}
    for key, passages in texts.items():
        if not passages:
            raise ValueError(f"calibration source {source!r} gave no passages for {key!r}")
        check_no_overlap(passages, eval_contexts, f"{source!r}[{key!r}]")
        rng.shuffle(passages)
    return texts


def calibration_batch(tokenizer, texts: list[str], nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """A LongTensor [n, seqlen] of random token windows cut from the shuffled, concatenated texts (as Wanda's C4 loader).

    With fewer than nsamples * seqlen tokens it returns as many disjoint full windows as fit
    (at least one) and warns.
    """
    if nsamples < 1 or seqlen < 1:
        raise ValueError(f"nsamples and seqlen must be at least 1, but are {nsamples} and {seqlen}")
    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    ids = tokenizer("\n\n".join(order), add_special_tokens=False)["input_ids"]
    tokens = torch.tensor(ids, dtype=torch.long)
    total = tokens.numel()
    if total < seqlen:
        raise ValueError(
            f"calibration has {total} tokens, fewer than one window of seqlen={seqlen}; add text or lower seqlen"
        )
    if total < nsamples * seqlen:
        fit = total // seqlen
        warnings.warn(
            f"calibration has {total} tokens, fewer than nsamples x seqlen = {nsamples} x {seqlen}; "
            f"using {fit} disjoint windows instead of {nsamples}",
            stacklevel=2,
        )
        return tokens[: fit * seqlen].reshape(fit, seqlen)
    starts = [rng.randint(0, total - seqlen) for _ in range(nsamples)]
    return torch.stack([tokens[s : s + seqlen] for s in starts])


def fingerprint(source: str, batch: torch.Tensor) -> str:
    """sha256 over the calibration source and its token ids: a cache key for a compressed model."""
    digest = hashlib.sha256()
    digest.update(source.encode("utf-8"))
    digest.update(str(tuple(batch.shape)).encode("ascii"))
    digest.update(batch.to(device="cpu", dtype=torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()
