"""Span head alone: forward+backward time and peak memory, ours against the authors' way.

Input: random token vectors [4, L, 384] (what e5-small would hand over), 30 labels.

- ``ours``: ``knowfree.model.SpanHead`` (decomposed affine map, attention on the packed upper
  triangle only, banded).
- ``dense``: ``knowfree.reference.DenseSpanHead``, the package's readable specification of
  the head, which computes it the way the authors' code does: the affine map is a Linear over
  the [head_i; 1; tail_j; 1; size] concatenation built for every cell, every one of the L x L
  cells is computed and trained (loss mask all true), and each of the B*L grid rows runs full
  L x L attention with a band mask rebuilt every forward.

Peak memory: a fresh subprocess per (implementation, L) runs one forward+backward; the peak is
the growth of its maximum resident set size (``getrusage().ru_maxrss``) over that step, taken
before anything else ran in it. The subprocess runs with ``MALLOC_MMAP_THRESHOLD_=65536``, so
glibc serves every tensor buffer by mmap and unmaps it on free: resident memory then follows
live tensors and its high-water mark is the true physical peak of the step (glibc's default
would keep freed buffers under 32 MiB on its heap and count them again).
Time: another fresh subprocess (default malloc) runs one warm-up step, then ``--repeats`` steps;
the median wall time and the median CPU time of the process are reported. This machine is
shared, so the single-threaded CPU time is the stable measure and the speed-up is taken from it.
A child is capped at ``--mem-cap-gib`` of address space so a reference that outgrows the
machine fails alone instead of pushing others' jobs out of memory.

    python benchmarks/bench_head.py [--lengths 32 64 128 256] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowfree.model import ModelConfig, SpanHead, span_cells  # noqa: E402
from knowfree.reference import DenseSpanHead  # noqa: E402
from knowfree.provenance import machine as provenance_machine  # noqa: E402

BATCH, HIDDEN, LABELS = 4, 384, 30


def step(impl: str, head: nn.Module, x: torch.Tensor, cells: torch.Tensor) -> None:
    logits = head(x, cells) if impl == "ours" else head(x, torch.full((x.shape[0],), x.shape[1]))
    F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits)).backward()


def measure_one(impl: str, length: int, mode: str, repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig()
    head = (SpanHead(HIDDEN, cfg, LABELS) if impl == "ours" else
            DenseSpanHead(HIDDEN, cfg.channels, cfg.biaffine_heads, cfg.size_embedding, cfg.size_buckets,
                          LABELS, cfg.attention_heads, cfg.window))
    x = torch.randn(BATCH, length, HIDDEN, requires_grad=True)
    cells, _ = span_cells(torch.full((BATCH,), length))
    if mode == "memory":
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step(impl, head, x, cells)
        return {"peak_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}
    walls, cpus = [], []
    for k in range(repeats + 1):
        head.zero_grad(set_to_none=True)
        x.grad = None
        w0, c0 = time.perf_counter(), time.process_time()
        step(impl, head, x, cells)
        if k:  # the first step warms up
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "load_avg_1min": os.getloadavg()[0]}


def run_child(impl: str, length: int, mode: str, args) -> dict:
    env = dict(os.environ, **({"MALLOC_MMAP_THRESHOLD_": "65536"} if mode == "memory" else {}))
    cap = int(args.mem_cap_gib * 2 ** 30)
    proc = subprocess.run(
        [sys.executable, __file__, "--one", impl, str(length), mode, "--repeats", str(args.repeats),
         "--threads", str(args.threads)], capture_output=True, text=True, env=env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap)))
    if proc.returncode:
        reason = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        print(f"{impl} L={length} {mode} failed: {reason[0][:300]}", flush=True)
        return {f"{mode}_failed": reason[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    m = provenance_machine()
    return (f"{m['cpu']}, {m['cores']} cores, {m['mem_gib']:.0f} GiB RAM, torch {m['torch']} "
            f"({m['cpu_capability']}, bf16 hardware: {m['bf16_hardware']}), Python {m['python']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mem-cap-gib", type=float, default=14.0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    ap.add_argument("--one", nargs=3, metavar=("IMPL", "L", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        impl, length, mode = args.one
        print(json.dumps(measure_one(impl, int(length), mode, args.repeats)))
        return 0

    rows = []
    for length in args.lengths:
        for impl in ("ours", "dense"):
            row = {"impl": impl, "L": length, "batch": BATCH, "threads": args.threads,
                   "cells": BATCH * length * (length + 1) // 2 if impl == "ours" else BATCH * length ** 2}
            for mode in ("memory", "time"):
                row.update(run_child(impl, length, mode, args))
            rows.append(row)
            print(row, flush=True)
    write(rows, args.out, args)
    return 0


def write(rows: list[dict], out: Path, args) -> None:
    import pandas as pd
    from knowfree.provenance import atomic_write_bytes
    atomic_write_bytes(out / "head.csv", pd.DataFrame(rows).to_csv(index=False).encode())

    def num(r, key, fmt):
        return format(r[key], fmt) if key in r else "failed"

    lines = [f"# Span head alone: forward+backward, batch {BATCH}, hidden {HIDDEN}, {LABELS} labels",
             "", f"Machine: {machine()}; {args.threads} torch thread(s).", "",
             "| L | ours CPU s | dense CPU s | speed-up | ours wall s | dense wall s "
             "| ours peak MiB | dense peak MiB | memory ratio |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    by = {(r["impl"], r["L"]): r for r in rows}
    for length in sorted({r["L"] for r in rows}):
        o, d = by[("ours", length)], by[("dense", length)]
        speed = f"{d['cpu_s'] / o['cpu_s']:.1f}x" if "cpu_s" in o and "cpu_s" in d else ""
        memory = f"{d['peak_mib'] / o['peak_mib']:.1f}x" if "peak_mib" in o and "peak_mib" in d else ""
        lines.append(f"| {length} | {num(o, 'cpu_s', '.3f')} | {num(d, 'cpu_s', '.3f')} | {speed} "
                     f"| {num(o, 'wall_s', '.3f')} | {num(d, 'wall_s', '.3f')} "
                     f"| {num(o, 'peak_mib', '.0f')} | {num(d, 'peak_mib', '.0f')} | {memory} |")
    loads = [r["load_avg_1min"] for r in rows if "load_avg_1min" in r]
    lines += ["", "CPU s / wall s: median over the timed steps of the process's CPU time and of "
              "wall time; speed-up from CPU time. Peak: growth of max RSS over one step with "
              "every buffer mmapped. Method: benchmarks/bench_head.py."]
    if loads:
        lines.append(f"Machine load (1-minute load average, {os.cpu_count()} cores) during the timed "
                     f"runs: {min(loads):.1f} to {max(loads):.1f}; wall times above the CPU times "
                     "are waiting for a core.")
    atomic_write_bytes(out / "head.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
