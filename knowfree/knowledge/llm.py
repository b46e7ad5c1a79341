"""One client for any OpenAI-compatible server (a local llama.cpp server or a remote API).

    client = LLMClient("qwen2.5-coder-1.5b-instruct-q4_k_m", "http://127.0.0.1:8000/v1",
                       cache=ResponseCache("data/cache/llm/weibo-250"))
    client.preflight()                      # server up, key accepted, model served
    results = client.complete_many([Request.from_template(t, sentence=s) for s in sents])

``complete_many`` never raises for a single bad request: after its retries it returns a
:class:`Failure` in that slot and counts it. Every answer is in the cache before it is
returned, so an interrupted run resumes by running again: only what is missing is asked.
"""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlparse, urlsplit, urlunsplit

import openai

from knowfree.errors import ConfigError, KnowfreeError
from knowfree.knowledge.cache import CacheMissError, ResponseCache, request_key
from knowfree.knowledge.prompts import Template

# 408/409 are transient by HTTP convention; 429 is rate limiting; 5xx covers a busy or
# restarting server. Everything else (400, 401, 404, 422) fails the same way when repeated.
RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    max_tokens: int = 512
    top_p: float = 1.0
    seed: int | None = None  # sent only when set; llama.cpp and OpenAI accept it

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    kind: str  # template kind
    version: str  # template version
    messages: list[dict]
    sampling: Sampling = Sampling()
    meta: dict = field(default_factory=dict)  # caller's bookkeeping (sample id); not in the key

    @classmethod
    def from_template(cls, template: Template, sampling: Sampling = Sampling(),
                      meta: dict | None = None, **fields) -> Request:
        return cls(template.kind, template.version, template.render(**fields), sampling, meta or {})


@dataclass(frozen=True)
class Response:
    key: str
    request: Request
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    cached: bool  # served from the cache, no request made
    ok = True


@dataclass(frozen=True)
class Failure:
    key: str
    request: Request
    error: str
    status: int | None  # HTTP status, None for connection errors and timeouts
    attempts: int
    ok = False


@dataclass
class Usage:
    """Counters of one client (one run); ``http_requests`` includes retried attempts."""
    http_requests: int = 0
    answered: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["completion_tokens_per_s"] = round(self.completion_tokens / self.seconds, 2) if self.seconds else None
        return d


class PreflightError(KnowfreeError):
    """The server cannot do the work; ``reason`` is ``unreachable``, ``auth`` or ``model``."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


# Query parameters whose value is a secret by the look of their name (api_key=, token=, ...).
_SECRET_NAMES = ("key", "token", "secret", "password", "passwd", "pwd", "auth", "sig", "credential")


def redact_url(url: str | None) -> str | None:
    """``url`` as it may be written to a file or shown: a user name and password in it, and the
    value of any query parameter named like a secret, become ``***``. Every URL the client
    records (stats.json, cache entries and so provenance.json, messages) goes through this."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{item.partition('=')[0]}=***"
                     if any(n in item.partition("=")[0].lower() for n in _SECRET_NAMES) else item
                     for item in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class LLMClient:
    def __init__(self, model: str, base_url: str | Sequence[str] | None = None, *,
                 cache: ResponseCache | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4, timeout: float = 300.0,
                 max_retries: int = 4, backoff: float = 1.0, max_backoff: float = 60.0,
                 server_label: str | None = None):
        """``base_url`` may be None only with a replay cache, which never connects. Several
        URLs (servers of the same model) share the work: each worker thread keeps to one server,
        taking them in turn, so ``concurrency`` should be at least the number of servers.

        ``server_label`` is what the cache records as the server of each answer (default: the
        URL that answered it); :attr:`LlamaServer.label` names the llama.cpp build and model file.

        The key is read from the environment variable ``api_key_env``; a server on loopback
        gets a placeholder when it is unset, since a local llama.cpp server accepts any key.
        A local llama.cpp server answers one request at a time; concurrency > 1 only keeps
        its queue full. Retries back off exponentially (``backoff`` * 2^n, jittered, at most
        ``max_backoff`` seconds, or longer when the server sends Retry-After).
        """
        if base_url is None and not (cache is not None and cache.mode == "replay"):
            raise ConfigError("LLM base_url is not set (fix: set llm.base_url, e.g. "
                              "http://127.0.0.1:8000/v1 from `python -m knowfree llm serve`, "
                              "or use a replay cache)")
        if concurrency < 1 or max_retries < 0:
            raise ConfigError(f"LLM concurrency must be >= 1 and max_retries >= 0 "
                              f"(got {concurrency}, {max_retries})")
        self.base_urls = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
        if not self.base_urls:
            raise ConfigError("LLM base_url is an empty list")
        self.model, self.base_url, self.cache = model, self.base_urls[0], cache
        self.api_key_env, self.concurrency, self.timeout = api_key_env, concurrency, timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self._label = server_label
        self.server_label = server_label or (", ".join(map(redact_url, self.base_urls))
                                             if base_url is not None else None)
        self.usage = Usage()
        self._lock = threading.Lock()
        self._clients: dict[str, openai.OpenAI] = {}
        self._thread = threading.local()
        self._turn = 0

    def describe(self) -> dict:
        """Settings for provenance (never the key itself)."""
        urls = [redact_url(u) for u in self.base_urls] if len(self.base_urls) > 1 else redact_url(self.base_url)
        return {"model": self.model, "base_url": urls, "server": self.server_label,
                "api_key_env": self.api_key_env,
                "concurrency": self.concurrency, "timeout": self.timeout, "max_retries": self.max_retries,
                "cache": str(self.cache.folder) if self.cache else None,
                "cache_mode": self.cache.mode if self.cache else None}

    def key(self, request: Request) -> str:
        return request_key(self.model, request.kind, request.version, request.messages,
                           request.sampling.to_dict())

    def _openai(self, url: str | None = None) -> openai.OpenAI:
        url = url or self._thread_url()
        with self._lock:
            client = self._clients.get(url)
        if client is None:
            key = os.environ.get(self.api_key_env)
            if not key:
                if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
                    raise ConfigError(f"environment variable {self.api_key_env} holding the API key for "
                                      f"{redact_url(url)} is not set (fix: export {self.api_key_env}=..., "
                                      f"or name another variable in llm.api_key_env)")
                key = "no-key-needed-on-loopback"
            # Retries are ours (counted, with our backoff), so the library's are off.
            client = openai.OpenAI(base_url=url, api_key=key, timeout=self.timeout, max_retries=0)
            with self._lock:
                client = self._clients.setdefault(url, client)
        return client

    def _thread_url(self) -> str:
        """The server of the calling thread: threads are dealt to the servers in turn."""
        url = getattr(self._thread, "url", None)
        if url is None:
            with self._lock:
                url = self.base_urls[self._turn % len(self.base_urls)]
                self._turn += 1
            self._thread.url = url
        return url

    # -- before any work -----------------------------------------------------------------

    def preflight(self, timeout: float = 15.0) -> list[str]:
        """Check that every server answers, accepts the key and serves the model.

        Returns the model ids the (last) server lists. Raises :class:`PreflightError` naming the
        problem and its fix. With a replay cache nothing is checked: no network is used.
        """
        if self.cache is not None and self.cache.mode == "replay":
            return []
        ids: list[str] = []
        for url in self.base_urls:
            ids = self._preflight_one(url, timeout)
        return ids

    def _preflight_one(self, url: str, timeout: float) -> list[str]:
        where = f"LLM server {redact_url(url)}"
        try:
            ids = [m.id for m in self._openai(url).models.list(timeout=timeout)]
        except openai.NotFoundError:
            # Some servers have no /models: one 1-token completion tells the same.
            ids = None
        except openai.APIConnectionError as e:
            raise self._unreachable(where, e) from e
        except openai.APIStatusError as e:
            raise self._status_error(where, e) from e
        if ids is None:
            try:
                self._openai(url).chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": "hi"}], max_tokens=1,
                    timeout=timeout)
            except openai.APIConnectionError as e:
                raise self._unreachable(where, e) from e
            except openai.APIStatusError as e:
                raise self._status_error(where, e) from e
            return [self.model]
        if self.model not in ids:
            shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
            raise PreflightError("model", f"{where} does not serve model {self.model!r}; it lists: "
                                          f"{shown or 'nothing'} (fix: set llm.model to one of these)")
        return ids

    def _unreachable(self, where: str, e: Exception) -> PreflightError:
        what = "did not answer in time" if isinstance(e, openai.APITimeoutError) else "is not reachable"
        return PreflightError("unreachable", f"{where} {what} ({e.__class__.__name__}: {e}) (fix: start it, "
                                             f"e.g. `python -m knowfree llm serve`, or correct llm.base_url)")

    def _status_error(self, where: str, e: openai.APIStatusError) -> PreflightError:
        if e.status_code in (401, 403):
            return PreflightError("auth", f"{where} rejected the API key from ${self.api_key_env} "
                                          f"(HTTP {e.status_code}) (fix: export a valid key in "
                                          f"{self.api_key_env}, or name the right variable in llm.api_key_env)")
        if e.status_code == 404:
            return PreflightError("model", f"{where} does not know model {self.model!r} (HTTP 404) "
                                           f"(fix: set llm.model to a model the server serves)")
        return PreflightError("unreachable", f"{where} answered HTTP {e.status_code}: {e.message} "
                                             f"(fix: check the server's log)")

    # -- the work ------------------------------------------------------------------------

    def complete_many(self, requests: Sequence[Request],
                      on_result: Callable[[Response | Failure], None] | None = None
                      ) -> list[Response | Failure]:
        """One result per request, in order; cached answers first, the rest asked concurrently.

        Identical requests are asked once. ``on_result`` is called (in this thread) once per
        request: first for every cached answer, then as each asked answer arrives, after it is
        in the cache. Use it for progress bars, which then reach their total.
        With a replay cache, missing answers raise :class:`CacheMissError` before anything runs.
        """
        start = time.monotonic()
        results: list[Response | Failure | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            key = self.key(req)
            entry = self.cache.get(key) if self.cache is not None else None
            if entry is not None:
                results[i] = Response(key, req, entry["text"], entry["model"], entry.get("prompt_tokens") or 0,
                                      entry.get("completion_tokens") or 0, entry.get("finish_reason"), cached=True)
                self.usage.cache_hits += 1
                if on_result is not None:
                    on_result(results[i])
            else:
                todo.setdefault(key, []).append(i)
        if todo and self.cache is not None and self.cache.mode == "replay":
            raise CacheMissError(self.cache.folder, [(k, requests[ix[0]]) for k, ix in todo.items()],
                                 total=len(requests))
        if todo:
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)),
                                      thread_name_prefix="knowfree-llm")
            try:
                futures = {pool.submit(self._complete_one, key, requests[ix[0]]): key
                           for key, ix in todo.items()}
                for fut in as_completed(futures):
                    result = fut.result()
                    for i in todo[futures[fut]]:
                        results[i] = result
                        if on_result is not None:
                            on_result(result)
            finally:
                # On an interrupt, do not wait for queued requests; running ones finish or
                # time out in the background and their answers still reach the cache.
                pool.shutdown(wait=False, cancel_futures=True)
        self.usage.seconds += time.monotonic() - start
        return results

    def _complete_one(self, key: str, req: Request) -> Response | Failure:
        extra = {} if req.sampling.seed is None else {"seed": req.sampling.seed}
        url = self._thread_url()
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self.usage.http_requests += 1
            try:
                out = self._openai(url).chat.completions.create(
                    model=self.model, messages=req.messages, temperature=req.sampling.temperature,
                    max_tokens=req.sampling.max_tokens, top_p=req.sampling.top_p, **extra)
                break
            except (openai.APIConnectionError, openai.APIStatusError) as e:
                status = getattr(e, "status_code", None)
                retryable = status is None or status in RETRY_STATUS or status >= 500
                if not retryable or attempt > self.max_retries:
                    with self._lock:
                        self.usage.failures += 1
                    return Failure(key, req, f"{e.__class__.__name__}: {e}", status, attempt)
                with self._lock:
                    self.usage.retries += 1
                time.sleep(self._delay(attempt, e))
            except (openai.OpenAIError, ValueError) as e:  # a reply that is not an OpenAI response
                with self._lock:
                    self.usage.failures += 1
                return Failure(key, req, f"{e.__class__.__name__}: {e}", None, attempt)
        # Servers differ in what they leave out; a missing field is an empty answer, which the
        # parser counts, rather than a crash.
        choice = out.choices[0] if getattr(out, "choices", None) else None
        text = getattr(getattr(choice, "message", None), "content", None) or ""
        ptok = getattr(out.usage, "prompt_tokens", 0) or 0
        ctok = getattr(out.usage, "completion_tokens", 0) or 0
        finish = getattr(choice, "finish_reason", None)
        if self.cache is not None:
            self.cache.put({"key": key, "model": self.model, "server": self._label or redact_url(url),
                            "kind": req.kind,
                            "version": req.version, "messages": req.messages,
                            "sampling": req.sampling.to_dict(), "meta": req.meta, "text": text,
                            "prompt_tokens": ptok, "completion_tokens": ctok, "finish_reason": finish,
                            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        with self._lock:
            self.usage.answered += 1
            self.usage.prompt_tokens += ptok
            self.usage.completion_tokens += ctok
        return Response(key, req, text, self.model, ptok, ctok, finish, cached=False)

    def _delay(self, attempt: int, e: Exception) -> float:
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        response = getattr(e, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.max_backoff))
            except ValueError:
                pass  # an HTTP date: the exponential delay is good enough
        return delay
