"""Every input that can fail is checked before a model loads (issue 10, point 4).

End to end, each run counts `load_model` calls (LOAD_COUNTER): a bad calibration source, empty
data, an N:M spec the model's widths do not fit, or an unwritable output must stop with one
usage-error line (exit 4) and no `loads.txt`. Then unit tests of `illusion_checks.preflight`.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from illusion_checks.datasets import fixture_root
from illusion_checks.compress.fit import check_spec_fits, model_widths
from illusion_checks.preflight import check_writable
from tests.helpers.need import missing
from tests.helpers.plugin_runs import LOAD_COUNTER

FIXTURES = fixture_root()
FAST = ("--illusion-items=2", "--illusion-no-reachability", "--illusion-no-cache")


def german_only(directory: Path, count: int = 4) -> Path:
    """A .jsonl data set of the first `count` German fixture items: no English passage at all."""
    lines = (FIXTURES / "de.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    path = directory / "german.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(pytester: pytest.Pytester, model: Path, *args: str, subprocess: bool = False) -> pytest.RunResult:
    pytester.makeconftest(LOAD_COUNTER)
    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    return runner(f"--illusion-model={model}", *FAST, *args)


def assert_stopped_before_loading(pytester: pytest.Pytester, result: pytest.RunResult, *names: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr.str(), result.stderr.str()
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert not (pytester.path / "loads.txt").exists(), "a model was loaded before the input was checked"


def test_default_calibration_on_data_without_english_uses_the_embedded_corpus_and_says_so(
        pytester: pytest.Pytester, tiny_llama_dir: Path) -> None:
    data = german_only(pytester.path)
    result = run(pytester, tiny_llama_dir, f"--illusion-dataset={data}", "--illusion-compress=wanda:0.5",
                 "--illusion-calibration-samples=2", "--illusion-calibration-seqlen=16")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["illusion-checks: note: calibration 'english': the data set has no unevaluated "
                                 "passages in 'en'; using the embedded fixture corpus's 66 'en' passages"])
    results = json.loads((pytester.path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))
    assert [(n["kind"], n["lang"]) for n in results["notes"] if n["kind"] == "calibration"] == [("calibration", "en")]
    assert len((pytester.path / "loads.txt").read_text().splitlines()) == 1


@pytest.mark.parametrize("source, names", [
    ("per-language", ("calibration source 'per-language' needs passages in 'de'", "--illusion-calibration=embedded")),
    ("c4", ("calibration source 'c4'", "needs the network", "--illusion-calibration=embedded")),
])
def test_a_failing_calibration_source_stops_before_any_model_loads(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch, source: str,
                                                                   names: tuple[str, ...]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network here anyway; this makes the failure instant
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = german_only(pytester.path)
    # c4 runs in its own process: pytester drops modules first imported in an in-process run, and
    # pyarrow refuses to register Hugging Face `datasets`' types when it is imported a second time.
    result = run(pytester, tiny_llama_dir, f"--illusion-dataset={data}", "--illusion-items=4",  # no German left over
                 "--illusion-compress=wanda:0.5", f"--illusion-calibration={source}", subprocess=source == "c4")
    assert_stopped_before_loading(pytester, result, *names)


@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", ""),
    ("blank.jsonl", "\n  \n\n"),
    ("squad.de.json", json.dumps({"data": []})),
])
def test_empty_data_stops_before_any_model_loads(pytester: pytest.Pytester, tiny_llama_dir: Path, name: str,
                                                 content: str) -> None:
    (pytester.path / name).write_text(content, encoding="utf-8")
    result = run(pytester, tiny_llama_dir, f"--illusion-dataset={name}", "--illusion-compress=magnitude:0.5")
    assert_stopped_before_loading(pytester, result, name, "no QA items")


@pytest.mark.parametrize("spec", ["magnitude:2:3", "wanda:1:3"])
def test_an_nm_pattern_the_model_widths_do_not_fit_stops_before_any_model_loads(
        pytester: pytest.Pytester, tiny_llama_dir: Path, spec: str) -> None:
    result = run(pytester, tiny_llama_dir, "--illusion-langs=en", f"--illusion-compress={spec}")
    # The tiny model: hidden_size 64, intermediate_size 128; 3 divides neither.
    assert_stopped_before_loading(pytester, result, f"--illusion-compress={spec}", "M=3", "hidden_size", "64")


@pytest.mark.parametrize("option", ["--illusion-json", "--illusion-report", "--illusion-save-compressed"])
def test_an_output_under_a_file_stops_before_any_model_loads(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                             option: str) -> None:
    (pytester.path / "blocker").write_text("a file, not a folder", encoding="utf-8")
    target = pytester.path / "blocker" / "out"
    result = run(pytester, tiny_llama_dir, "--illusion-langs=en", "--illusion-compress=magnitude:0.5",
                 f"{option}={target}")
    assert_stopped_before_loading(pytester, result, option, str(target))


@pytest.mark.parametrize("where", ["ILLUSION_CHECKS_CACHE", "--illusion-cache-dir"])
def test_a_cache_that_is_a_file_stops_before_any_model_loads(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A cache named as a file (or under one): exit 4 and one line naming the variable or option, not
    `INTERNALERROR> NotADirectoryError: ... afile/models` (exit 3) once the model is being converted."""
    afile = pytester.path / "afile"
    afile.write_text("not a folder", encoding="utf-8")
    args = ["--illusion-langs=en", "--illusion-compress=magnitude:0.5"]
    if where == "ILLUSION_CHECKS_CACHE":
        monkeypatch.setenv("ILLUSION_CHECKS_CACHE", str(afile))
    else:
        args.append(f"--illusion-cache-dir={afile / 'results'}")
    result = run(pytester, tiny_llama_dir, *args)
    assert_stopped_before_loading(pytester, result, where, str(afile))


def test_a_read_only_cache_folder_stops_before_any_model_loads(pytester: pytest.Pytester, tiny_llama_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with read_only_folder(pytester.path / "locked") as folder:
        monkeypatch.setenv("ILLUSION_CHECKS_CACHE", str(folder))
        result = run(pytester, tiny_llama_dir, "--illusion-langs=en", "--illusion-compress=magnitude:0.5")
    assert_stopped_before_loading(pytester, result, "ILLUSION_CHECKS_CACHE", str(folder), "cannot write in")


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """`folder`, made read-only for the test's user: by its mode, or for root (whom modes do not stop) by
    a read-only tmpfs mounted on it."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        missing(f"running as root, and a read-only tmpfs could not be mounted: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_output_folder_stops_before_any_model_loads(pytester: pytest.Pytester,
                                                                tiny_llama_dir: Path) -> None:
    with read_only_folder(pytester.path / "read-only") as folder:
        result = run(pytester, tiny_llama_dir, "--illusion-langs=en", "--illusion-compress=magnitude:0.5",
                     f"--illusion-json={folder / 'results.json'}")
        assert not (folder / "results.json").exists()
    assert_stopped_before_loading(pytester, result, "--illusion-json", str(folder / "results.json"))


def test_check_writable_makes_the_folder_and_names_the_option_on_a_read_only_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_writable("--illusion-json", tmp_path / "new" / "deeper" / "results.json")
    assert (tmp_path / "new" / "deeper").is_dir() and not any((tmp_path / "new" / "deeper").iterdir())

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # root ignores chmod; a read-only mount does not
    with pytest.raises(ValueError, match=r"--illusion-report: cannot write .*report\.html \(Read-only file system\)"):
        check_writable("--illusion-report", tmp_path / "report.html")


def test_check_writable_refuses_a_folder_for_a_file_and_a_file_for_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--illusion-json: .* is a folder; pass a file path"):
        check_writable("--illusion-json", tmp_path)
    with pytest.raises(ValueError, match="--illusion-save-compressed: .* is a file; pass a folder path"):
        check_writable("--illusion-save-compressed", tmp_path / "file", is_dir=True)
    check_writable("--illusion-save-compressed", tmp_path / "model", is_dir=True)  # need not exist yet


def test_model_widths_and_nm_fit(tiny_llama_dir: Path) -> None:
    from transformers import AutoConfig

    assert model_widths(AutoConfig.from_pretrained(tiny_llama_dir)) == {
        "hidden_size": 64, "intermediate_size": 128, "num_attention_heads*head_dim": 64}
    # Gemma 3 sets head_dim apart from hidden_size / heads, so o_proj's input width is its own check.
    gemma_like = SimpleNamespace(hidden_size=640, intermediate_size=2048, num_attention_heads=4, head_dim=258)
    assert model_widths(gemma_like) == {"hidden_size": 640, "intermediate_size": 2048,
                                        "num_attention_heads*head_dim": 1032}
    check_spec_fits("wanda:2:4", str(tiny_llama_dir))
    check_spec_fits("wanda:0.5", "/no/config/needed/for/unstructured")
    with pytest.raises(ValueError, match="--illusion-compress=sparsegpt:4:8: cannot read the model's config"):
        check_spec_fits("sparsegpt:4:8", str(tiny_llama_dir / "missing"))
