"""The whole probe engine runs on transformers' supported API: no deprecated argument, attribute or cache hook."""

from __future__ import annotations

import logging
import warnings

import pytest

from illusion_checks.backends.hf.backend import HFBackend
from illusion_checks.datasets import load_dataset
from illusion_checks.probing import ProbeSettings, prepare_items, probe_model
from illusion_checks.backends.base import DecodeSettings
from tests.helpers.tiny import ARCHS

# Beam search and sampling included (reachability is on), so every cache path runs: prefill, forks, the
# token-by-token decoder, generate's beam reordering and MC scoring.
SMALL = ProbeSettings(decode=DecodeSettings(max_new_tokens=6, num_beams=2, num_samples=2, batch_size=4),
                      items_per_language=2, reachability=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_probing_a_model_uses_no_deprecated_transformers_api(tiny_models, arch, monkeypatch):
    model, tokenizer = tiny_models[arch]
    prepared = prepare_items(load_dataset("fixtures"), ["en", "zh"], SMALL)
    # transformers says "deprecated" in a FutureWarning (arguments) or once per process through
    # `logger.warning_once` (renamed output attributes); record the latter without its once-only cache.
    logged: list[str] = []
    monkeypatch.setattr(logging.Logger, "warning_once",
                        lambda self, msg, *args, **kwargs: logged.append(str(msg) % args if args else str(msg)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        outcomes = probe_model(HFBackend(model, tokenizer), prepared, SMALL)
    assert [m for m in logged if "deprecat" in m.lower()] == []
    assert len(outcomes) == len(prepared)
    assert all(o["beam"] is not None and o["sample"] is not None for o in outcomes)
