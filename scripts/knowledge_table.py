"""What each kind of knowledge adds on the Chinese encoder: results/tables/knowledge_{dataset}_k{K}_m3e.md.

K=250 (the default): joins the gold-only m3e-k250 runs of configs/sweeps/backbones_weibo.yaml (the
baseline) with the runs of configs/sweeps/knowledge_weibo_k250_m3e.yaml (the same recipe on the
knowledge-augmented training sets). K=50 (`--k 50`, the few-shot cell): configs/sweeps/
knowledge_weibo_k50_m3e.yaml holds its own gold group, as does the Youku cell (`--dataset youku`,
configs/sweeps/knowledge_youku_k250_m3e.yaml). Before anything is averaged it checks that every
knowledge run has the recipe of
the gold run with the same seed, key for key, except the keys a variant is allowed to change
(its training file, epochs, evaluation and checkpoint cadence, the warm start), and the same dev
and test data; a mismatch is an error that names the run and the key.

Per variant: dev and test F1 of the dev-selected epoch, mean ± sample std over training seeds, and
the difference of the means against gold with a 95 % Welch interval (the rule the sweep file wrote
down before any of its test scores was seen). Nothing here chooses anything on test.

    python -m knowfree sweep configs/sweeps/knowledge_weibo_k250_m3e.yaml \\
        --out results/sweeps/knowledge_weibo_k250_m3e --jobs 2
    python scripts/knowledge_table.py            # and --k 50 after knowledge_weibo_k50_m3e.yaml
    python scripts/knowledge_table.py --dataset youku   # after knowledge_youku_k250_m3e.yaml

Also draws results/figures/knowledge_{dataset}_k{K}_m3e.png: dev F1 of every run against the
training sentences it has seen.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from backbones_table import mean_std  # noqa: E402
from speed_quality_table import welch  # noqa: E402

from knowfree.config import HASH_NEUTRAL  # noqa: E402
from knowfree.provenance import atomic_write_text, git_commit, sha256_file  # noqa: E402

# per cell (dataset, K): where the gold runs are (summary, group), the knowledge sweep, what differs from gold
# besides the training file, and the lowest dev F1 the figure shows (early epochs sit near 0)
SETTINGS = {
    ("weibo", 250): {"gold": ("results/sweeps/backbones_weibo/summary.csv", "m3e-k250"),
          "sweep": "results/sweeps/knowledge_weibo_k250_m3e/summary.csv",
          "differs": "its training file, for the explanation sets 6 epochs of about 297 steps in "
                     "place of 60 of 32, and, for syn-only-m3e, model.use_extensions",
          "ymin": 40, "variants": ("taggers", "llm", "llm-syn", "llm-syn-warm", "syn-only-m3e", "llm-syn-m3e",
                                   "llm-syn-m3e-warm")},
    ("weibo", 50): {"gold": ("results/sweeps/knowledge_weibo_k50_m3e/summary.csv", "gold"),
         "sweep": "results/sweeps/knowledge_weibo_k50_m3e/summary.csv",
         "differs": "its training file (100 epochs of 7 steps; the explanation sets 20 epochs of about 60) "
                    "and, for syn-only-m3e, model.use_extensions",
         "ymin": 0, "variants": ("taggers", "llm", "syn-only-m3e", "llm-syn-m3e", "llm-syn-m3e-warm")},
    ("youku", 250): {"gold": ("results/sweeps/knowledge_youku_k250_m3e/summary.csv", "gold"),
                     "sweep": "results/sweeps/knowledge_youku_k250_m3e/summary.csv",
                     "differs": "its training file, for the explanation sets 6 epochs in place of 60, and, "
                                "for syn-only-m3e-taglabels, model.use_extensions",
                     "ymin": 40, "variants": ("taggers", "llm", "syn-only-m3e-taglabels", "llm-syn-m3e-taglabels",
                                              "llm-syn-m3e-warm-taglabels")},
}
NAMES = {"weibo": "Weibo", "youku": "Youku"}
# (group, what its training set adds), in the order of the paper's ablation
VARIANTS = [
    ("taggers", "+ extension labels from the offline taggers (LAC)"),
    ("llm", "+ extension labels from the LLM"),
    ("llm-syn", "+ LLM labels + explanation sentences (from the pretrained encoder)"),
    ("llm-syn-warm", "+ LLM labels + explanation sentences (continued from the llm run)"),
    ("syn-only-m3e", "+ explanation sentences labelled by the llm run, no extension labels (from the pretrained encoder)"),
    ("llm-syn-m3e", "+ LLM labels + explanation sentences labelled by the llm run (from the pretrained encoder)"),
    ("llm-syn-m3e-warm", "+ LLM labels + explanation sentences labelled by the llm run, continued from it"),
    ("syn-only-m3e-taglabels", "+ explanation sentences labelled by the llm run, no extension labels "
     "(from the pretrained encoder)"),
    ("llm-syn-m3e-taglabels", "+ LLM labels + explanation sentences labelled by the llm run (their "
     "extension labels from LAC; from the pretrained encoder)"),
    ("llm-syn-m3e-warm-taglabels", "+ LLM labels + explanation sentences labelled by the llm run (their "
     "extension labels from LAC), continued from it"),
]
# comparisons besides "against gold" (a, b: a - b): what the warm start adds over its source and
# over the cold start, and what extension labels add on top of the explanation sentences
PAIRS = [("llm-syn-m3e-warm", "llm"), ("llm-syn-m3e-warm", "llm-syn-m3e"), ("llm-syn-m3e", "syn-only-m3e"),
         ("llm-syn-m3e-warm-taglabels", "llm"), ("llm-syn-m3e-warm-taglabels", "llm-syn-m3e-taglabels"),
         ("llm-syn-m3e-taglabels", "syn-only-m3e-taglabels")]


def last_quarter(run: dict) -> tuple[float, float, float]:
    """Dev F1 (%) at the first and the last scored epoch of a run's last quarter of epochs, and the
    least-squares slope through the scored epochs of that quarter in points per 10 epochs: the
    sweep's rule calls a length enough when the gold runs no longer rise there."""
    with open(ROOT / run["run_dir"] / "epochs.csv", encoding="utf-8") as f:
        rows = [(int(r["epoch"]), 100 * float(r["dev_f1"])) for r in csv.DictReader(f) if r["dev_f1"]]
    start = rows[-1][0] * 3 / 4
    tail = [(e, f) for e, f in rows if e > start]
    xs, ys = [e for e, _ in tail], [f for _, f in tail]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return ys[0], ys[-1], 10 * slope


# the only configuration keys a knowledge variant may set differently from its gold run
ALLOWED = {"data.k", "data.train_file", "train.epochs", "train.eval_every", "output.checkpoint_every",
           "train.init_from", "model.use_extensions"}


class RecipeMismatch(ValueError):
    pass


def flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_runs(path: str, groups: set[str] | None) -> list[dict]:
    with open(ROOT / path, encoding="utf-8") as f:
        return [{**r, "source": path} for r in csv.DictReader(f)
                if r["status"] == "done" and (groups is None or r["group"] in groups)]


def check_recipe(run: dict, gold: dict) -> None:
    """Raise RecipeMismatch unless `run` differs from `gold` only in ALLOWED keys and in its train data."""
    mine = flat(json.loads((ROOT / run["run_dir"] / "config.json").read_text(encoding="utf-8")))
    theirs = flat(json.loads((ROOT / gold["run_dir"] / "config.json").read_text(encoding="utf-8")))
    # a key added after a run was trained (knowfree.config.HASH_NEUTRAL) holds its neutral value there
    neutral = {f"{section}.{key}": value for (section, key), value in HASH_NEUTRAL.items()}
    for key in sorted(set(mine) | set(theirs)):
        if key not in ALLOWED and mine.get(key, neutral.get(key)) != theirs.get(key, neutral.get(key)):
            raise RecipeMismatch(
                f"{run['run_dir']}: {key} = {mine.get(key)!r}, but the gold run {gold['run_dir']} has "
                f"{theirs.get(key)!r}; only {', '.join(sorted(ALLOWED))} may differ. Rerun the variant "
                "with the gold recipe (configs/sweeps/knowledge_weibo_k250_m3e.yaml) or compare it elsewhere.")
    mine_data, gold_data = json.loads(run["data_hashes"]), json.loads(gold["data_hashes"])
    for split in ("dev", "test"):
        if mine_data.get(split) != gold_data.get(split):
            raise RecipeMismatch(f"{run['run_dir']}: its {split} data (hash {mine_data.get(split)}) is not the "
                                 f"gold run's ({gold_data.get(split)}); the scores are not comparable.")


def train_size(run: dict) -> str:
    """Training sentences of a run, from the data.json it wrote (empty when absent)."""
    path = ROOT / run["run_dir"] / "data.json"
    if not path.is_file():
        return ""
    counts = json.loads(path.read_text(encoding="utf-8")).get("counts", {})
    return str(counts.get("train", ""))


def dev_curve(run: dict) -> list[tuple[int, float]]:
    """(training sentences seen, dev F1 %) at every scored epoch of a run: epochs of sets of
    different sizes (250 gold sentences, 2,373 with explanations) on one axis."""
    with open(ROOT / run["run_dir"] / "epochs.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["dev_f1"]]
    n = int(train_size(run) or 0)
    return [(int(r["epoch"]) * n, 100 * float(r["dev_f1"])) for r in rows]


def figure(cells: list, path: Path, k: int = 250, ymin: float = 40, dataset: str = "weibo") -> None:
    """Dev F1 against training sentences seen, one colour per variant, one line per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for c, (name, _, rows) in enumerate(cells):
        for j, run in enumerate(rows):
            xs, ys = zip(*dev_curve(run)) if dev_curve(run) else ((), ())
            ax.plot(xs, ys, color=f"C{c}", linewidth=1, alpha=0.8, label=name if j == 0 else None)
    ax.set_xlabel("training sentences seen (epochs x set size)")
    ax.set_ylabel("dev F1 (%)")
    ax.set_ylim(bottom=ymin)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title(f"{NAMES[dataset]} K={k}, m3e-small: dev F1 during training (one line per seed)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110, metadata={"Software": None})
    tmp.replace(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted({d for d, _ in SETTINGS}), default="weibo",
                    help="the dataset of the cell (default weibo)")
    ap.add_argument("--k", type=int, choices=sorted({k for _, k in SETTINGS}), default=250,
                    help="training sentences of the cell (default 250)")
    ap.add_argument("--out", type=Path, help="table path without suffix (default "
                    "results/tables/knowledge_{dataset}_k{K}_m3e)")
    ap.add_argument("--figure", type=Path, help="default results/figures/knowledge_{dataset}_k{K}_m3e.png")
    args = ap.parse_args(argv)
    if (args.dataset, args.k) not in SETTINGS:
        ap.error(f"--dataset {args.dataset} --k {args.k}: no such cell; the cells are "
                 + ", ".join(f"--dataset {d} --k {k}" for d, k in sorted(SETTINGS)))
    setting = SETTINGS[(args.dataset, args.k)]
    stem = f"knowledge_{args.dataset}_k{args.k}_m3e"
    args.out = args.out or ROOT / "results" / "tables" / stem
    args.figure = args.figure or ROOT / "results" / "figures" / f"{stem}.png"
    (gold_file, gold_group), sweep_file = setting["gold"], setting["sweep"]

    if not (ROOT / gold_file).is_file():
        raise SystemExit(f"{gold_file} does not exist: run the sweep that writes it first")
    gold = sorted(read_runs(gold_file, {gold_group}), key=lambda r: int(r["seed"]))
    if not gold:
        raise SystemExit(f"no finished {gold_group} runs in {gold_file}: run its sweep first")
    gold_by_seed = {r["seed"]: r for r in gold}
    sweep = read_runs(sweep_file, {g for g, _ in VARIANTS}) if (ROOT / sweep_file).is_file() else []
    for r in sweep:
        if r["seed"] not in gold_by_seed:
            raise RecipeMismatch(f"{r['run_dir']}: seed {r['seed']} has no gold run in {gold_file}")
        check_recipe(r, gold_by_seed[r["seed"]])

    def f1(rows, split):
        return [100 * float(r[f"{split}_f1"]) for r in rows]

    cells = [("gold", f"the {args.k} gold sentences alone", gold)]
    for group, what in VARIANTS:
        if group not in setting["variants"]:
            continue
        cells.append((group, what, sorted((r for r in sweep if r["group"] == group), key=lambda r: int(r["seed"]))))

    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["variant", "adds", "runs", "seeds", "train_sentences", "dev_f1_mean", "dev_f1_std",
                "test_f1_mean", "test_f1_std", "test_f1_per_seed", "dev_diff_vs_gold", "dev_diff_ci95",
                "test_diff_vs_gold", "test_diff_ci95", "best_epochs", "epochs_run", "train_s_per_epoch",
                "device", "encoder", "knowledge", "llm", "git_commit", "config_hashes", "data_hashes", "source"])
    inputs = sorted({gold_file} | ({sweep_file} if sweep else set()))
    lines = [f"# What each kind of knowledge adds ({NAMES[args.dataset]} NER, {args.k} gold sentences, m3e-small, KnowFREE head)", "",
             "F1 in percent of the dev-selected epoch, mean ± sample std over training seeds 0, 1, 2; the "
             "difference of the means to gold with a 95 % Welch interval. Every run has the gold recipe key "
             f"for key (checked) except {setting['differs']}. Produced by `python scripts/knowledge_table.py"
             f"{'' if args.dataset == 'weibo' else f' --dataset {args.dataset}'}"
             f"{'' if args.k == 250 else f' --k {args.k}'}` at "
             f"{git_commit()}; inputs "
             + ", ".join(f"`{p}` (sha256 {sha256_file(ROOT / p)[:16]})" for p in inputs) + ".", "",
             "| variant | adds | runs | train sentences | dev F1 | test F1 | test per seed | dev − gold [95 % CI] "
             "| test − gold [95 % CI] | best epochs | s / epoch |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |"]
    verdicts = []
    for name, what, rows in cells:
        if not rows:
            lines.append(f"| {name} | {what} | 0 | | not run | | | | | | |")
            continue
        dev, test = f1(rows, "dev"), f1(rows, "test")
        diffs = {}
        for split, mine in (("dev", dev), ("test", test)):
            if name == "gold":
                diffs[split] = ("", "")
            elif len(mine) > 1 and len(gold) > 1:
                d, lo, hi = welch(f1(gold, split), mine)
                diffs[split] = (f"{d:+.2f}", f"[{lo:+.2f}, {hi:+.2f}]")
                if split == "test":
                    side = "above" if lo > 0 else "below" if hi < 0 else "includes 0"
                    verdicts.append(f"{name}: test {d:+.2f} [{lo:+.2f}, {hi:+.2f}] "
                                    + ("(the interval includes 0)" if side == "includes 0"
                                       else f"(the interval lies {side} 0)"))
            else:
                d = statistics.mean(mine) - statistics.mean(f1(gold, split))
                diffs[split] = (f"{d:+.2f}", "n/a (one seed)")
        size = train_size(rows[0])
        per_epoch = statistics.mean(float(r["train_seconds_per_epoch"]) for r in rows)
        w.writerow([name, what, len(rows), " ".join(r["seed"] for r in rows), size,
                    f"{statistics.mean(dev):.2f}", f"{statistics.stdev(dev):.2f}" if len(dev) > 1 else "",
                    f"{statistics.mean(test):.2f}", f"{statistics.stdev(test):.2f}" if len(test) > 1 else "",
                    " ".join(f"{x:.2f}" for x in test), *diffs["dev"], *diffs["test"],
                    " ".join(r["best_epoch"] for r in rows), " ".join(r["epochs_run"] for r in rows),
                    f"{per_epoch:.1f}", rows[0]["device"], rows[0]["encoder"], rows[0]["knowledge"], rows[0]["llm"],
                    ";".join(sorted({r["git_commit"] for r in rows})), ";".join(r["config_hash"] for r in rows),
                    rows[0]["data_hashes"], rows[0]["source"]])
        lines.append(f"| {name} | {what} | {len(rows)} | {size} | {mean_std(dev)} | {mean_std(test)} | "
                     f"{' / '.join(f'{x:.2f}' for x in test)} | {' '.join(diffs['dev']).strip()} | "
                     f"{' '.join(diffs['test']).strip()} | {' '.join(r['best_epoch'] for r in rows)} | "
                     f"{per_epoch:.1f} |")
    quarters = [(r["seed"], *last_quarter(r)) for r in gold]
    lines += ["", "Length of training (the sweep's rule: enough if gold dev F1 no longer rises over the last "
              "quarter of the epochs): gold dev F1 at the first and the last scored epoch of that quarter, and "
              "the least-squares slope through its scored epochs, per seed: "
              + "; ".join(f"seed {s} {a:.1f} -> {b:.1f}, slope {k:+.2f} points per 10 epochs" for s, a, b, k in quarters)
              + (" (no gold seed still rising)." if all(k <= 0 for *_, k in quarters)
                 else " (at least one gold seed still rising: the length may be short).")]
    lines += ["", "Test precision / recall (%, mean over seeds): " + "; ".join(
        f"{name} {statistics.mean(100 * float(r['test_p']) for r in rows):.1f} / "
        f"{statistics.mean(100 * float(r['test_r']) for r in rows):.1f}" for name, _, rows in cells if rows) + "."]
    knowledge = sorted({f"`{r['knowledge']}`" for r in sweep})
    lines += ["", "Knowledge sources: " + (", ".join(knowledge) if knowledge else "none run yet")
              + f"; encoder `{gold[0]['encoder']}`; device `{gold[0]['device']}`."]
    if verdicts:
        lines += ["", "Test differences against gold: " + "; ".join(verdicts) + "."]
    by_name = {name: rows for name, _, rows in cells}
    others = []
    for a, b in PAIRS:
        if len(by_name.get(a) or ()) > 1 and len(by_name.get(b) or ()) > 1:
            parts = []
            for split in ("test", "dev"):
                d, lo, hi = welch(f1(by_name[b], split), f1(by_name[a], split))
                parts.append(f"{split} {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")
            others.append(f"{a} − {b}: " + ", ".join(parts))
    if others:
        lines += ["", "Other differences of means (95 % Welch intervals): " + "; ".join(others) + "."]
    lines += ["", f"Learning curves: `{args.figure.relative_to(ROOT) if args.figure.is_relative_to(ROOT) else args.figure}`."]
    figure([c for c in cells if c[2]], args.figure, args.k, setting["ymin"], args.dataset)
    atomic_write_text(args.out.with_name(args.out.name + ".csv"), table.getvalue())
    atomic_write_text(args.out.with_name(args.out.name + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
