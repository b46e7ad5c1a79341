"""The real client against the real llama.cpp server with the real 0.5B model.

Skipped, with the reason, when llama-cpp-python or the assembled model is missing, unless
KNOWFREE_REQUIRE_LLM=1 (CI sets it after .ci/install_llm.sh): then a missing piece fails.
"""
import importlib.util
import os
import re

import json_repair
import pytest
from llm_required import llm_unavailable

from knowfree.errors import DataNotFound, KnowfreeError
from knowfree.knowledge.cache import ResponseCache
from knowfree.knowledge.llm import LLMClient, PreflightError, Request, Sampling
from knowfree.knowledge.prompts import load_template
from knowfree.errors import ConfigError
from knowfree.knowledge.server import MODELS, LlamaServer, assemble_gguf, split_cores
from knowfree.provenance import REPO_ROOT

SENTENCES = [("zh", "张伟昨天在北京大学见到了李明。"),
             ("en", "Barack Obama visited Paris in May."),
             ("ja", "田中さんは東京の日本銀行で働いている。"),
             ("ko", "김민수는 부산에서 삼성전자에 다닌다.")]


_unavailable = llm_unavailable


def _need_llama_cpp():
    if importlib.util.find_spec("llama_cpp") is None:
        _unavailable("llama-cpp-python is not installed")


def need_small_model():
    """The assembled 0.5B GGUF file, or a skip (a failure under KNOWFREE_REQUIRE_LLM=1)."""
    _need_llama_cpp()
    try:
        return assemble_gguf("0.5b")
    except DataNotFound as e:
        _unavailable(f"the 0.5B model is not assembled and its parts are missing: {e}")


@pytest.fixture(scope="module")
def server():
    with LlamaServer(need_small_model(), n_ctx=2048) as running:
        yield running


def test_real_client_on_real_server(server, tmp_path):
    client = LLMClient(server.model, server.base_url, cache=ResponseCache(tmp_path), concurrency=1,
                       server_label=server.label)
    assert server.model in client.preflight()
    reqs = [Request.from_template(load_template("entity", lang), Sampling(max_tokens=32), sentence=s)
            for lang, s in SENTENCES]
    results = client.complete_many(reqs)
    client.cache.close()
    for (_, sentence), r in zip(SENTENCES, results):
        assert r.ok, r.error
        items = json_repair.loads(r.text)
        assert isinstance(items, list), f"not a JSON list: {r.text!r}"
        found = [i.get("entity") for i in items if isinstance(i, dict)]
        assert any(isinstance(e, str) and e and e in sentence for e in found), \
            f"no entity of {r.text!r} occurs in {sentence!r}"
    assert client.usage.answered == len(SENTENCES) and client.usage.completion_tokens > 0
    assert client.cache.provenance()["servers"] == {server.label: len(SENTENCES)} and "0.3.36" in server.label
    # The same requests again come from the cache alone, with no server at all.
    replay = LLMClient(server.model, None, cache=ResponseCache(tmp_path, mode="replay"))
    assert [r.text for r in replay.complete_many(reqs)] == [r.text for r in results]
    assert replay.usage.http_requests == 0


def test_preflight_names_a_model_the_server_lacks(server):
    with pytest.raises(PreflightError) as e:
        LLMClient("no-such-model", server.base_url).preflight()
    assert e.value.reason == "model" and server.model in str(e.value)


def test_a_pinned_server_runs_on_its_cores_only():
    core = max(os.sched_getaffinity(0))
    with LlamaServer(need_small_model(), n_ctx=512, cpus=[core]) as pinned:
        assert pinned.n_threads == 1
        assert os.sched_getaffinity(pinned._proc.pid) == {core}
        assert LLMClient(pinned.model, pinned.base_url).preflight()


@pytest.mark.parametrize("cores,n,groups", [
    ([0, 1], 2, [[0], [1]]), ([0, 1], 1, [[0, 1]]),
    ([0, 1, 2, 3, 4], 2, [[0, 1, 2], [3, 4]]), ([3, 5, 7], 3, [[3], [5], [7]])])
def test_split_cores_gives_disjoint_even_groups(cores, n, groups):
    assert split_cores(n, cores) == groups


def test_split_cores_refuses_more_servers_than_cores():
    with pytest.raises(ConfigError, match="cannot run 3 LLM servers on 2 cores"):
        split_cores(3, [0, 1])


def test_a_server_that_dies_while_starting_quotes_its_log(tmp_path):
    _need_llama_cpp()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a gguf file" * 100)
    server = LlamaServer(junk, startup_timeout=120)
    with pytest.raises(KnowfreeError, match="exited with code") as e:
        server.start()
    assert f"end of its log {server.log_path}" in str(e.value) and len(str(e.value).splitlines()) > 2
    server.log_path.unlink()


def test_requirements_llm_pins_the_served_model_parts():
    text = (REPO_ROOT / "requirements-llm.txt").read_text()
    pins = set(re.findall(r"^([A-Za-z0-9._-]+==[^\s#]+)", text, re.M))
    assert "llama-cpp-python==0.3.36" in pins
    for spec in MODELS.values():
        assert set(spec.pins()) <= pins, f"requirements-llm.txt lacks the {spec.variant} parts"
