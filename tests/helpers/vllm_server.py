"""A real `vllm serve` (the CPU build in `.venv-vllm`) on 127.0.0.1, started and stopped by the tests:
the OpenAI-compatible server users deploy, with the faults a test injects (killed, stalled)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


from tests.helpers.need import need_vllm

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` serving `folder` as `name` (the CPU settings the
    vLLM backend uses: float32, eager, no chunked prefill, so seeded sampling works)."""

    def __init__(self, folder: str, name: str, log: Path, api_key: str | None = None, port: int | None = None) -> None:
        self.folder, self.name, self.log_path, self.api_key = folder, name, log, api_key
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "VLLMServer":
        command = [need_vllm(), "-m", "vllm.entrypoints.openai.api_server", "--model", self.folder,
                   "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
                   "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager", "--no-enable-chunked-prefill",
                   *(["--api-key", self.api_key] if self.api_key else [])]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
               "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # its own group: the engine core dies with it
        return self

    def wait_ready(self, timeout: float = 600) -> "VLLMServer":
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"vllm serve was not ready within {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def models(self) -> list[str]:
        request = urllib.request.Request(f"{self.url}/models",
                                         headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return [entry["id"] for entry in json.loads(reply.read())["data"]]

    def _signal(self, number: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, number)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """As a crash: SIGKILL to the whole group, no clean shutdown."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=60)

    def pause(self) -> None:
        """A stall: the sockets stay open and accept, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self) -> "VLLMServer":
        """A fresh server process on the same port (after `kill`), ready; a live one is stopped first."""
        self.stop()
        return self.start().wait_ready()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.resume()
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
