"""A missing Chromium skips the browser tests on a developer's machine and fails them under CI,
as it fails `make browser` there: a CI run cannot pass without the browser tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.need import in_ci, need_executable, require_chromium

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                             ("", False), ("false", False), ("0", False)])
def test_ci_is_read_as_ci_services_set_it(value, expected):
    assert in_ci({"CI": value}) is expected
    assert in_ci({}) is False


def test_a_missing_chromium_skips_locally_and_fails_under_ci(tmp_path):
    missing = str(tmp_path / "chromium")
    with pytest.raises(pytest.skip.Exception, match="is absent"):
        require_chromium(missing, {})
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this test must run"):
        require_chromium(missing, {"CI": "true"})
    present = tmp_path / "here"
    present.write_text("")
    assert require_chromium(str(present), {"CI": "true"}) == str(present)


@pytest.mark.parametrize("ci, returncode, says", [("true", 2, "error: could not install chromium"),
                                                  ("", 0, "warning: could not install chromium")])
def test_make_browser_fails_under_ci_when_it_cannot_install(tmp_path, ci, returncode, says):
    make = need_executable("make")
    # No apt-get and no sudo on this PATH: the install cannot happen.
    env = {"PATH": str(tmp_path), "CI": ci}
    done = subprocess.run([make, "-s", "-C", str(ROOT), "browser", f"CHROMIUM={tmp_path / 'chromium'}"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == returncode, done.stderr
    assert says in done.stderr
