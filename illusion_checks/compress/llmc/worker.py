"""llm-compressor's side of `--illusion-compress=llmc:...`, run as a script under the Python that has
llmcompressor (`ILLUSION_LLMC_PYTHON`, `make llmc`): llmcompressor pins an older transformers than the
tool's, so it never runs in the tool's process. Standalone: it imports nothing of illusion_checks.

    python worker.py version                 -> {"ok": true, "version": "0.14.0.1"}
    python worker.py validate RECIPE.yaml    -> {"ok": true, "modifiers": [...]} | {"ok": false, "error": ...}
    python worker.py oneshot REQUEST.json    -> {"ok": true, "seconds": ...}     | {"ok": false, "error": ...}

The reply is the last line on stdout; llmcompressor's own log goes to stderr (warnings and above).
REQUEST: {"source": model folder, "recipe": recipe file, "calibration": [[token ids], ...] or null,
"dtype": "float32" | "bfloat16" | "float16", "out": folder to write the compressed-tensors checkpoint into}.
"""

from __future__ import annotations

import json
import sys
import time
from importlib import metadata
from typing import Any


def _quiet() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def _listed(recipe: Any) -> list[tuple[str, str, str]]:
    """Every (stage key, group key, modifier name) a parsed YAML recipe lists: {stage: {group: {Modifier: args}}}."""
    listed = []
    for stage, groups in (recipe.items() if isinstance(recipe, dict) else []):
        for group, modifiers in (groups.items() if isinstance(groups, dict) else []):
            for name in (modifiers if isinstance(modifiers, dict) else []):
                listed.append((str(stage), str(group), str(name)))
    return listed


def validate(path: str) -> dict[str, Any]:
    """Every modifier the recipe lists exists in this llmcompressor, sits where llmcompressor reads
    modifiers (it silently skips any other key: a recipe under `stage: modifiers:` compresses nothing),
    and llmcompressor's own parser accepts it (each modifier's fields validated by its pydantic model)."""
    import yaml

    _quiet()
    from llmcompressor.modifiers.factory import ModifierFactory
    from llmcompressor.recipe import Recipe

    version = metadata.version("llmcompressor")
    with open(path, encoding="utf-8") as handle:
        listed = _listed(yaml.safe_load(handle))
    ModifierFactory.refresh()
    known = {**ModifierFactory._main_registry, **ModifierFactory._experimental_registry,
             **ModifierFactory._registered_registry}
    for stage, group, name in listed:
        if name not in known:
            return {"ok": False, "error": f"names modifier '{name}', which llmcompressor {version} does not have"}
        if not (stage.endswith("_stage") and group.endswith("_modifiers")):
            return {"ok": False, "error": f"lists {name} under '{stage}: {group}:', where llmcompressor {version} "
                                          "never looks (it reads modifiers only under '<name>_stage: <name>_modifiers:'),"
                                          " so it would run without it"}
    if not listed:
        return {"ok": False, "error": "lists no modifier under '<name>_stage: <name>_modifiers:', so it would "
                                      "compress nothing"}
    try:
        recipe = Recipe.create_instance(path)
    except Exception as error:  # noqa: BLE001 - llmcompressor's parse errors are of many types
        first = " ".join(str(error).split())[:300]
        return {"ok": False, "error": f"is refused by llmcompressor's parser ({type(error).__name__}: {first})"}
    return {"ok": True, "modifiers": [type(modifier).__name__ for modifier in recipe.modifiers]}


def oneshot(request_path: str) -> dict[str, Any]:
    """Load the model, run `oneshot` with the tool's calibration ids, save it compressed (compressed-tensors)."""
    with open(request_path, encoding="utf-8") as handle:
        request = json.load(handle)
    _quiet()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcompressor import oneshot as run_oneshot

    dataset = None
    ids = request.get("calibration")
    if ids:
        from datasets import Dataset

        dataset = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]})
    model = AutoModelForCausalLM.from_pretrained(request["source"], dtype=getattr(torch, request["dtype"]))
    tokenizer = AutoTokenizer.from_pretrained(request["source"])
    start = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if dataset is not None:
        kwargs = {"dataset": dataset, "num_calibration_samples": len(ids),
                  "max_seq_length": max(len(row) for row in ids), "shuffle_calibration_samples": False}
    run_oneshot(model=model, recipe=request["recipe"], **kwargs)
    seconds = time.perf_counter() - start
    model.save_pretrained(request["out"], save_compressed=True)
    tokenizer.save_pretrained(request["out"])
    return {"ok": True, "seconds": seconds}


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    try:
        if command == "version":
            reply: dict[str, Any] = {"ok": True, "version": metadata.version("llmcompressor")}
        elif command == "validate" and len(argv) == 3:
            reply = validate(argv[2])
        elif command == "oneshot" and len(argv) == 3:
            reply = oneshot(argv[2])
        else:
            reply = {"ok": False, "error": f"usage: worker.py version | validate RECIPE | oneshot REQUEST ({argv[1:]})"}
    except Exception as error:  # noqa: BLE001 - one line back to the tool, whatever failed
        reply = {"ok": False, "error": f"{type(error).__name__}: {' '.join(str(error).split())[:400]}"}
    print(json.dumps(reply), flush=True)
    return 0 if reply["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
