"""What a test needs (tests/helpers/need.py): a missing package, program or vLLM Python skips the
test on a developer's machine and fails it under CI, so a CI run cannot pass by skipping; what is
there is handed back. (Chromium's case: tests/report/test_chromium.py.)"""

from __future__ import annotations

import sys

import pytest

from tests.helpers.need import missing, need_executable, need_module, need_vllm

LOCAL, CI = {"PATH": ""}, {"CI": "true", "PATH": ""}


def test_missing_skips_locally_and_fails_under_ci_with_the_reason():
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        missing("no widget", LOCAL)
    with pytest.raises(pytest.fail.Exception, match="no widget; CI is set, so this test must run, not skip"):
        missing("no widget", CI)


def test_a_missing_package_skips_locally_and_fails_under_ci():
    with pytest.raises(pytest.skip.Exception, match="package no_such_package_xyz is not installed"):
        need_module("no_such_package_xyz", LOCAL)
    with pytest.raises(pytest.fail.Exception, match="no_such_package_xyz.*CI is set"):
        need_module("no_such_package_xyz", CI)
    assert need_module("json", CI).dumps([1]) == "[1]"


def test_a_missing_program_skips_locally_and_fails_under_ci(tmp_path):
    with pytest.raises(pytest.skip.Exception, match="no-such-program is not installed"):
        need_executable("no-such-program", {"PATH": str(tmp_path)})
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        need_executable("no-such-program", {"PATH": str(tmp_path), "CI": "1"})
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    assert need_executable("tool", {"PATH": str(tmp_path), "CI": "1"}) == str(program)


def test_a_missing_vllm_python_skips_locally_and_fails_under_ci(tmp_path):
    with pytest.raises(pytest.skip.Exception, match="ILLUSION_VLLM_PYTHON names no Python with vLLM"):
        need_vllm({})
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        need_vllm({"CI": "yes", "ILLUSION_VLLM_PYTHON": str(tmp_path / "absent")})
    assert need_vllm({"CI": "yes", "ILLUSION_VLLM_PYTHON": sys.executable}) == sys.executable
