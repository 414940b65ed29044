"""The CI templates in docs/ci: their structure, their caches, and their pytest command checked
against the real plugin's options and values (no model, no network)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

import illusion_checks.api as api
from illusion_checks.api import run_evaluation
from illusion_checks.pytest_plugin.config import OPTIONS, IllusionConfig, read_config
from illusion_checks.spec import EvaluationSpec

CI_DIR = Path(__file__).resolve().parents[1] / "docs" / "ci"
GITHUB = CI_DIR / "github-actions.yml"
GITLAB = CI_DIR / ".gitlab-ci.yml"
README = CI_DIR / "README.md"
TEMPLATES = ("github", "gitlab")
REAL_FLAGS = frozenset(option.flag for option in OPTIONS)
OPTION_IN_TEXT = re.compile(r"--illusion-[a-z0-9]+(?:-[a-z0-9]+)*")
PYTEST_PREFIXES = (["pytest"], ["python", "-m", "pytest"], ["python3", "-m", "pytest"])
# `${{ env.NAME }}`, `${{ github.workspace }}`, `${NAME}` and `$NAME`, as the CI expands them.
VARIABLE = re.compile(r"\$\{\{\s*(?:env\.)?([\w.]+)\s*\}\}|\$\{(\w+)\}|\$(\w+)")
# What the CI sets at run time: the checkout (GitHub) or the project directory (GitLab).
WORKSPACE = "/ci/workspace"
RUNTIME = {"github.workspace": WORKSPACE, "CI_PROJECT_DIR": WORKSPACE}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def github_job() -> dict[str, Any]:
    """The workflow's one job."""
    jobs = load(GITHUB)["jobs"]
    assert len(jobs) == 1, sorted(jobs)
    return next(iter(jobs.values()))


def gitlab_job() -> dict[str, Any]:
    """The pipeline's one job (the top-level mapping with a `script`)."""
    jobs = [value for value in load(GITLAB).values() if isinstance(value, dict) and "script" in value]
    assert len(jobs) == 1, jobs
    return jobs[0]


def scripts(template: str) -> list[str]:
    """Every shell script the template runs."""
    if template == "github":
        return [step["run"] for step in github_job()["steps"] if "run" in step]
    job = gitlab_job()
    return [line for key in ("before_script", "script", "after_script") for line in job.get(key, [])]


def pytest_commands(shell_scripts: list[str]) -> list[list[str]]:
    """The arguments of every pytest command in these scripts (`\\` continuations joined)."""
    commands = []
    for script in shell_scripts:
        for line in re.sub(r"\\\n", " ", script).splitlines():
            words = shlex.split(line, comments=True)
            for prefix in PYTEST_PREFIXES:
                if words[: len(prefix)] == prefix:
                    commands.append(words[len(prefix):])
    return commands


def the_command(template: str) -> list[str]:
    """The template's one pytest command, every argument literal (no shell or CI variable)."""
    commands = pytest_commands(scripts(template))
    assert len(commands) == 1, commands
    variables = [arg for arg in commands[0] if "$" in arg]
    assert not variables, f"{template}: pytest arguments must be literal to be checked: {variables}"
    return commands[0]


def validate(pytester: pytest.Pytester, args: list[str]) -> tuple[pytest.Config, IllusionConfig]:
    """Parse `args` as pytest does, with the real plugin's options, and read every `--illusion-*`
    value (pytest.UsageError on an unknown option or a bad value). Loads no model."""
    config = pytester.parseconfig(*args)
    return config, read_config(config)


def expand(text: str, env: dict[str, str]) -> str:
    """`text` with its CI variables replaced from `env`, as the CI does before using it."""
    for _ in range(5):  # a variable's value may name another variable
        expanded = VARIABLE.sub(lambda match: env[next(group for group in match.groups() if group)], text)
        if expanded == text:
            return text
        text = expanded
    raise AssertionError(f"variables in {text!r} do not resolve")


class _CacheDir(Exception):
    pass


def outcome_cache_dir(monkeypatch: pytest.MonkeyPatch, root: str) -> Path:
    """Where the package keeps probe outcomes when `$ILLUSION_CHECKS_CACHE` is `root`: asked of
    `run_evaluation` itself, stopped before it loads anything."""

    def stop(spec: Any, cache: Any, *args: Any) -> None:
        raise _CacheDir(cache.directory)

    monkeypatch.setenv("ILLUSION_CHECKS_CACHE", root)
    monkeypatch.setattr(api, "Evaluation", stop)  # where run_evaluation looks it up
    with pytest.raises(_CacheDir) as stopped:
        run_evaluation(EvaluationSpec(model="m", compress="wanda:0.5"))
    return Path(stopped.value.args[0])


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_command_is_valid_for_the_real_plugin(pytester: pytest.Pytester, template: str) -> None:
    config, cfg = validate(pytester, the_command(template))
    assert cfg.active and cfg.spec.model and cfg.spec.compress and cfg.gates.max_dissociation
    positional = [arg for arg in config.args if not arg.startswith("-")]
    assert positional == ["illusion"], "the node id `illusion` selects only the generated tests"
    assert config.getoption("xmlpath"), "--junitxml: the JUnit report the CI shows"


def test_both_templates_run_the_same_command() -> None:
    assert the_command("github") == the_command("gitlab")


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_stale_option_or_value_is_rejected(pytester: pytest.Pytester, template: str) -> None:
    args = the_command(template)
    with pytest.raises(pytest.UsageError, match="--illusion-no-such-option"):
        validate(pytester, [*args, "--illusion-no-such-option"])
    with pytest.raises(pytest.UsageError, match="--illusion-items"):
        validate(pytester, [*args, "--illusion-items=0"])


def test_every_option_named_in_the_templates_and_their_readme_exists() -> None:
    named = {path.name: set(OPTION_IN_TEXT.findall(path.read_text(encoding="utf-8")))
             for path in (GITHUB, GITLAB, README)}
    assert all(named.values()), named
    unknown = {name: sorted(flags - REAL_FLAGS) for name, flags in named.items() if flags - REAL_FLAGS}
    assert not unknown, f"not options of the plugin: {unknown}"
    assert OPTION_IN_TEXT.findall("--illusion-no-such-option")[0] not in REAL_FLAGS


def test_github_workflow_structure(pytester: pytest.Pytester) -> None:
    workflow, job = load(GITHUB), github_job()
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers)
    assert job["runs-on"] == "ubuntu-latest"
    uses = {step.get("uses", "").split("@")[0]: step for step in job["steps"]}
    assert uses["actions/setup-python"]["uses"].endswith("@v5")
    assert str(uses["actions/setup-python"]["with"]["python-version"]) == "3.11"
    upload = uses["actions/upload-artifact"]
    assert upload["uses"].endswith("@v4") and upload["if"] == "always()"
    config, cfg = validate(pytester, the_command("github"))
    outputs = [cfg.report, cfg.json, config.getoption("xmlpath")]
    assert all(Path(output).is_relative_to(upload["with"]["path"]) for output in outputs), outputs


def github_caches() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each cache entry's restore step and save step, by the restore step's id."""
    steps = [step for step in github_job()["steps"] if step.get("uses", "").startswith("actions/cache")]
    assert all(step["uses"].endswith("@v4") for step in steps), steps
    restores = {step["id"]: step for step in steps if step["uses"].startswith("actions/cache/restore@")}
    saves = [step for step in steps if step["uses"].startswith("actions/cache/save@")]
    pairs = {}
    for step_id, restore in restores.items():
        save = [step for step in saves if f"steps.{step_id}.outputs" in step["with"]["key"]]
        assert len(save) == 1, f"cache {step_id}: one save step, keyed by its restore step"
        pairs[step_id] = (restore, save[0])
    assert len(pairs) == 2 and len(saves) == 2, "two cache entries: the models and the outcomes"
    return pairs


def test_github_caches_outcomes_and_models(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    job, pairs = github_job(), github_caches()
    env = {**RUNTIME, **job["env"]}
    for restore, save in pairs.values():
        assert save["with"]["path"] == restore["with"]["path"]  # a cache is restored only from the same paths
        assert "always()" in save["if"], "saved when the gate fails too"
    (outcomes,) = [r for r, _ in pairs.values() if "github.sha" in r["with"]["key"]]
    (models,) = [r for r, _ in pairs.values() if r is not outcomes]
    assert outcomes["with"]["key"].startswith(outcomes["with"]["restore-keys"])
    wanted = outcome_cache_dir(monkeypatch, expand(env["ILLUSION_CHECKS_CACHE"], env))
    assert Path(expand(outcomes["with"]["path"], env)) == wanted
    model_paths = [Path(expand(path, env)) for path in models["with"]["path"].splitlines()]
    assert Path(expand(env["HF_HOME"], env)) in model_paths
    assert not any(wanted.is_relative_to(path) or path.is_relative_to(wanted) for path in model_paths)
    _, cfg = validate(pytester, the_command("github"))
    assert cfg.spec.model in models["with"]["key"] and cfg.spec.compress in models["with"]["key"]


def test_gitlab_job_structure(pytester: pytest.Pytester) -> None:
    job = gitlab_job()
    assert job["image"] == "python:3.11"
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    config, cfg = validate(pytester, the_command("gitlab"))
    assert artifacts["reports"]["junit"] == config.getoption("xmlpath")
    for output in (cfg.report, cfg.json, artifacts["reports"]["junit"]):
        assert any(Path(output).is_relative_to(path) for path in artifacts["paths"]), output


def test_gitlab_caches_outcomes_and_models(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    job = gitlab_job()
    env = {**RUNTIME, **job["variables"]}
    caches = {entry["key"]: entry for entry in job["cache"]}
    assert all(entry["when"] == "always" for entry in caches.values()), "saved when the gate fails too"
    outcomes = caches.pop("illusion-outcomes")
    ((models_key, models),) = caches.items()
    wanted = outcome_cache_dir(monkeypatch, expand(env["ILLUSION_CHECKS_CACHE"], env))
    # GitLab caches paths relative to the project directory only.
    assert [Path(WORKSPACE) / path for path in outcomes["paths"]] == [wanted]
    model_paths = [Path(WORKSPACE) / path for path in models["paths"]]
    assert Path(expand(env["HF_HOME"], env)) in model_paths
    assert not any(wanted.is_relative_to(path) or path.is_relative_to(wanted) for path in model_paths)
    _, cfg = validate(pytester, the_command("gitlab"))
    slug = re.sub(r"[^a-z0-9.]+", "-", f"{Path(cfg.spec.model).name}-{cfg.spec.compress}".lower())
    assert "$" not in models_key and slug in models_key, (slug, models_key)
