"""Served models on real `vllm serve` processes on 127.0.0.1 (started and stopped here): smollm2-135m
and its wanda:0.5 copy saved by the tool (served with sampling defaults in its generation config).
The served gate agrees with the in-process HF backend on the same items, the same server as both
models keeps every item, the gate runs end to end (with an API key that never leaks), and the faults
a CI run meets give one-line errors: a server killed mid-run (nothing written; the re-run reuses the
cached reference outcomes), a stalled server (the timeout), a wrong `#MODEL` (a usage error)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from illusion_checks import EvaluationSpec, evaluate
from illusion_checks.backends.openai.discovery import NEUTRAL
from illusion_checks.errors import RunError
from tests.helpers.engines import ITEMS, LANGS, assert_reached_rates_agree, paired_outcomes, rate
from tests.helpers.vllm_server import VLLMServer

pytestmark = pytest.mark.slow

KEY_ENV, KEY = "ILLUSION_TEST_SERVER_KEY", "sk-test-3f9a1c77d2e84b61"  # the servers require it
SERVED_NAME, PRUNED_NAME = "smollm2", "smollm2-wanda"
SAMPLING_DEFAULTS = {"repetition_penalty": 1.3, "top_k": 5}


def with_sampling_defaults(folder: Path, into: Path) -> Path:
    """`folder` (its files linked) with SAMPLING_DEFAULTS added to its generation_config.json."""
    for path in folder.iterdir():
        if path.name != "generation_config.json":
            (into / path.name).symlink_to(path.resolve())
    config = json.loads((folder / "generation_config.json").read_text())
    (into / "generation_config.json").write_text(json.dumps({**config, **SAMPLING_DEFAULTS}))
    return into


@pytest.fixture(scope="module")
def servers(hf_smollm2_run: tuple[dict[str, Any], Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The reference and the wanda:0.5 copy the HF run saved, each behind its own server, both needing
    the key. The copy is served with sampling defaults in its generation config (SAMPLING_DEFAULTS),
    as many released models have: the server applies them to every field a request leaves unset."""
    from illusion_checks.backends.hf.load import resolve_source

    logs = tmp_path_factory.mktemp("server-logs")
    reference = VLLMServer(resolve_source("smollm2-135m")[0], SERVED_NAME, logs / "reference.log", KEY)
    pruned = VLLMServer(str(with_sampling_defaults(hf_smollm2_run[1], tmp_path_factory.mktemp("served"))),
                        PRUNED_NAME, logs / "pruned.log", KEY)
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda server: server.start().wait_ready(), (reference, pruned)))
        yield reference, pruned
    finally:
        reference.stop()
        pruned.stop()


@pytest.fixture(scope="module")
def served_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One outcome cache for the module's in-process served runs: outcomes probed once are reused under
    the same role (the cache key holds the role, so a model probed as the reference is probed afresh as
    the compressed model)."""
    return tmp_path_factory.mktemp("served-cache")


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY_ENV


def _served_spec(model: str, compressed: str, cache: Path, **overrides: Any) -> EvaluationSpec:
    values = dict(model=model, compressed=compressed, langs=LANGS, items=ITEMS, no_reachability=True,
                  api_key_env=KEY_ENV, cache_dir=str(cache))
    return EvaluationSpec(**{**values, **overrides})


def test_served_models_agree_with_the_in_process_hf_backend(hf_smollm2_run: Any, servers: Any, key: str,
                                                            served_cache: Path) -> None:
    """The compressed model's server has sampling defaults in its generation config (repetition
    penalty 1.3, top-k 5): the agreement holds only because every request states the neutral
    sampling state (discovery.NEUTRAL); without it greedy FF agreed on 1 of 12 items."""
    hf, _ = hf_smollm2_run
    reference, pruned = servers
    served = evaluate(_served_spec(reference.url, f"{pruned.url}#{PRUNED_NAME}", served_cache)).results
    assert len(served["items"]) == len(LANGS) * ITEMS
    for role, name in (("reference", SERVED_NAME), ("compressed", PRUNED_NAME)):
        server = served["config"][role]["server"]
        assert server["model"] == name and server["version"].startswith("vllm ")
        capabilities = dict(server["capabilities"])
        assert capabilities.pop("beam").startswith("approximate: vLLM's use_beam_search, vLLM's beam rule")
        assert all(how.startswith("exact") for probe, how in capabilities.items() if probe != "tokenizer"), capabilities
    outcomes = paired_outcomes(hf, served)
    figures = {"mc": rate([(a["mc"]["choice"], b["mc"]["choice"]) for a, b in outcomes]),
               "ff": rate([(a["ff"]["correct"], b["ff"]["correct"]) for a, b in outcomes]),
               "fates": rate([(a["fate"], b["fate"]) for a, b in zip(hf["items"], served["items"])]),
               "rank": rate([(a["gold_rank"], b["gold_rank"]) for a, b in outcomes]),
               "ff_output": rate([(a["ff"]["output"], b["ff"]["output"]) for a, b in outcomes])}
    print(f"HF vs served agreement over {len(outcomes)} outcomes: {figures}")
    assert figures["mc"] >= 0.98 and figures["ff"] >= 0.95 and figures["fates"] >= 0.95
    assert figures["ff_output"] >= 0.95
    assert served["config"]["compressed"]["server"]["sampling"]["sent"] == NEUTRAL
    assert figures["rank"] >= 0.95
    for a, b in outcomes:  # option log-likelihoods agree to kernel round-off, not just in their argmax
        assert b["mc"]["scores"] == pytest.approx(a["mc"]["scores"], abs=0.05)


def test_as_deployed_the_servers_own_defaults_apply(hf_smollm2_run: Any, servers: Any, key: str,
                                                   served_cache: Path) -> None:
    """--illusion-server-sampling=server sends no neutral field: the copy's server then decodes with its
    generation config's repetition penalty 1.3 and top-k 5, and its greedy FF answers stop matching the
    in-process HF run of the same weights (what the neutral default prevents), while the reference's
    server, which has no such defaults, still matches. The results say what vLLM reports of the
    defaults it applied: nothing."""
    hf, _ = hf_smollm2_run
    reference, pruned = servers
    spec = _served_spec(reference.url, f"{pruned.url}#{PRUNED_NAME}", served_cache, server_sampling="server")
    served = evaluate(spec).results
    same = {role: rate([(a[role]["ff"]["output"], b[role]["ff"]["output"]) for a, b in zip(hf["items"], served["items"])])
            for role in ("reference", "compressed")}
    print(f"greedy FF outputs equal to HF's, server sampling defaults applied: {same}")
    assert same["reference"] >= 0.95 and same["compressed"] <= 0.5
    sampling = served["config"]["compressed"]["server"]["sampling"]
    assert sampling["mode"] == "server" and sampling["sent"] == {}
    assert sampling["defaults"].startswith("not reported by the server")
    assert served["config"]["compressed"]["server"]["capabilities"]["greedy"].startswith("as deployed")


def test_the_same_server_as_both_models_keeps_every_item(servers: Any, key: str, served_cache: Path) -> None:
    """The reference server probed twice: as the reference (from the agreement test's run, through the
    module's cache, or probed here when this test runs alone) and afresh as the compressed model."""
    reference, _ = servers
    results = evaluate(_served_spec(reference.url, reference.url, served_cache)).results
    both = [item for item in results["items"] if item["both_correct"]]
    assert both and all(item["fate"] == "kept" for item in both), [(i["id"], i["fate"]) for i in both]
    summaries = [*results["summary"]["per_language"].values(), results["summary"]["overall"]]
    assert results["summary"]["overall"]["n_both_correct"] > 0
    for summary in summaries:  # a language without both-correct items has no rate at all
        assert summary["dissociation_rate"] == (0.0 if summary["n_both_correct"] else None)


def test_tokens_tied_with_the_gold_count_above_it_on_hf_and_on_vllm(servers: Any, key: str, embedded_model: Any) -> None:
    """One rank rule on every backend, on real tied logits: SmolLM2's quantized embeddings hold equal
    rows (tokens 8, 10, 13, 15, 16, 36744 and 48047; 12 and 14), so those tokens' logits are equal at
    every position. vLLM's `prompt_logprobs` rank (the served and the in-process vLLM backends read
    the same one) and the hf backend's rank both count a twin above the gold: identical ranks, 6 and 1
    above the strict reading's."""
    import torch

    from illusion_checks.backends.base import LoadOptions
    from illusion_checks.backends.hf.backend import HFBackend
    from illusion_checks.backends.openai.engine import OpenAIEngine
    from illusion_checks.served import ServerSettings

    loaded = embedded_model("smollm2-135m")
    twins = {8: 6, 10: 6, 12: 1, 14: 1}  # token -> how many equal others
    texts = ("x = 1<jupyter_output>", "<jupyter_start><jupyter_text>Hello<jupyter_code>print(1)<jupyter_output>")
    prompts = [list(loaded.tokenizer(text)["input_ids"]) for text in texts for _ in twins]
    ranked = [([], [token]) for _ in texts for token in twins]
    options = [[path] for _, path in ranked]
    hf = [path[0][0] for _, path in HFBackend(loaded.model, loaded.tokenizer).score(prompts, options, ranked)]
    served = OpenAIEngine(ServerSettings(api_key_env=KEY_ENV), "--illusion-model").load(servers[0].url, LoadOptions())
    try:
        vllm = [path[0][0] for _, path in served.score(prompts, options, ranked)]
    finally:
        served.close()
    with torch.no_grad():
        strict = []
        for prompt, (_, (token,)) in zip(prompts, ranked):
            logprobs = torch.log_softmax(loaded.model(torch.tensor([prompt])).logits[0, -1].float(), -1)
            strict.append(int((logprobs > logprobs[token]).sum()) + 1)
    print(f"ranks hf {hf}, vLLM {vllm}, strict {strict}")
    assert vllm == hf
    assert [rank - below for rank, below in zip(hf, strict)] == list(twins.values()) * len(texts)


def _gate(args: list[str], cwd: Path, env_key: bool = True, timeout: float = 1500) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rx", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **({KEY_ENV: KEY} if env_key else {})}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_gate_runs_end_to_end_against_served_models(hf_smollm2_run: Any, servers: Any, tmp_path: Path) -> None:
    """Beam and samples through the server too, reaching the gold about as often as HF does on the same
    models and items; the API key is sent but never printed, cached or written."""
    reference, pruned = servers
    done = _gate([f"--illusion-model={reference.url}", f"--illusion-compressed={pruned.url}", "--illusion-langs=en",
                  "--illusion-items=2", "--illusion-max-dissociation=1.0", f"--illusion-api-key-env={KEY_ENV}",
                  f"--illusion-cache-dir={tmp_path / 'cache'}"], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "beam: approximate: vLLM's use_beam_search" in done.stdout and f"served by {pruned.url}" in done.stdout
    results = json.loads((tmp_path / "reports" / "illusion-results.json").read_text())
    assert results["config"]["compressed"]["server"]["model"] == PRUNED_NAME
    for item in results["items"]:
        for role in ("reference", "compressed"):
            assert len(item[role]["beam"]["outputs"]) == 5 and len(item[role]["sample"]["outputs"]) == 10
            assert "unavailable" not in item[role]
    written = [done.stdout, done.stderr, *(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())]
    assert not [text for text in written if KEY in text]
    hf = evaluate(EvaluationSpec(model="smollm2-135m", compressed=str(hf_smollm2_run[1]), langs=("en",), items=2,
                                 device="cpu", dtype="float32", no_cache=True)).results
    assert_reached_rates_agree(hf, results)


def test_without_the_api_key_the_gate_stops_with_the_servers_answer(servers: Any, tmp_path: Path) -> None:
    reference, pruned = servers
    done = _gate([f"--illusion-model={reference.url}", f"--illusion-compressed={pruned.url}", "--illusion-items=2",
                  "--illusion-langs=en"], tmp_path, env_key=False, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert done.returncode == 4 and len(errors) == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "HTTP 401" in errors[0] and reference.url in errors[0]


def test_a_wrong_model_name_is_a_usage_error(servers: Any, tmp_path: Path) -> None:
    reference, pruned = servers
    done = _gate([f"--illusion-model={reference.url}", f"--illusion-compressed={pruned.url}#no-such-model",
                  "--illusion-items=2", f"--illusion-api-key-env={KEY_ENV}"], tmp_path, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
    assert done.returncode == 4 and len(errors) == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "does not serve 'no-such-model'" in errors[0] and f"'{PRUNED_NAME}'" in errors[0]
    assert not list(tmp_path.rglob("illusion-results.json")) and not list(tmp_path.rglob("illusion-report.html"))


def test_a_stalled_server_hits_the_timeout(servers: Any, key: str, tmp_path: Path) -> None:
    """The compressed model's server stops answering (SIGSTOP: its sockets stay open) as its probes
    begin: the run ends in the timeout's one-line RunError, not a hang, and writes nothing."""
    reference, pruned = servers
    stalled: list[str] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "probe compressed" and not stalled:
            pruned.pause()
            stalled.append(phase)

    spec = _served_spec(reference.url, pruned.url, tmp_path / "cache", langs=("en",), items=2, request_timeout=20)
    try:
        with pytest.raises(RunError) as caught:
            evaluate(spec, json_path=tmp_path / "out.json", progress=progress)
    finally:
        pruned.resume()
    assert stalled, "the compressed model's probes never began"
    assert "no reply within 20 s (--illusion-request-timeout)" in str(caught.value) and "\n" not in str(caught.value)
    assert pruned.url in str(caught.value) and not (tmp_path / "out.json").exists()


def test_a_server_killed_mid_run_stops_the_gate_and_the_rerun_reuses_the_cache(servers: Any, tmp_path: Path) -> None:
    """The compressed model's server dies (SIGKILL) while the gate probes it: exit 2 with one line, no
    results or report, only the reference's outcomes cached (atomically); once the server is back on
    its port, the re-run reuses them and finishes."""
    reference, pruned = servers
    cache = tmp_path / "cache"
    args = [f"--illusion-model={reference.url}", f"--illusion-compressed={pruned.url}", "--illusion-langs=en",
            "--illusion-items=4", "--illusion-no-reachability", "--illusion-max-dissociation=1.0",
            f"--illusion-api-key-env={KEY_ENV}", f"--illusion-cache-dir={cache}"]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    try:
        gate = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, KEY_ENV: KEY, "HF_HUB_OFFLINE": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 900
        while not list(cache.glob("*.json")) and gate.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the reference's outcomes are cached: the compressed model is being probed
        pruned.kill()
        stdout, stderr = gate.communicate(timeout=300)
        assert gate.returncode == 2, stdout[-2000:] + stderr[-2000:]
        assert "the evaluation could not finish" in stdout + stderr and pruned.url in stdout + stderr
        assert not (tmp_path / "reports" / "illusion-results.json").exists()
        assert not (tmp_path / "reports" / "illusion-report.html").exists()
        assert len(list(cache.glob("*.json"))) == 1 and not list(cache.glob("*.tmp*"))
    finally:
        pruned.restart()  # the module's other tests keep their server
    again = _gate(args, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reference outcomes: from cache" in again.stdout
    assert json.loads((tmp_path / "reports" / "illusion-results.json").read_text())["summary"]["overall"]["n_items"] == 4
