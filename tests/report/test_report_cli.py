"""`python -m illusion_checks.report`: re-renders a report from results files alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from illusion_checks.report.__main__ import main
from tests.helpers.synth import make_results


def test_renders_next_to_the_results_by_default(tmp_path, small_results, capsys):
    src = tmp_path / "run.json"
    src.write_text(json.dumps(small_results), encoding="utf-8")
    assert main([str(src)]) == 0
    out = tmp_path / "run.html"
    assert capsys.readouterr().out.strip() == str(out)
    assert 'id="explorer"' in out.read_text(encoding="utf-8")


def test_output_and_sweep(tmp_path, small_results):
    src, other = tmp_path / "a.json", tmp_path / "b.json"
    src.write_text(json.dumps(small_results), encoding="utf-8")
    other.write_text(json.dumps(make_results(("ar", "en", "sw"), 60, n_resamples=10, spec="wanda:0.7")),
                     encoding="utf-8")
    out = tmp_path / "nested.html"
    assert main([str(src), "-o", str(out), "--sweep", str(other)]) == 0
    assert 'id="sweep"' in out.read_text(encoding="utf-8")


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(SystemExit, match="missing.json"):
        main([str(missing)])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SystemExit, match="bad.json"):
        main([str(bad)])
    assert not (tmp_path / "bad.html").exists()


def test_runs_as_a_module(tmp_path, small_results):
    src = tmp_path / "run.json"
    src.write_text(json.dumps(small_results), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "illusion_checks.report", str(src), "-o", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r.html").stat().st_size > 10_000
