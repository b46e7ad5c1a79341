"""A scripted OpenAI-compatible server on loopback, shared by the client, cache and pipeline tests."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from knowfree.knowledge.llm import LLMClient, Request, Sampling

MODEL = "fake-model"


class FakeOpenAI:
    """An OpenAI-compatible server whose answers a test scripts.

    ``script`` lists what the next chat completions do, one item each: an HTTP status to fail
    with, "hang" (answer after ``hang`` seconds, past the client's timeout) or "garbage" (HTTP
    200 with a body that is not JSON). When the script is used up, each request is answered
    after ``delay`` seconds with ``answer(messages)``, by default "answer to <last message>".
    """

    def __init__(self, models=(MODEL,), key=None, delay=0.0, script=(), hang=3.0, list_models=True,
                 answer=None):
        self.models, self.key, self.delay, self.hang = list(models), key, delay, hang
        self.answer = answer or (lambda messages: "answer to " + messages[-1]["content"])
        self.script, self.list_models = list(script), list_models
        self.prompts = []  # last message of every chat completion received, in order
        self.bodies = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=()):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status, message):
                self._send(status, {"error": {"message": message, "type": "test", "code": status}},
                           [("Retry-After", "0")] if status == 429 else [])

            def _authorised(self):
                if fake.key is None or self.headers.get("Authorization") == f"Bearer {fake.key}":
                    return True
                self._error(401, "invalid api key")
                return False

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path != "/v1/models" or not fake.list_models:
                    return self._error(404, "not found")
                self._send(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in fake.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorised():
                    return
                with fake.lock:
                    fake.prompts.append(body["messages"][-1]["content"])
                    fake.bodies.append(body)
                    step = fake.script.pop(0) if fake.script else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if body["model"] not in fake.models:
                        return self._error(404, f"model {body['model']} does not exist")
                    if isinstance(step, int):
                        return self._error(step, "scripted failure")
                    if step == "garbage":
                        return self._send(200, b"<html>proxy error")
                    time.sleep(fake.hang if step == "hang" else fake.delay)
                    text = fake.answer(body["messages"])
                    self._send(200, {
                        "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        return Handler


def requests(n, kind="entity", version="entity.test.1", sampling=Sampling(max_tokens=16)):
    return [Request(kind, version, [{"role": "user", "content": f"sentence {i}"}], sampling, {"id": i})
            for i in range(n)]


def fast_client(server, **kw):
    kw = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0, **kw}
    return LLMClient(MODEL, server.base_url, **kw)


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
