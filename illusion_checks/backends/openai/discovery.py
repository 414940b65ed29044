"""What a server can measure, found once at start with a tiny request per feature, before any item
is probed: the served model (the URL's `#MODEL`, or the server's only one), the tokenizer, whether
completions return their token ids, how option log-likelihoods and the gold rank are read
(vLLM's `prompt_logprobs`: exact ranks; `echo` + `logprobs`: ranks within the top k), beam search
(vLLM's `use_beam_search`), and whether sampling honours `seed`.

Every failure here is a one-line `ServerSetupError` (a ValueError: a usage error, before any model
loads): the server is down, the model name is wrong, or a probe the gate needs is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from illusion_checks.backends.base import RANK_EXACT, RANK_TOP_K, Capabilities
from illusion_checks.backends.openai.client import Client
from illusion_checks.backends.openai.tokenizer import tokenize_flavour
from illusion_checks.errors import ServerError, ServerRequestError, ServerSetupError
from illusion_checks.served import ServedModel, ServerSettings

PROMPT_LOGPROBS, ECHO = "prompt_logprobs", "echo"
TOP_K_TRIED = (20, 5)  # the most logprobs vLLM (max_logprobs) and OpenAI's legacy API return
_VOLATILE = ("created", "permission", "object")  # /v1/models fields that change on every server start
PROBE_TEXT = "The capital of France is"
# The sampling state every probe means, stated on every request: a server (vLLM) otherwise fills the
# fields a request leaves unset from the model's generation_config.json (Qwen3: top_k 20; Qwen2.5:
# repetition_penalty 1.05), decoding the served model differently from a local one.
NEUTRAL = {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}


@dataclass(frozen=True)
class ServerProfile:
    """The served model and what the server can measure for it."""

    served: ServedModel  # with the model name resolved
    entry: dict[str, Any]  # its /v1/models entry, without the fields that change on every start
    version: str | None  # the server's own version, where it says
    tokenizer: str  # "server /tokenize (vllm)", or "local: NAME"
    tokenize: str | None  # the server's /tokenize flavour (None: it has none)
    token_ids: bool  # completions return their token ids (vLLM's return_token_ids)
    scoring: str  # PROMPT_LOGPROBS or ECHO
    rank_top_k: int | None  # None: ranks over the whole vocabulary
    beam: str | None  # None: available; else why not
    sampling: str | None
    seeded: bool
    neutral: tuple[tuple[str, Any], ...] = tuple(NEUTRAL.items())  # the NEUTRAL fields the server accepts
    mode: str = "neutral"  # --illusion-server-sampling: "server" sends none of them (the server's defaults apply)
    defaults: Any = None  # with "server": what the server says of the defaults it applies (a string: nothing)

    @property
    def refused(self) -> list[str]:
        """The NEUTRAL fields the server refuses: its own defaults apply to them."""
        return [name for name in NEUTRAL if name not in dict(self.neutral)]

    @property
    def sent(self) -> dict[str, Any]:
        """The sampling fields every greedy and sampled request states."""
        return dict(self.neutral) if self.mode == "neutral" else {}

    @property
    def model(self) -> str:
        assert self.served.model is not None
        return self.served.model

    def capabilities(self) -> Capabilities:
        return Capabilities(rank=RANK_EXACT if self.rank_top_k is None else RANK_TOP_K, rank_top_k=self.rank_top_k,
                            beam=self.beam, sampling=self.sampling)

    def table(self) -> dict[str, str]:
        """Probe -> exact / approximate / unavailable, and how: printed at start and kept in `config`."""
        scoring = "vLLM prompt_logprobs" if self.scoring == PROMPT_LOGPROBS else "echo + logprobs"
        refused = (f"approximate: the server refuses {', '.join(self.refused)}, so its own defaults for them "
                   "apply") if self.refused else None
        if self.mode == "server":
            refused = "as deployed (--illusion-server-sampling=server): the server's own sampling defaults apply"
        return {
            "greedy": refused or ("exact (temperature=0, returned token ids)" if self.token_ids else
                                  "approximate: the answer's token ids are re-tokenized from its text"),
            "mc": f"exact ({scoring})",
            "gold_rank": f"exact ({scoring}, rank over the vocabulary)" if self.rank_top_k is None else
                         f"approximate: known within the top {self.rank_top_k} ({scoring}); beyond it, >{self.rank_top_k}",
            "beam": (f"unavailable: {self.beam}" if self.beam else "approximate: vLLM's use_beam_search, vLLM's beam "
                     "rule (no answer-line stop; each beam is cut at its first line afterwards)"),
            "sample": (f"unavailable: {self.sampling}" if self.sampling else refused if refused else
                       "exact (seeded n=10, top_p=0.9)" if self.seeded else
                       "approximate: the server ignores seed, so samples are not reproducible"),
            "tokenizer": self.tokenizer,
        }

    def identity(self) -> dict[str, Any]:
        """What identifies the served model: part of the outcome cache key and of the results' `config`."""
        sampling = {"mode": self.mode, "sent": self.sent, **({"defaults": self.defaults} if self.mode == "server" else {})}
        return {"url": self.served.base, "model": self.model, "entry": self.entry, "version": self.version,
                "capabilities": self.table(), "sampling": sampling}


def discover(client: Client, served: ServedModel, settings: ServerSettings, local_tokenizer: Any | None) -> ServerProfile:
    """The server's profile; a ServerSetupError says what is wrong, in one line."""
    try:
        return _discover(client, served, settings, local_tokenizer)
    except ServerSetupError:
        raise
    except ServerError as error:
        raise ServerSetupError(str(error)) from None


def _discover(client: Client, served: ServedModel, settings: ServerSettings, local: Any | None) -> ServerProfile:
    label = client.label
    entry = _model_entry(client, served)
    model = entry["id"]
    served = ServedModel(served.base, model)
    version = _version(client)
    flavour = tokenize_flavour(client, model)
    if flavour is None and local is None:
        raise ServerSetupError(f"{label}: the server has no /tokenize endpoint; pass --illusion-tokenizer=MODEL "
                               "(the served model's tokenizer: an alias, directory or hub id)")
    ids = (local(PROBE_TEXT, add_special_tokens=True)["input_ids"] if local is not None else
           client.post("/tokenize", {"model": model, "prompt": PROBE_TEXT} if flavour == "vllm" else
                       {"content": PROBE_TEXT, "add_special": True})["tokens"])
    complete = lambda body: client.post("/v1/completions", {"model": model, "prompt": ids, **body})["choices"]  # noqa: E731
    token_ids = _accepts(complete, {"max_tokens": 2, "temperature": 0, "return_token_ids": True},
                         lambda choices: isinstance(choices[0].get("token_ids"), list))
    scoring, top_k = _scoring(complete, len(ids), label)
    is_vllm = version is not None and version.startswith("vllm")
    beam_ok = is_vllm and _accepts(complete, {"max_tokens": 2, "use_beam_search": True, "n": 2, "temperature": 0},
                                   lambda choices: len(choices) == 2)
    sampling, seeded = _sampling(complete)
    tokenizer = f"local: {settings.tokenizer}" if local is not None else f"server /tokenize ({flavour})"
    server = settings.server_sampling == "server"
    return ServerProfile(served, entry, version, tokenizer, flavour, token_ids, scoring, top_k,
                         None if beam_ok else "the server has no beam search (vLLM's use_beam_search)",
                         sampling, seeded, _neutral(complete), settings.server_sampling,
                         _server_defaults(client) if server else None)


def _model_entry(client: Client, served: ServedModel) -> dict[str, Any]:
    reply = client.get("/v1/models")
    entries = [e for e in reply.get("data", []) if isinstance(e, dict) and "id" in e] if isinstance(reply, dict) else []
    names = ", ".join(repr(e["id"]) for e in entries) or "none"
    if served.model is None:
        if len(entries) != 1:
            raise ServerSetupError(f"{client.label}: the server serves {len(entries)} models ({names}): name one "
                                   f"with #MODEL, e.g. {served.base}#{entries[0]['id'] if entries else 'NAME'}")
        chosen = entries[0]
    else:
        chosen = next((e for e in entries if e["id"] == served.model), None)
        if chosen is None:
            raise ServerSetupError(f"{client.label}: the server does not serve '{served.model}' (it serves {names})")
    return {key: value for key, value in chosen.items() if key not in _VOLATILE}


def _version(client: Client) -> str | None:
    """`vllm X.Y.Z` from vLLM's /version; None where the server has no such endpoint."""
    try:
        reply = client.get("/version")
    except ServerError:  # absent (404), or a page that is not JSON
        return None
    return f"vllm {reply['version']}" if isinstance(reply, dict) and "version" in reply else None


def _accepts(complete: Any, body: dict[str, Any], check: Any) -> bool:
    """Whether the server answers `body` as asked (a 4xx, or an answer of another shape: no)."""
    try:
        choices = complete(body)
    except ServerRequestError:
        return False
    return bool(choices) and check(choices)


def _scoring(complete: Any, n_ids: int, label: str) -> tuple[str, int | None]:
    """How prompt tokens' log-probabilities are read, and the top k ranks are known within (None: exact)."""
    def ranked(choices: list[dict[str, Any]]) -> bool:
        entries = choices[0].get("prompt_logprobs")
        if not isinstance(entries, list):
            return False
        echo_length(label, "prompt_logprobs", len(entries), n_ids)
        return all("rank" in value for entry in entries[1:] for value in (entry or {"": {}}).values())

    if _accepts(complete, {"max_tokens": 1, "temperature": 0, "prompt_logprobs": 2}, ranked):
        return PROMPT_LOGPROBS, None
    for k in TOP_K_TRIED:
        def echoed(choices: list[dict[str, Any]]) -> bool:
            logprobs = choices[0].get("logprobs") or {}
            values, tops = logprobs.get("token_logprobs"), logprobs.get("top_logprobs")
            if not (isinstance(values, list) and isinstance(tops, list) and len(tops) == len(values)):
                return False
            echo_length(label, "echo", len(values) - 1, n_ids)  # the prompt, then the one generated token
            return True

        if _accepts(complete, {"max_tokens": 1, "temperature": 0, "echo": True, "logprobs": k}, echoed):
            return ECHO, k
    raise ServerSetupError(f"{label}: the server returns no log-probabilities of prompt tokens (neither vLLM's "
                           "prompt_logprobs nor echo with logprobs), so the MC probe cannot run")


def echo_length(label: str, how: str, echoed: int, sent: int) -> None:
    """The server scored exactly the prompt it was sent: a changed length (a BOS added, a prompt
    cut) would shift every position, and every option's log-likelihood with it."""
    if echoed != sent:
        raise ServerError(f"{label}: {how} returned {echoed} prompt positions for the {sent} token ids sent, so "
                          "the server changed the prompt (a BOS added, or the prompt cut) and no position can be "
                          "trusted")


def _neutral(complete: Any) -> tuple[tuple[str, Any], ...]:
    """The NEUTRAL fields the server accepts: all at once, else each on its own."""
    body = {"max_tokens": 1, "temperature": 0}
    if _accepts(complete, {**body, **NEUTRAL}, bool):
        return tuple(NEUTRAL.items())
    return tuple((name, value) for name, value in NEUTRAL.items() if _accepts(complete, {**body, name: value}, bool))


def _server_defaults(client: Client) -> Any:
    """What the server tells of the sampling defaults it applies to fields a request leaves unset.
    vLLM reports no values: only its dev-mode /server_info (VLLM_SERVER_DEV_MODE=1) shows where they
    come from (the model config's generation_config and override_generation_config)."""
    try:
        reply = client.get("/server_info?config_format=json")
        model = reply["vllm_config"]["model_config"]
        return {"source": "/server_info (the values themselves are not reported)",
                **{key: model.get(key) for key in ("generation_config", "override_generation_config")}}
    except (ServerError, KeyError, TypeError):
        return ("not reported by the server: vLLM applies the model's generation_config.json defaults to the "
                "fields a request leaves unset, and says so only in its log at start")


def _sampling(complete: Any) -> tuple[str | None, bool]:
    """(why sampling is unavailable or None, whether the same seed gives the same samples)."""
    body = {"max_tokens": 8, "n": 2, "temperature": 1.0, "top_p": 0.9, "seed": 1234}
    try:
        first, second = complete(body), complete(body)
    except ServerRequestError as error:
        return f"the server refused n/top_p/seed sampling ({error})", False
    if len(first) != 2:
        return "the server does not return n samples per request", False
    return None, [c.get("text") for c in first] == [c.get("text") for c in second]

