"""`python -m knowfree cv CONFIG --folds 5`: the training length by k-fold cross-validation, for
data without a dev set, then the final model on every training sentence.

With a few hundred labelled sentences and no dev file, carving a dev set from train (what
`init` does) costs a tenth of the data and selects the checkpoint on a few dozen sentences. Here
instead:

1. the training sentences (after ``data.k`` / ``data.k_shot``, as the trainer would draw them)
   are dealt into ``folds`` disjoint parts by a seeded shuffle;
2. fold i trains on the other parts and scores part i as its dev set at every scored epoch
   (the config's own recipe: epochs, eval_every, seed); each fold is an ordinary, resumable run
   folder ``OUT/fold-i``;
3. the epoch with the best dev F1 averaged over the folds is chosen (ties: the earlier);
4. the final model trains on all the sentences with the same recipe and keeps the weights of
   that epoch (``train.select: N``: the learning-rate schedule still spans ``train.epochs``, so
   the final run follows the folds' trajectory); ``OUT/final`` is a run folder for `predict` and
   `export`. A test split, when the config has one, is scored once, by the final model only.

``OUT/cv.json`` and ``OUT/cv.md`` give every fold's dev curve, the chosen epoch, and the
cross-validated F1 at it (mean ± std over folds): the estimate a user reports, since the final
model has no held-out score of its own. Each fold infers its label list from its own training
part, as any file-based run does: a label seen in only one part is unknown to one fold.
"""
from __future__ import annotations

import copy
import random
import statistics
from pathlib import Path

import pandas as pd

from knowfree.config import validate_config
from knowfree.data import formats
from knowfree.errors import ConfigError
from knowfree.provenance import atomic_write_json, atomic_write_text, git_commit, guard_outputs


def deal_folds(n: int, folds: int, seed: int) -> list[list[int]]:
    """Indices 0..n-1 dealt into ``folds`` disjoint, sorted parts of sizes that differ by at most
    one, by a shuffle seeded with ``seed``."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if n < folds:
        raise ConfigError(f"{n} training sentences cannot fill {folds} folds (fix: --folds {max(2, n)} or fewer)")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::folds]) for i in range(folds)]


def _fold_config(config: dict, train_file: Path, dev_file: Path) -> dict:
    fold = copy.deepcopy(config)
    d = fold["data"]
    # the fold files are the data; k / k_shot were applied when the sentences were drawn
    d.update(dataset=None, train_file=str(train_file), dev_file=str(dev_file), test_file=None,
             format="jsonl", k=None, k_shot=None)
    fold["train"]["select"] = "best_dev"
    fold["output"].update(run_dir=None, keep_last=False)
    return fold


def choose_epoch(curves: list[dict[int, float]]) -> tuple[int, list[dict]]:
    """The epoch with the best mean dev F1 over folds (ties: the earlier) among the epochs every
    fold scored, and the table of means behind it."""
    common = sorted(set.intersection(*(set(c) for c in curves)))
    if not common:
        raise ConfigError("the folds share no scored epoch; cross-validation needs train.eval_every to "
                          "divide train.epochs the same way in every fold")
    rows = [{"epoch": e, "mean_dev_f1": statistics.mean(c[e] for c in curves),
             "std_dev_f1": statistics.stdev(c[e] for c in curves) if len(curves) > 1 else 0.0}
            for e in common]
    best = max(rows, key=lambda r: (r["mean_dev_f1"], -r["epoch"]))
    return best["epoch"], rows


def cross_validate(config: dict, out: str | Path, folds: int = 5, seed: int | None = None,
                   progress: bool = True) -> dict:
    """Run the folds and the final model (each resumable); returns what cv.json records."""
    from knowfree.train import load_data, train

    given = (config.get("train") or {}).get("select", "best_dev")
    if given != "best_dev":
        raise ConfigError(f"train.select={given!r}: cross-validation chooses the epoch itself (fix: "
                          "leave train.select out)")
    # validated as the final run is (no dev set needed); each fold then selects on its own dev part
    config = copy.deepcopy(config)
    config.setdefault("train", {})["select"] = "last"
    config = validate_config(config)
    if config["train"]["patience"] is not None:
        raise ConfigError("train.patience stops each fold at its own epoch, so the folds' curves cannot be "
                          "averaged (fix: patience: null)")
    out = Path(out)
    seed = config["data"]["sample_seed"] if seed is None else seed
    splits, info, _ = load_data(config["data"], need_dev=False)
    sentences = splits["train"]
    parts = deal_folds(len(sentences), folds, seed)

    curves, fold_rows = [], []
    for i, held in enumerate(parts):
        folder = out / f"fold-{i}"
        folder.mkdir(parents=True, exist_ok=True)
        held_set = set(held)
        train_file, dev_file = folder / "train.jsonl", folder / "dev.jsonl"
        if not (train_file.is_file() and dev_file.is_file()):  # a resumed fold keeps its files
            formats.write([s for j, s in enumerate(sentences) if j not in held_set], train_file, "jsonl")
            formats.write([sentences[j] for j in held], dev_file, "jsonl")
        metrics = train(_fold_config(config, train_file, dev_file), run_dir=folder / "run", progress=progress)
        history = pd.read_csv(folder / "run" / "epochs.csv").dropna(subset=["dev_f1"])
        curves.append({int(e): 100 * float(f) for e, f in zip(history["epoch"], history["dev_f1"])})
        fold_rows.append({"fold": i, "train": len(sentences) - len(held), "dev": len(held),
                          "best_epoch": metrics["best_epoch"], "best_dev_f1": 100 * metrics["dev"]["f1"]})
    epoch, means = choose_epoch(curves)
    at = [c[epoch] for c in curves]

    final_config = copy.deepcopy(config)
    final_config["train"]["select"] = epoch
    final = train(final_config, run_dir=out / "final", progress=progress)
    record = {
        "folds": folds, "fold_seed": seed, "sentences": len(sentences),
        "chosen_epoch": epoch, "of_epochs": config["train"]["epochs"],
        "cv_dev_f1_mean": statistics.mean(at), "cv_dev_f1_std": statistics.stdev(at),
        "cv_dev_f1_per_fold": at, "per_fold": fold_rows, "mean_curve": means,
        "final_run": str(out / "final"),
        "final_test": final.get("test"), "final_dev": final.get("dev"),
        "git_commit": git_commit(), "data": {"source": info["source"], "hashes": info["hashes"]},
    }
    atomic_write_json(out / "cv.json", record)
    atomic_write_text(out / "cv.md", report(record))
    return record


def report(record: dict) -> str:
    lines = [f"# Cross-validation: {record['folds']} folds of {record['sentences']} training sentences",
             "",
             f"Chosen epoch {record['chosen_epoch']} of {record['of_epochs']} (best dev F1 averaged over the "
             f"folds); cross-validated F1 there: {record['cv_dev_f1_mean']:.2f} ± {record['cv_dev_f1_std']:.2f} "
             f"(mean ± std over folds). Final model: `{record['final_run']}`, trained on all "
             f"{record['sentences']} sentences, weights of epoch {record['chosen_epoch']}.", ""]
    if record["final_test"]:
        lines += [f"Test F1 of the final model: {100 * record['final_test']['f1']:.2f}.", ""]
    lines += ["| fold | train | dev | own best epoch | own best dev F1 | dev F1 at the chosen epoch |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row, f in zip(record["per_fold"], record["cv_dev_f1_per_fold"]):
        lines.append(f"| {row['fold']} | {row['train']} | {row['dev']} | {row['best_epoch']} | "
                     f"{row['best_dev_f1']:.2f} | {f:.2f} |")
    lines += ["", "| epoch | mean dev F1 | std |", "| ---: | ---: | ---: |"]
    lines += [f"| {r['epoch']} | {r['mean_dev_f1']:.2f} | {r['std_dev_f1']:.2f} |" for r in record["mean_curve"]]
    lines.append(f"\ngit commit {record['git_commit']}")
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    from knowfree.errors import int_at_least, path_given

    p.description = __doc__.split("\n")[0]
    p.add_argument("config", type=path_given, help="trainer YAML config (a dev file is not needed)")
    p.add_argument("--out", required=True, type=path_given, help="folder for the folds, the final run and cv.md")
    p.add_argument("--folds", type=int_at_least(2), default=5, help="number of folds (default 5)")
    p.add_argument("--fold-seed", type=int, default=None,
                   help="seed of the fold shuffle (default: the config's data.sample_seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=30 (value read as YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from knowfree import yamlio

    # not validated here: without a dev set the trainer's check refuses best-dev selection, which
    # cross_validate replaces by its own (and then validates the config as its runs use it)
    config = yamlio.apply_overrides(yamlio.load_file(args.config, "config"), list(args.overrides))
    data = config.get("data") or {}
    guard_outputs([("CONFIG", args.config), *((f"data.{k}", data.get(k)) for k in ("train_file", "dev_file",
                                                                            "test_file", "schema_file"))],
                  folders=[("--out", args.out)])
    record = cross_validate(config, args.out, args.folds, args.fold_seed, progress=not args.no_progress)
    print(f"chosen epoch {record['chosen_epoch']}: cross-validated dev F1 {record['cv_dev_f1_mean']:.2f} "
          f"± {record['cv_dev_f1_std']:.2f} over {record['folds']} folds")
    if record["final_test"]:
        print(f"final model test F1 {100 * record['final_test']['f1']:.2f}")
    print(f"final run folder: {record['final_run']}\nreport: {Path(args.out) / 'cv.md'}")
    return 0
