"""Result tables and figures with provenance, and the index behind results/README.md.

A notebook makes one ``Recorder`` from its validated parameters and writes every table and
figure through it:

- tables go to ``<results_dir>/tables/<run_name>.<name>.csv`` and ``.md``; every row carries
  the provenance columns ``PROVENANCE`` (a row of an ablation may come from another knowledge
  source than its neighbour, so provenance is per row, not per file);
- figures go to ``<results_dir>/figures/<run_name>.<name>.png``;
- ``<results_dir>/index.json`` records, for each file, the notebook and run that wrote it, and
  the runner adds, for each run, the command that produced it. ``write_readme`` renders that
  index as ``<results_dir>/README.md``.
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from knowfree.params import params_hash
from knowfree.provenance import (REPO_ROOT, atomic_write_bytes, atomic_write_json, atomic_write_text,
                                 git_commit, hash_samples)

PROVENANCE = ("git_commit", "params_hash", "data_hashes", "encoder", "knowledge", "llm")

# The only published numbers that are known (docs/method.md, "Published numbers"): the authors'
# released checkpoints, 1000 training sentences, BERT-base encoder, ChatGLM3-6B augmentation.
# They come from another encoder and another LLM than ours and are shown as theirs, never
# mixed into our rows.
PUBLISHED = pd.DataFrame([
    {"dataset": "weibo", "k": 1000, "test_f1": 76.78},
    {"dataset": "youku", "k": 1000, "test_f1": 84.50},
]).assign(encoder="BERT-base (hfl/chinese-bert-wwm-ext)", llm="ChatGLM3-6B",
          source="Lai et al. 2025, authors' released checkpoints")


# Executed notebooks, trained models and intermediate data of each run (ignored by git).
RUNS_DIR = REPO_ROOT / "results" / "runs"


def with_published(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` plus the published test F1 (theirs) on our ``full`` rows of the same dataset
    and K, with the encoder and LLM that produced it; empty elsewhere."""
    pub = PUBLISHED.rename(columns={"test_f1": "published_f1_theirs", "encoder": "published_encoder",
                                    "llm": "published_llm"}).drop(columns="source")
    out = summary.merge(pub, on=["dataset", "k"], how="left")
    cols = ["published_f1_theirs", "published_encoder", "published_llm"]
    out.loc[out["variant"] != "full", cols] = None
    return out


def published_refs(summary: pd.DataFrame) -> dict[str, float]:
    """Reference lines for a plot: the published numbers of the datasets in ``summary``."""
    return {f"theirs: {r.dataset} K={r.k}, {r.encoder} + {r.llm}": r.test_f1
            for r in PUBLISHED.itertuples() if (summary["dataset"] == r.dataset).any()}


def run_dir(run_name: str) -> Path:
    return RUNS_DIR / run_name


def data_hashes(splits: Mapping[str, Any]) -> str:
    """'train=<hash> dev=<hash> test=<hash>' from sample lists or precomputed hashes."""
    return " ".join(f"{name}={v if isinstance(v, str) else hash_samples(v)}"
                    for name, v in splits.items())


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas needs the optional `tabulate` for this)."""
    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def mean_std(df: pd.DataFrame, by: Sequence[str], value: str, scale: float = 1.0) -> pd.DataFrame:
    """Mean, sample standard deviation and count of ``value`` per group, plus 'mean ± std'.

    The provenance columns are kept: a value shared by the whole group stays as it is, values
    that differ are joined with ';', so an aggregated row still says what produced it."""
    def join(s):
        vals = list(dict.fromkeys(str(v) for v in s))
        return vals[0] if len(vals) == 1 else ";".join(vals)

    g = df.groupby(list(by), sort=False, dropna=False)
    out = g[value].agg(["mean", "std", "count"]).reset_index()
    out[["mean", "std"]] = out[["mean", "std"]] * scale
    out = out.rename(columns={"count": "n"})
    out["mean ± std"] = [f"{m:.2f}" if n < 2 else f"{m:.2f} ± {s:.2f}"
                         for m, s, n in zip(out["mean"], out["std"], out["n"])]
    kept = [c for c in PROVENANCE if c in df.columns and c not in by]
    if kept:
        out = out.merge(g[kept].agg(join).reset_index(), on=list(by))
    return out


# A head counts as converged when the best dev F1 of its last quarter of epochs is at most this
# many points above the best dev F1 before it. 0.5 is below the seed spread of every committed
# three-seed cell (dev std 0.43-1.12 F1 on Weibo K=250), so a smaller rise cannot be told from
# noise, and a larger one says more epochs would have paid.
CONVERGED_RISE = 0.5


def convergence(epochs: pd.DataFrame, tolerance: float = CONVERGED_RISE) -> dict:
    """Did dev F1 stop rising? ``epochs`` is a run's epochs.csv (dev_f1 in [0, 1], empty where
    dev was not scored). The last quarter is the epochs after ``last - last // 4``; ``rise`` is
    its best dev F1 minus the best before it, in points. With fewer than one scored epoch on
    either side nothing can be said: rise NaN, converged None."""
    last = int(epochs["epoch"].max())
    cut = last - last // 4
    scored = epochs.dropna(subset=["dev_f1"])
    early, late = scored[scored["epoch"] <= cut], scored[scored["epoch"] > cut]
    if early.empty or late.empty:
        return {"dev_rise_last_quarter": float("nan"), "converged": None}
    rise = 100 * (float(late["dev_f1"].max()) - float(early["dev_f1"].max()))
    return {"dev_rise_last_quarter": round(rise, 2), "converged": bool(rise <= tolerance)}


class Recorder:
    """Writes one notebook's tables and figures with provenance."""

    def __init__(self, notebook: str, values: Mapping[str, Any]):
        self.notebook = notebook
        self.values = dict(values)
        self.run_name = values["run_name"]
        self.results_dir = (REPO_ROOT / values["results_dir"]).resolve()
        self.params_hash = params_hash(values)
        self.git_commit = git_commit()

    @property
    def work_dir(self) -> Path:
        """Intermediate files of this run (subsets, augmented data, trained models)."""
        path = run_dir(self.run_name) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _register(self, path: Path, kind: str) -> None:
        index = load_index(self.results_dir)
        index["files"][path.relative_to(self.results_dir).as_posix()] = {
            "kind": kind, "run_name": self.run_name, "notebook": self.notebook,
            "params_hash": self.params_hash, "git_commit": self.git_commit,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(self.results_dir / "index.json", index)

    def table(self, df: pd.DataFrame, name: str, *, data: Mapping[str, Any] | str | None = None,
              encoder: str | None = None, knowledge: str | None = None, llm: str | None = None
              ) -> pd.DataFrame:
        """Write ``df`` with provenance columns; returns it as written.

        Columns the frame already has (per-row provenance) are kept; the keyword arguments fill
        the rest. A provenance column left empty on any row is an error: a result that cannot
        say what produced it is not written."""
        df = df.copy()
        given = {"git_commit": self.git_commit, "params_hash": self.params_hash,
                 "data_hashes": data_hashes(data) if isinstance(data, Mapping) else data,
                 "encoder": encoder, "knowledge": knowledge, "llm": llm}
        for col in PROVENANCE:
            if col not in df.columns and given[col] is not None:
                df[col] = given[col]
        missing = [c for c in PROVENANCE if c not in df.columns or df[c].isna().any()
                   or (df[c].astype(str) == "").any()]
        if missing:
            raise ValueError(f"table {name!r}: provenance columns without a value: {missing}; "
                             f"pass them to Recorder.table or set them per row")
        df = df[[c for c in df.columns if c not in PROVENANCE] + list(PROVENANCE)]
        # names hold dots (<run>.<table>), so suffixes are appended, never swapped
        base = self.results_dir / "tables" / f"{self.run_name}.{name}"
        csv = base.with_name(base.name + ".csv")
        atomic_write_text(csv, df.to_csv(index=False))
        atomic_write_text(base.with_name(base.name + ".md"), to_markdown(df))
        self._register(csv, "table")
        return df

    def figure(self, fig, name: str) -> Path:
        path = self.results_dir / "figures" / f"{self.run_name}.{name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                    metadata={"Software": None})  # no version string: same figure, same bytes
        atomic_write_bytes(path, buf.getvalue())
        self._register(path, "figure")
        return path


def load_index(results_dir: Path) -> dict:
    path = Path(results_dir) / "index.json"
    if path.exists():
        index = json.loads(path.read_text(encoding="utf-8"))
    else:
        index = {}
    index.setdefault("files", {})
    index.setdefault("runs", {})
    return index


def record_run(results_dir: Path, run_name: str, info: Mapping[str, Any]) -> None:
    """Store how a run was produced (command, params file and hash, timings) in the index."""
    index = load_index(results_dir)
    index["runs"][run_name] = dict(info)
    atomic_write_json(Path(results_dir) / "index.json", index)


# Files under results/ that other commands than the notebooks write: path prefix -> command.
OTHER_PRODUCERS = {
    "tables/knowledge_sources.": "python -m knowfree augment table results/augment/weibo-k250-s42-*/stats.json",
    "augment/": "python -m knowfree augment CONFIG, then python -m knowfree augment pack RUN_DIR "
                "(the config is in the stats.json there)",
    "benchmarks/": "a script in benchmarks/ (see its header)",
    "tables/quality_weibo.": "python -m knowfree sweep configs/sweeps/weibo_quality.yaml "
                             "--out results/sweeps/weibo_quality --jobs 20 "
                             "--table results/tables/quality_weibo (a GPU; see the sweep file)",
    "sweeps/weibo_quality/": "the same sweep; provenance.json there says where it ran",
    "tables/encoders_weibo_k250.": "python -m knowfree sweep configs/sweeps/encoders_weibo_k250.yaml "
                                   "--out results/sweeps/encoders_weibo_k250 "
                                   "--table results/tables/encoders_weibo_k250 (2 CPU cores)",
    "sweeps/encoders_weibo_k250/": "the same sweep",
    "tables/knowledge_weibo_k250_cpu.": "python -m knowfree sweep configs/sweeps/knowledge_weibo_k250_cpu.yaml "
                                        "--out results/sweeps/knowledge_weibo_k250_cpu --jobs 2 "
                                        "--table results/tables/knowledge_weibo_k250_cpu (2 CPU cores)",
    "sweeps/knowledge_weibo_k250_cpu/": "the same sweep",
    "tables/vocab_coverage.": "python scripts/vocab_coverage.py --out results/tables/vocab_coverage",
    "tables/speed_quality_weibo_k250.": "python -m knowfree sweep configs/sweeps/speed_quality_weibo_k250.yaml "
                                        "--out results/sweeps/speed_quality_weibo_k250 --jobs 2 "
                                        "--table results/tables/speed_quality_weibo_k250 (2 CPU cores)",
    "sweeps/speed_quality_weibo_k250/": "the same sweep",
    "tables/speed_quality_weibo_k250_vs_fp32.": "python scripts/speed_quality_table.py --fast "
                                                "results/sweeps/speed_quality_weibo_k250/summary.csv:fast ...",
    "tables/speed_quality_weibo_k250_l0_vs_fp32.": "python scripts/speed_quality_table.py --fast "
                                                   "results/sweeps/speed_quality_weibo_k250/summary.csv:fast-l0 ...",
    "tables/backbones_weibo.": "python scripts/backbones_table.py (after the two sweeps it names)",
    "sweeps/backbones_weibo/": "python -m knowfree sweep configs/sweeps/backbones_weibo.yaml "
                               "--out results/sweeps/backbones_weibo (2 CPU cores)",
    "tables/knowledge_weibo_k250_m3e.": "python scripts/knowledge_table.py (after the sweep it names)",
    "sweeps/knowledge_weibo_k250_m3e/": "python -m knowfree sweep configs/sweeps/knowledge_weibo_k250_m3e.yaml "
                                        "--out results/sweeps/knowledge_weibo_k250_m3e --jobs 2 (2 CPU cores)",
    "tables/knowledge_weibo_k50_m3e.": "python scripts/knowledge_table.py --k 50 (after the sweep it names)",
    "tables/main.": "python scripts/main_table.py (after the knowledge tables it names)",
    "sweeps/taglabels_weibo_k50_m3e/": "the steps in the header of configs/sweeps/taglabels_weibo_k50_m3e.yaml "
                                       "(2 CPU cores)",
    "tables/taglabels_weibo_k50_m3e.": "python scripts/taglabels_table.py (after the sweep it names)",
    "sweeps/knowledge_youku_k250_m3e/": "the steps in the header of configs/sweeps/knowledge_youku_k250_m3e.yaml "
                                        "(2 CPU cores)",
    "tables/knowledge_youku_k250_m3e.": "python scripts/knowledge_table.py --dataset youku (after the sweep it names)",
    "figures/knowledge_": "python scripts/knowledge_table.py --dataset D --k K (the cell its name gives)",
    "sweeps/knowledge_weibo_k50_m3e/": "python -m knowfree sweep configs/sweeps/knowledge_weibo_k50_m3e.yaml "
                                       "--out results/sweeps/knowledge_weibo_k50_m3e --jobs 2 (2 CPU cores)",
}

_README_HEAD = """# Results

Generated by `knowfree.results.write_readme` from `index.json` and the files present, after
every `python -m knowfree reproduce` run: do not edit by hand.

- `tables/<run>.<notebook>_<name>.csv` (and the same table as `.md`): every row carries its
  provenance: {provenance}.
- `figures/<run>.<notebook>_<name>.png`.
- `index.json`: which notebook and run wrote each file, and the command of each run.
- `augment/<run>/`: packed outputs of `python -m knowfree augment` behind committed results
  (`augment pack`): fusion / syn_fusion sets as gzip JSONL, schemas, `stats.json` with the
  config and provenance.
- `sweeps/<sweep>/`: run folders of `python -m knowfree sweep` (configs, per-epoch scores,
  metrics; no weights) and their `summary.csv`.
- `runs/<run>/` (ignored by git): the executed notebooks with all their outputs, `run.json`
  (timings, params hash, git commit) and `work/` (subsets, augmented data, trained models).

The notebooks in `notebooks/` are stored **without outputs**: outputs hold machine-specific
paths, timings, progress bars and widget state that change on every run, so stored outputs
would make every run a large, noisy diff and could drift from the code that produced them.
The executed copies live in `results/runs/<run>/`; the tables and figures here are the
results. The test suite runs the notebooks with nbval in lax mode (`pytest --nbval-lax
notebooks/`): every cell must run without error under the notebooks' own smoke defaults, and
no stored output is compared, so the suite cannot flake on volatile output.
"""


def write_readme(results_dir: Path) -> Path:
    """Render ``results_dir/README.md`` from the index and the files actually present."""
    results_dir = Path(results_dir)
    index = load_index(results_dir)
    present = sorted(p.relative_to(results_dir).as_posix()
                     for sub in ("tables", "figures", "benchmarks") if (results_dir / sub).is_dir()
                     for p in (results_dir / sub).rglob("*") if p.suffix in (".csv", ".png"))
    # a sweep folder holds one small folder per run; its summary stands for them
    present += sorted(p.relative_to(results_dir).as_posix()
                      for p in (results_dir / "sweeps").glob("*/summary.csv"))
    present += sorted(p.relative_to(results_dir).as_posix() for p in (results_dir / "augment").glob("*/stats.json"))
    lines = [_README_HEAD.format(provenance=", ".join(f"`{c}`" for c in PROVENANCE))]
    runs = index["runs"]
    if runs:
        lines += ["## Runs", "", "| run | command | params hash | git commit | finished | wall time |",
                  "|---|---|---|---|---|---|"]
        for name, r in sorted(runs.items()):
            lines.append(f"| {name} | `{r.get('command', '')}` | {r.get('params_hash', '')} | "
                         f"{r.get('git_commit', '')} | {r.get('finished', '')} | "
                         f"{r.get('wall_s', 0) / 60:.1f} min |")
        lines.append("")
    sections: dict[str, list[str]] = {"Tables": [], "Figures": [], "Other results": []}
    for rel in present:
        entry = index["files"].get(rel)
        if entry is None:
            how = next((cmd for prefix, cmd in OTHER_PRODUCERS.items() if rel.startswith(prefix)),
                       "unknown: not written through knowfree.results")
            sections["Other results"].append(f"| [{rel}]({rel}) | | | `{how}` |")
            continue
        run = entry["run_name"]
        how = runs.get(run, {}).get("command") or f"notebook {entry['notebook']} run by hand"
        title = "Tables" if entry["kind"] == "table" else "Figures"
        sections[title].append(f"| [{rel}]({rel}) | {entry['notebook']} | {run} | `{how}` |")
    for title, rows in sections.items():
        if rows:
            lines += [f"## {title}", "", "| file | notebook | run | produced by |",
                      "|---|---|---|---|", *rows, ""]
    path = results_dir / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path
