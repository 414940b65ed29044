"""Shared fixtures: tiny model directories built once per session."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.helpers.engines import ENGINE_FILES, ENGINES, SHARING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real-engine tests (tests.helpers.engines.ENGINE_FILES) run first, the group that shares
    fixtures first of all, in collection order otherwise."""
    items.sort(key=lambda item: (not item.nodeid.startswith(SHARING), item.nodeid.split("::")[0] not in ENGINE_FILES))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` runs two pytest workers with `--dist loadgroup`. The tests that share the session's
    HF run and servers (tests.helpers.engines.SHARING) are one group: it goes whole to one worker, so
    those fixtures are built once (and so are each other module's), and, first in the order (kept:
    no reordering by size), it runs beside the other real-engine tests and then the rest of the
    suite, which the other worker takes. (The group is named here by
    node id: xdist 3.8 names an `xdist_group` mark's group in `item._nodeid`, which pytest 9.2 no
    longer reads.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    config.option.loadscopereorder = False  # the order tests/conftest.py gives: the longest tests first

    class EnginesAsOneGroup(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(SHARING):
                return ENGINES
            # A module goes whole to one worker, so its module-scoped fixtures (the pruning-ranking
            # perplexities: 220 s) are built once; tests/test_vllm.py shares none, and its tests,
            # the longest of all, are spread one by one.
            path = nodeid.split("::")[0]
            return nodeid if path == "tests/test_vllm.py" else path

    return EnginesAsOneGroup(config, log)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    from tests.helpers.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_models():
    """One tiny (model, tokenizer) per architecture."""
    from tests.helpers.tiny import ARCHS, tiny_model

    return {arch: tiny_model(arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def taught_model():
    """A tiny llama that answers four English fixture items correctly, plus two it never saw
    (tests.helpers.tiny.taught_english_model); trained once per session, in a few seconds."""
    from tests.helpers.tiny import taught_english_model

    return taught_english_model()


@pytest.fixture(scope="module")
def crafted():
    """A crafted results file's content (tests.helpers.plugin_runs.crafted_results): en and sw, 8 items
    each, one sw item mc_only; built once per module, so a test that edits it deep-copies it first."""
    from tests.helpers.plugin_runs import crafted_results

    return crafted_results()


@pytest.fixture(scope="session")
def embedded_model():
    """`embedded_model(alias)`: an embedded real model (smollm2-135m, gemma3-270m), converted once and
    loaded once per session, fp32 on the CPU. Tests share it: compress a deep copy, never the model.
    A model that cannot load skips its tests, or fails them under CI."""
    from illusion_checks.backends.hf.load import ModelLoadError, load_model
    from tests.helpers.need import missing

    loaded = {}

    def get(alias: str):
        if alias not in loaded:
            try:
                loaded[alias] = load_model(alias, device="cpu", dtype="float32")
            except ModelLoadError as error:
                missing(f"{alias} is not available: {error}")
        return loaded[alias]
    return get


@pytest.fixture(scope="session")
def hf_smollm2_run(tmp_path_factory):
    """The in-process HF run the vLLM and served agreement tests compare with: smollm2-135m against its
    wanda:0.5 copy on tests.helpers.engines' items, the compressed copy saved. (results, saved folder);
    run once per session, only when such a test runs (they need vLLM, so this checks for it first)."""
    from illusion_checks import evaluate
    from tests.helpers.engines import agreement_spec
    from tests.helpers.need import need_vllm

    need_vllm()
    saved = tmp_path_factory.mktemp("saved") / "smollm2-wanda"
    return evaluate(agreement_spec("smollm2-135m", save_compressed=str(saved))).results, saved
