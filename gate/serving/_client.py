"""A small typed client for the OpenAI-compatible endpoints of a vLLM server.

Only what the gates use: health, the model list, runtime LoRA loading and
unloading, and greedy chat/text completions with token ids and log-probs. The
answers and how they are read from vLLM's JSON are :mod:`._answers`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from gate.errors import ServerError
from gate.serving._answers import (
    Completion,
    LoadResult,
    ModelCard,
    StreamTiming,
    chat_answer,
    error_message,
    first_choice,
    number,
    text_answer,
)
from gate.serving._requests import RequestLock
from gate.serving._runtime import PromptLogprobs

__all__ = ["VLLMClient"]

#: Bound on any answer gate reads from a server (a completion of a few hundred tokens is a few KB).
_MAX_BODY = 8 << 20


class VLLMClient:
    """HTTP client for one vLLM server; every transport failure is a :class:`ServerError`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 300.0,
        requests: RequestLock | None = None,
        base_model: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: The server's request serialization (see :mod:`gate.serving._requests`): prompt log-probs and
        #: requests to ``base_model`` (no LoRA) run alone, the rest together.
        self.requests = requests or RequestLock(serialize=False)
        self.base_model = base_model
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> VLLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TimeoutException as e:
            raise ServerError(f"vLLM at {self.url} did not answer {path} in time ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise ServerError(
                f"vLLM at {self.url} is unreachable on {path}: {e}",
                hint="the server may have crashed; see its log",
            ) from e
        if len(response.content) > _MAX_BODY:
            raise ServerError(f"vLLM at {self.url} answered {path} with {len(response.content)} bytes")
        return response

    def _hold(self, body: Mapping[str, Any]) -> contextlib.AbstractContextManager[None]:
        """The side of the server's request lock a request with ``body`` takes (:mod:`._requests`)."""
        alone = RequestLock.runs_alone(
            prompt_logprobs=bool(body.get("echo")) or body.get("prompt_logprobs") is not None,
            base_model=self.base_model is not None and body.get("model") == self.base_model,
        )
        return self.requests.hold(alone=alone)

    def _json(self, response: httpx.Response, path: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise ServerError(f"vLLM refused {path} (HTTP {response.status_code}): {error_message(response)}")
        try:
            data = response.json()
        except ValueError as e:
            raise ServerError(f"vLLM answered {path} with invalid JSON: {response.text[:200]!r}") from e
        if not isinstance(data, dict):
            raise ServerError(f"vLLM answered {path} with a JSON {type(data).__name__}, not an object")
        return data

    # --- endpoints --------------------------------------------------------------------------------

    def health(self) -> bool:
        """Whether ``GET /health`` answers 200 (False on any transport failure)."""
        try:
            return self._http.get("/health", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def models(self) -> list[ModelCard]:
        """``GET /v1/models``: the served base model(s) and every loaded adapter."""
        data = self._json(self._request("GET", "/v1/models"), "/v1/models")
        cards = []
        for item in data.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                parent, root, length = item.get("parent"), item.get("root"), item.get("max_model_len")
                cards.append(
                    ModelCard(
                        id=item["id"],
                        parent=parent if isinstance(parent, str) else None,
                        root=root if isinstance(root, str) else None,
                        max_model_len=length
                        if isinstance(length, int) and not isinstance(length, bool)
                        else None,
                    )
                )
        return cards

    def version(self) -> str | None:
        """The server's vLLM version (``GET /version``), if it says."""
        try:
            data = self._json(self._request("GET", "/version"), "/version")
        except ServerError:
            return None
        value = data.get("version")
        return value if isinstance(value, str) else None

    def metrics(self) -> str:
        """``GET /metrics`` (Prometheus text), bounded like every other answer."""
        response = self._request("GET", "/metrics")
        if response.status_code != 200:
            raise ServerError(f"vLLM at {self.url} answered /metrics with HTTP {response.status_code}")
        return response.text

    def tokenize(self, model: str, text: str) -> list[int]:
        """``POST /tokenize`` without added special tokens."""
        body = {"model": model, "prompt": text, "add_special_tokens": False}
        data = self._json(self._request("POST", "/tokenize", body), "/tokenize")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ServerError(f"vLLM at {self.url} answered /tokenize without token ids")
        return [int(t) for t in tokens]

    def prompt_logprobs(self, model: str, token_ids: Sequence[int]) -> PromptLogprobs:
        """The log-prob ``model`` gives each of ``token_ids`` after the ones before it (teacher forcing).

        Uses vLLM's ``prompt_logprobs`` over the full vocabulary, so a token far outside any top-k
        list still gets its real value.
        """
        body: dict[str, Any] = {
            "model": model,
            "prompt": [int(t) for t in token_ids],
            "max_tokens": 1,
            "temperature": 0.0,
            "seed": 0,
            "prompt_logprobs": 0,
        }
        with self._hold(body):
            start = time.monotonic()
            data = self._json(self._request("POST", "/v1/completions", body), "/v1/completions")
            seconds = time.monotonic() - start
        choice = first_choice(data, "/v1/completions")
        raw = choice.get("prompt_logprobs")
        if not isinstance(raw, list) or len(raw) != len(token_ids):
            raise ServerError(f"vLLM at {self.url} returned no usable prompt_logprobs for {model}")
        values: list[float] = []
        for position, entry in enumerate(raw[1:], start=1):
            item = entry.get(str(int(token_ids[position]))) if isinstance(entry, dict) else None
            values.append(number(item.get("logprob")) if isinstance(item, dict) else math.nan)
        return PromptLogprobs(tuple(int(t) for t in token_ids), tuple(values), seconds)

    def load_adapter(self, name: str, path: str) -> LoadResult:
        """Hot-load an adapter; a refusal is returned (with vLLM's message), not raised."""
        start = time.monotonic()
        response = self._request("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        seconds = time.monotonic() - start
        ok = response.status_code == 200
        message = response.text.strip()[:2000] if ok else error_message(response)
        return LoadResult(ok=ok, status_code=response.status_code, message=message, seconds=seconds)

    def unload_adapter(self, name: str) -> LoadResult:
        """Unload a hot-loaded adapter; a refusal is returned, not raised."""
        start = time.monotonic()
        response = self._request("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        seconds = time.monotonic() - start
        ok = response.status_code == 200
        message = response.text.strip()[:2000] if ok else error_message(response)
        return LoadResult(ok=ok, status_code=response.status_code, message=message, seconds=seconds)

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, str]],
        *,
        max_tokens: int,
        top_logprobs: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        """A greedy ``/v1/chat/completions`` answer with token ids and log-probs.

        Special tokens are kept in the text so that a leaking control token is visible.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "seed": 0,
            "logprobs": True,
            "top_logprobs": top_logprobs,
            "skip_special_tokens": False,
            "return_tokens_as_token_ids": True,
            **(extra or {}),
        }
        with self._hold(body):
            start = time.monotonic()
            data = self._json(self._request("POST", "/v1/chat/completions", body), "/v1/chat/completions")
            seconds = time.monotonic() - start
        return chat_answer(data, seconds)

    def complete(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int,
        logprobs: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> Completion:
        """A greedy ``/v1/completions`` answer to a raw prompt, with token ids and top log-probs."""
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "seed": 0,
            "logprobs": logprobs,
            "skip_special_tokens": False,
            "return_tokens_as_token_ids": True,
            **(extra or {}),
        }
        with self._hold(body):
            start = time.monotonic()
            data = self._json(self._request("POST", "/v1/completions", body), "/v1/completions")
            seconds = time.monotonic() - start
        return text_answer(data, seconds)

    def stream_timing(
        self, model: str, messages: Sequence[Mapping[str, str]], *, max_tokens: int
    ) -> StreamTiming:
        """Time a streamed greedy chat answer of exactly ``max_tokens`` tokens (EOS ignored)."""
        body = {
            "model": model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with self._hold(body):
            return self._stream_timing(body)

    def _stream_timing(self, body: Mapping[str, Any]) -> StreamTiming:
        start = time.monotonic()
        first: float | None = None
        tokens = 0
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    code = response.status_code
                    raise ServerError(
                        f"vLLM refused a streamed chat (HTTP {code}): {error_message(response)}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if first is None and delta.get("content"):
                            first = time.monotonic() - start
                    usage = chunk.get("usage")
                    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                        tokens = usage["completion_tokens"]
        except httpx.HTTPError as e:
            raise ServerError(f"vLLM at {self.url} broke off a streamed answer: {e}") from e
        except ValueError as e:
            raise ServerError(f"vLLM streamed invalid JSON: {e}") from e
        total = time.monotonic() - start
        return StreamTiming(
            ttft_s=first if first is not None else total, total_s=total, completion_tokens=tokens
        )
