"""The engine for served models (see `Engine` in backends/base.py): `resolve` reaches the server and
finds what it can measure (`discovery.py`) before anything loads, and its fingerprint is the served
model's identity (URL, model id, what /v1/models and /version say of it, its capabilities), so
outcomes are cached per server and model. A server's weights are out of reach: it cannot be
compressed or saved here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from illusion_checks.backends.base import Backend, CompressOptions, CompressTarget, LoadOptions, PhaseProgress
from illusion_checks.backends.openai.backend import OpenAIBackend
from illusion_checks.backends.openai.client import Client
from illusion_checks.backends.openai.discovery import ServerProfile, discover
from illusion_checks.backends.openai.tokenizer import ServerTokenizer, local_tokenizer
from illusion_checks.cache import cache_key
from illusion_checks.served import ServerSettings, parse_served


class OpenAIEngine:
    """Served models named by one option (`--illusion-model` or `--illusion-compressed`)."""

    name = "openai"
    compress_needs_reference = False

    def __init__(self, settings: ServerSettings, option: str, trust_remote_code: bool = False) -> None:
        self.settings, self.option, self.trust_remote_code = settings, option, trust_remote_code
        self._profiles: dict[str, tuple[ServerProfile, Any]] = {}

    def version(self) -> str:
        return ""

    def _client(self, source: str) -> Client:
        return Client(parse_served(self.option, source), self.settings, f"{self.option}={source}")

    def profile(self, source: str) -> tuple[ServerProfile, Any]:
        """The server's profile and the local tokenizer (None: the server's), found once per source."""
        if source not in self._profiles:
            local = None
            if self.settings.tokenizer:
                local = local_tokenizer(self.settings.tokenizer, self.trust_remote_code)
            client = self._client(source)
            try:
                self._profiles[source] = (discover(client, parse_served(self.option, source), self.settings, local), local)
            finally:
                client.close()
        return self._profiles[source]

    def resolve(self, source: str, allow_pickle: bool) -> tuple[str, str]:
        profile, _ = self.profile(source)
        return str(profile.served), "server:" + cache_key(profile.identity())

    def check_tokenizer(self, source: str, texts: Mapping[str, str]) -> None:
        """With --illusion-tokenizer, the local tokenizer must give the server's ids for a passage of
        each evaluated language (`texts`: language -> passage), special tokens on: prompts go out as
        ids, so a tokenizer that differs on one script or on the BOS would send every prompt of that
        language wrong. A ValueError names the language and the first differing position."""
        profile, local = self.profile(source)
        if local is None or profile.tokenize is None:  # the server's own tokenizer builds the prompts
            return
        client = self._client(source)
        try:
            served = ServerTokenizer(client, profile.model, profile.tokenize)
            for lang, text in texts.items():
                ours, theirs = list(local(text)["input_ids"]), served(text)["input_ids"]
                if ours != theirs:
                    at = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
                    here, there = (ids[at] if at < len(ids) else "the end" for ids in (ours, theirs))
                    raise ValueError(f"--illusion-tokenizer: '{self.settings.tokenizer}' does not tokenize {lang} like "
                                     f"the served model ({self.option}={source}): the {lang} passage first differs at "
                                     f"token {at} (here {here}, on the server {there}; {len(ours)} vs {len(theirs)} "
                                     "tokens): pass the served model's own tokenizer")
        finally:
            client.close()

    def describe(self, source: str) -> dict[str, Any]:
        """The served model's block for the results' `config` (never the API key: it is not held here)."""
        return self.profile(source)[0].identity()

    def device_type(self, device: str) -> str:
        return "server"

    def check_spec_fits(self, spec: str, source: str, trust_remote_code: bool) -> None:
        raise ValueError(f"{self.option}: a served model cannot be compressed here; serve the compressed model "
                         "too and pass it as --illusion-compressed=URL")

    def compression_identity(self, spec: str, source: str, trust_remote_code: bool) -> dict[str, Any] | None:
        return None  # a served model is never compressed here (check_spec_fits refuses it first)

    def load(self, source: str, options: LoadOptions) -> Backend:
        profile, local = self.profile(source)
        client = Client(profile.served, self.settings, f"{self.option}={source}")
        tokenizer = local if local is not None else ServerTokenizer(client, profile.model, profile.tokenize or "")
        return OpenAIBackend(client, profile, tokenizer)

    def compress(self, source: str, reference: Callable[[], Backend], spec: str, target: CompressTarget,
                 texts: list[str] | None, options: CompressOptions, load: LoadOptions, progress: PhaseProgress,
                 log: Callable[[str], None]) -> Backend:
        self.check_spec_fits(spec, source, load.trust_remote_code)
        raise AssertionError("unreachable")

    def save(self, backend: Backend, folder: Path, manifest: dict[str, Any]) -> Path:
        raise ValueError(f"{self.option}: a served model's weights are on the server; they cannot be saved here")

    def saved_manifest(self, folder: Path) -> dict[str, Any] | None:
        return None
