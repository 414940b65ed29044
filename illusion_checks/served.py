"""Served models: an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp) wherever a model is
accepted, as `http(s)://HOST[:PORT]/v1[#MODEL]`, and the client settings that reach it.

Plain data and parsing only (no network here): `spec.py` checks a spec's URLs and server options with
`check_served` before anything loads; `backends/openai/` talks to the server. It sits below `spec.py`
and reads a spec through `ServedOptions`, the fields it uses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from illusion_checks.options import flag

SERVED_FORM = "http(s)://HOST[:PORT]/v1[#MODEL]"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SERVER_OPTIONS = ("tokenizer", "max_connections", "request_timeout", "api_key_env", "server_sampling")  # ServerSettings' fields


def is_served(source: str | None) -> bool:
    """Whether a model source names a server rather than weights (any `scheme://`, so that a URL the
    client cannot use is refused as a URL, not looked for on disk)."""
    return bool(source) and re.match(r"[a-z][a-z0-9+.-]*://", str(source), re.IGNORECASE) is not None


@dataclass(frozen=True)
class ServedModel:
    """A server's API base (`http://host:port/v1`, no trailing slash) and the served model's name
    (None: the server's only model)."""

    base: str
    model: str | None = None

    @property
    def root(self) -> str:
        """The server's root, where vLLM and llama.cpp serve `/tokenize` and `/version`."""
        return self.base[: -len("/v1")]

    def __str__(self) -> str:
        return self.base + (f"#{self.model}" if self.model else "")


def parse_served(option: str, value: str) -> ServedModel:
    """`value` as a served model, or a one-line ValueError naming `option` and the value."""

    def bad(why: str) -> ValueError:
        return ValueError(f"{option}: '{value}' is not a server URL {SERVED_FORM} ({why})")

    try:
        parts = urlsplit(value)
        port = parts.port  # a port that is not a number raises here
    except ValueError as error:
        raise bad(str(error)) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise bad(f"scheme '{parts.scheme}'")
    if not parts.hostname:
        raise bad("no host")
    if parts.query:
        raise bad("a query string is not allowed")
    if parts.username or parts.password:
        raise bad("credentials belong in the environment variable named by --illusion-api-key-env, not the URL")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1"):
        raise bad("the path must end in /v1")
    if "#" in value and not parts.fragment:
        raise bad("an empty #MODEL")
    netloc = parts.hostname + (f":{port}" if port is not None else "")
    if ":" in parts.hostname:  # an IPv6 literal keeps its brackets
        netloc = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    return ServedModel(f"{parts.scheme.lower()}://{netloc}{path}", unquote(parts.fragment) or None)


def env_name(option: str, value: object) -> str | None:
    """An environment variable's name (never the key itself, which must stay off the command line)."""
    if value is None:
        return None
    if not isinstance(value, str) or not ENV_NAME.fullmatch(value):
        raise ValueError(f"{option}: {value!r} is not an environment variable name (the key itself never goes "
                         "on the command line)")
    return value


@dataclass(frozen=True)
class ServerSettings:
    """How the client reaches servers: a local tokenizer when a server has no `/tokenize`, bounded
    concurrency, the per-request timeout, retries on 429 and 5xx, and the name of the environment
    variable holding the API key (the key itself is never stored), and whose sampling defaults apply."""

    tokenizer: str | None = None
    max_connections: int = 8
    request_timeout: float = 300.0
    api_key_env: str | None = None
    server_sampling: str = "neutral"  # or "server": the server's own sampling defaults apply (as deployed)
    retries: int = 4
    backoff: float = 0.5  # seconds before the first retry; doubled for each next one


class ServedOptions(Protocol):
    """What `check_served` and `settings_of` read of an `EvaluationSpec`."""

    model: str | None
    compressed: str | None
    compress: str | None
    search: str | None
    save_compressed: str | None
    tokenizer: str | None
    max_connections: int
    request_timeout: float
    api_key_env: str | None
    server_sampling: str


def check_served(spec: ServedOptions) -> None:
    """Server URLs parse; a served reference is not compressed here; server options need a server."""
    served = [name for name in ("model", "compressed") if is_served(getattr(spec, name))]
    for name in served:
        parse_served(flag(name), getattr(spec, name))
    if "model" in served and (spec.compress or spec.search):
        option = flag("compress" if spec.compress else "search")
        raise ValueError(f"{option}: the reference is served ({spec.model}), so its weights are out of reach; "
                         f"serve the compressed model too and pass {flag('compressed')}=URL")
    if "model" in served and spec.save_compressed:
        raise ValueError(f"{flag('save_compressed')} needs a local reference to compress")
    if spec.server_sampling == "server" and served and len(served) < 2:
        local = next(name for name in ("model", "compressed") if name not in served)
        raise ValueError(f"{flag('server_sampling')}=server compares the models as deployed, each with its server's "
                         f"own sampling defaults, so both must be served: {flag(local)} is local "
                         f"({getattr(spec, local)}), where no server defaults apply")
    defaults = ServerSettings()  # the spec's defaults too (spec.py asserts it)
    used = [name for name in SERVER_OPTIONS if getattr(spec, name) != getattr(defaults, name)]
    if used and not served:
        raise ValueError(f"{flag(used[0])} applies to served models only: pass {flag('model')} or "
                         f"{flag('compressed')} as http(s)://HOST[:PORT]/v1[#MODEL]")


def settings_of(spec: ServedOptions) -> ServerSettings:
    """The client settings the spec's options give."""
    return ServerSettings(spec.tokenizer, spec.max_connections, spec.request_timeout, spec.api_key_env,
                          spec.server_sampling)
