"""Many trainings of one config at once: seeds, heads, K values, ablations, in parallel.

    python -m knowfree sweep configs/sweeps/weibo_quality.yaml --out results/runs/sweep-weibo \\
        [--jobs 8] [--deadline 540] [--only GROUP ...] [--dry-run]

A sweep file names a base trainer config and groups of runs; each group sets some keys and
takes the product of its ``grid`` lists::

    base: configs/weibo_k250.yaml
    set: {train.threads: 1}                  # every run
    groups:
      - name: k250
        grid: {model.head: [knowfree, cnn, tagger], train.seed: [0, 1, 2]}
      - name: k1000
        set: {data.k: 1000, train.epochs: 40}
        grid: {model.head: [knowfree, cnn, tagger]}

A string in a group's ``set`` may name one of the group's grid keys in braces, replaced by that
run's value: ``train.init_from: results/sweeps/s/fusion-seed={train.seed}`` starts each seed from
the run of the same seed in another group (a warm start that pairs seeds, not their product).

Each run is its own ``python -m knowfree train`` process with its own run folder under
``--out`` (named by group and grid values), so runs share nothing but the machine: on one GPU,
small models train several times faster together than one after another, because each alone
leaves the GPU waiting on Python. A sweep run again skips runs that completed and resumes the
others. ``--deadline`` stops every run still going after that many seconds (a lease on a
borrowed machine ends); they are reported as unfinished with the epochs they reached.

``--backend ray`` runs each training as a Ray task instead (a local instance the sweep starts, or
``--ray-address`` of a cluster), with the same commands, run folders and summary.

``summary.csv`` under ``--out`` gets one row per run: its status, dev and test scores of the
dev-selected epoch, speed, and what produced it (config hash, data hashes, encoder, commit).
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

from pydantic import Field, ValidationError, field_validator

from knowfree import yamlio
from knowfree.config import Strict, config_error, null_means
from knowfree.errors import ConfigError, int_at_least, nonnegative_seconds, path_given
from knowfree.provenance import REPO_ROOT, atomic_write_text, guard_outputs, own_outputs_env
from knowfree.workers import sigterm_as_exit

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_FIELDS = [
    "run", "group", "k", "head", "seed", "status", "overrides", "epochs_run", "best_epoch", "dev_f1", "test_p", "test_r",
    "test_f1", "seconds_per_epoch", "train_seconds_per_epoch", "wall_seconds", "device", "config_hash", "data_hashes",
    "encoder", "knowledge", "llm", "git_commit", "run_dir",
]


@dataclass
class Run:
    name: str
    group: str
    overrides: list[str]  # --set KEY=VALUE items, sweep-wide first


def _as_set_items(mapping, where: str) -> list[str]:
    if mapping is None:
        return []
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping of dotted keys to values")
    return [f"{k}={json.dumps(v)}" for k, v in mapping.items()]


def _short(key: str, value) -> str:
    text = str(value).replace("/", "_").replace(" ", "")
    return f"{key.rsplit('.', 1)[-1]}={text}"


def _fill(mapping, values: dict, group: str):
    """A group's ``set`` with ``{grid.key}`` in its strings replaced by this run's grid values;
    a brace naming a dotted key that is not in the group's grid is a ConfigError."""
    import re

    if not isinstance(mapping, dict):
        return mapping
    out = {}
    for k, v in mapping.items():
        if isinstance(v, str):
            for key, value in values.items():
                v = v.replace("{" + key + "}", str(value))
            left = re.search(r"\{([A-Za-z_]+\.[A-Za-z_.]+)\}", v)
            if left:
                raise ConfigError(f"group {group!r} set {k}: {{{left.group(1)}}} names no key of the "
                                  f"group's grid (grid keys: {sorted(values)})")
        out[k] = v
    return out


class SweepGroup(Strict):
    name: Annotated[str, Field(min_length=1)]
    set: Optional[dict] = None  # dotted trainer keys -> values; strings may name {grid.key}
    # dotted key -> the values to try; an empty list would silently make the group run nothing
    grid: dict[str, Annotated[list, Field(min_length=1)]] = {}

    _no_grid = field_validator("grid", mode="before")(null_means(dict))


class SweepFile(Strict):
    """A sweep file: the trainer config its runs start from, overrides for every run, groups."""
    base: Annotated[str, Field(min_length=1, description="the path of the trainer config its runs start from")]
    set: Optional[dict] = None
    groups: list[SweepGroup] = []

    _no_groups = field_validator("groups", mode="before")(null_means(list))


def plan(sweep: dict) -> list[Run]:
    """The runs a sweep file asks for, in file order; names are unique or ConfigError."""
    if not isinstance(sweep, dict):
        raise ConfigError(f"a sweep file is a mapping (base, set, groups), got {sweep!r}")
    try:
        spec = SweepFile.model_validate({str(k): v for k, v in sweep.items()})
    except ValidationError as e:
        raise config_error(e, SweepFile, noun="sweep key") from None
    common = _as_set_items(spec.set, "set")
    runs: list[Run] = []
    for g in spec.groups:
        keys = list(g.grid)
        for values in itertools.product(*(g.grid[k] for k in keys)):
            name = "-".join([g.name, *(_short(k, v) for k, v in zip(keys, values))])
            own = _as_set_items(_fill(g.set, dict(zip(keys, values)), g.name), f"group {g.name!r} set")
            items = common + own + [f"{k}={json.dumps(v)}" for k, v in zip(keys, values)]
            runs.append(Run(name, g.name, items))
    if not runs:
        raise ConfigError("the sweep has no runs (no groups)")
    dup = sorted({r.name for r in runs if sum(x.name == r.name for x in runs) > 1})
    if dup:
        raise ConfigError(f"runs with the same name: {dup}; give the groups different names")
    return runs


def check_configs(base: Path, runs: list[Run]) -> None:
    """Validate the base config with every run's overrides before any process starts (in dry
    runs too): a typo in a grid key fails here, once, not inside every run's train.log."""
    from knowfree.config import load_config

    for r in runs:
        try:
            load_config(base, r.overrides)
        except ConfigError as e:
            raise ConfigError(f"run {r.name} (base {base} with --set {' --set '.join(r.overrides)}): {e}"
                              ) from None


def _knowledge_of(train_file: str | None) -> tuple[str, str]:
    """(knowledge, llm) of a run's training data: a registered dataset's train split is gold
    data; an augment output names its source in the stats.json beside it; any other file may
    hold knowledge of any source."""
    if train_file is None:
        return "none", "none"
    stats_file = Path(train_file).with_name("stats.json")
    if not stats_file.is_file():
        return f"as in {train_file}", f"as in {train_file}"
    from knowfree.knowledge.report import source_name
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    llm = stats["provenance"]["knowledge"].get("llm") or {}
    return source_name(stats, Path(train_file).name.startswith("syn_")), llm.get("model") or "none"


def _row(run: Run, folder: Path, status: str) -> dict:
    row = {"run": run.name, "group": run.group, "status": status,
           "overrides": " ".join(run.overrides), "run_dir": str(folder)}
    config_file = folder / "config.json"
    if config_file.is_file():
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
        row.update(k=cfg["data"].get("k"), head=cfg["model"].get("head"), seed=cfg["train"]["seed"])
        row.update(zip(("knowledge", "llm"), _knowledge_of(cfg["data"].get("train_file"))))
    metrics_file = folder / "metrics.json"
    epochs_file = folder / "epochs.csv"
    if metrics_file.is_file():
        m = json.loads(metrics_file.read_text(encoding="utf-8"))
        test = m.get("test") or {}
        row.update(
            status="done", epochs_run=m["epochs_run"], best_epoch=m["best_epoch"],
            dev_f1=m["dev"]["f1"] if m.get("dev") else None, test_p=test.get("precision"),
            test_r=test.get("recall"), test_f1=test.get("f1"),
            seconds_per_epoch=round(m["seconds_per_epoch"], 2),
            train_seconds_per_epoch=round(m["train_seconds_per_epoch"], 2),
            wall_seconds=round(m["wall_seconds"], 1), device=m.get("device"),
            config_hash=m["config_hash"], git_commit=m.get("git_commit"),
            data_hashes=json.dumps(m["data"]["hashes"], sort_keys=True),
            encoder=m["encoder"]["name"])
    elif epochs_file.is_file():
        rows = list(csv.DictReader(epochs_file.open(encoding="utf-8")))
        scored = [r for r in rows if r.get("dev_f1")]
        if rows:
            row["epochs_run"] = len(rows)
            row["seconds_per_epoch"] = round(sum(float(r["seconds"]) for r in rows) / len(rows), 2)
        if scored:  # no test score: test is only ever scored on a finished run's selection
            best = max(scored, key=lambda r: float(r["dev_f1"]))
            row.update(best_epoch=int(best["epoch"]), dev_f1=float(best["dev_f1"]))
    return row


def collect(runs: list[Run], out: Path) -> list[dict]:
    """Rows of run folders already there (e.g. copied back from another machine).

    A ``provenance.json`` in ``out`` (written by hand beside folders copied back) replaces
    the fields it names in every row, e.g. the commit, where the remote copy of the tree
    could not tell it, or the encoder, where a local path stood for a named one; its
    ``runs: {name: {field: value}}`` replaces fields of single runs."""
    fix_file = out / "provenance.json"
    fixes = json.loads(fix_file.read_text(encoding="utf-8")) if fix_file.is_file() else {}
    rows = []
    for r in runs:
        folder = out / r.name
        # _row turns a folder with metrics.json into "done"
        row = _row(r, folder, "unfinished" if (folder / "epochs.csv").is_file() else "not started")
        row.update({k: v for k, v in fixes.items() if k in SUMMARY_FIELDS})
        row.update((fixes.get("runs") or {}).get(r.name, {}))
        rows.append(row)
    return rows


def table(rows: list[dict]) -> "pd.DataFrame":
    """One line per setting (a run name without its seed): test and dev F1 in percent as
    mean ± sample std over the finished seeds, with what produced them."""
    import re

    import pandas as pd

    df = pd.DataFrame(rows)
    df["setting"] = [re.sub(r"-seed=[^-]+", "", name) for name in df["run"]]
    lines = []
    for setting, g in df.groupby("setting", sort=False):
        done = g[g["status"] == "done"]
        line = {"setting": setting, "k": g["k"].iloc[0], "head": g["head"].iloc[0],
                "runs": len(g), "finished": len(done)}
        for col in ("test_f1", "dev_f1", "test_p", "test_r"):
            v = 100 * done[col].astype(float)
            line[col] = ("" if v.empty else f"{v.mean():.2f}" if len(v) < 2
                         else f"{v.mean():.2f} ± {v.std():.2f}")
        line["best_epochs"] = " ".join(str(int(e)) for e in done["best_epoch"])
        for col in ("seconds_per_epoch", "train_seconds_per_epoch"):
            v = g[col].dropna().astype(float) if col in g else pd.Series(dtype=float)
            line[col] = round(float(v.mean()), 2) if len(v) else ""
        for col in ("device", "encoder", "knowledge", "llm", "git_commit", "config_hash",
                    "data_hashes"):
            line[col] = ";".join(dict.fromkeys(str(v) for v in done[col])) if not done.empty else ""
        lines.append(line)
    return pd.DataFrame(lines)


def write_table(prefix: Path, df, sweep_file: Path, extra_set: list[str]) -> None:
    from knowfree.results import to_markdown
    from knowfree.provenance import hash_json, sha256_file

    prefix.parent.mkdir(parents=True, exist_ok=True)
    params = hash_json({"sweep_sha256": sha256_file(sweep_file), "set": extra_set})[:16]
    df = df.assign(params_hash=params)
    atomic_write_text(prefix.with_suffix(".csv"), df.to_csv(index=False))
    head = (f"# {prefix.name}\n\nTrainings of `{sweep_file.as_posix()}`"
            f"{' with --set ' + ' '.join(extra_set) if extra_set else ''}; F1, P and R of the "
            "dev-selected epoch in percent, mean ± sample std over finished runs "
            "(`python -m knowfree sweep ... --table`).\n\n")
    atomic_write_text(prefix.with_suffix(".md"), head + to_markdown(df))


def write_summary(out: Path, rows: list[dict]) -> Path:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    path = out / "summary.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def _train_command(base: Path, r: Run, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "knowfree", "train", str(base), "--run-dir", str(out / r.name),
           "--no-progress"]
    for item in r.overrides:
        cmd += ["--set", item]
    return cmd


def execute(base: Path, runs: list[Run], out: Path, jobs: int, deadline: float | None,
            log=print) -> list[dict]:
    """Run every run not yet complete, ``jobs`` at a time; rows in plan order."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    status: dict[str, str] = {}
    pending = []
    for r in runs:
        if (out / r.name / "metrics.json").is_file():
            status[r.name] = "done"
        else:
            pending.append(r)
    active: dict[str, tuple[subprocess.Popen, object]] = {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # `kill PID` (SIGTERM) must stop the trainings too: without a handler Python dies without
    # running the `finally` below, and the orphans go on writing into run folders that a
    # restarted sweep would then train a second time, side by side
    with sigterm_as_exit():
        try:
            while pending or active:
                late = deadline is not None and time.time() - t0 > deadline
                while pending and len(active) < jobs and not late:
                    r = pending.pop(0)
                    (out / r.name).mkdir(exist_ok=True)
                    logf = open(out / r.name / "train.log", "a", encoding="utf-8")
                    cmd = _train_command(base, r, out)
                    active[r.name] = (subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                                       cwd=REPO_ROOT, env=env), logf)
                    log(f"[{time.time() - t0:6.0f}s] start {r.name}")
                for name, (proc, logf) in list(active.items()):
                    code = proc.poll()
                    if code is None and late:
                        proc.terminate()
                        try:
                            code = proc.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            code = proc.wait()
                        status[name] = "unfinished"
                    elif code is not None:
                        status[name] = "done" if code == 0 else f"failed (exit {code})"
                    if code is not None:
                        logf.close()
                        del active[name]
                        log(f"[{time.time() - t0:6.0f}s] {status[name]}: {name}")
                if late:
                    for r in pending:
                        status[r.name] = "not started"
                    pending = []
                time.sleep(1.0)
        finally:
            for proc, logf in active.values():
                proc.kill()
                proc.wait()
                logf.close()
    return [_row(r, out / r.name, status.get(r.name, "not started")) for r in runs]


class RayUnavailable(ConfigError):
    """Ray could not start or reach its cluster."""


def start_ray(address: str | None, jobs: int, cpus: float, gpus: float, tries: int = 2) -> None:
    """Join ``address``, or start a local instance with room for ``jobs`` runs. A local start
    on a loaded 2-core machine took 41 s and once timed out, so it is tried ``tries`` times."""
    import ray

    for attempt in range(1, tries + 1):
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, int(jobs * cpus)), num_gpus=gpus * jobs if gpus else 0,
                         include_dashboard=False, log_to_driver=False)
            return
        except Exception as e:  # noqa: BLE001  (Ray raises bare Exception, RuntimeError, ConnectionError)
            ray.shutdown()
            if attempt == tries:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise RayUnavailable(f"could not start or reach {where} ({tries} tries; last: "
                                     f"{type(e).__name__}: {str(e)[:200]}); run again, or use "
                                     "--backend process") from None


def execute_ray(base: Path, runs: list[Run], out: Path, jobs: int, deadline: float | None,
                address: str | None = None, cpus: float = 1, gpus: float = 0, log=print) -> list[dict]:
    """``execute`` on Ray: each run one task (``cpus`` and ``gpus`` its request) that runs the same
    ``python -m knowfree train`` command into the same run folder, so a sweep resumes and
    summarises alike on either backend. Without ``address`` a local Ray instance with ``jobs *
    cpus`` CPUs is started (at most ``jobs`` runs at once); with one, the cluster's scheduler
    decides. On a cluster every node needs this checkout at the same path and ``--out`` on a
    shared filesystem (or give Ray a runtime_env)."""
    import ray

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    status = {r.name: "done" for r in runs if (out / r.name / "metrics.json").is_file()}
    pending = [r for r in runs if r.name not in status]
    start_ray(address, jobs, cpus, gpus)

    @ray.remote
    def run_one(cmd: list[str], log_file: str, cwd: str, env: dict) -> int:
        with open(log_file, "a", encoding="utf-8") as logf:
            return subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=cwd, env=env).returncode

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        refs = {}
        for r in pending:
            (out / r.name).mkdir(exist_ok=True)
            refs[r.name] = run_one.options(num_cpus=cpus, num_gpus=gpus).remote(
                _train_command(base, r, out), str(out / r.name / "train.log"), str(REPO_ROOT), env)
            log(f"[{time.time() - t0:6.0f}s] submit {r.name}")
        names = {ref: name for name, ref in refs.items()}
        left = list(refs.values())
        while left:
            done, left = ray.wait(left, num_returns=1, timeout=1.0)
            for ref in done:
                code = ray.get(ref)
                status[names[ref]] = "done" if code == 0 else f"failed (exit {code})"
                log(f"[{time.time() - t0:6.0f}s] {status[names[ref]]}: {names[ref]}")
            if left and deadline is not None and time.time() - t0 > deadline:
                for ref in left:
                    ray.cancel(ref, force=True)
                    name = names[ref]
                    started = (out / name / "epochs.csv").is_file()
                    status[name] = "unfinished" if started else "not started"
                left = []
    finally:
        ray.shutdown()
    return [_row(r, out / r.name, status.get(r.name, "not started")) for r in runs]


def add_arguments(p) -> None:
    p.description = "Run a sweep of trainings in parallel processes."
    p.add_argument("sweep", help="sweep YAML (see configs/sweeps/)")
    p.add_argument("--out", required=True, type=path_given, help="folder for the run folders and summary.csv")
    p.add_argument("--jobs", type=int_at_least(1), default=1, help="runs at a time (default 1)")
    p.add_argument("--backend", choices=("process", "ray"), default="process",
                   help="process: a pool of local processes (default); ray: each run a Ray task")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --backend ray: an existing cluster (ray.init(address=...), e.g. auto); "
                        "default: start a local Ray instance with --jobs x --cpus-per-run CPUs")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="with --backend ray: CPUs each run asks for")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="with --backend ray: GPUs each run asks for")
    p.add_argument("--deadline", type=nonnegative_seconds, default=None,
                   help="seconds after which running runs are stopped and no new ones start")
    p.add_argument("--only", nargs="+", default=None, help="groups to run (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override for every run, after the sweep's own (e.g. where this "
                        "machine keeps the encoder: --set model.encoder=PATH)")
    p.add_argument("--dry-run", action="store_true", help="print the runs and exit")
    p.add_argument("--table", metavar="PREFIX", default=None, type=path_given,
                   help="also write PREFIX.csv and PREFIX.md: one line per setting (runs differing only in seed)")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: summarise the run folders already under --out")


def run(args) -> int:
    sweep_file = Path(args.sweep)
    sweep = yamlio.load_file(sweep_file, "sweep")
    try:
        runs = plan(sweep)
    except ConfigError as e:  # what plan() refuses is in this file
        raise ConfigError(f"{sweep_file}: {e}") from None
    for r in runs:
        r.overrides += args.set
    every_run = runs
    if args.only:
        unknown = set(args.only) - {r.group for r in runs}
        if unknown:
            raise ConfigError(f"--only names groups not in the sweep: {sorted(unknown)}")
        runs = [r for r in runs if r.group in args.only]
    base = Path(sweep["base"])
    if not base.is_file() and not base.is_absolute():
        base = REPO_ROOT / base  # sweep files name configs relative to the repository
    if not base.is_file():
        raise ConfigError(f"sweep base config {sweep['base']} does not exist")
    table_files = [("--table", Path(args.table).with_suffix(ext)) for ext in (".csv", ".md")] if args.table else []
    guard_outputs([("SWEEP", sweep_file), ("base", base)],
                  files=[("--out", Path(args.out) / "summary.csv"), *table_files], folders=[("--out", args.out)])
    check_configs(base, runs)
    if args.dry_run:
        for r in runs:
            print(r.name, " ".join(r.overrides))
        return 0
    out = Path(args.out)
    # the runs record the commit they were trained at; this sweep's own summary and tables
    # (rewritten after each stage, often tracked) are not a change to what they run
    os.environ.update(own_outputs_env([out / "summary.csv", *(f for _, f in table_files)]))
    if args.collect:
        rows = collect(runs, out)
    elif args.backend == "ray":
        rows = execute_ray(base, runs, out, args.jobs, args.deadline, args.ray_address,
                           args.cpus_per_run, args.gpus_per_run)
    else:
        rows = execute(base, runs, out, args.jobs, args.deadline)
    # the summary always has a row for every run of the sweep file: with --only, the other
    # groups' rows come from their folders as they are (a summary of the selected groups alone
    # dropped the rows of finished runs it did not touch)
    ran = {row["run"]: row for row in rows}
    every = [ran.get(r.name) or collect([r], out)[0] for r in every_run]
    path = write_summary(out, every)
    if args.table:
        write_table(Path(args.table), table(every), sweep_file, args.set)
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(f"{path}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + (f" of the groups {' '.join(args.only)}; {len(every)} rows in all" if args.only else ""))
    return 0 if all(r["status"] == "done" for r in rows) else 1

