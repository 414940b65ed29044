"""Calibration text for pruning: pick passages, check they never overlap evaluated items, cut token windows."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # torch is imported where it is used: option checks import SOURCES without it
    import torch

SHARED = "*"  # key of the one calibration set shared by all languages
SOURCES = ("english", "balanced", "per-language", "embedded", "c4")
ENGLISH = "en"
C4_REPO = "allenai/c4"
C4_FILES = {"train": "en/c4-train.00000-of-01024.json.gz"}  # the shard Wanda and SparseGPT read
ALTERNATIVES = "pass --illusion-calibration=embedded (offline), c4, or a .txt/.jsonl file"
OFFLINE_ALTERNATIVES = "pass --illusion-calibration=embedded or a .txt/.jsonl file to calibrate offline"
Notice = Callable[[str | None, str], None]  # (language or None, one-line message)


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


def _overlaps(passage: str, contexts: list[str]) -> bool:
    return any(context in passage for context in contexts)


def embedded_corpus(eval_contexts: set[str]) -> dict[str, list[str]]:
    """The fixture QA set's passages by language (shipped with the package, so offline), minus every
    passage that equals or contains an evaluated context."""
    from illusion_checks.datasets import load_dataset

    contexts = [c for c in eval_contexts if c.strip()]
    return {lang: [p for p in dict.fromkeys(item.context for item in items) if not _overlaps(p, contexts)]
            for lang, items in load_dataset("fixtures").by_lang.items()}


def c4_passages(count: int) -> list[str]:
    """The first `count` passages of the C4 shard the paper calibrates on (Appendix B); needs the network."""
    needs = f"calibration source 'c4' streams {C4_REPO} from the Hugging Face hub and needs the network"
    from huggingface_hub import HfApi, constants

    offline = f"{needs}, but HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set; {OFFLINE_ALTERNATIVES}"
    if constants.HF_HUB_OFFLINE:
        raise ValueError(offline)
    import datasets as hf

    if hf.config.HF_HUB_OFFLINE or hf.config.HF_DATASETS_OFFLINE:
        raise ValueError(offline)
    try:
        # One quick request first: offline, the streaming loader retries for half a minute before failing.
        HfApi().dataset_info(C4_REPO, timeout=10)
        stream = hf.load_dataset(C4_REPO, data_files=C4_FILES, split="train", streaming=True)
        return [row["text"] for row in itertools.islice(stream, count)]
    except Exception as error:  # any failure to reach or read the hub; re-raised, with its cause chained
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
        raise ValueError(f"{needs}, but reading it failed ({type(error).__name__}: {reason}); "
                         f"{OFFLINE_ALTERNATIVES}") from error


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


def _missing(source: str, lang: str, fallback: bool) -> ValueError:
    where = "neither the data set nor the embedded fixture corpus has an" if fallback else "the data set has no"
    return ValueError(f"calibration source {source!r} needs passages in {lang!r}, but {where} unevaluated passage "
                      f"in it; {ALTERNATIVES}")


class _Passages:
    """Unevaluated passages per language: the data set's own, else (for english and balanced) the embedded corpus's."""

    def __init__(self, source: str, pool: dict[str, list[str]], eval_contexts: set[str], notice: Notice) -> None:
        self.source, self.pool, self.eval_contexts, self.notice = source, pool, eval_contexts, notice
        self._embedded: dict[str, list[str]] | None = None

    def embedded(self) -> dict[str, list[str]]:
        if self._embedded is None:
            self._embedded = embedded_corpus(self.eval_contexts)
        return self._embedded

    def of(self, lang: str, fallback: bool) -> list[str]:
        if self.pool.get(lang):
            return list(self.pool[lang])
        if not fallback or not self.embedded().get(lang):
            raise _missing(self.source, lang, fallback)
        passages = list(self.embedded()[lang])
        self.notice(lang, f"calibration {self.source!r}: the data set has no unevaluated passages in {lang!r}; "
                          f"using the embedded fixture corpus's {len(passages)} {lang!r} passages")
        return passages


def calibration_texts(
    source: str, pool: dict[str, list[str]], eval_contexts: set[str], langs: list[str], seed: int,
    *, nsamples: int = 128, notice: Notice | None = None,
) -> dict[str, list[str]]:
    """Calibration passages by key: "*" for one shared set, or one key per language for `per-language`.

    source: `english` (default, the paper's setup), `balanced` (an equal number of passages per
    evaluated language), `per-language`, `embedded` (the fixture QA set's passages in every
    language, offline), `c4` (the first `nsamples` passages of the paper's C4 shard, online), or a
    path to a .txt / .jsonl file. `pool` maps a language to passages from items that are not
    evaluated; `english` and `balanced` fall back to the embedded corpus for a language the pool
    lacks, and say so through `notice(lang, message)`. No passage may equal or contain an
    evaluated context, whatever the source.
    """
    rng = random.Random(seed)
    passages = _Passages(source, pool, eval_contexts, notice or (lambda lang, message: None))
    if source == "english":
        texts = {SHARED: passages.of(ENGLISH, fallback=True)}
    elif source == "balanced":
        if not langs:
            raise ValueError("calibration source 'balanced' needs at least one evaluated language, but langs is empty")
        per_lang = {lang: passages.of(lang, fallback=True) for lang in langs}
        share = min(len(chosen) for chosen in per_lang.values())
        texts = {SHARED: [p for lang in langs for p in rng.sample(per_lang[lang], share)]}
    elif source == "per-language":
        texts = {lang: passages.of(lang, fallback=False) for lang in langs}
    elif source == "embedded":
        texts = {SHARED: [p for lang in sorted(passages.embedded()) for p in passages.embedded()[lang]]}
    elif source == "c4":
        texts = {SHARED: c4_passages(nsamples)}
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(
                f"calibration source must be one of {', '.join(SOURCES)} or a text/JSONL file, but is {source!r}"
            )
        texts = {SHARED: _read_file(path)}
    for key, chosen in texts.items():
        if not chosen:
            raise ValueError(f"calibration source {source!r} gave no passages for {key!r}; {ALTERNATIVES}")
        check_no_overlap(chosen, eval_contexts, f"{source!r}[{key!r}]")
        rng.shuffle(chosen)
    return texts


def calibration_batch(tokenizer, texts: list[str], nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """A LongTensor [n, seqlen] of random token windows cut from the shuffled, concatenated texts (as Wanda's C4 loader).

    With fewer than nsamples * seqlen tokens it returns as many disjoint full windows as fit
    (at least one) and warns.
    """
    import torch

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
    import torch

    digest = hashlib.sha256()
    digest.update(source.encode("utf-8"))
    digest.update(str(tuple(batch.shape)).encode("ascii"))
    digest.update(batch.to(device="cpu", dtype=torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()


def calibration_pool(dataset: Any, evaluated_items: Sequence[Any]) -> tuple[dict[str, list[str]], set[str]]:
    """Per language, the data set's passages no evaluated item uses (the calibration candidates),
    and the evaluated passages. XQuAD asks several questions per passage: every evaluated passage
    is excluded, not just the evaluated items."""
    evaluated = {item.context for item in evaluated_items}
    pool = {lang: list(dict.fromkeys(i.context for i in items if i.context not in evaluated))
            for lang, items in dataset.by_lang.items()}
    return pool, evaluated
