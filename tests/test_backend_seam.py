"""The backend seam: a second backend, written here against the protocol alone over a tiny HF
model (whole-sequence forwards, one prompt at a time, no KV cache, no shared prefill; no beam
search or sampling, declared as unavailable), gives the paired probe engine the same answers,
MC choices and ranks as the HF backend, and its missing probes are null with their reason."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Sequence

import pytest
import torch

from illusion_checks.backends import base
from illusion_checks.backends.base import Backend, Capabilities, DecodeSettings, compose_answer_probes
from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.datasets import load_dataset
from illusion_checks.metrics import summarize
from illusion_checks.probing import ProbeSettings, item_record, prepare_items, probe_model
from tests.helpers.engines import approx_gold_token

SETTINGS = ProbeSettings(decode=DecodeSettings(max_new_tokens=12, num_beams=2, num_samples=2, batch_size=4),
                         items_per_language=6)
NO_BEAM = "the test backend has no beam search"
NO_SAMPLING = "the test backend has no seeded sampling"


class PlainBackend:
    """The protocol implemented from scratch: each operation re-reads the whole sequence."""

    name: ClassVar[str] = "plain-test"
    capabilities = Capabilities(beam=NO_BEAM, sampling=NO_SAMPLING)

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.calls: list[str] = []

    @torch.no_grad()
    def _logprobs(self, ids: Sequence[int]) -> torch.Tensor:
        logits = self.model(input_ids=torch.tensor([list(ids)])).logits[0]
        return torch.log_softmax(logits.float(), dim=-1)

    def greedy_tokens(self, prompts, settings, advance=None):
        self.calls.append("greedy")
        eos = {self.tokenizer.eos_token_id}
        out = []
        for prompt in prompts:
            produced: list[int] = []
            for _ in range(settings.max_new_tokens):
                token = int(self._logprobs([*prompt, *produced])[-1].argmax())
                produced.append(token)
                text = self.tokenizer.decode(produced, skip_special_tokens=True)
                if token in eos or (settings.stop_at_newline and base.answer_line_done(text)):
                    break
            out.append(produced)
        if advance:
            advance(len(prompts))
        return out

    def score(self, prompts, continuations, ranked):
        self.calls.append("score")
        out = []
        for prompt, conts, rank_at in zip(prompts, continuations, ranked):
            scores = []
            for cont in conts:
                logprobs = self._logprobs([*prompt, *cont])[len(prompt) - 1:-1]
                scores.append(float(logprobs.gather(-1, torch.tensor(cont)[:, None]).sum()))
            conditioned, path = rank_at
            rows = self._logprobs([*prompt, *conditioned, *path])[len(prompt) + len(conditioned) - 1:]
            ranks = [(int((row > row[token]).sum()) + 1, float(row[token] - torch.cat([row[:token], row[token + 1:]]).max()))
                     for row, token in zip(rows, path)]
            out.append((scores, ranks))
        return out

    def beam(self, prompts, settings):
        raise AssertionError("beam is declared unavailable and must not be called")

    def samples(self, prompts, seeds, settings):
        raise AssertionError("sampling is declared unavailable and must not be called")

    def answer_probes(self, requests, settings, advance=None):
        return compose_answer_probes(self, requests, settings, advance)

    def close(self) -> None:
        self.model = None


@pytest.fixture(scope="module")
def both(taught_model):
    model, tokenizer, prepared = taught_model.model, taught_model.tokenizer, taught_model.prepared
    prepared = prepared + prepare_items(load_dataset("fixtures"), ["de"], SETTINGS)[:3]
    plain = PlainBackend(model, tokenizer)
    return prepared, probe_model(HFBackend(model, tokenizer), prepared, SETTINGS), plain, \
        probe_model(plain, prepared, SETTINGS)


def test_both_backends_satisfy_the_protocol(taught_model):
    assert isinstance(HFBackend(taught_model.model, taught_model.tokenizer), Backend)
    assert isinstance(PlainBackend(taught_model.model, taught_model.tokenizer), Backend)


def test_a_backend_written_against_the_protocol_gives_the_same_answers_choices_and_ranks(both):
    prepared, hf, plain, via_protocol = both
    assert {"greedy", "score"} <= set(plain.calls)
    for p, a, b in zip(prepared, hf, via_protocol):
        where = f"{p.item.lang}/{p.item.id}"
        for probe in ("ff", "cs", "zero_shot_short", "one_shot"):
            assert (a[probe] or {}).get("output") == (b[probe] or {}).get("output"), (where, probe)
        assert a["mc"]["choice"] == b["mc"]["choice"], where
        assert a["mc"]["scores"] == pytest.approx(b["mc"]["scores"], abs=1e-3), where
        assert a["gold_token"] == approx_gold_token(b["gold_token"]), where
        assert a["gold_rank"] == b["gold_rank"], where
        assert a["gold_margin"] == pytest.approx(b["gold_margin"], abs=1e-3), where
    # The taught items are produced and recognized by both, so the comparison is not vacuous.
    assert sum(o["ff"]["correct"] and o["mc"]["correct"] for o in via_protocol) >= 4


def test_probes_a_backend_cannot_run_are_null_with_the_reason(both):
    prepared, hf, _, via_protocol = both
    for a, b in zip(hf, via_protocol):
        assert a["beam"] is not None and a["sample"] is not None and "unavailable" not in a
        assert b["beam"] is None and b["sample"] is None
        assert b["unavailable"] == {"beam": NO_BEAM, "sample": NO_SAMPLING}
    items = [item_record(p, a, b) for p, a, b in zip(prepared, hf, via_protocol)]
    summary = summarize(items, n_resamples=20)
    assert summary["overall"]["n_items"] == len(prepared)


def test_a_probe_switched_off_records_no_reason(taught_model):
    plain = PlainBackend(taught_model.model, taught_model.tokenizer)
    settings = copy.replace(SETTINGS, reachability=False) if hasattr(copy, "replace") else \
        ProbeSettings(decode=SETTINGS.decode, items_per_language=6, reachability=False)
    outcome = probe_model(plain, taught_model.prepared[:1], settings)[0]
    assert outcome["beam"] is None and outcome["sample"] is None and "unavailable" not in outcome
