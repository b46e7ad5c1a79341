"""results/tables/main.md and main.csv: the paper's shape (one row per dataset and K, one column
per variant), from the committed per-K knowledge tables; every cell that has not been run says so,
with the reason and the command that runs it.

    python scripts/main_table.py

It computes nothing new: means, sample stds and the differences to the plain span model with their
95 % Welch intervals (over training seeds, unpaired: each seed is an independent training) are
the knowledge tables' own (scripts/knowledge_table.py), so the two cannot disagree
(tests/test_main_table.py). Rerun it after either knowledge table changes.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowfree.provenance import atomic_write_text, git_commit, sha256_file  # noqa: E402
from knowfree.results import PUBLISHED  # noqa: E402

# the columns, in the order of the paper's ablation, and per committed table which of its variants
# fills each: in the full columns the explanation sentences were pseudo-labelled by the llm run of
# the same table and seed
COLUMNS = [
    ("plain", "plain span model (gold sentences only)"),
    ("ext_taggers", "+ extension labels, offline taggers (LAC)"),
    ("ext_llm", "+ extension labels, LLM"),
    ("syn_only", "+ explanation sentences only (no extension labels)"),
    ("full_cold", "full: LLM labels + explanation sentences, from the pretrained encoder"),
    ("full_warm", "full, continued from the LLM-labels model (the paper's workflow)"),
]


def _knowledge_cell(sweep: str, columns: dict, table_args: str = "") -> tuple[str, dict, str]:
    """A cell's knowledge table (written by scripts/knowledge_table.py from ``sweep``), the
    variant of it in each column, and the command that runs a missing variant (``{group}``)."""
    return (f"results/tables/{sweep}.csv", columns,
            f"python -m knowfree sweep configs/sweeps/{sweep}.yaml --out results/sweeps/{sweep} --jobs 2 "
            f"--only {{group}}, then python scripts/knowledge_table.py{table_args}")


WEIBO_VARIANTS = {"plain": "gold", "ext_taggers": "taggers", "ext_llm": "llm", "syn_only": "syn-only-m3e",
                  "full_cold": "llm-syn-m3e", "full_warm": "llm-syn-m3e-warm"}
SOURCES = {
    ("weibo", 50): _knowledge_cell("knowledge_weibo_k50_m3e", WEIBO_VARIANTS, " --k 50"),
    ("weibo", 250): _knowledge_cell("knowledge_weibo_k250_m3e", WEIBO_VARIANTS),
    # Youku's explanation sentences take their extension labels from LAC ("-taglabels")
    ("youku", 250): _knowledge_cell("knowledge_youku_k250_m3e",
                                    {"plain": "gold", "ext_taggers": "taggers", "ext_llm": "llm",
                                     "syn_only": "syn-only-m3e-taglabels", "full_cold": "llm-syn-m3e-taglabels",
                                     "full_warm": "llm-syn-m3e-warm-taglabels"}, " --dataset youku"),
}
# variants of a knowledge table outside the columns (their explanation sentences were labelled by
# another model), reported under the table
ASIDE = {("weibo", 250): ("results/augment/weibo-k250-s42-llm-syn/stats.json",
                          {"llm-syn": "cold", "llm-syn-warm": "warm"})}
# rows with no committed 3-seed table yet, and why
NOT_RUN = {
    ("weibo", 1000): "its LLM response cache is partly filled (data/cache/llm/weibo-k1000-s42, hours of the "
                     "local 1.5B LLM on 2 cores; resumed by `python -m knowfree augment "
                     "configs/augment_weibo_k1000_llm_syn_m3e_taglabels.yaml --llm-only`), no sweep file yet",
    ("youku", 1000): "no LLM response cache for Youku K=1000 yet",
}
ROWS = [("weibo", 50), ("weibo", 250), ("weibo", 1000), ("youku", 250), ("youku", 1000)]
OUT = ROOT / "results" / "tables" / "main"


def read(path: str) -> dict[str, dict]:
    with open(ROOT / path, encoding="utf-8") as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


def cell(row: dict | None, column: str) -> str:
    if row is None or row["runs"] in ("", "0"):
        return "not run"
    text = f"{float(row['test_f1_mean']):.2f} ± {float(row['test_f1_std']):.2f}"
    if column != "plain" and row["test_diff_vs_gold"]:
        text += f"<br>{row['test_diff_vs_gold']} {row['test_diff_ci95']}"
    return text


def published(dataset: str, k: int) -> str:
    found = [p["test_f1"] for p in PUBLISHED.to_dict("records") if p["dataset"] == dataset and p["k"] == k]
    return f"{found[0]:.2f}" if found else ""


def build() -> tuple[str, str]:
    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["dataset", "k", "column", "variant", "runs", "seeds", "test_f1_mean", "test_f1_std",
                "test_f1_per_seed", "test_diff_vs_plain", "test_diff_ci95", "dev_f1_mean", "dev_f1_std",
                "published_full_test_f1", "status", "git_commit", "encoder", "knowledge", "llm", "source",
                "source_sha256"])
    head = "| dataset | K | " + " | ".join(name for name, _ in COLUMNS) + " | published (full) |"
    lines = [head, "|" + " --- |" * 2 + " ---: |" * len(COLUMNS) + " ---: |"]
    commits, encoders, notes = set(), set(), []
    for dataset, k in ROWS:
        pub = published(dataset, k)
        if (dataset, k) not in SOURCES:
            for column, _ in COLUMNS:
                w.writerow([dataset, k, column, "", 0, "", "", "", "", "", "", "", "", pub, "not run",
                            "", "", "", "", "", ""])
            lines.append(f"| {dataset} | {k} | " + " | ".join("not run" for _ in COLUMNS) + f" | {pub} |")
            notes.append(f"{dataset} K={k}: not run: {NOT_RUN[(dataset, k)]}.")
            continue
        path, variants, command = SOURCES[(dataset, k)]
        rows, digest = read(path), sha256_file(ROOT / path)[:16]
        cells = []
        for column, _ in COLUMNS:
            variant = variants[column]
            row = rows.get(variant) if variant else None
            cells.append(cell(row, column))
            if row is None or row["runs"] in ("", "0"):
                w.writerow([dataset, k, column, variant or "", 0, "", "", "", "", "", "", "", "", pub,
                            "not run", "", "", "", "", path, digest])
                notes.append(f"{dataset} K={k}, {column}: not run; " +
                             (command.format(group=variant) if variant else command) + ".")
                continue
            commits.update(c for c in row["git_commit"].split(";") if c)
            encoders.add(row["encoder"])
            w.writerow([dataset, k, column, variant, row["runs"], row["seeds"], row["test_f1_mean"],
                        row["test_f1_std"], row["test_f1_per_seed"],
                        row["test_diff_vs_gold"] if column != "plain" else "",
                        row["test_diff_ci95"] if column != "plain" else "", row["dev_f1_mean"],
                        row["dev_f1_std"], pub, "done", row["git_commit"], row["encoder"], row["knowledge"],
                        row["llm"], path, digest])
        lines.append(f"| {dataset} | {k} | " + " | ".join(cells) + f" | {pub} |")
        if (dataset, k) in ASIDE:
            stats, starts = ASIDE[(dataset, k)]
            labeller = json.loads((ROOT / stats).read_text(encoding="utf-8"))["synthesis"]["pseudo_label"]
            aside = [f"{start} {variant} {cell(rows[variant], variant).replace('<br>', ', ')}"
                     for variant, start in starts.items() if variant in rows]
            commits.update(c for variant in starts if variant in rows
                           for c in rows[variant]["git_commit"].split(";") if c)
            notes.append(f"{dataset} K={k}, the full method on explanation sentences pseudo-labelled by "
                         f"the augment run's own model (`{stats}`: dev F1 "
                         f"{100 * labeller['model_dev']['f1']:.1f}; configs/sweeps/knowledge_weibo_k250_m3e.yaml "
                         "says which encoder) instead of the m3e-small ext_llm model: "
                         f"{'; '.join(aside)} (test F1, difference to plain).")
    notes.append("Baselines with other heads (the CNN span head, the BIO tagger) on m3e-small: not run; "
                 "configs/sweeps/weibo_quality.yaml has them on gold data (27 runs, set model.encoder).")
    dirty = sorted(c for c in commits if c.endswith("+dirty"))
    md = ["# Main table: what each component adds (NER, test F1, KnowFREE span head)", "",
          "Test F1 in percent of the dev-selected epoch, mean ± sample std over training seeds 0, 1, 2; under "
          "each variant its difference to the plain span model of the same row with a 95 % Welch interval "
          "over seeds (unpaired: every seed is its own training). Every cell is copied from the knowledge "
          "table named in `source` (main.csv), which checks that each variant has the plain model's recipe "
          "key for key except its training data and length. "
          f"Produced by `python scripts/main_table.py` at {git_commit()}.", "",
          *lines, "",
          "Columns: " + "; ".join(f"**{name}** {what}" for name, what in COLUMNS) + ".", "",
          "Setting of every row that was run: encoder " + ", ".join(sorted(encoders)) + " (m3e-small, "
          "24 M parameters), LLM knowledge from qwen2.5-coder-1.5b-instruct (4-bit GGUF, local llama.cpp), "
          "CPU training in bf16 with frozen word embeddings. The published numbers come from the authors' "
          "released checkpoints: BERT-base (hfl/chinese-bert-wwm-ext) and ChatGLM3-6B knowledge (Lai et al., "
          "2025, the full method at K=1000); they stand beside the rows they belong to, which have not been "
          "run here. The explanation sentences of the full columns were pseudo-labelled by the m3e-small "
          "model of the row's ext_llm column, one labeller per seed; on Youku their extension labels come "
          "from LAC, not the LLM (the paired measurement results/tables/taglabels_weibo_k50_m3e.md met its "
          "rule, and it saves 85 % of the LLM answers).", "",
          "Cells not run, and other runs:", "", *[f"- {n}" for n in notes], ""]
    if dirty:
        md += [f"Runs behind some cells record a commit with uncommitted changes: {', '.join(dirty)} "
               "(see each knowledge table's git_commit column).", ""]
    return table.getvalue(), "\n".join(md)


def main() -> int:
    csv_text, md = build()
    atomic_write_text(OUT.with_suffix(".csv"), csv_text)
    atomic_write_text(OUT.with_suffix(".md"), md)
    print(f"wrote {OUT.with_suffix('.md').relative_to(ROOT)} and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
