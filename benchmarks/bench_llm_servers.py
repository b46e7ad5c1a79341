"""LLM throughput on this machine's cores: one llama.cpp server using every core, or several
servers each pinned to its own cores (``llm.servers`` in augment configs).

The prompts are real ones: the first ``--prompts`` requests of one kind in a committed response
cache (default: the POS prompts of Weibo K=250, the longest answers of the workflow), replayed
live at temperature 0. Every layout answers the same prompts; client threads (one per server)
take them from one queue, so a faster server simply answers more of them. Reported per layout:
wall time, completion tokens per second summed over the servers, the speed-up over the first
layout, and how many answers equal the cached one (greedy decoding with another thread count
may round differently; a changed answer is still a valid answer of the same model).

    python benchmarks/bench_llm_servers.py [--layouts 1x2 2x1] [--prompts 16] [--kind pos]

Writes results/benchmarks/llm_servers.{csv,md}. Run it with nothing else busy on the machine:
the servers share the cores and memory bandwidth with whatever else runs.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from knowfree.knowledge.cache import ResponseCache  # noqa: E402
from knowfree.knowledge.server import MODELS, LlamaServer, assemble_gguf, split_cores  # noqa: E402
from knowfree.provenance import atomic_write_text, git_commit, machine  # noqa: E402


def parse_layout(text: str) -> tuple[int, int]:
    """"2x1" = 2 servers of 1 thread each."""
    try:
        servers, threads = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"layout {text!r} is not SERVERSxTHREADS, e.g. 2x1") from None
    return servers, threads


def run_layout(model_path: Path, alias: str, servers: int, threads: int, prompts: list[dict]) -> dict:
    groups = split_cores(servers)
    if any(len(g) < threads for g in groups):
        raise SystemExit(f"{servers} servers of {threads} threads need {servers * threads} cores; "
                         f"this process may use {len(os.sched_getaffinity(0))}")
    started = [LlamaServer(model_path, alias=alias, cpus=g[:threads], n_threads=threads).start()
               for g in groups]
    try:
        clients = [openai.OpenAI(base_url=s.base_url, api_key="local", max_retries=0, timeout=900)
                   for s in started]
        # One short request each first: model pages in memory, the shared prompt prefix evaluated.
        for c in clients:
            c.chat.completions.create(model=alias, messages=prompts[0]["messages"], max_tokens=1, temperature=0.0)
        todo: queue.Queue = queue.Queue()
        for i, p in enumerate(prompts):
            todo.put((i, p))
        answers: list = [None] * len(prompts)

        def worker(client: openai.OpenAI) -> None:
            while True:
                try:
                    i, p = todo.get_nowait()
                except queue.Empty:
                    return
                s = p["sampling"]
                out = client.chat.completions.create(model=alias, messages=p["messages"], temperature=s["temperature"],
                                                     top_p=s["top_p"], max_tokens=s["max_tokens"])
                answers[i] = (out.choices[0].message.content or "", out.usage.completion_tokens)

        t0 = time.monotonic()
        pool = [threading.Thread(target=worker, args=(c,)) for c in clients]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.monotonic() - t0
    finally:
        for s in started:
            s.stop()
    tokens = sum(a[1] for a in answers)
    return {"layout": f"{servers}x{threads}", "servers": servers, "threads_each": threads,
            "cores": " ".join(",".join(map(str, g[:threads])) for g in groups),
            "prompts": len(prompts), "completion_tokens": tokens, "wall_s": round(wall, 1),
            "tokens_per_s": round(tokens / wall, 2),
            "same_as_cache": sum(a[0] == p["text"] for a, p in zip(answers, prompts)),
            "load_after": round(os.getloadavg()[0], 2)}


def write(rows: list[dict], info: dict, args) -> None:
    base = rows[0]["tokens_per_s"]
    for r in rows:
        r["speedup"] = round(r["tokens_per_s"] / base, 2)
    cols = ["layout", "servers", "threads_each", "cores", "prompts", "completion_tokens", "wall_s",
            "tokens_per_s", "speedup", "same_as_cache", "load_after"]
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    csv = ",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows)
    atomic_write_text(out.with_suffix(".csv"), csv)
    md = [
        "# LLM throughput: one server on all cores against one pinned server per core group", "",
        f"Machine: {info['cpu']}, {info['cores']} cores usable, {info['mem_gib']} GiB RAM, Python "
        f"{info['python']}, llama-cpp-python {info['llama_cpp']}. Load average before the first layout: "
        f"{info['load_before']}. Git commit {info['git_commit']}.", "",
        f"Model: {info['model']}. Prompts: the first {args.prompts} `{args.kind}` requests of "
        f"`{args.cache}`, replayed live (temperature 0, each request's own max_tokens).", "",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
        *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows), "",
        "tokens_per_s: completion tokens of all servers over the wall time of the layout. speedup: "
        "against the first row. same_as_cache: answers equal to the cached one (produced by one "
        "server on both cores).", "",
        f"    python benchmarks/bench_llm_servers.py --layouts {' '.join(args.layouts)} "
        f"--prompts {args.prompts} --kind {args.kind}", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(md))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="SERVERSxTHREADS, first = baseline")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--kind", default="pos")
    p.add_argument("--cache", default="data/cache/llm/weibo-k250-s42")
    p.add_argument("--model", default="1.5b", choices=sorted(MODELS))
    p.add_argument("--out", default="results/benchmarks/llm_servers")
    args = p.parse_args(argv)

    with ResponseCache(ROOT / args.cache, "replay") as cache:
        entries = sorted((e for e in cache.entries() if e["kind"] == args.kind), key=lambda e: e["created"])
    spec = MODELS[args.model]
    prompts = [e for e in entries if e["model"] == spec.alias][:args.prompts]
    if len(prompts) < args.prompts:
        raise SystemExit(f"{args.cache} holds {len(prompts)} {args.kind!r} answers of {spec.alias}, "
                         f"fewer than --prompts {args.prompts}")
    from importlib.metadata import version
    info = {**machine(), "model": spec.filename, "llama_cpp": version("llama-cpp-python"),
            "git_commit": git_commit(), "load_before": " / ".join(f"{x:.2f}" for x in os.getloadavg())}
    print(json.dumps(info), flush=True)
    rows = []
    for layout in args.layouts:
        rows.append(run_layout(assemble_gguf(args.model), spec.alias, *parse_layout(layout), prompts))
        print(json.dumps(rows[-1]), flush=True)
    write(rows, info, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
