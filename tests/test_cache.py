"""The response cache: a killed run loses no completed answer and a rerun asks only the rest."""
import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from fake_openai import MODEL, FakeOpenAI, requests

from knowfree.knowledge.cache import CacheMissError, ResponseCache, request_key
from knowfree.knowledge.llm import LLMClient, Request, Sampling
from knowfree.provenance import REPO_ROOT


WORKER = textwrap.dedent("""
    import sys
    from knowfree.knowledge.cache import ResponseCache
    from knowfree.knowledge.llm import LLMClient, Request, Sampling

    url, folder, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    reqs = [Request("entity", "entity.test.1", [{"role": "user", "content": f"sentence {i}"}],
                    Sampling(max_tokens=16), {"id": i}) for i in range(n)]
    with ResponseCache(folder) as cache:
        client = LLMClient("fake-model", url, cache=cache, concurrency=2)
        client.complete_many(reqs, on_result=lambda r: print(r.key, flush=True))
""")


def test_kill_and_resume(tmp_path):
    n, kill_after = 30, 5
    folder = tmp_path / "cache"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with FakeOpenAI(delay=0.2) as server:
        proc = subprocess.Popen([sys.executable, str(script), server.base_url, str(folder), str(n)],
                                stdout=subprocess.PIPE, text=True, env=env)
        reported = [proc.stdout.readline().strip() for _ in range(kill_after)]
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        reported += rest.split()
        assert proc.returncode == -signal.SIGKILL
        asked_before = list(server.prompts)
        assert len(asked_before) < n, "the worker finished before it was killed: slow the server down"

        # Every answer the worker had completed is on disk and the folder reads cleanly.
        killed = ResponseCache(folder, mode="replay")
        assert all(key in killed for key in reported) and len(reported) >= kill_after
        assert killed.report.corrupt_lines == [] and len(killed) <= len(asked_before)
        assert list(folder.glob("seg-*.jsonl")), "the dead worker's segment stays unsealed"

        # A kill in the middle of a write leaves a partial last line: skipped and reported.
        [segment] = folder.glob("seg-*.jsonl")
        with open(segment, "ab") as f:
            f.write(b'{"key": "cut-short", "text": "ans')
        torn = ResponseCache(folder, mode="replay")
        assert len(torn) == len(killed) and len(torn.report.partial_lines) == 1

        # Rerunning asks for exactly the missing answers.
        cached_prompts = {e["messages"][-1]["content"] for e in killed.entries()}
        with ResponseCache(folder) as cache:
            assert cache.report.sealed == [segment.name] and len(cache.report.partial_lines) == 1
            client = LLMClient(MODEL, server.base_url, cache=cache, concurrency=2)
            results = client.complete_many(requests(n))
        asked_after = server.prompts[len(asked_before):]
        assert all(r.ok for r in results) and len(asked_after) == n - len(killed)
        assert cached_prompts.isdisjoint(asked_after) and client.usage.cache_hits == len(killed)

    # Complete now: replay makes no requests (no server at all), and everything is sealed.
    assert not list(folder.glob("seg-*.jsonl")) and len(list(folder.glob("seg-*.jsonl.gz"))) == 2
    replay = LLMClient(MODEL, None, cache=ResponseCache(folder, mode="replay"))
    assert replay.cache.report.partial_lines == [] and replay.cache.report.duplicates == 0
    assert [r.text for r in replay.complete_many(requests(n))] == [f"answer to sentence {i}" for i in range(n)]
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["entries"] == n and prov["models"] == {MODEL: n}
    assert prov["template_versions"] == {"entity.test.1": n} and prov["servers"] == {server.base_url: n}
    assert set(prov["segments"]) == {p.name for p in folder.glob("seg-*.jsonl.gz")}


def test_replay_lists_what_is_missing(tmp_path):
    with FakeOpenAI() as server:
        with ResponseCache(tmp_path) as cache:
            LLMClient(MODEL, server.base_url, cache=cache).complete_many(requests(2))
    client = LLMClient(MODEL, None, cache=ResponseCache(tmp_path, mode="replay"))
    with pytest.raises(CacheMissError) as e:
        client.complete_many(requests(5))
    message = str(e.value)
    assert "3 of 5" in message and str(tmp_path) in message and "live mode" in message
    assert all(f"sentence {i}" in message for i in (2, 3, 4))
    assert [req.meta["id"] for _, req in e.value.missing] == [2, 3, 4]
    with pytest.raises(Exception, match="replay mode and takes no new answers"):
        ResponseCache(tmp_path, mode="replay").put({"key": "x"})


def test_replay_of_a_missing_folder_says_how_to_fix(tmp_path):
    with pytest.raises(Exception, match="restore the committed cache"):
        ResponseCache(tmp_path / "nope", mode="replay")


def test_sealed_segments_are_never_rewritten_and_are_deterministic(tmp_path):
    with FakeOpenAI() as server:
        with ResponseCache(tmp_path) as cache:
            LLMClient(MODEL, server.base_url, cache=cache).complete_many(requests(2))
        [first] = tmp_path.glob("seg-*.jsonl.gz")
        before = first.read_bytes()
        with ResponseCache(tmp_path) as cache:
            LLMClient(MODEL, server.base_url, cache=cache).complete_many(requests(4))
    assert first.read_bytes() == before and len(list(tmp_path.glob("seg-*.jsonl.gz"))) == 2
    lines = gzip.decompress(before).splitlines()
    assert len(lines) == 2 and gzip.compress(gzip.decompress(before), 9, mtime=0) == before
    # Nothing new, nothing written: replaying a committed cache leaves git clean.
    stamp = (tmp_path / "provenance.json").stat().st_mtime_ns
    with ResponseCache(tmp_path):
        pass
    assert (tmp_path / "provenance.json").stat().st_mtime_ns == stamp


def test_key_covers_model_template_prompt_and_sampling_only():
    msgs = [{"role": "user", "content": "x"}]
    base = request_key("m", "entity", "entity.zh.1", msgs, Sampling().to_dict())
    assert base == request_key("m", "entity", "entity.zh.1", [dict(msgs[0])], Sampling().to_dict())
    for other in (request_key("m2", "entity", "entity.zh.1", msgs, Sampling().to_dict()),
                  request_key("m", "entity", "entity.zh.2", msgs, Sampling().to_dict()),
                  request_key("m", "entity", "entity.zh.1", [{"role": "user", "content": "y"}], Sampling().to_dict()),
                  request_key("m", "entity", "entity.zh.1", msgs, Sampling(max_tokens=9).to_dict()),
                  request_key("m", "entity", "entity.zh.1", msgs, Sampling(seed=1).to_dict())):
        assert other != base
    client = LLMClient("m", "http://127.0.0.1:9/v1")
    assert client.key(Request("entity", "entity.zh.1", msgs, meta={"id": 1})) == base


def test_progress_callback_counts_every_request(tmp_path):
    # A resumed run's progress bar has one tick per request: cached answers tick at once,
    # a request asked twice ticks twice, so the bar reaches its total.
    with FakeOpenAI() as server:
        with ResponseCache(tmp_path) as cache:
            LLMClient(MODEL, server.base_url, cache=cache).complete_many(requests(3))
        reqs = requests(5) + requests(5)[4:]
        seen = []
        with ResponseCache(tmp_path) as cache:
            client = LLMClient(MODEL, server.base_url, cache=cache, concurrency=2)
            client.complete_many(reqs, on_result=seen.append)
        assert len(server.prompts) == 3 + 2
    assert len(seen) == len(reqs) == 6
    assert [r.cached for r in seen[:3]] == [True] * 3 and not any(r.cached for r in seen[3:])
    assert sorted(r.text for r in seen[3:]) == ["answer to sentence 3"] + ["answer to sentence 4"] * 2
