"""The served model's tokenizer, as the core's `Tokenizer` protocol: the server's own `/tokenize`
and `/detokenize` (vLLM's and llama.cpp's request shapes), or a local tokenizer named by
`--illusion-tokenizer`. Prompts are sent as token ids, so the tokenizer that builds them is the
one that defines what the model sees; every answer is memoized (the core asks the same questions
many times while it truncates passages and finds answer starts)."""

from __future__ import annotations

import threading
from typing import Any, Mapping, Sequence

from illusion_checks.backends.openai.client import Client
from illusion_checks.errors import ServerRequestError

VLLM, LLAMA_CPP = "vllm", "llama.cpp"
_REQUESTS = {  # flavour -> (tokenize body, its reply's ids key, detokenize body, its reply's text key)
    VLLM: (lambda model, text, special: {"model": model, "prompt": text, "add_special_tokens": special}, "tokens",
           lambda model, ids: {"model": model, "tokens": ids}, "prompt"),
    LLAMA_CPP: (lambda model, text, special: {"content": text, "add_special": special}, "tokens",
                lambda model, ids: {"tokens": ids}, "content"),
}


def tokenize_flavour(client: Client, model: str) -> str | None:
    """Which `/tokenize` request shape the server answers (None: it has no tokenize endpoint)."""
    for flavour, (body, key, _, _) in _REQUESTS.items():
        try:
            reply = client.post("/tokenize", body(model, "Hello world", False))
        except ServerRequestError:
            continue
        if isinstance(reply, dict) and isinstance(reply.get(key), list) and reply[key]:
            return flavour
    return None


class ServerTokenizer:
    """The server's tokenizer through its endpoints (see `Tokenizer` in backends/base.py)."""

    pad_token_id = None
    chat_template = None  # --illusion-chat-template needs the template's text: a local --illusion-tokenizer

    def __init__(self, client: Client, model: str, flavour: str) -> None:
        self.client, self.model = client, model
        self._tokenize, self._ids_key, self._detokenize, self._text_key = _REQUESTS[flavour]
        self._encoded: dict[tuple[str, bool], list[int]] = {}
        self._decoded: dict[tuple[int, ...], str] = {}
        self._lock = threading.Lock()
        self.special_ids: set[int] = set()  # end tokens the backend has seen end an answer

    def __call__(self, text: str, add_special_tokens: bool = True) -> Mapping[str, Any]:
        key = (text, add_special_tokens)
        if key not in self._encoded:
            ids = self.client.post("/tokenize", self._tokenize(self.model, text, add_special_tokens))[self._ids_key]
            with self._lock:
                self._encoded[key] = [int(i) for i in ids]
        return {"input_ids": list(self._encoded[key])}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of `ids`. The server's detokenizer keeps special tokens' text, so
        `skip_special_tokens` drops the end tokens seen so far (the only special tokens an answer holds)."""
        key = tuple(int(i) for i in ids if not (skip_special_tokens and int(i) in self.special_ids))
        if not key:
            return ""
        if key not in self._decoded:
            text = self.client.post("/detokenize", self._detokenize(self.model, list(key)))[self._text_key]
            with self._lock:
                self._decoded[key] = text
        return self._decoded[key]

    def batch_decode(self, rows: Sequence[Sequence[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in rows]

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                            tokenize: bool = False, **template_variables: Any) -> str:
        raise ValueError("--illusion-chat-template with a served model needs its tokenizer locally: "
                         "pass --illusion-tokenizer=MODEL")


def local_tokenizer(name: str, trust_remote_code: bool) -> Any:
    """`--illusion-tokenizer`: an alias, .gguf, directory or hub id, loaded with transformers."""
    # Only for --illusion-tokenizer: a run against a server's own tokenizer never loads transformers.
    from transformers import AutoTokenizer

    from illusion_checks.backends.hf.load import EMBEDDED, prepare_tokenizer, resolve_source

    source = resolve_source(name)[0] if name in EMBEDDED or name.endswith(".gguf") else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(f"--illusion-tokenizer: '{name}' has no tokenizer that loads "
                         f"({' '.join(str(error).split())[:200]})") from None
    prepare_tokenizer(tokenizer)
    return tokenizer
