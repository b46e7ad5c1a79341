"""`python -m knowfree augment` killed with SIGKILL in the middle of its LLM requests, then run
again (issue 14): every answer the killed run had completed is kept, none of them is asked again,
and the outputs are those of a run that was never interrupted."""
import json
import os
import signal
import subprocess
import sys
import time

import yaml
from fake_openai import MODEL, FakeOpenAI

from knowfree.data.formats import write
from knowfree.data.sample import Sample, Span
from knowfree.knowledge.cache import ResponseCache
from knowfree.provenance import REPO_ROOT

SENTENCES = 10  # two requests each (entity, pos)
DELAY = 0.15  # seconds per answer: the whole run takes ~1 s, a kill lands well inside it


def answer(messages) -> str:
    """One JSON list that both the entity and the POS parser read, so that answers reach the
    fusion set and a lost or repeated one would show in it."""
    return json.dumps([{"entity": "北京", "type": "城市", "word": "北京", "pos": "名词"}], ensure_ascii=False)


def prompt_key(messages) -> str:
    return json.dumps(messages, ensure_ascii=False, sort_keys=True)


def setup(folder, url):
    folder.mkdir()
    samples = [Sample(list(f"王{i}去北京{'玩' * i}"), [Span(0, 2, "PER")], f"t-{i}") for i in range(SENTENCES)]
    write(samples, folder / "train.jsonl", "jsonl")
    config = {"train_file": str(folder / "train.jsonl"), "knowledge": "llm", "output": str(folder / "out"),
              "llm": {"base_url": url, "model": MODEL, "cache": str(folder / "cache"), "concurrency": 2,
                      "max_retries": 0, "timeout": 10}}
    (folder / "a.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder / "a.yaml"


def augment(config) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "knowfree", "augment", str(config)], cwd=REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cached_lines(cache) -> int:
    """Complete lines in the live (unsealed) segments: answers already on disk."""
    return sum(p.read_bytes().count(b"\n") for p in cache.glob("seg-*.jsonl"))


def outputs(out):
    """fusion.jsonl, stats.json without what differs between any two runs (timings, creation
    time) or between a fresh and a resumed one (this run's requests and tokens, cache hits,
    the cache's load report), and those apart."""
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    work = {"seconds": stats.pop("seconds"), "created": stats["provenance"].pop("created"),
            "llm_cache": stats.pop("llm_cache"), "llm_usage": stats.pop("llm_usage")}
    llm = stats["sources"]["llm"]
    work["seconds_llm"] = llm.pop("seconds")
    for counts in [llm, *llm["by_kind"].values()]:
        work.setdefault("hits", []).append(counts.pop("cache_hits"))
    return (out / "fusion.jsonl").read_bytes(), stats, work


def test_killed_augment_resumes_without_asking_twice(tmp_path):
    # both runs in the same folder against the same server: their stats name the same paths and URL
    run = tmp_path / "run"
    with FakeOpenAI(answer=answer) as server:
        config = setup(run, server.base_url)
        whole = augment(config)
        assert whole.wait(timeout=120) == 0, whole.stderr.read()
        assert len(server.bodies) == 2 * SENTENCES
        whole_fusion, whole_stats, _ = outputs(run / "out")
        run.rename(tmp_path / "uninterrupted")
        del server.bodies[:]

        server.delay = DELAY
        config = setup(run, server.base_url)
        cache = run / "cache"
        proc = augment(config)
        deadline = time.monotonic() + 60
        while cached_lines(cache) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "augment finished before the kill: slow the server down"
        asked_before = [prompt_key(b["messages"]) for b in server.bodies]
        assert len(asked_before) < 2 * SENTENCES
        assert not (run / "out" / "stats.json").exists()

        killed = ResponseCache(cache, mode="replay")
        kept = {prompt_key(e["messages"]): e["text"] for e in killed.entries()}
        assert len(kept) >= 4 and killed.report.corrupt_lines == []

        rerun = augment(config)
        assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
        asked_after = [prompt_key(b["messages"]) for b in server.bodies[len(asked_before):]]

    # no answer the killed run completed is asked again, every missing one exactly once
    assert kept.keys().isdisjoint(asked_after)
    assert len(asked_after) == len(set(asked_after)) == 2 * SENTENCES - len(kept)
    final = {prompt_key(e["messages"]): e["text"] for e in ResponseCache(cache, mode="replay").entries()}
    assert len(final) == 2 * SENTENCES and all(final[k] == text for k, text in kept.items())

    fusion, stats, work = outputs(run / "out")
    assert b'"ext.' in fusion, "the answers reached the fusion set"
    assert fusion == whole_fusion
    assert flat(stats) == flat(whole_stats)
    assert work["hits"][0] == work["llm_usage"]["cache_hits"] == len(kept)
    assert work["llm_usage"]["http_requests"] == len(asked_after)


def flat(d, prefix=""):
    if not isinstance(d, dict):
        return {prefix: d}
    return {k: v for key, value in d.items() for k, v in flat(value, f"{prefix}{key}.").items()}
