"""Do explanation sentences lose anything when the offline taggers label them in place of the LLM?

Reads the runs of configs/sweeps/taglabels_weibo_k50_m3e.yaml and writes
results/tables/taglabels_weibo_k50_m3e.{md,csv}. The two explanation groups start from the same
labelling run per seed and train on sets that differ only in the extension labels of their
explanation sentences, so seed N of one is paired with seed N of the other. Before anything is
averaged it checks that the pairs differ in their training file and in nothing else (key for key)
and that both sets hold the same sentences with the same target spans; a mismatch is an error.

The decision is the rule the sweep file wrote down before any run: the taggers' labels "lose
nothing" if the dev F1 mean of llm-syn-m3e-warm-taglabels is at least the dev mean of
llm-syn-m3e-warm minus that group's dev std. Test is reported beside it and decides nothing.
The differences carry two 95 % intervals: Welch over the seed means, and the paired t interval
over the per-seed differences (2 degrees of freedom with 3 seeds).

    python scripts/taglabels_table.py
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from backbones_table import mean_std  # noqa: E402
from knowledge_table import flat, last_quarter, read_runs  # noqa: E402
from speed_quality_table import t975, welch  # noqa: E402

from knowfree.provenance import atomic_write_text, git_commit, sha256_file  # noqa: E402

SUMMARY = "results/sweeps/taglabels_weibo_k50_m3e/summary.csv"
LLM_LABELS, TAGGER_LABELS = "llm-syn-m3e-warm", "llm-syn-m3e-warm-taglabels"
GROUPS = [("llm", "the labelling runs: 50 gold sentences with LLM extension labels"),
          (LLM_LABELS, "+ explanation sentences with LLM extension labels, continued from llm"),
          (TAGGER_LABELS, "+ the same explanation sentences with LAC extension labels, continued from llm")]


class PairMismatch(ValueError):
    pass


def config(run: dict) -> dict:
    return flat(json.loads((ROOT / run["run_dir"] / "config.json").read_text(encoding="utf-8")))


def set_dir(run: dict) -> Path:
    """The augmented set a run trained on (the folder of its data.train_file)."""
    return ROOT / Path(config(run)["data.train_file"]).parent


def check_pair(a: dict, b: dict) -> None:
    """Raise PairMismatch unless runs a and b differ only in data.train_file, and their two sets
    hold the same sentences with the same target spans (extension labels may differ)."""
    ca, cb = config(a), config(b)
    for key in sorted(set(ca) | set(cb)):
        if key != "data.train_file" and ca.get(key) != cb.get(key):
            raise PairMismatch(f"{b['run_dir']}: {key} = {cb.get(key)!r}, but its pair {a['run_dir']} has "
                               f"{ca.get(key)!r}; only data.train_file may differ. Retrain it with "
                               "configs/sweeps/taglabels_weibo_k50_m3e.yaml.")

    def targets(run):
        with gzip.open(ROOT / config(run)["data.train_file"], "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        return [(r["text"], sorted((e["start"], e["end"], e["entity"]) for e in r["entities"]
                                   if not e["entity"].startswith("ext."))) for r in rows]

    if targets(a) != targets(b):
        raise PairMismatch(f"{a['run_dir']} and {b['run_dir']} trained on sets whose sentences or target "
                           "spans differ; build both from the same labelling run (the sweep file's steps).")


def set_facts(run: dict) -> dict:
    """LLM answers a set needed, and extension spans per explanation sentence, from its stats.json."""
    stats = json.loads((set_dir(run) / "stats.json").read_text(encoding="utf-8"))
    usage = stats["llm_usage"]
    synthetic = stats["synthesis"]["synthetic"]
    return {"llm_answers": usage["cache_hits"] + usage["answered"],
            "synthetic_sentences": synthetic["sentences"],
            "ext_spans_per_synthetic": synthetic["ext_spans_per_sentence"],
            "ext_labels_synthetic": synthetic["label_inventory_size"]}


def paired_t(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of the per-seed differences b - a and its 95 % paired t interval."""
    d = [y - x for x, y in zip(a, b)]
    half = t975(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
    return statistics.mean(d), statistics.mean(d) - half, statistics.mean(d) + half


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "tables" / "taglabels_weibo_k50_m3e",
                    help="table path without suffix (.md and .csv)")
    args = ap.parse_args(argv)
    if not (ROOT / SUMMARY).is_file():
        raise SystemExit(f"{SUMMARY} does not exist: run configs/sweeps/taglabels_weibo_k50_m3e.yaml (its steps)")
    runs = {g: sorted(read_runs(SUMMARY, {g}), key=lambda r: int(r["seed"])) for g, _ in GROUPS}
    llm_runs, tag_runs = runs[LLM_LABELS], runs[TAGGER_LABELS]
    if not llm_runs or [r["seed"] for r in llm_runs] != [r["seed"] for r in tag_runs]:
        raise SystemExit(f"{SUMMARY}: {LLM_LABELS} has seeds {[r['seed'] for r in llm_runs]} and {TAGGER_LABELS} "
                         f"{[r['seed'] for r in tag_runs]}; the comparison needs the same seeds, finished, in both")
    for a, b in zip(llm_runs, tag_runs):
        check_pair(a, b)

    def f1(rows, split):
        return [100 * float(r[f"{split}_f1"]) for r in rows]

    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["group", "adds", "runs", "seeds", "dev_f1_mean", "dev_f1_std", "test_f1_mean", "test_f1_std",
                "dev_f1_per_seed", "test_f1_per_seed", "best_epochs", "train_s_per_epoch", "llm_answers",
                "ext_spans_per_synthetic", "device", "encoder", "knowledge", "git_commit", "config_hashes",
                "data_hashes"])
    lines = ["# Tagger extension labels on explanation sentences (Weibo NER, 50 gold sentences, m3e-small)", "",
             "F1 in percent of the dev-selected epoch, mean ± sample std over training seeds 0, 1, 2, all "
             "runs trained in one sweep on one machine. The two explanation groups start from the llm run "
             "of the same seed and train on sets that differ only in the extension labels of their "
             "explanation sentences (checked: same configuration but the training file, same sentences, "
             "same target spans). Produced by `python scripts/taglabels_table.py` at "
             f"{git_commit()}; input `{SUMMARY}` (sha256 {sha256_file(ROOT / SUMMARY)[:16]}).", "",
             "| group | adds | runs | dev F1 | test F1 | dev per seed | test per seed | best epochs | "
             "LLM answers per set | ext. spans per explanation sentence |",
             "| --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: |"]
    for group, what in GROUPS:
        rows = runs[group]
        if not rows:
            lines.append(f"| {group} | {what} | 0 | not run | | | | | | |")
            continue
        dev, test = f1(rows, "dev"), f1(rows, "test")
        facts = set_facts(rows[0]) if group != "llm" else {}
        w.writerow([group, what, len(rows), " ".join(r["seed"] for r in rows),
                    f"{statistics.mean(dev):.2f}", f"{statistics.stdev(dev):.2f}" if len(dev) > 1 else "",
                    f"{statistics.mean(test):.2f}", f"{statistics.stdev(test):.2f}" if len(test) > 1 else "",
                    " ".join(f"{x:.2f}" for x in dev), " ".join(f"{x:.2f}" for x in test),
                    " ".join(r["best_epoch"] for r in rows),
                    f"{statistics.mean(float(r['train_seconds_per_epoch']) for r in rows):.1f}",
                    facts.get("llm_answers", ""), facts.get("ext_spans_per_synthetic", ""),
                    rows[0]["device"], rows[0]["encoder"], rows[0]["knowledge"],
                    ";".join(sorted({r["git_commit"] for r in rows})), ";".join(r["config_hash"] for r in rows),
                    ";".join(sorted({r["data_hashes"] for r in rows}))])
        lines.append(f"| {group} | {what} | {len(rows)} | {mean_std(dev)} | {mean_std(test)} | "
                     f"{' / '.join(f'{x:.2f}' for x in dev)} | {' / '.join(f'{x:.2f}' for x in test)} | "
                     f"{' '.join(r['best_epoch'] for r in rows)} | {facts.get('llm_answers', '')} | "
                     f"{format(facts['ext_spans_per_synthetic'], '.1f') if facts else ''} |")

    a_dev, b_dev = f1(llm_runs, "dev"), f1(tag_runs, "dev")
    bar = statistics.mean(a_dev) - statistics.stdev(a_dev)
    keeps = statistics.mean(b_dev) >= bar
    parts = []
    for split in ("dev", "test"):
        a, b = f1(llm_runs, split), f1(tag_runs, split)
        d, lo, hi = welch(a, b)
        pd, plo, phi = paired_t(a, b)
        parts.append(f"{split} {d:+.2f} (Welch [{lo:+.2f}, {hi:+.2f}]; paired by seed {pd:+.2f} "
                     f"[{plo:+.2f}, {phi:+.2f}])")
    saved = 1 - set_facts(tag_runs[0])["llm_answers"] / set_facts(llm_runs[0])["llm_answers"]
    lines += ["", f"{TAGGER_LABELS} − {LLM_LABELS}: " + "; ".join(parts) + ".",
              "", f"The rule (written before any run): the taggers' labels lose nothing if the dev mean of "
              f"{TAGGER_LABELS} ({statistics.mean(b_dev):.2f}) is at least the dev mean of {LLM_LABELS} minus "
              f"its dev std ({statistics.mean(a_dev):.2f} − {statistics.stdev(a_dev):.2f} = {bar:.2f}): "
              + ("**met**" if keeps else "**not met**: the LLM labels are kept for the explanation sentences")
              + f". The rule compares means only: the dev std of {TAGGER_LABELS} is "
              f"{statistics.stdev(b_dev) / statistics.stdev(a_dev):.1f}x that of {LLM_LABELS}, and with 3 seeds "
              "the intervals above rule out only losses larger than their lower ends. Tagger labels need "
              f"{saved:.1%} fewer LLM answers per set (the per-set column).",
              "", "Length of training of the explanation groups (dev F1 at the first and the last scored "
              "epoch of the last quarter, least-squares slope in points per 10 epochs): "
              + "; ".join(f"{r['group']} seed {r['seed']} {x:.1f} -> {y:.1f}, slope {s:+.2f}"
                          for r in llm_runs + tag_runs for x, y, s in [last_quarter(r)]) + "."]
    lines += ["", "Test precision / recall (%, mean over seeds): " + "; ".join(
        f"{g} {statistics.mean(100 * float(r['test_p']) for r in runs[g]):.1f} / "
        f"{statistics.mean(100 * float(r['test_r']) for r in runs[g]):.1f}" for g, _ in GROUPS if runs[g]) + "."]
    lines += ["", f"Encoder `{llm_runs[0]['encoder']}`, knowledge `{llm_runs[0]['knowledge']}`, device "
              f"`{llm_runs[0]['device']}`."]
    atomic_write_text(args.out.with_name(args.out.name + ".csv"), table.getvalue())
    atomic_write_text(args.out.with_name(args.out.name + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
