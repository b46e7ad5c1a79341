"""Quality of the fast training settings against fp32: results/tables/speed_quality_weibo_k250_vs_fp32.md.

Reads two sweeps' summary.csv files (the per-run rows `python -m knowfree sweep` writes) and
compares the finished runs of one group of each, seed by seed: dev and test F1 mean ± sample
std, the difference of the means with a 95 % Welch t interval (runs of different seeds are
independent samples, not pairs), and the acceptance rule of the speed issue, written down before
the fast runs were trained: the settings keep quality if |difference of the test means| is
smaller than one standard deviation of the fp32 runs' test F1.

    python scripts/speed_quality_table.py \
        --fp32 results/sweeps/weibo_quality/summary.csv:k250-head=knowfree \
        --fast results/sweeps/speed_quality_weibo_k250/summary.csv:fast \
        --out results/tables/speed_quality_weibo_k250_vs_fp32
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowfree.provenance import atomic_write_text, git_commit, sha256_file  # noqa: E402

# two-sided 95 % quantiles of Student's t by degrees of freedom (rounded down)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: float) -> float:
    return T975[max(k for k in T975 if k <= max(1, math.floor(df)))]


def runs(spec: str) -> tuple[Path, str, list[dict]]:
    path, _, group = spec.partition(":")
    with open(path, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["run"].startswith(f"{group}-seed=") and r["status"] == "done"]
    if not rows:
        raise SystemExit(f"no finished run of group {group!r} in {path}")
    return Path(path).resolve(), group, sorted(rows, key=lambda r: int(r["seed"]))


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Difference of means b - a and its 95 % Welch interval."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.mean(b) - statistics.mean(a)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se else 1
    return diff, diff - t975(df) * se, diff + t975(df) * se


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32", required=True, metavar="SUMMARY.csv:GROUP")
    ap.add_argument("--fast", required=True, metavar="SUMMARY.csv:GROUP")
    ap.add_argument("--out", required=True, type=Path, help="table path without suffix (.md and .csv)")
    args = ap.parse_args(argv)

    sides = {"fp32": runs(args.fp32), "fast": runs(args.fast)}
    f1 = {name: {m: [100 * float(r[f"{m}_f1"]) for r in rows] for m in ("dev", "test")}
          for name, (_, _, rows) in sides.items()}
    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["setting", "sweep", "group", "runs", "seeds", "dev_f1_mean", "dev_f1_std", "test_f1_mean",
                "test_f1_std", "test_f1_per_seed", "best_epochs", "train_seconds_per_epoch", "device",
                "git_commit", "config_hashes", "data_hashes", "encoder"])
    lines = ["# Fast training settings against fp32 (Weibo K=250, KnowFREE head)", "",
             "F1 in percent of the dev-selected epoch, mean ± sample std over training seeds. "
             f"Produced by `python scripts/speed_quality_table.py` at {git_commit()}; inputs "
             + ", ".join(f"`{p.relative_to(ROOT)}` (sha256 {sha256_file(p)[:16]})" for p, _, _ in sides.values())
             + ".", "",
             "| setting | runs | dev F1 | test F1 | test F1 per seed | best epochs | training s / epoch | device |",
             "| --- | ---: | ---: | ---: | --- | --- | ---: | --- |"]
    for name, (path, group, rows) in sides.items():
        d, t = f1[name]["dev"], f1[name]["test"]
        secs = statistics.mean(float(r["train_seconds_per_epoch"]) for r in rows)
        w.writerow([name, str(path.relative_to(ROOT)), group, len(rows), " ".join(r["seed"] for r in rows),
                    f"{statistics.mean(d):.2f}", f"{statistics.stdev(d):.2f}", f"{statistics.mean(t):.2f}",
                    f"{statistics.stdev(t):.2f}", " ".join(f"{x:.2f}" for x in t),
                    " ".join(r["best_epoch"] for r in rows), f"{secs:.1f}", rows[0]["device"],
                    ";".join(sorted({r["git_commit"] for r in rows})), ";".join(r["config_hash"] for r in rows),
                    rows[0]["data_hashes"], rows[0]["encoder"]])
        lines.append(f"| {name} ({group}) | {len(rows)} | {statistics.mean(d):.2f} ± {statistics.stdev(d):.2f} "
                     f"| {statistics.mean(t):.2f} ± {statistics.stdev(t):.2f} | {' / '.join(f'{x:.2f}' for x in t)} "
                     f"| {' '.join(r['best_epoch'] for r in rows)} | {secs:.1f} | {rows[0]['device']} |")
    lines += ["", "| metric | fast - fp32 | 95 % interval (Welch) | fp32 std | within one fp32 std |",
              "| --- | ---: | ---: | ---: | --- |"]
    verdicts, diffs = {}, {}
    for m in ("dev", "test"):
        diff, lo, hi = welch(f1["fp32"][m], f1["fast"][m])
        diffs[m] = (diff, lo, hi)
        std = statistics.stdev(f1["fp32"][m])
        verdicts[m] = abs(diff) < std
        lines.append(f"| {m} F1 | {diff:+.2f} | [{lo:+.2f}, {hi:+.2f}] | {std:.2f} | "
                     f"{'yes' if verdicts[m] else 'no'} |")
    lines += ["", "Rule (fixed before the fast runs were trained): the fast settings keep quality if "
              "|difference of the test means| < one fp32 standard deviation. "
              f"Result: {'kept' if verdicts['test'] else 'NOT kept'} on test; "
              f"dev {'within' if verdicts['dev'] else 'outside'} one fp32 std. "
              + " ".join(f"On {m} the fast settings score {'higher' if d > 0 else 'lower'} ({d:+.2f}; the "
                         f"interval {'excludes' if lo > 0 or hi < 0 else 'includes'} 0)."
                         for m, (d, lo, hi) in diffs.items())
              + " The fp32 runs are the "
              "committed GPU runs of the same recipe (fp32 CPU runs would take 3 x 52 min here); the "
              "training seconds of the two sides come from different machines and are not comparable: "
              "see results/benchmarks/train.md for speed."]
    atomic_write_text(args.out.with_suffix(".csv"), table.getvalue())
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
