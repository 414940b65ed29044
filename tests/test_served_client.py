"""The served-model client and options without a model: a real HTTP server on 127.0.0.1 injects the
faults (503, 429, 400, a stall, a dropped connection) and counts what the client sent; URLs and the
server options are checked before anything loads."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from illusion_checks import EvaluationSpec
from illusion_checks.backends.openai import client as client_module
from illusion_checks.backends.openai.client import Client
from illusion_checks.errors import ServerError, ServerRequestError
from illusion_checks.served import ServedModel, ServerSettings, is_served, parse_served

Reply = tuple[int, dict[str, str], Any]  # status, headers, JSON body


class FaultServer:
    """Answers each request with the next scripted reply (a callable may sleep first), recording
    every request's path, headers and body, and the most requests it held at once."""

    def __init__(self, script: list[Reply | Callable[[], Reply]]) -> None:
        self.script, self.requests = list(script), []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with owner.lock:
                    owner.requests.append((self.path, dict(self.headers), body))
                    step = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                    owner.in_flight += 1
                    owner.most_in_flight = max(owner.most_in_flight, owner.in_flight)
                try:
                    status, headers, payload = step() if callable(step) else step
                finally:
                    with owner.lock:
                        owner.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json",
                                    "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[list], FaultServer]]:
    started: list[FaultServer] = []

    def start(script: list) -> FaultServer:
        started.append(FaultServer(script))
        return started[-1]
    yield start
    for server in started:
        server.close()


def _client(url: str, **settings: Any) -> Client:
    values = {"retries": 3, "backoff": 0.01, "request_timeout": 5.0, **settings}
    return Client(parse_served("--illusion-compressed", url), ServerSettings(**values), f"--illusion-compressed={url}")


OK: Reply = (200, {}, {"data": [{"id": "m"}]})


def test_429_and_5xx_are_retried_with_backoff_until_the_server_answers(serve: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each retry waits the doubled backoff (0.01, 0.02, 0.04 s; Retry-After: 0 never shortens it)."""
    server = serve([(503, {}, {"error": {"message": "warming up"}}), (429, {"Retry-After": "0"}, {}),
                    (502, {}, {}), OK])
    waits: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", waits.append)
    assert _client(server.url).get("/v1/models") == OK[2]
    assert len(server.requests) == 4 and waits == [0.01, 0.02, 0.04]


def test_retries_end_in_one_line_naming_the_server_and_its_last_answer(serve: Any) -> None:
    server = serve([(503, {}, {"error": {"message": "engine\noverloaded"}})])
    with pytest.raises(ServerError) as caught:
        _client(server.url, retries=2).post("/v1/completions", {"prompt": [1]})
    message = str(caught.value)
    assert len(server.requests) == 3 and "\n" not in message
    assert server.url in message and "HTTP 503: engine overloaded" in message and "after 3 attempts" in message


def test_a_4xx_is_not_retried_and_carries_the_servers_message(serve: Any) -> None:
    server = serve([(400, {}, {"error": {"message": "prompt_logprobs must be <= 20"}}), OK])
    with pytest.raises(ServerRequestError, match=r"HTTP 400: prompt_logprobs must be <= 20") as caught:
        _client(server.url).post("/v1/completions", {"prompt": [1]})
    assert caught.value.status == 400 and len(server.requests) == 1


def test_a_stalled_request_hits_the_timeout_once_without_retries(serve: Any) -> None:
    """The server holds its reply until the test releases it: the client must give up on its own (a
    client that waited for the reply would get it and raise nothing), and must not ask again."""
    release = threading.Event()
    server = serve([lambda: (release.wait(60), OK)[1]])
    try:
        with pytest.raises(ServerError, match=r"gave no reply within 0\.5 s \(--illusion-request-timeout\)"):
            _client(server.url, request_timeout=0.5).get("/v1/models")
        assert len(server.requests) == 1
    finally:
        release.set()


def test_a_server_that_is_down_is_retried_then_named(serve: Any) -> None:
    server = serve([OK])
    url = server.url
    server.close()
    with pytest.raises(ServerError, match=r"cannot reach the server \(connection refused\), after 3 attempts"):
        _client(url, retries=2).get("/v1/models")


def test_requests_in_flight_never_exceed_max_connections(serve: Any) -> None:
    server = serve([lambda: (time.sleep(0.15), OK)[1]])
    client = _client(server.url, max_connections=3)
    assert client.map(lambda i: client.get(f"/v1/models?{i}") and i, range(12)) == list(range(12))
    assert server.most_in_flight == 3


def test_the_api_key_is_sent_as_a_bearer_token_and_never_shown(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-secret-0123456789"
    monkeypatch.setenv("MY_SERVER_KEY", key)
    server = serve([OK, (401, {}, {"error": {"message": f"bad key {key}"}})])
    client = _client(server.url, api_key_env="MY_SERVER_KEY")
    client.get("/v1/models")
    assert server.requests[0][1]["Authorization"] == f"Bearer {key}"
    with pytest.raises(ServerRequestError) as caught:
        client.get("/v1/models")
    assert key not in str(caught.value) and "bad key ***" in str(caught.value)
    monkeypatch.delenv("MY_SERVER_KEY")
    with pytest.raises(ValueError, match=r"--illusion-api-key-env: the environment variable MY_SERVER_KEY is not set"):
        _client(server.url, api_key_env="MY_SERVER_KEY")


@pytest.mark.parametrize("url, expected", [
    ("http://127.0.0.1:8000/v1", ServedModel("http://127.0.0.1:8000/v1")),
    ("https://Host.example/v1/#org/model%20x", ServedModel("https://host.example/v1", "org/model x")),
    ("HTTP://[::1]:9/v1#m", ServedModel("http://[::1]:9/v1", "m")),
    ("http://gateway/llm/v1", ServedModel("http://gateway/llm/v1")),
])
def test_server_urls_parse(url: str, expected: ServedModel) -> None:
    assert is_served(url) and parse_served("--illusion-model", url) == expected


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:8000", "the path must end in /v1"), ("ftp://h/v1", "scheme 'ftp'"),
    ("http:///v1", "no host"), ("http://h:port/v1", "Port could not be cast"), ("http://h/v1#", "an empty #MODEL"),
    ("http://user:pw@h/v1", "credentials belong in the environment variable"), ("http://h/v1?x=1", "query string"),
])
def test_bad_server_urls_are_one_line_errors_naming_the_option(url: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        EvaluationSpec(model="smollm2-135m", compressed=url).check()
    assert str(caught.value).startswith(f"--illusion-compressed: '{url}' is not a server URL") and why in str(caught.value)


@pytest.mark.parametrize("values, message", [
    ({"model": "http://h/v1", "compress": "wanda:0.5"}, "--illusion-compress: the reference is served"),
    ({"model": "smollm2-135m", "compress": "wanda:0.5", "max_connections": 2},
     "--illusion-max-connections applies to served models only"),
    ({"model": "smollm2-135m", "compressed": "x", "tokenizer": "smollm2-135m"}, "--illusion-tokenizer applies to served"),
])
def test_server_options_are_checked_against_the_models(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationSpec(**values).check()


@pytest.mark.parametrize("field, value, message", [
    ("api_key_env", "sk-live-abc", "is not an environment variable name"),
    ("request_timeout", "0", "is not a positive number of seconds"),
    ("max_connections", "0", "must be at least 1"),
])
def test_bad_server_option_values_name_the_option(field: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"--illusion-{field.replace('_', '-')}: .*{message}"):
        EvaluationSpec(**{field: value})


def test_a_server_that_refuses_a_neutral_sampling_field_is_sent_the_rest_and_marked_approximate() -> None:
    """The neutral sampling state goes out in the fields a server accepts (one at a time when it
    refuses them together); greedy and samples then say which field the server's defaults decide."""
    from illusion_checks.backends.openai.discovery import NEUTRAL, PROMPT_LOGPROBS, ServerProfile, _neutral

    def complete(body: dict[str, Any]) -> list[dict[str, Any]]:  # as OpenAI's API answers unknown fields
        for name in ("top_k", "min_p", "repetition_penalty"):
            if name in body:
                raise ServerRequestError(f"HTTP 400: Unrecognized request argument supplied: {name}", 400)
        return [{"text": " Paris"}]

    accepted = dict(_neutral(complete))
    assert accepted == {"presence_penalty": 0.0, "frequency_penalty": 0.0}
    profile = ServerProfile(ServedModel("http://127.0.0.1:1/v1", "m"), {}, None, "local: m", None, True,
                            PROMPT_LOGPROBS, None, None, None, True, tuple(accepted.items()))
    table = profile.table()
    refused = "approximate: the server refuses top_k, min_p, repetition_penalty, so its own defaults for them apply"
    assert table["greedy"] == table["sample"] == refused
    everything = dict(_neutral(lambda body: [{"text": " Paris"}]))
    assert everything == NEUTRAL and not dataclasses.replace(profile, neutral=tuple(everything.items())).refused


def _echo_backend(url: str, k: int) -> Any:
    """A served backend reading prompt log-probabilities through `echo` with the top `k`."""
    from illusion_checks.backends.openai.backend import OpenAIBackend
    from illusion_checks.backends.openai.discovery import ECHO, ServerProfile

    profile = ServerProfile(parse_served("--illusion-compressed", url + "#m"), {}, None, "local: m", None, True,
                            ECHO, k, None, None, True)
    return OpenAIBackend(_client(url), profile, tokenizer=None)


def _echoed(tokens: list[str], values: list[float | None], tops: list[dict[str, float] | None]) -> Reply:
    """A `/v1/completions` answer with `echo`: the prompt's tokens (and the one generated) as text."""
    return (200, {}, {"choices": [{"index": 0, "text": "".join(tokens), "logprobs": {
        "tokens": tokens, "token_logprobs": values, "top_logprobs": tops}}]})


def test_an_echo_that_does_not_return_the_prompt_sent_is_a_one_line_error_naming_the_server(serve: Any) -> None:
    """A server that prepends a BOS echoes one position more than it was sent: every option's
    log-likelihood would be read one position off, so the run stops, naming the server."""
    top = {"a": -0.1, "b": -2.0}
    server = serve([_echoed(["<s>", "Q", ":", " x", "y"], [None, -1.0, -1.0, -0.5, -0.1], [None, top, top, top, top])])
    backend = _echo_backend(server.url, 2)
    try:
        with pytest.raises(ServerError, match=rf"^--illusion-compressed={server.url}: echo returned 4 prompt positions "
                                              r"for the 3 token ids sent, so the server changed the prompt") as error:
            backend.score([[5, 6]], [[[7]]], [([], [])])
    finally:
        backend.close()
    assert "\n" not in str(error.value)
    assert server.requests[0][2]["echo"] is True and server.requests[0][2]["prompt"] == [5, 6, 7]


@pytest.mark.parametrize(("top", "gold", "rank", "above"), [
    # five distinct texts for k = 5: exact, and a token tied with the gold counts above it
    ({"a": -0.5, "b": -1.0, "\ufffd": -2.0, "c": -2.0, "d": -3.0}, "\ufffd", 4, None),
    # the gold's byte-fallback text is keyed to another, likelier token of the same text: the gold is
    # not among the five, so beyond them
    ({"a": -0.5, "\ufffd": -1.0, "b": -1.5, "c": -1.8, "d": -1.9}, "\ufffd", None, 5),
    # only four keys for k = 5: two of the top five share a text, so the listed tokens bound the
    # rank from below only (the gold's own value is listed: at least 3, not exactly 3)
    ({"a": -0.5, "\ufffd": -1.0, "b": -2.0, "c": -2.5}, "b", None, 2),
    # four keys, the gold's text keyed to another token's value: at least 2 above, rank unknown
    ({"a": -0.5, "\ufffd": -1.0, "b": -1.5, "c": -2.5}, "\ufffd", None, 3),
])
def test_colliding_top_logprob_texts_censor_the_rank_instead_of_making_one_up(serve: Any, top: dict[str, float],
                                                                              gold: str, rank: int | None,
                                                                              above: int | None) -> None:
    """`top_logprobs` is keyed by text, so same-text tokens (byte-fallback `\ufffd` pieces, common in
    Thai, Telugu and Bengali) collide: where the k entries are not k distinct tokens holding the
    gold, the rank is censored (`gold_rank_above`), never an exact number."""
    from illusion_checks.answer_start import Above

    logprob = -2.0
    server = serve([_echoed(["Q", ":", gold, " x"], [None, -1.0, logprob, -0.1], [None, {"Q": -1.0}, top, {"x": -0.1}])])
    backend = _echo_backend(server.url, 5)
    try:
        scores, path = backend.score([[5, 6]], [[[7]]], [([], [7])])[0]
    finally:
        backend.close()
    assert scores == [logprob]
    assert path[0][0] == (Above(above) if above is not None else rank)
    assert path[0][1] == pytest.approx(logprob - max(v for t, v in top.items() if not (t == gold and v == logprob)))


def test_a_censored_rank_anywhere_on_the_path_censors_the_gold_rank() -> None:
    """The gold rank is the worst along the path: a censored position makes it censored, above the
    largest bound the path knows (a known rank r says: above r - 1)."""
    from illusion_checks.answer_start import Above, worst

    assert worst([(2, 0.5), (Above(3), -0.1)]) == (Above(3), -0.1)
    assert worst([(7, 0.5), (Above(3), 0.2)]) == (Above(6), 0.2)
    assert worst([(2, 0.5), (None, 0.2), (Above(3), 0.1)]) == (None, 0.1)
    assert worst([(2, 0.5), (4, 0.2)]) == (4, 0.2)


def test_discovery_refuses_a_server_whose_echo_changes_the_prompt() -> None:
    """Found at start, before any item: a server that scores one position more than it was sent (a
    BOS of its own) is a one-line error naming it (`discover` makes it a usage error), not a server
    whose MC sums are all shifted."""
    from illusion_checks.backends.openai.discovery import _scoring

    def complete(body: dict[str, Any]) -> list[dict[str, Any]]:
        if "prompt_logprobs" in body:
            raise ServerRequestError("HTTP 400: Unrecognized request argument supplied: prompt_logprobs", 400)
        n = len(body["prompt"]) + 2  # a BOS, the prompt, the generated token
        return [{"logprobs": {"token_logprobs": [None] + [-1.0] * (n - 1), "top_logprobs": [None] + [{"a": -1.0}] * (n - 1)}}]

    with pytest.raises(ServerError, match=r"^srv: echo returned 5 prompt positions for the 4 token ids sent"):
        _scoring(lambda body: complete({**body, "prompt": [1, 2, 3, 4]}), 4, "srv")


class TokenizeServer:
    """vLLM's `/tokenize` on 127.0.0.1, answered by a real tokenizer (`bos`: the server's adds one)."""

    def __init__(self, tokenizer: Any, bos: int | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                ids = tokenizer(body["prompt"], add_special_tokens=False)["input_ids"]
                data = json.dumps({"tokens": ([bos] if bos is not None and body["add_special_tokens"] else []) + ids})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _normalized_copy(tokenizer: Any, normalizer: Any) -> Any:
    """The same vocabulary and merges, with another Unicode normalizer (as a wrong tokenizer file may have)."""
    from transformers import PreTrainedTokenizerFast

    core = copy.deepcopy(tokenizer.backend_tokenizer)
    core.normalizer = normalizer
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.mark.parametrize(("server_bos", "local_nfd", "message"), [
    (None, False, None),  # the served model's own tokenizer: no error
    # a server that adds a BOS the local tokenizer does not: every language differs at token 0
    (1, False, r"does not tokenize en like the served model \(--illusion-model=URL\): the en passage first differs "
               r"at token 0 \(here \d+, on the server 1; \d+ vs \d+ tokens\)"),
    # decomposed accents: English and one ASCII sentence agree, the German passage does not
    (None, True, r"does not tokenize de like the served model .*first differs at token \d+ \(here \d+, on the server"),
])
def test_the_tokenizer_check_covers_each_evaluated_language_with_special_tokens(server_bos: int | None, local_nfd: bool,
                                                                               message: str | None) -> None:
    """--illusion-tokenizer is compared id for id with the server's /tokenize on a passage of each
    evaluated language, special tokens on (a single Latin sentence with them off passed all three)."""
    from tokenizers import normalizers

    from illusion_checks.backends.openai.discovery import PROMPT_LOGPROBS, ServerProfile
    from illusion_checks.backends.openai.engine import OpenAIEngine
    from illusion_checks.datasets import load_dataset
    from tests.helpers.tiny import tiny_tokenizer

    served_tokenizer = tiny_tokenizer()
    local = _normalized_copy(served_tokenizer, normalizers.NFD()) if local_nfd else served_tokenizer
    data = load_dataset("fixtures", ["en", "de"]).by_lang
    texts = {"en": next(i.context for i in data["en"] if i.context.isascii()),  # agrees, even decomposed
             "de": next(i.context for i in data["de"] if not i.context.isascii())}
    sentence = "Question: Wer schrieb Faust? Answer: Johann Wolfgang von Goethe"
    assert local(sentence, add_special_tokens=False)["input_ids"] == served_tokenizer(sentence, add_special_tokens=False)["input_ids"]
    server = TokenizeServer(served_tokenizer, server_bos)
    try:
        engine = OpenAIEngine(ServerSettings(tokenizer="the-local-one"), "--illusion-model")
        profile = ServerProfile(ServedModel(server.url, "m"), {}, None, "local: the-local-one", "vllm", True,
                                PROMPT_LOGPROBS, None, None, None, True)
        engine._profiles[server.url] = (profile, local)  # what discovery found (its other requests are not served here)
        if message is None:
            engine.check_tokenizer(server.url, texts)
        else:
            with pytest.raises(ValueError, match=message.replace("URL", re.escape(server.url))):
                engine.check_tokenizer(server.url, texts)
    finally:
        server.close()


@pytest.mark.parametrize(("values", "message"), [
    ({"model": "http://127.0.0.1:1/v1", "compressed": "smollm2-135m", "server_sampling": "server"},
     r"--illusion-server-sampling=server compares the models as deployed.*--illusion-compressed is local \(smollm2-135m\)"),
    ({"model": "smollm2-135m", "compressed": "http://127.0.0.1:1/v1", "server_sampling": "server"},
     r"both must be served: --illusion-model is local \(smollm2-135m\)"),
    ({"model": "smollm2-135m", "compress": "wanda:0.5", "server_sampling": "server"},
     r"--illusion-server-sampling applies to served models only"),
    ({"server_sampling": "deployed"}, r"--illusion-server-sampling: .*deployed"),
])
def test_server_sampling_as_deployed_needs_both_models_served(values: dict[str, Any], message: str) -> None:
    """A local model has no server defaults: comparing it as deployed with a served one would compare
    two decodings, so a mixed pair is a usage error before anything is reached or loaded."""
    with pytest.raises(ValueError, match=message):
        EvaluationSpec(**values).check()
    EvaluationSpec(model="http://127.0.0.1:1/v1", compressed="http://127.0.0.1:2/v1", server_sampling="server").check()
