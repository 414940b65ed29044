"""The package as `pip install` gives it (issue 12): a wheel built from this checkout, installed in a
fresh venv, runs the default gate on the embedded fixture set from a working directory outside the
repository, so only the installed package (never the checkout) can answer.

Offline: the wheel is built without build isolation and installed without dependencies; the new
venv sees this venv's packages (torch, transformers, pytest) through a `.pth` file written after the
install, so its own `illusion_checks` comes first. A `.pth` line adds a folder only: the editable
install's finder in this venv stays inactive there.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.synth import make_results

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# The wheel is built from a copy: setuptools writes build/ and *.egg-info next to pyproject.toml.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".bench-venv", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", "reports", "test-artifacts")
# Written into each run's working directory: where the run imported the package and found the fixtures.
WHERE_CONFTEST = """\
import json, sys
import illusion_checks
from illusion_checks.datasets import fixture_root

with open("imported.json", "w", encoding="utf-8") as out:
    json.dump({"package": illusion_checks.__file__, "fixtures": str(fixture_root()), "sys_path": sys.path}, out)
"""


@dataclass(frozen=True)
class Installed:
    """A venv holding the wheel, and its own site-packages."""

    python: Path
    site_packages: Path


def run_checked(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    shutil.copytree(REPO, root / "source", ignore=NOT_SOURCES)
    run_checked(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "-w", root / "dist", root / "source")
    (wheel,) = (root / "dist").glob("illusion_checks-*.whl")
    venv = root / "venv"
    run_checked(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run_checked(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel)
    purelib = run_checked(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    site_packages = Path(purelib)
    assert (site_packages / "illusion_checks" / "data" / "qa" / "en.jsonl").is_file()
    # After the wheel, so this venv's own illusion_checks (an editable install of the checkout) comes second.
    (site_packages / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n", encoding="utf-8")
    return Installed(python, site_packages)


def run_pytest(installed: Installed, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m pytest ARGS` in the new venv, from `cwd` (a user's project, outside the repository)."""
    (cwd / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (cwd / "conftest.py").write_text(WHERE_CONFTEST, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PYTEST_", "VIRTUAL_ENV"))}
    env.update(ILLUSION_CHECKS_CACHE=str(cwd / "cache"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([str(installed.python), "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def assert_ran_the_wheel(installed: Installed, cwd: Path) -> None:
    """The run imported the installed package and read its fixtures; the checkout was not on sys.path."""
    where = json.loads((cwd / "imported.json").read_text(encoding="utf-8"))
    assert Path(where["package"]).is_relative_to(installed.site_packages), where["package"]
    assert Path(where["fixtures"]) == installed.site_packages / "illusion_checks" / "data" / "qa"
    dependencies = {Path(path).resolve() for path in site.getsitepackages()}
    in_checkout = {Path(entry or cwd).resolve() for entry in where["sys_path"]} - dependencies
    assert not [path for path in in_checkout if path == REPO or REPO in path.parents], where["sys_path"]


def test_from_results_applies_the_gates_and_writes_the_report(installed: Installed, tmp_path: Path) -> None:
    results = make_results(["en", "sw"], 30, seed=1, n_resamples=50, gates=False)
    assert results["summary"]["overall"]["fates"]["mc_only"] > 0
    (tmp_path / "results.json").write_text(json.dumps(results), encoding="utf-8")
    proc = run_pytest(installed, tmp_path, "--illusion-from-results=results.json", "--illusion-max-dissociation=0")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]  # the dissociation gate fails, as it should at 0
    assert "FAILED illusion/overall::dissociation" in output
    assert (tmp_path / "reports" / "illusion-report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert json.loads((tmp_path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))["gates"]
    assert_ran_the_wheel(installed, tmp_path)


def test_the_default_gate_runs_on_the_embedded_fixtures(installed: Installed, tmp_path: Path,
                                                        tiny_llama_dir: Path) -> None:
    proc = run_pytest(installed, tmp_path, f"--illusion-model={tiny_llama_dir}", "--illusion-compress=magnitude:0.5",
                      "--illusion-items=2", "--illusion-langs=en", "--illusion-no-reachability")
    output = proc.stdout + proc.stderr
    # A random tiny model answers little: the gates may pass or fail, but the run must not error.
    assert proc.returncode in (0, 1), output[-3000:]
    assert "fixture set is missing" not in output
    written = json.loads((tmp_path / "reports" / "illusion-results.json").read_text(encoding="utf-8"))
    assert written["config"]["dataset"]["name"] == "fixtures"
    assert [item["lang"] for item in written["items"]] == ["en", "en"]
    assert all(item["id"].startswith("en-") for item in written["items"])
    assert_ran_the_wheel(installed, tmp_path)
