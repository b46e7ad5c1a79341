"""`python -m knowfree reproduce [--params FILE]`: run the numbered notebooks with papermill.

The parameter file is validated, and every notebook it enables is checked to declare the keys
it will receive, before the first notebook starts. Notebooks run in their numbered order,
each executed copy saved as ``results/runs/<run_name>/<notebook>.ipynb``; they write their
tables and figures under ``results_dir`` themselves (knowfree.results.Recorder). The runner
then records the command in ``<results_dir>/index.json`` and regenerates
``<results_dir>/README.md``. A file that names no ``results_dir`` writes into ``results/``.
The first failing notebook stops the run, and a failed run is not recorded in the index.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

from knowfree import params as P
from knowfree.errors import ConfigError
from knowfree.provenance import REPO_ROOT, atomic_write_json, git_commit, guard_outputs
from knowfree.results import record_run, run_dir, write_readme

DEFAULT_PARAMS = "params/default.yaml"
# Where results go when a parameter file does not say: the committed results folder.
DEFAULT_RESULTS_DIR = "results"


def resolve_params_path(path: str) -> Path:
    """A path as given, else relative to the repository root (``make`` runs from there)."""
    p = Path(path)
    if p.exists() or p.is_absolute():
        return p
    return REPO_ROOT / p


def _shown(path: Path) -> str:
    """A path as the user would type it from the repository root."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def plan(params: P.Params, only: list[str] | None = None) -> list[dict]:
    """What would run: notebook, input, output and the parameters papermill injects."""
    import papermill

    names = params.selected()
    if only:
        def named(n: str, o: str) -> bool:
            return n == o or n.startswith(o + "_")

        unknown = [o for o in only if not any(named(n, o) for n in P.NOTEBOOKS)]
        if unknown:
            raise ConfigError(f"--only: no notebook named {', '.join(unknown)} "
                              f"(notebooks: {', '.join(P.NOTEBOOKS)})")
        off = [o for o in only if not any(named(n, o) for n in names)]
        if off:
            raise ConfigError(f"--only: {', '.join(off)} not enabled by {params.source} "
                              f"(enabled: {', '.join(names)})")
        names = [n for n in names if any(named(n, o) for o in only)]
    steps, problems = [], []
    for name in names:
        path = P.NOTEBOOK_DIR / f"{name}.ipynb"
        if not path.exists():
            problems.append(f"{name}: notebook file {path} is missing")
            continue
        values = params.for_notebook(name)
        values.setdefault("results_dir", DEFAULT_RESULTS_DIR)
        declared = set(papermill.inspect_notebook(str(path)))
        undeclared = sorted(set(values) - declared)
        if undeclared:
            problems.append(f"{name}: its parameters cell does not define {', '.join(undeclared)}")
        steps.append({"notebook": name, "input": path,
                      "output": run_dir(params.run_name) / f"{name}.ipynb", "parameters": values})
    if problems:
        raise P.ParamsError(params.source, problems)
    return steps


def execute(params: P.Params, steps: list[dict], command: str) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = run_dir(params.run_name)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # the commit and its dirty state are taken once, now: the notebooks write tracked tables
    # under results/, and a later notebook must not read its predecessors' output as dirt
    commit = git_commit()
    os.environ["KNOWFREE_RUN_COMMIT"] = commit
    manifest = {"params_file": params.source, "params_hash": params.hash, "command": command,
                "git_commit": commit, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "notebooks": {}}
    status = 0
    for step in steps:
        name = step["notebook"]
        if params.train_ahead and name in P.TRAINING_NOTEBOOKS and "train_ahead" not in manifest:
            try:
                manifest["train_ahead"] = _train_ahead(
                    params, [s for s in steps if s["notebook"] in P.TRAINING_NOTEBOOKS])
            except Exception as e:  # noqa: BLE001 - recorded in run.json and reported, then stop
                manifest["train_ahead"] = {"result": f"failed: {type(e).__name__}: {e}"}
                print(f"[reproduce] training ahead failed: {type(e).__name__}: {e}", file=sys.stderr)
                status = 1
                break
        print(f"[reproduce] {name} -> {_shown(step['output'])}", flush=True)
        t0 = time.time()
        try:
            papermill.execute_notebook(str(step["input"]), str(step["output"]),
                                       parameters=step["parameters"], kernel_name="python3",
                                       cwd=str(P.NOTEBOOK_DIR), progress_bar=sys.stderr.isatty())
            result = "ok"
        except PapermillExecutionError as e:
            result = f"failed in cell {e.exec_count}: {e.ename}: {e.evalue}"
            status = 1
        seconds = round(time.time() - t0, 1)
        manifest["notebooks"][name] = {"seconds": seconds, "result": result}
        print(f"[reproduce] {name}: {result} ({seconds:.0f} s)", flush=True)
        if status:
            print(f"[reproduce] stopped: the executed notebook with the error is "
                  f"{step['output']}", file=sys.stderr)
            break
    manifest["wall_s"] = round(time.time() - started, 1)
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    manifest["result"] = "ok" if status == 0 else "failed"
    atomic_write_json(out / "run.json", manifest)
    if status == 0:
        for results_dir in dict.fromkeys(s["parameters"]["results_dir"] for s in steps):
            where = REPO_ROOT / results_dir
            record_run(where, params.run_name, {k: manifest[k] for k in
                                                ("command", "params_file", "params_hash",
                                                 "git_commit", "finished", "wall_s")})
            print(f"[reproduce] index: {_shown(write_readme(where))}")
    return status


def notebook_values(step: dict) -> dict:
    """The parameters a notebook of ``plan`` will run with: its parameters cell, then the values
    papermill injects, checked as the notebook checks them (``params.collect``)."""
    cells = json.loads(Path(step["input"]).read_text(encoding="utf-8"))["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), namespace)  # the repository's own notebook: plain assignments
    namespace.update(step["parameters"])
    return P.collect(step["notebook"], namespace)


def _train_ahead(params: P.Params, steps: list[dict]) -> dict:
    """Every run of the training notebooks ahead of them, ``params.train_ahead`` at a time."""
    print(f"[reproduce] training the runs of {', '.join(s['notebook'] for s in steps)} ahead, "
          f"{params.train_ahead} at a time", flush=True)
    t0 = time.time()
    trained = train_ahead([(s["notebook"], notebook_values(s)) for s in steps],
                          run_dir(params.run_name) / "work", params.train_ahead)
    seconds = round(time.time() - t0, 1)
    print(f"[reproduce] trained ahead: {len(trained)} run(s) ({seconds:.0f} s)", flush=True)
    return {"seconds": seconds, "jobs": params.train_ahead, "runs": [f.name for f in trained]}


def train_ahead(notebooks: list[tuple[str, dict]], work_dir: Path, jobs: int, progress: bool = True) -> list[Path]:
    """Train now, ``jobs`` at a time in spawned processes, every run that the notebooks
    ``(name, parameters)`` (02's pseudo-label model, 03, 04, 05) will ask for, exactly as each
    will ask for it, so that each notebook then finds its runs complete and only reads them.
    Returns the run folders trained.

    Why: a notebook trains one run at a time, or its own grid side by side; notebook 03's single
    run keeps only about 1.1 of 2 cores busy while notebook 04's runs wait their turn. Trained
    ahead, all of them share the cores from the start. Each run's config (thread count included)
    is the one its notebook plans: notebook 03's as given, with its weights (the notebook predicts
    with them); a grid's as ``train_many`` would train it (``threads // jobs`` of the grid's own
    ``jobs``, or as given where that run is complete or trained here already), scores only.

    With synthesis the explanation sets need their labeller first (``experiment.labeller``), so
    the runs go in two waves: the labellers side by side with every run on a set without
    explanation sentences, then the runs on the explanation sets."""
    from knowfree import experiment as E

    trained: list[Path] = []
    for wave in (1, 2):
        wanted: dict[Path, tuple[dict, bool]] = {}  # folder -> (config, keep weights)
        for name, values in notebooks:
            if wave == 1:
                for config, folder in _labellers(name, values, work_dir, progress):
                    wanted.setdefault(folder, (config, True))
                values = {**values, "synthesis": False}
            if name == "02_llm_augmentation":
                continue  # its only run is the labeller
            if name == "03_training":
                if wave == 1 and values["train_set"] in E.SYNTHETIC_SETS:
                    continue
                run = E.single_run(values, work_dir, progress)
                wanted.setdefault(E.run_folder(run.config, work_dir, run.label), (run.config, True))
                continue
            if wave == 1:
                values = {**values, "variants": [v for v in values["variants"]
                                                 if E.VARIANTS[v][0] not in E.SYNTHETIC_SETS]}
                if not values["variants"]:
                    continue
            datasets = [values["dataset"]] if "dataset" in values else list(values["datasets"])
            planned, _, _ = E.plan_grid(datasets, values, work_dir, progress)
            for config, label in planned:
                # a run trained here already counts as complete, as it will be when the grid runs
                config, folder = E.as_grid_trains(config, work_dir, label, values.get("jobs", 1),
                                                  ready=lambda f: f in wanted or E.is_complete(f))
                wanted.setdefault(folder, (config, False))
        todo = {folder: job for folder, job in wanted.items() if not E.is_complete(folder)}
        if todo:
            E.train_in_workers(todo, max(1, jobs), progress)
        trained += list(todo)
    return trained


def _labellers(name: str, values: dict, work_dir: Path, progress: bool) -> list[tuple[dict, Path]]:
    """The pseudo-label models (``experiment.labeller``) that notebook ``name``'s augmentations
    will train, as ``(config, run folder)``: one per setting it augments with synthesis on."""
    from knowfree import experiment as E

    if not values.get("synthesis") or values["knowledge"] == "none":
        return []
    if name in ("02_llm_augmentation", "03_training"):
        if values.get("train_set") == "gold":
            return []  # notebook 03 augments nothing for a gold run
        settings, seed = [(values["dataset"], values["k"])], values["seed"]
    else:
        if {E.VARIANTS[v][0] for v in values["variants"]} == {"gold"}:
            return []  # a grid of gold runs augments nothing
        datasets = [values["dataset"]] if "dataset" in values else list(values["datasets"])
        settings, seed = [(d, k) for d in datasets for k in values["ks"]], values["seeds"][0]
    out = []
    for dataset, k in settings:
        setting = E.prepare(dataset, k, values["sample_seed"], work_dir, values["max_len"], values["eval_limit"])
        know = E.augment(setting, {**values, "synthesis": False}, work_dir, seed, progress)
        config, label = E.labeller(setting, know.sets["fusion"][0], values, seed)
        out.append((config, E.run_folder(config, work_dir, label)))
    return out


def add_arguments(ap) -> None:
    ap.description = "Run the numbered notebooks with papermill under one parameter file."
    ap.add_argument("--params", default=DEFAULT_PARAMS, help=f"parameter file (default {DEFAULT_PARAMS})")
    ap.add_argument("--only", help="comma-separated notebooks to run among those the file "
                                   "enables, by name or number (e.g. 01,03)")
    ap.add_argument("--dry-run", action="store_true",
                    help="validate the file and the notebooks, print the plan, run nothing")


def run(args) -> int:
    path = resolve_params_path(args.params)
    params = P.load(path)
    # `--only ""` names no notebook: refused by plan(), not read as "all of them"
    steps = plan(params, args.only.split(",") if args.only is not None else None)
    command = f"python -m knowfree reproduce --params {shlex.quote(_shown(path))}"
    if args.only:
        command += f" --only {args.only}"
    print(f"[reproduce] {params.source}: run {params.run_name!r}, params hash {params.hash}, "
          f"{len(steps)} notebook(s)")
    results = [REPO_ROOT / d for d in dict.fromkeys(s["parameters"]["results_dir"] for s in steps)]
    guard_outputs([("--params", path), *(("notebook", s["input"]) for s in steps)],
                  files=[*(("executed notebook", s["output"]) for s in steps),
                         ("run record", run_dir(params.run_name) / "run.json"),
                         *(("results index", r / n) for r in results for n in ("index.json", "README.md"))])
    if args.dry_run:
        for s in steps:
            print(f"  {s['notebook']} -> {s['output']}")
            for k, v in sorted(s["parameters"].items()):
                print(f"      {k} = {v!r}")
        return 0
    return execute(params, steps, command)

