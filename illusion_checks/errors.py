"""Run errors: a run that could not finish because a server or an engine worker died, stalled or
refused, raised by the engines (`backends/openai/`, `backends/vllm/`) and turned by the pytest glue
into one line and exit status 2. The setup errors among them are also ValueErrors: reported like a bad
option, before anything loads.

Engine-free and import-free, on the bottom floor, so that any floor can raise or catch them."""

from __future__ import annotations


class RunError(RuntimeError):
    """A run that could not finish (a server that died or stalled, an engine worker that stopped):
    the message is one line, and nothing of the run is written."""


class ServerError(RunError):
    """The server failed a request (it died, stalled, or kept answering 429/5xx): one line."""


class ServerRequestError(ServerError):
    """The server refused a request as invalid (a 4xx other than 429): retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerSetupError(ServerError, ValueError):
    """The server cannot be used as asked: reported like a bad option, before anything loads."""


class VLLMError(RunError):
    """The vLLM worker could not start or answer; the message is one line."""


class VLLMSetupError(VLLMError, ValueError):
    """No Python with vLLM to run the worker: a setup error, reported like a bad option."""


class CompressorError(RunError):
    """llm-compressor's worker could not compress (`--illusion-compress=llmc:...`); the message is one line."""


class CompressorSetupError(CompressorError, ValueError):
    """No Python with llmcompressor, or a recipe it refuses: a setup error, reported like a bad option."""
