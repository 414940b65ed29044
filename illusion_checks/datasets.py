"""QA data in: fixture JSONL, SQuAD-style JSON (XQuAD), and Hugging Face `tydiqa` / `xquad`."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from illusion_checks.scoring import normalize_compact

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    DataFile = Path | Traversable  # a file on disk, or one inside the installed package (a zip's too)

TYDIQA_LANGS = {
    "arabic": "ar", "bengali": "bn", "english": "en", "finnish": "fi", "indonesian": "id",
    "japanese": "ja", "korean": "ko", "russian": "ru", "swahili": "sw", "telugu": "te", "thai": "th",
}
XQUAD_LANGS = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")
_LANG_SUFFIX = re.compile(r"\.([a-z]{2,3}(?:-[A-Za-z]+)?)\.json$")


class DatasetError(ValueError):
    """Bad or missing QA data; the message names the file, the field and the value."""


def fixture_root() -> Traversable:
    """The embedded fixture set's folder, `illusion_checks/data/qa`, wherever the package is installed."""
    # Package data read through importlib.resources: the same from a checkout, a wheel or a zip.
    return resources.files("illusion_checks") / "data" / "qa"


def fixture_files() -> list[Traversable]:
    """The embedded fixture set's `*.jsonl` files, by name (format in illusion_checks/data/qa/README.md)."""
    root = fixture_root()
    names = sorted(f.name for f in root.iterdir() if f.name.endswith(".jsonl")) if root.is_dir() else []
    if not names:
        raise DatasetError(f"the embedded fixture set is missing: no .jsonl files at {root}; reinstall illusion-checks")
    return [root / name for name in names]


@dataclass(frozen=True)
class QAItem:
    """One extractive QA item: the answer is a short span of the passage."""

    id: str
    lang: str
    context: str
    question: str
    gold: str
    aliases: tuple[str, ...] = ()

    @property
    def golds(self) -> tuple[str, ...]:
        return (self.gold, *self.aliases)


@dataclass(frozen=True)
class Dataset:
    """Every item of a data set, by language, in file order."""

    name: str
    by_lang: dict[str, list[QAItem]] = field(hash=False)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for lang in sorted(self.by_lang):
            for item in self.by_lang[lang]:
                row = [item.id, item.lang, item.context, item.question, item.gold, list(item.aliases)]
                digest.update(json.dumps(row, ensure_ascii=False).encode())
        return digest.hexdigest()


def _shown(value: object) -> str:
    """A value as an error message shows it: its repr, on one line, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _require_str(value: object, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: field '{name}' must be a non-empty string, got {value!r}")
    return value


def _check_scorable(text: str, where: str, item_id: str, name: str) -> str:
    """A gold or alias must keep something after normalization, or no answer can ever match it."""
    if not normalize_compact(text):
        raise DatasetError(f"{where}: item {item_id!r}: field '{name}' is {_shown(text)}, which normalizes to an "
                           "empty string (punctuation, symbols and markup are dropped), so no answer can ever be "
                           "scored correct; give a gold with letters or digits")
    return text


def golds_not_in_context(items: list[QAItem]) -> list[QAItem]:
    """Items whose gold is not a verbatim span of their passage: not extractive QA (data/qa/README.md)."""
    return [item for item in items if item.gold not in item.context]


def load_jsonl(path: DataFile) -> list[QAItem]:
    """Read the project's fixture format (see illusion_checks/data/qa/README.md)."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{where}: not valid JSON ({error.msg})") from error
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
        aliases = row.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise DatasetError(f"{where}: field 'aliases' must be a list of strings, got {aliases!r}")
        item_id = _require_str(row.get("id"), where, "id")
        items.append(QAItem(
            id=item_id,
            lang=_require_str(row.get("lang"), where, "lang"),
            context=_require_str(row.get("context"), where, "context"),
            question=_require_str(row.get("question"), where, "question"),
            gold=_check_scorable(_require_str(row.get("answer"), where, "answer"), where, item_id, "answer"),
            aliases=tuple(_check_scorable(a, where, item_id, "aliases") for a in aliases if a.strip()),
        ))
    return items


def _field(row: dict, name: str, kinds: tuple[type, ...], where: str) -> Any:
    """`row[name]`, which must be one of `kinds` (a string also non-empty); else a DatasetError at `where`."""
    if name not in row:
        raise DatasetError(f"{where}: field '{name}' is missing")
    value = row[name]
    if not isinstance(value, kinds) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        noun = "a list" if list in kinds else "a non-empty string"
        raise DatasetError(f"{where}: field '{name}' must be {noun}, got {_shown(value)}")
    return value


def _objects(path: DataFile, values: list, where: str) -> Iterator[tuple[str, dict]]:
    """Each entry of a JSON list with its JSON path (`where[k]`); every entry must be an object."""
    for k, value in enumerate(values):
        if not isinstance(value, dict):
            raise DatasetError(f"{path}: {where}[{k}]: must be an object, got {_shown(value)}")
        yield f"{where}[{k}]", value


def load_squad_json(path: DataFile, lang: str | None) -> list[QAItem]:
    """Read SQuAD-style JSON (XQuAD files and TyDiQA GoldP's official JSON load as they are); the first
    answer is the gold. With `lang` None, each question's language comes from its TyDiQA id
    (`arabic-2387...-1`: `ar`). A malformed entry raises DatasetError naming the file, its JSON path
    (`data[0].paragraphs[1].qas[2]`), the field and the value."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(document, dict):
        raise DatasetError(f"{path}: top level: must be an object with a 'data' list, got {_shown(document)}")
    items = []
    for at_article, article in _objects(path, _field(document, "data", (list,), f"{path}: top level"), "data"):
        paragraphs = _field(article, "paragraphs", (list,), f"{path}: {at_article}")
        for at_paragraph, paragraph in _objects(path, paragraphs, f"{at_article}.paragraphs"):
            where = f"{path}: {at_paragraph}"
            context = _field(paragraph, "context", (str,), where)
            for at_qa, qa in _objects(path, _field(paragraph, "qas", (list,), where), f"{at_paragraph}.qas"):
                where = f"{path}: {at_qa}"
                qid = str(_field(qa, "id", (str, int), where))
                item_lang = lang or _tydiqa_lang(qid, where)
                question = _field(qa, "question", (str,), where)
                answers = []
                for at_answer, answer in _objects(path, _field(qa, "answers", (list,), where), f"{at_qa}.answers"):
                    text = _field(answer, "text", (str,), f"{path}: {at_answer}")
                    answers.append(_check_scorable(text, f"{path}: {at_answer}", qid, "text"))
                if not answers:
                    raise DatasetError(f"{where}: question id {qid!r} has no answer text")
                aliases = tuple(dict.fromkeys(a for a in answers[1:] if a != answers[0]))
                items.append(QAItem(qid, item_lang, context, question, answers[0], aliases))
    return items


def _squad_lang(path: DataFile) -> str | None:
    """The language a file's name gives (`xquad.de.json`: `de`); None: each id must give its own."""
    match = _LANG_SUFFIX.search(path.name)
    return match.group(1) if match else None


def _tydiqa_lang(qid: str, where: str) -> str:
    """A TyDiQA question's language, from its id's prefix (`english-...`: `en`)."""
    lang = TYDIQA_LANGS.get(qid.split("-")[0])
    if lang is None:
        raise DatasetError(f"{where}: field 'id' is {_shown(qid)}, which names no TyDiQA language "
                           f"({', '.join(f'{name}-...' for name in TYDIQA_LANGS)}), and the file name gives none: "
                           "name the file '<name>.<lang>.json' or pass PATH:LANG")
    return lang


def _group(items: list[QAItem]) -> dict[str, list[QAItem]]:
    by_lang: dict[str, list[QAItem]] = {}
    for item in items:
        by_lang.setdefault(item.lang, []).append(item)
    for lang, rows in by_lang.items():
        seen: set[str] = set()
        for row in rows:
            if row.id in seen:
                raise DatasetError(f"language '{lang}': item id {row.id!r} appears twice")
            seen.add(row.id)
    return by_lang


def load_path(spec: str) -> Dataset:
    """Load a `.jsonl`, a SQuAD `.json` (`PATH` or `PATH:LANG`), or a directory of either."""
    explicit_lang = None
    path = Path(spec)
    if not path.exists() and ":" in spec:
        head, _, explicit_lang = spec.rpartition(":")
        path = Path(head)
    if not path.exists():
        raise DatasetError(f"data set path '{path}' does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json")) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"{path}: no .jsonl or .json files in this directory")
    return Dataset(name=str(spec), by_lang=_load_files(files, explicit_lang))


def _load_files(files: Iterable[DataFile], explicit_lang: str | None = None) -> dict[str, list[QAItem]]:
    """Every item of these `.jsonl` / SQuAD `.json` files, by language."""
    items: list[QAItem] = []
    for file in files:
        if file.name.endswith(".jsonl"):
            found = load_jsonl(file)
        else:
            found = load_squad_json(file, explicit_lang or _squad_lang(file))
        if not found:  # an empty file evaluates nothing, yet would still load and compress the model
            raise DatasetError(f"{file}: no QA items in this file")
        items.extend(found)
    return _group(items)


def load_hub(name: str, langs: list[str] | None) -> Dataset:
    """`tydiqa` (GoldP, validation) or `xquad` through Hugging Face `datasets` (needs the network)."""
    import datasets as hf

    items: list[QAItem] = []
    if name == "tydiqa":
        for row in hf.load_dataset("google-research-datasets/tydiqa", "secondary_task", split="validation"):
            lang = TYDIQA_LANGS.get(row["id"].split("-")[0])
            if lang and (not langs or lang in langs):
                items.append(_hub_item(row, lang, name))
    else:
        for lang in langs or XQUAD_LANGS:
            if lang not in XQUAD_LANGS:
                raise DatasetError(f"xquad has no language '{lang}'; it has {', '.join(XQUAD_LANGS)}")
            for row in hf.load_dataset("google/xquad", f"xquad.{lang}", split="validation"):
                items.append(_hub_item(row, lang, name))
    return Dataset(name=name, by_lang=_group(items))


def _hub_item(row: dict, lang: str, name: str) -> QAItem:
    answers = list(dict.fromkeys(t for t in row["answers"]["text"] if t.strip()))
    for text in answers:
        _check_scorable(text, f"data set '{name}' ({lang})", row["id"], "answers.text")
    return QAItem(row["id"], lang, row["context"], row["question"], answers[0], tuple(answers[1:]))


def load_dataset(spec: str = "fixtures", langs: list[str] | None = None) -> Dataset:
    """Resolve `--illusion-dataset`: `fixtures` (default), `tydiqa`, `xquad`, or a path."""
    if spec == "fixtures":
        dataset = Dataset("fixtures", _load_files(fixture_files()))
    elif spec in ("tydiqa", "xquad"):
        dataset = load_hub(spec, langs)
    else:
        dataset = load_path(spec)
    if not dataset.by_lang:
        wanted = f" in {', '.join(langs)}" if langs else ""
        raise DatasetError(f"data set '{spec}' has no QA items{wanted}")
    return dataset


def select_langs(dataset: Dataset, langs: list[str] | None) -> list[str]:
    """The requested languages, checked against those the data has."""
    available = sorted(dataset.by_lang)
    if not langs:
        return available
    missing = [lang for lang in langs if lang not in dataset.by_lang]
    if missing:
        raise DatasetError(
            f"--illusion-langs: {', '.join(missing)} not in data set '{dataset.name}', "
            f"which has {', '.join(available)}"
        )
    return sorted(dict.fromkeys(langs))


def sample_items(items: list[QAItem], n: int, seed: int) -> list[QAItem]:
    """The paper's fixed subset: an independent per-language `random.Random(seed)` shuffle."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order[:n]


def exemplar_for(items: list[QAItem], evaluated: list[QAItem]) -> QAItem | None:
    """Appendix C: the lowest-index item of the language that is not evaluated."""
    taken = {item.id for item in evaluated}
    return next((item for item in items if item.id not in taken), None)
