"""Prediction throughput of an exported model against the run's own Predictor, on Weibo test.

Three ways to predict the 270 Weibo test sentences (raw text in, character-offset spans out,
batches of 16 sentences sorted by length, fp32, one thread each, in this one process):

- ``predictor``: ``knowfree.predict.Predictor`` on the run folder (the packed span head);
- ``hf``: the ``--format hf`` export through its own loader (torch, the band-layout head);
- ``onnx``: the ``--format onnx`` export through its own loader (onnxruntime, one graph).

Each runs one warm-up pass and then ``--passes`` timed passes; the table gives the median, in
sentences per CPU-second (``time.process_time``: the machine is shared) and per wall second,
and each as a ratio to the predictor's. All three must give the same spans (checked).

The run: ``--run RUN_DIR``, or by default a short m3e-small run on 50 Weibo sentences trained
here (throughput does not depend on what the weights learnt; such a head finds no span, so
decoding costs nothing in any of the three: the table is about the model's computation).

    python benchmarks/bench_export.py [--run RUN_DIR] [--passes 3] [--out results/benchmarks/export]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KNOWFREE_DATA_MIRROR", str(ROOT.parent / "shared" / "datasets"))

from knowfree import portable  # noqa: E402
from knowfree.data.registry import load_dataset  # noqa: E402
from knowfree.export import export_run  # noqa: E402
from knowfree.predict import Predictor  # noqa: E402
from knowfree.provenance import atomic_write_text, git_commit, machine  # noqa: E402
from knowfree.results import to_markdown  # noqa: E402

SHORT_RUN = {"data": {"dataset": "weibo", "k": 50, "sample_seed": 42},
             "model": {"encoder": "m3e-small-offline", "freeze_embeddings": True, "max_span_length": 16},
             "train": {"epochs": 1, "batch_size": 8, "threads": 1, "precision": "fp32"}}


def timed(fn, passes: int) -> tuple[float, float, list]:
    fn()  # warm-up: first-call allocations, lazy imports, onnxruntime's graph preparation
    cpu, wall = [], []
    for _ in range(passes):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="a trained run folder (default: train a short one)")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "export")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    commit = git_commit()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    run = args.run
    if run is None:
        from knowfree.m3e import build_m3e_offline
        from knowfree.train import train

        build_m3e_offline()
        run = work / "run"
        train(SHORT_RUN, run, progress=False)
    texts = ["".join(s.tokens) for s in load_dataset("weibo")["test"]]
    predictor = Predictor.load(run, precision="fp32")
    paths = {"predictor": lambda: predictor.predict(texts, batch_size=args.batch_size)}
    for fmt in ("hf", "onnx"):
        export_run(run, work / fmt, fmt, texts[:20])
        folder = portable.load(work / fmt, threads=1)
        paths[fmt] = (lambda f: lambda: f.predict(texts, batch_size=args.batch_size))(folder)
    rows, spans = [], {}
    for name, fn in paths.items():
        cpu, wall, out = timed(fn, args.passes)
        spans[name] = [[(s["start"], s["end"], s["label"]) for s in t] for t in out]
        rows.append({"path": name, "sentences": len(texts), "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                     "sent_per_cpu_s": round(len(texts) / cpu, 1), "sent_per_wall_s": round(len(texts) / wall, 1)})
        print(rows[-1], flush=True)
    same = all(spans[k] == spans["predictor"] for k in spans)
    base = rows[0]
    for r in rows:
        r["vs_predictor_cpu"] = round(base["cpu_s"] / r["cpu_s"], 2)
        r["vs_predictor_wall"] = round(base["wall_s"] / r["wall_s"], 2)
    import pandas as pd

    df = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".csv"), df.to_csv(index=False))
    m = machine()
    import onnxruntime
    head = [
        "# Prediction throughput of the exported model (Weibo test)", "",
        f"Produced by `python benchmarks/bench_export.py` at {commit}. Machine: {m['cpu']}, "
        f"{m['cores']} usable core(s), {m['mem_gib']:.0f} GiB, torch {m['torch']} ({m['cpu_capability']}, bf16 "
        f"hardware: {m['bf16_hardware']}), onnxruntime {onnxruntime.__version__}, one thread per path. "
        f"Run: {'a short m3e-small run trained by the benchmark' if args.run is None else args.run.as_posix()}; "
        f"{len(texts)} sentences, batches of {args.batch_size}, fp32, median of {args.passes} passes "
        f"after a warm-up. Same spans on all three paths: {same}.", "",
        "Ratios: the predictor's time over the path's (above 1: faster than the predictor).", "", ""
    ]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(head) + to_markdown(df))
    print(f"wrote {args.out.with_suffix('.md')}; same spans: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
