"""The choice of the Chinese encoder: results/tables/backbones_weibo.md.

Joins the finished runs of two sweeps on one recipe (Weibo, KnowFREE head, gold data only,
fast settings, selection on dev): the e5-small K=250 runs of
configs/sweeps/speed_quality_weibo_k250.yaml (group fast-l0) and every group of
configs/sweeps/backbones_weibo.yaml; and the training cost of each encoder from one run of
``benchmarks/bench_train.py --encoders`` (CPU seconds per epoch and peak RSS, same machine, same
variant). Per encoder and K: dev and test F1 mean ± sample std over seeds, and against e5-small
at the same K the difference of the means with a 95 % Welch interval (where both sides have at
least two seeds). The encoder with the best dev mean at K=250 is named; test is shown, not
used to choose.

    python -m knowfree sweep configs/sweeps/backbones_weibo.yaml --out results/sweeps/backbones_weibo --collect
    python -m knowfree sweep configs/sweeps/speed_quality_weibo_k250.yaml --out results/sweeps/speed_quality_weibo_k250 --collect
    python scripts/backbones_table.py
"""
from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from speed_quality_table import welch  # noqa: E402

from knowfree.backbones import LICENCES  # noqa: E402
from knowfree.provenance import atomic_write_text, git_commit, sha256_file  # noqa: E402

SOURCES = [  # (summary.csv, group prefix or None for every group)
    ("results/sweeps/speed_quality_weibo_k250/summary.csv", "fast-l0"),
    ("results/sweeps/backbones_weibo/summary.csv", None),
]
BENCH = "results/benchmarks/train_encoders.csv"
REFERENCE = "e5-small-offline"


def finished_runs() -> list[dict]:
    rows = []
    for path, group in SOURCES:
        with open(ROOT / path, encoding="utf-8") as f:
            for r in csv.DictReader(f):
                if r["status"] == "done" and (group is None or r["group"] == group):
                    rows.append({**r, "source": path})
    return rows


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "tables" / "backbones_weibo")
    args = ap.parse_args(argv)

    cells: dict[tuple[str, int], list[dict]] = {}
    for r in finished_runs():
        cells.setdefault((r["encoder"], int(r["k"])), []).append(r)
    bench = {}
    if (ROOT / BENCH).is_file():
        with open(ROOT / BENCH, encoding="utf-8") as f:
            bench = {r["encoder"]: r for r in csv.DictReader(f)}

    def f1(rows, split):
        return [100 * float(r[f"{split}_f1"]) for r in sorted(rows, key=lambda r: int(r["seed"]))]

    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["encoder", "k", "runs", "seeds", "dev_f1_mean", "dev_f1_std", "test_f1_mean", "test_f1_std",
                "test_f1_per_seed", "dev_diff_vs_e5", "dev_diff_ci95", "test_diff_vs_e5", "test_diff_ci95",
                "best_epochs", "wall_train_s_per_epoch", "bench_cpu_s_per_epoch", "bench_peak_rss_mib",
                "licence", "device", "git_commit", "config_hashes", "data_hashes", "sources"])
    inputs = [p for p, _ in SOURCES] + ([BENCH] if bench else [])
    lines = ["# Encoders for Chinese (Weibo, KnowFREE head, gold data only)", "",
             "F1 in percent of the dev-selected epoch, mean ± sample std over training seeds; the "
             "difference to e5-small at the same K with a 95 % Welch interval. Training seconds per "
             "epoch: wall time of the runs (two runs shared the 2 cores); CPU seconds per epoch and peak "
             "RSS: one run of `benchmarks/bench_train.py --encoders` (bf16, frozen embeddings, span "
             f"width 16, one thread). Produced by `python scripts/backbones_table.py` at {git_commit()}; "
             "inputs " + ", ".join(f"`{p}` (sha256 {sha256_file(ROOT / p)[:16]})" for p in inputs) + ".", "",
             "| encoder | K | runs | dev F1 | test F1 | test per seed | dev − e5 [95 % CI] | test − e5 [95 % CI] "
             "| best epochs | wall s / epoch | CPU s / epoch (bench) | peak RSS MiB (bench) |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    best = None
    for (encoder, k), rows in sorted(cells.items(), key=lambda x: (x[0][1], x[0][0] != REFERENCE, x[0][0])):
        dev, test = f1(rows, "dev"), f1(rows, "test")
        ref = cells.get((REFERENCE, k))
        diffs = {}
        for split, mine in (("dev", dev), ("test", test)):
            if encoder != REFERENCE and ref and len(ref) > 1 and len(mine) > 1:
                d, lo, hi = welch(f1(ref, split), mine)
                diffs[split] = (f"{d:+.2f}", f"[{lo:+.2f}, {hi:+.2f}]")
            elif encoder != REFERENCE and ref:
                d = statistics.mean(mine) - statistics.mean(f1(ref, split))
                diffs[split] = (f"{d:+.2f}", "n/a (one seed)")
            else:
                diffs[split] = ("", "")
        b = bench.get(encoder, {})
        cpu = f"{float(b['cpu_s_per_epoch']):.1f}" if b else "n/a"
        rss = f"{float(b['peak_rss_mib']):.0f}" if b else "n/a"
        wall = statistics.mean(float(r["train_seconds_per_epoch"]) for r in rows)
        if k == 250 and (best is None or statistics.mean(dev) > best[1]):
            best = (encoder, statistics.mean(dev))
        w.writerow([encoder, k, len(rows), " ".join(r["seed"] for r in rows),
                    f"{statistics.mean(dev):.2f}", f"{statistics.stdev(dev):.2f}" if len(dev) > 1 else "",
                    f"{statistics.mean(test):.2f}", f"{statistics.stdev(test):.2f}" if len(test) > 1 else "",
                    " ".join(f"{x:.2f}" for x in test), *diffs["dev"], *diffs["test"],
                    " ".join(r["best_epoch"] for r in rows), f"{wall:.1f}", cpu, rss,
                    LICENCES.get(encoder, "see the model's own card"), rows[0]["device"],
                    ";".join(sorted({r["git_commit"] for r in rows})), ";".join(r["config_hash"] for r in rows),
                    rows[0]["data_hashes"], ";".join(sorted({r["source"] for r in rows}))])
        dev_d = f"{diffs['dev'][0]} {diffs['dev'][1]}".strip()
        test_d = f"{diffs['test'][0]} {diffs['test'][1]}".strip()
        lines.append(f"| {encoder} | {k} | {len(rows)} | {mean_std(dev)} | {mean_std(test)} | "
                     f"{' / '.join(f'{x:.2f}' for x in test)} | {dev_d} | {test_d} | "
                     f"{' '.join(r['best_epoch'] for r in rows)} | {wall:.1f} | {cpu} | {rss} |")
    extra = [e for e in bench if e not in {enc for enc, _ in cells}]
    for encoder in extra:
        b = bench[encoder]
        lines.append(f"| {encoder} | – | 0 | not trained | | | | | | | {float(b['cpu_s_per_epoch']):.1f} "
                     f"| {float(b['peak_rss_mib']):.0f} |")
    if best:
        lines += ["", f"Best dev F1 at K=250: **{best[0]}** ({best[1]:.2f})."]
    lines += ["", "Licences: " + "; ".join(f"`{e}`: {LICENCES.get(e, 'see its card')}"
                                           for e in sorted({enc for enc, _ in cells} | set(extra))) + "."]
    atomic_write_text(args.out.with_name(args.out.name + ".csv"), table.getvalue())
    atomic_write_text(args.out.with_name(args.out.name + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
