"""The HTTP client for an OpenAI-compatible server, fit for CI: standard library only, keep-alive
connections (one per worker thread), at most `max_connections` requests in flight, a timeout on
every request, retries with exponential backoff on 429, 5xx and dropped connections (never on
another 4xx, which a retry cannot fix, nor on a timeout, which would multiply a stall), and
one-line errors. The API key is read from the environment when the client is made, sent only in
the Authorization header, and scrubbed from every message."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

from illusion_checks.errors import ServerError, ServerRequestError
from illusion_checks.served import ServedModel, ServerSettings

T = TypeVar("T")
R = TypeVar("R")
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0  # seconds: a server's Retry-After is honoured up to this


class Client:
    """Requests to one server, from any thread; `map` runs a function over items concurrently."""

    def __init__(self, served: ServedModel, settings: ServerSettings, label: str) -> None:
        parts = urlsplit(served.base)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.prefix = parts.path[: -len("/v1")]  # a server mounted below the host's root
        self.settings, self.label = settings, label
        self._key = _api_key(settings.api_key_env)
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_connections, thread_name_prefix="illusion-http")

    # -- one request ---------------------------------------------------------------------------
    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The decoded JSON reply of `method path` (`path` from the server's root, e.g.
        `/v1/completions`); ServerError after the retries, ServerRequestError on a 4xx."""
        settings = self.settings
        for attempt in range(settings.retries + 1):
            wait = settings.backoff * 2 ** attempt
            try:
                status, headers, data = self._once(method, path, body)
            except (socket.timeout, TimeoutError):
                raise ServerError(f"{self.label}: {path} gave no reply within {settings.request_timeout:g} s "
                                  "(--illusion-request-timeout)") from None
            except (ConnectionError, http.client.HTTPException, OSError) as error:
                problem = f"cannot reach the server ({_reason(error)})"
            else:
                if status < 400:
                    return self._decode(path, data)
                problem = f"{path} answered HTTP {status}: {self._message(data)}"
                if status not in RETRIED_STATUS:
                    raise ServerRequestError(f"{self.label}: {problem}", status)
                wait = max(wait, min(_retry_after(headers), MAX_RETRY_AFTER))
            if attempt < settings.retries:
                time.sleep(wait)
        raise ServerError(f"{self.label}: {problem}, after {settings.retries + 1} attempts")

    def _once(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any, bytes]:
        connection = self._connection()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            connection.request(method, self.prefix + path, body=None if body is None else json.dumps(body).encode(),
                               headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        except BaseException:
            connection.close()  # a connection that failed mid-request is not reused
            self._local.connection = None
            raise

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            connection = kind(self.host, self.port, timeout=self.settings.request_timeout)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _decode(self, path: str, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            raise ServerError(f"{self.label}: {path} answered something that is not JSON: "
                              f"{self._scrub(data[:120].decode('utf-8', 'replace'))!r}") from None

    def _message(self, data: bytes) -> str:
        """The server's error message (OpenAI's `{"error": {"message"}}`, FastAPI's `detail`, ...), one line."""
        text = data.decode("utf-8", "replace")
        try:
            reply = json.loads(text)
            error = reply.get("error", reply) if isinstance(reply, dict) else reply
            text = str(error.get("message") or error.get("detail") or error) if isinstance(error, dict) else str(error)
        except ValueError:
            pass
        return self._scrub(" ".join(text.split()))[:300] or "(no message)"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    # -- many requests -------------------------------------------------------------------------
    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """`function` over `items`, at most `max_connections` at once, results in order; the first
        error is raised once every request already sent has ended."""
        futures = [self._pool.submit(function, item) for item in items]
        error = None
        for future in futures:
            if future.cancelled():
                continue
            failure = future.exception()
            if failure is not None and error is None:
                error = failure
                for other in futures:
                    other.cancel()
        if error is not None:
            raise error
        return [future.result() for future in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _api_key(variable: str | None) -> str | None:
    """The key from the environment variable the user named (never from an option's value)."""
    if variable is None:
        return None
    key = os.environ.get(variable, "")
    if not key:
        raise ValueError(f"--illusion-api-key-env: the environment variable {variable} is not set or empty")
    return key


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", 0)))
    except (TypeError, ValueError):
        return 0.0
