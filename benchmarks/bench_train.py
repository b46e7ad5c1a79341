"""Training speed, memory and checkpoint size per precision / freezing setting, in one run.

Workload: Weibo, the sampler's 250 training sentences (seed 42), the KnowFREE head on
e5-small-offline, batch 8 with the trainer's length buckets: one whole epoch (32 optimizer
steps) per variant, through ``knowfree.train.train_step``, the trainer's own step (forward in
the variant's precision, fp32 loss, backward, gradient clipping, fused AdamW, schedule). Each
variant runs in a child process of its own, so that its peak RSS is its own, on one thread
(as the sweeps train: one run per core). Every variant draws the same batches in the same
order from the same seed.

Per variant the CSV has: seconds per step and per epoch (process CPU time, and wall), the
ratio of the fp32 baseline's CPU seconds per epoch to the variant's, peak RSS, the size of
what a checkpoint writes (selected weights; weights + optimizer state), trained and frozen
parameter counts, and the fraction of the bf16 matmul bound reached.

Bound: sustained bf16 and fp32 ``torch.matmul`` of two N x N matrices at one thread, measured
by the parent before and after the children (the mean is used), in CPU time. Training FLOPs per
step are counted as in ``bench_inference.py`` (matrix products only): forward FLOPs of encoder
and head, times 3 for the parts that are trained (forward + two backward products), times 1
for frozen bottom layers, which only run forward. The bf16 fraction is (FLOPs / CPU second) /
bf16 matmul rate: what share of the machine's best matrix throughput the step turns into the
model's own products.

    python benchmarks/bench_train.py [--variants fp32 bf16 bf16-frozen-emb ...] [--steps N]

``--encoders A B ...`` runs every variant on each encoder (rows carry the encoder; the speed-up
is against the same encoder's fp32 row) and writes ``train_encoders.{csv,md}`` instead:

    python benchmarks/bench_train.py --encoders e5-small-offline m3e-small-offline \
        qwen2.5-0.5b-offline --variants bf16-frozen-emb-w16

The FLOP count (and so the fraction of the bound) is BERT's layer layout; it is left empty for
other families (Qwen2's grouped-query attention and gated MLP differ).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("KNOWFREE_DATA_MIRROR", str(ROOT.parent / "shared" / "datasets"))

from bench_inference import batch_flops, head_terms, machine  # noqa: E402
from bench_inference import matmul_rate as inference_matmul_rate  # noqa: E402

from knowfree.provenance import git_commit  # noqa: E402

# name: (precision, freeze_embeddings, freeze_layers, max_span_length)
VARIANTS = {
    "fp32": ("fp32", False, 0, None),
    "bf16": ("bf16", False, 0, None),
    "bf16-frozen-emb": ("bf16", True, 0, None),
    "bf16-frozen-emb-w16": ("bf16", True, 0, 16),
    "bf16-freeze4": ("bf16", True, 4, None),
    "bf16-freeze4-w16": ("bf16", True, 4, 16),
    "bf16-freeze8-w16": ("bf16", True, 8, 16),
}


def matmul_rate(n: int, seconds: float, dtype: torch.dtype) -> float:
    """Sustained matmul GFLOP per CPU-second at the current thread count."""
    return inference_matmul_rate(n, seconds, dtype)[0]


DEFAULT_ENCODER = "e5-small-offline"


def child(name: str, steps: int | None, n_epochs: int, encoder: str = DEFAULT_ENCODER) -> dict:
    """One variant: an epoch of training steps, then the checkpoint files it would write."""
    from knowfree.data.registry import load_dataset
    from knowfree.data.sampling import k_sentences
    from knowfree.data.schema import LabelSchema
    from knowfree.model import ModelConfig, build_model
    from knowfree.checkpoints import RunDir, weight_tensors, write_weights
    from knowfree.train import linear_schedule, make_batches, seed_everything, train_step

    precision, freeze_emb, freeze_layers, width = VARIANTS[name]
    torch.set_num_threads(1)
    data = load_dataset("weibo")
    train = k_sentences(data["train"], 250, seed=42, dataset="weibo", split="train").select(data["train"])
    schema = LabelSchema.from_samples(train, targets=sorted({sp.label for s in data["train"] for sp in s.targets()}))
    seed_everything(0)
    cfg = ModelConfig(encoder=encoder, freeze_embeddings=freeze_emb, freeze_layers=freeze_layers,
                      max_span_length=width)
    model = build_model(cfg, schema)
    model.train()
    optimizer = torch.optim.AdamW(model.param_groups(5e-5, 1e-3, 0.01), fused=True)
    gen = torch.Generator().manual_seed(0)
    epochs = [make_batches([len(s) for s in train], 8, 8, gen) for _ in range(n_epochs)]
    if steps:
        epochs = [b[:steps] for b in epochs]
    scheduler = linear_schedule(optimizer, 3, sum(map(len, epochs)))
    trainable = [p for p in model.parameters() if p.requires_grad]

    bcfg = model.encoder.backbone.config
    terms = head_terms(cfg, model.encoder.hidden_size, len(model.channel_names))
    layers = bcfg.num_hidden_layers
    per_epoch = []
    for batches in epochs:
        flops, cpu, wall = 0.0, [], []
        for idx in batches:
            chunk = [train[i] for i in idx]
            c0, w0 = time.process_time(), time.perf_counter()
            batch = model.collate(chunk)  # timed too: the trainer collates every step
            train_step(model, batch, optimizer, scheduler, trainable, 1.0, precision, "cpu")
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            pieces = batch["enc"]["attention_mask"].sum(1).tolist()
            need = batch_flops(bcfg, terms, pieces, [len(s) for s in chunk])
            # the cells this variant computes (fewer with max_span_length)
            need["head"] = (terms["token"] * sum(len(s) for s in chunk)
                            + (terms["cell_biaffine"] + terms["cell_rest"]) * len(batch["cells"]))
            trained_share = (layers - freeze_layers) / layers
            # frozen layers: forward only, and only in the epoch that fills their cache
            frozen_runs = 1 if (not freeze_layers or not per_epoch) else 0
            flops += 3 * need["head"] + need["encoder"] * (3 * trained_share + frozen_runs * (1 - trained_share))
        per_epoch.append((flops, cpu, wall))
    flops, cpu, wall = per_epoch[-1]  # the steady state: what every later epoch of a run costs
    batches = epochs[-1]

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        write_weights(run / "model.safetensors", weight_tensors(model), {"epoch": 1})
        selected = (run / "model.safetensors").stat().st_size
        run.save_last(model, {"epoch": 1, "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict()})
        resumable = sum(p.stat().st_size for p in run.ckpt.iterdir() if p.name != "last.json")
    n = len(batches)
    first = per_epoch[0][1]
    bert = bcfg.model_type == "bert"
    return {
        "variant": name, "encoder": encoder, "precision": precision, "freeze_embeddings": freeze_emb,
        "freeze_layers": freeze_layers, "max_span_length": width, "steps": n, "epochs": len(per_epoch),
        "cpu_s_per_step": sum(cpu) / n, "wall_s_per_step": sum(wall) / n,
        "cpu_s_per_epoch": sum(cpu) * 32 / n, "wall_s_per_epoch": sum(wall) * 32 / n,
        # epoch 1 also pays one-off costs: oneDNN kernel selection, allocator growth, and the
        # frozen layers' cache being filled
        "first_epoch_cpu_s": sum(first) * 32 / len(first),
        "frozen_cache_mib": model.encoder.frozen_cache["bytes"] / 2 ** 20,
        "gflop_per_step": flops / n / 1e9 if bert else None,
        "gflop_per_cpu_s": flops / sum(cpu) / 1e9 if bert else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checkpoint_selected_mib": selected / 2 ** 20,
        "checkpoint_resumable_mib": resumable / 2 ** 20,
        "params_trained_m": sum(p.numel() for p in trainable) / 1e6,
        "params_frozen_m": sum(p.numel() for p in model.parameters() if not p.requires_grad) / 1e6,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, help="first N steps of each epoch only (quick checks)")
    ap.add_argument("--epochs", type=int, default=2,
                    help="epochs per variant; the last one is reported (default 2)")
    ap.add_argument("--matmul-size", type=int, default=1024)
    ap.add_argument("--matmul-seconds", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    ap.add_argument("--encoders", nargs="+", default=None,
                    help=f"encoders to compare (default: {DEFAULT_ENCODER} only, into train.*)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-encoder", default=DEFAULT_ENCODER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.epochs, args.child_encoder)))
        return 0
    stem = "train_encoders" if args.encoders else "train"
    encoders = args.encoders or [DEFAULT_ENCODER]

    import pandas as pd

    info = machine()
    load_start = os.getloadavg()
    print(f"machine: {info}; load average at start {load_start}", flush=True)
    torch.set_num_threads(1)
    rates = {"fp32": [matmul_rate(args.matmul_size, args.matmul_seconds, torch.float32)],
             "bf16": [matmul_rate(args.matmul_size, args.matmul_seconds, torch.bfloat16)]}
    rows = []
    for encoder, name in [(e, v) for e in encoders for v in args.variants]:
        cmd = [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs),
               "--child-encoder", encoder]
        cmd += ["--steps", str(args.steps)] if args.steps else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"variant {name} on {encoder} failed")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{encoder} {name}: {row['cpu_s_per_step']:.3f} CPU-s/step, {row['cpu_s_per_epoch']:.1f} CPU-s/epoch, "
              f"peak RSS {row['peak_rss_mib']:.0f} MiB, checkpoint {row['checkpoint_selected_mib']:.0f} MiB",
              flush=True)
    rates["fp32"].append(matmul_rate(args.matmul_size, args.matmul_seconds, torch.float32))
    rates["bf16"].append(matmul_rate(args.matmul_size, args.matmul_seconds, torch.bfloat16))
    fp32_rate, bf16_rate = (sum(v) / len(v) for v in (rates["fp32"], rates["bf16"]))
    for r in rows:
        base = next((b for b in rows if b["variant"] == "fp32" and b["encoder"] == r["encoder"]), None)
        r["speedup_vs_fp32_epoch"] = base["cpu_s_per_epoch"] / r["cpu_s_per_epoch"] if base else None
        r["checkpoint_smaller_x"] = (base["checkpoint_selected_mib"] / r["checkpoint_selected_mib"]
                                     if base else None)
        rate = r["gflop_per_cpu_s"]
        r["fraction_of_bf16_bound"] = rate / bf16_rate if rate is not None else None
        r["fraction_of_fp32_bound"] = rate / fp32_rate if rate is not None else None
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / f"{stem}.csv", index=False, float_format="%.4g")
    write_md(df, args, info, load_start, fp32_rate, bf16_rate, rates, stem, encoders)
    print(f"wrote {args.out / stem}.csv and {stem}.md")
    return 0


def write_md(df, args, info, load_start, fp32_rate, bf16_rate, rates, stem, encoders) -> None:
    lines = [
        "# Training speed per encoder" if args.encoders else "# Training speed per precision and freezing setting",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['mem_gib']:.0f} GiB, torch {info['torch']}, "
        f"1 thread; load average at start {', '.join(f'{x:.2f}' for x in load_start)}. "
        f"Produced by `python benchmarks/bench_train.py{' --steps ' + str(args.steps) if args.steps else ''}"
        f"{' --encoders ' + ' '.join(encoders) + ' --variants ' + ' '.join(args.variants) if args.encoders else ''}` "
        f"at {git_commit()} in one run ({time.strftime('%Y-%m-%d', time.gmtime())}); times are process "
        f"CPU seconds of the last of {args.epochs} epochs per variant (the first epoch, which also fills "
        "caches, is in the CSV).",
        "",
        f"Sustained matmul ({args.matmul_size}x{args.matmul_size}, 1 thread, before / after the variants): "
        f"fp32 {rates['fp32'][0]:.0f} / {rates['fp32'][1]:.0f} GFLOP/s, bf16 {rates['bf16'][0]:.0f} / "
        f"{rates['bf16'][1]:.0f} GFLOP/s (bf16 bound = {bf16_rate / fp32_rate:.1f}x the fp32 one).",
        "",
        f"Weibo K=250, KnowFREE head, {', '.join(encoders)}, batch 8, one epoch (32 steps) per variant, "
        "each in its own process"
        + (f"; only the first {args.steps} steps of each epoch are run and the epoch's CPU seconds are "
           f"scaled from them to 32 steps." if args.steps else "."),
        "",
        "| encoder | variant | CPU s / step | CPU s / epoch | speed-up vs fp32 | peak RSS MiB | checkpoint MiB "
        "(selected / resumable) | smaller | trained / frozen M params | of bf16 bound |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    def x(v):
        return "n/a" if v is None or v != v else f"{v:.2f}x"

    def pct(v):
        return "n/a" if v is None or v != v else f"{100 * v:.0f} %"

    for r in df.to_dict("records"):
        lines.append(
            f"| {r['encoder']} | {r['variant']} | {r['cpu_s_per_step']:.3f} | {r['cpu_s_per_epoch']:.1f} | "
            f"{x(r['speedup_vs_fp32_epoch'])} | {r['peak_rss_mib']:.0f} | "
            f"{r['checkpoint_selected_mib']:.0f} / {r['checkpoint_resumable_mib']:.0f} | "
            f"{x(r['checkpoint_smaller_x'])} | {r['params_trained_m']:.1f} / {r['params_frozen_m']:.1f} | "
            f"{pct(r['fraction_of_bf16_bound'])} |")
    lines += ["", f"Columns: `{stem}.csv` beside this file (also wall seconds, the first epoch's CPU "
              "time, GFLOP per step and the fraction of the fp32 bound)."]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
