"""Chat formats (issue 22 point 4): --illusion-chat-template runs a reasoning model in the paper's
non-thinking mode (`enable_thinking=False`, Appendix B(7)); --illusion-thinking=on lets it think,
with a larger budget, and reads the answer and its rank after `</think>`; a tokenizer without a
chat template is a usage error naming the model.

The model is a tiny llama over Qwen's real vocabulary (tests.helpers.vocab), with `<think>` and
`</think>` added as Qwen3 adds them, and a Qwen3-style template written here (the vocabulary
files carry none). It is taught what a Qwen3 model does: after a prompt that ends in an empty think
span it answers at once; after one that does not, it reasons for about 60 tokens, more than the
32-token answer budget, and answers after `</think>`.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from illusion_checks import EvaluationSpec, evaluate
from illusion_checks.datasets import load_dataset
from illusion_checks.probing import ProbeSettings, prepare_items, probe_settings
from illusion_checks.prompts import PromptSettings, ff_prompt, wrap
from tests.helpers.tiny import taught
from tests.helpers.vocab import family_tokenizer, missing_files

# Qwen3's template logic for one user turn, as its chat_template writes it.
QWEN3_STYLE = (
    "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n"
    "{%- if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{%- endif %}"
    "{%- endif %}")
REASONING = ("<think>\nThe question asks about the passage. Let me read it again, sentence by sentence, "
             "and find the name, the place or the number it asks for, then check it once more against "
             "the question before I answer.\n</think>\n\n")
ITEMS = 3


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The taught model and its tokenizer, saved as a model directory the gate loads."""
    from tests.helpers.need import missing

    if "qwen35" in missing_files():
        missing("the qwen35 vocabulary file is not in the cache; `make vocab` fetches it")
    tokenizer = copy.deepcopy(family_tokenizer("qwen35"))
    tokenizer.add_tokens(["<think>", "</think>"])  # as Qwen3 has them: added, not special
    tokenizer.chat_template = QWEN3_STYLE
    prepared = prepare_items(load_dataset("fixtures"), ["en"], ProbeSettings(items_per_language=ITEMS))
    pairs = []
    for p in prepared:
        question = ff_prompt(p.item.context, p.item.question)
        for thinking, completion in ((False, f"{p.item.gold}\n"), (True, f"{REASONING}{p.item.gold}\n")):
            pairs.append((wrap(tokenizer, question, PromptSettings(chat_template=True, thinking=thinking)), completion))
    model, tokenizer = taught(pairs, tokenizer, steps=80, lr=1e-2, chat=True)
    folder = tmp_path_factory.mktemp("thinking-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _run(folder: Path, **options) -> dict:
    spec = EvaluationSpec(model=str(folder), compressed=str(folder), langs=("en",), items=ITEMS, chat_template=True,
                          no_reachability=True, device="cpu", dtype="float32", no_cache=True, **options)
    return evaluate(spec).results


def test_the_chat_template_runs_a_reasoning_model_without_thinking(thinking_model: Path) -> None:
    """Without enable_thinking=False the template leaves the think span open, this model reasons
    through the whole 32-token budget and every FF answer is empty (MC is unaffected). With it, the
    prompt holds the empty span and the model answers: every gold, in the paper's non-thinking mode."""
    results = _run(thinking_model)
    outputs = [item["reference"]["ff"]["output"] for item in results["items"]]
    assert [item["reference"]["ff"]["correct"] for item in results["items"]] == [True] * ITEMS, outputs
    assert results["config"]["probes"]["thinking"] is False and results["config"]["probes"]["max_new_tokens"] == 32
    for item in results["items"]:
        assert item["reference"]["gold_token"]["source"] == "produced" and item["reference"]["gold_rank"] == 1


def test_thinking_on_reads_the_answer_and_its_rank_after_the_think_span(thinking_model: Path) -> None:
    """--illusion-thinking=on: no empty span in the prompt, so the model reasons (past the 32 tokens
    of the non-thinking budget) and answers after </think>. The budget grows, the FF answer is read
    after the span, the rank where the answer starts (the span given, as the model's own), and the
    setting is in `config.probes`, so a cached non-thinking run is never reused for it. (The FF
    probes alone, through the engine: the other prompts would think through the whole budget.)"""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from illusion_checks.backends.base import AnswerRequest
    from illusion_checks.backends.hf.backend import HFBackend
    from illusion_checks.backends.hf.load import prepare_tokenizer
    from illusion_checks.probing import item_prompts

    spec = EvaluationSpec(model=str(thinking_model), compressed=str(thinking_model), langs=("en",), items=ITEMS,
                          chat_template=True, thinking="on", no_reachability=True)
    settings = probe_settings(spec)
    assert settings.prompts.thinking and settings.decode.max_new_tokens == 32 + 1024
    off = probe_settings(dataclasses.replace(spec, thinking="off"))
    assert off.to_dict() != settings.to_dict() and dataclasses.replace(settings.prompts, thinking=False) == off.prompts
    assert settings.to_dict()["thinking"] is True and off.to_dict()["thinking"] is False
    tokenizer = AutoTokenizer.from_pretrained(thinking_model)
    prepare_tokenizer(tokenizer)
    backend = HFBackend(AutoModelForCausalLM.from_pretrained(thinking_model).eval(), tokenizer)
    prepared = prepare_items(load_dataset("fixtures"), ["en"], settings)
    requests = [AnswerRequest(item_prompts(tokenizer, p, settings).ff, tuple(p.item.golds), 0, False) for p in prepared]
    for p, request, probes in zip(prepared, requests, backend.answer_probes(requests, settings.decode)):
        assert "</think>" not in tokenizer.decode(request.prompt.prompt_ids)  # the model thinks on its own
        assert probes.output == p.item.gold, probes.output
        target = probes.target
        given = tokenizer.decode(target.conditioned_ids)
        assert given.startswith("<think>") and given.rstrip().endswith("</think>") and len(target.conditioned_ids) > 32
        assert target.source == "produced" and probes.gold_rank == 1


def test_thinking_on_without_the_chat_template_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="--illusion-thinking=on needs --illusion-chat-template"):
        EvaluationSpec(model="m", compress="magnitude:0.5", thinking="on").check()
    with pytest.raises(ValueError, match=r"--illusion-thinking: 'maybe' is not one of"):
        EvaluationSpec(model="m", compress="magnitude:0.5", thinking="maybe")


def test_a_tokenizer_without_a_chat_template_is_a_usage_error_naming_the_model(tiny_llama_dir: Path) -> None:
    spec = EvaluationSpec(model=str(tiny_llama_dir), compress="magnitude:0.5", langs=("en",), items=2,
                          chat_template=True, device="cpu", no_cache=True)
    with pytest.raises(ValueError, match=r"--illusion-chat-template: the tokenizer of .*tiny-llama.* has no chat template"):
        evaluate(spec)


def test_the_gate_without_a_chat_template_exits_4_with_one_line(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The same usage error through the gate: exit 4, one ERROR line naming the model, no traceback,
    and no results or report written."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--illusion-model={tiny_llama_dir}",
               "--illusion-compress=magnitude:0.5", "--illusion-chat-template", "--illusion-langs=en",
               "--illusion-items=2", "--illusion-device=cpu", f"--illusion-cache-dir={tmp_path / 'cache'}"]
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                          text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert done.returncode == 4 and len(errors) == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "has no chat template" in errors[0] and str(tiny_llama_dir) in errors[0]
    assert "Traceback" not in done.stderr and not list(tmp_path.rglob("illusion-results.json"))
