"""results/tables/ablation.md and results/figures/ablation.png: what each component adds to the
plain span model, per dataset and K, as the test-F1 difference of the means with its 95 % Welch
interval over training seeds, read from results/tables/main.csv (which copies them from the
knowledge tables). Settings and components that have not been run are listed, not drawn.

    python scripts/ablation_figure.py

Rerun it after scripts/main_table.py; tests/test_main_table.py checks the committed table is what
this script writes now.
"""
from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowfree.provenance import atomic_write_text, git_commit, sha256_file  # noqa: E402

MAIN = ROOT / "results" / "tables" / "main.csv"
TABLE = ROOT / "results" / "tables" / "ablation.md"
FIGURE = ROOT / "results" / "figures" / "ablation.png"
COMPONENTS = [  # main.csv's columns after plain, in the order of the paper's ablation
    ("ext_taggers", "extension labels (taggers)"),
    ("ext_llm", "extension labels (LLM)"),
    ("syn_only", "explanation sentences only"),
    ("full_cold", "full, from the pretrained encoder"),
    ("full_warm", "full, continued (paper's workflow)"),
]
INTERVAL = re.compile(r"\[([+-][\d.]+), ([+-][\d.]+)\]")


def read() -> dict[tuple[str, int], dict[str, dict]]:
    settings: dict[tuple[str, int], dict[str, dict]] = {}
    with open(MAIN, encoding="utf-8") as f:
        for r in csv.DictReader(f):
            settings.setdefault((r["dataset"], int(r["k"])), {})[r["column"]] = r
    return settings


def build() -> tuple[str, dict]:
    """The markdown table and the points of the figure: {(dataset, k): [(label, diff, lo, hi)]}."""
    settings = read()
    done = {s: cols for s, cols in settings.items() if cols["plain"]["status"] == "done"}
    points: dict = {}
    lines = ["# What each component adds to the plain span model", "",
             "Test F1 difference (points) of each variant's mean to the plain model's mean, 95 % Welch "
             "interval over training seeds (3 per variant, unpaired), KnowFREE head, m3e-small encoder. "
             f"Produced by `python scripts/ablation_figure.py` at {git_commit()} from "
             f"`results/tables/main.csv` (sha256 {sha256_file(MAIN)[:16]}); figure "
             "`results/figures/ablation.png`.", "",
             "| component | " + " | ".join(f"{d} K={k}" for d, k in done) + " |",
             "| --- |" + " ---: |" * len(done)]
    for column, label in COMPONENTS:
        cells = []
        for setting, cols in done.items():
            r = cols[column]
            if r["status"] != "done":
                cells.append("not run")
                continue
            lo, hi = map(float, INTERVAL.fullmatch(r["test_diff_ci95"]).groups())
            diff = float(r["test_diff_vs_plain"])
            points.setdefault(setting, []).append((label, diff, lo, hi))
            mark = "" if lo <= 0 <= hi else " *"
            cells.append(f"{r['test_diff_vs_plain']} {r['test_diff_ci95']}{mark}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    plain = ", ".join(f"{d} K={k} {cols['plain']['test_f1_mean']} ± {cols['plain']['test_f1_std']}"
                      for (d, k), cols in done.items())
    lines += ["", f"Plain model, test F1 mean ± std: {plain}. `*`: the interval excludes 0.", ""]
    missing = [f"{d} K={k}" for (d, k), cols in settings.items() if (d, k) not in done]
    if missing:
        lines.append("Not run yet (reasons and commands: `results/tables/main.md`): " + ", ".join(missing) + ".")
    return "\n".join(lines) + "\n", points


def draw(points: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.2), sharey=True, squeeze=False)
    labels = [label for _, label in COMPONENTS]
    for ax, ((dataset, k), rows) in zip(axes[0], points.items()):
        for label, diff, lo, hi in rows:
            y = labels.index(label)
            ax.errorbar(diff, y, xerr=[[diff - lo], [hi - diff]], fmt="o", capsize=3,
                        color="tab:blue" if lo > 0 else "tab:gray")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{dataset} K={k}")
        ax.set_xlabel("test F1 minus plain (points)")
        ax.set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()  # the axes share y: inverted once, the paper's order top-down
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def main() -> int:
    md, points = build()
    atomic_write_text(TABLE, md)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    tmp = FIGURE.with_suffix(".png.tmp")
    tmp.write_bytes(draw(points))
    tmp.replace(FIGURE)
    print(f"{TABLE.relative_to(ROOT)}, {FIGURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
