"""Every committed sweep run folder is what its sweep file plans today: the config the sweep
builds (base config + the run's overrides) hashes to the config hash the run recorded. A change
of a base config's default (say, the Chinese encoder) that would silently re-define committed
runs fails here; the sweep files pin what their runs were trained with."""
import json
from pathlib import Path

import pytest

from knowfree import yamlio
from knowfree.provenance import REPO_ROOT
from knowfree.sweep import plan
from knowfree.config import config_hash, load_config

SWEEPS = REPO_ROOT / "results" / "sweeps"
# committed sweep result folder -> its sweep file
SWEEP_FILES = {p.name: REPO_ROOT / "configs" / "sweeps" / f"{p.name}.yaml"
               for p in sorted(SWEEPS.iterdir()) if p.is_dir()} if SWEEPS.is_dir() else {}


def finished_runs():
    for name, sweep_file in SWEEP_FILES.items():
        for metrics in sorted((SWEEPS / name).glob("*/metrics.json")):
            yield pytest.param(name, sweep_file, metrics.parent, id=f"{name}/{metrics.parent.name}")


@pytest.mark.parametrize("sweep, sweep_file, run_dir", list(finished_runs()))
def test_committed_run_is_what_its_sweep_plans(sweep, sweep_file, run_dir: Path):
    assert sweep_file.is_file(), f"results/sweeps/{sweep} has no sweep file {sweep_file}"
    spec = yamlio.load_file(sweep_file, "sweep")
    runs = {r.name: r for r in plan(spec)}
    assert run_dir.name in runs, f"{run_dir.name} is no longer planned by {sweep_file.name}"
    planned = load_config(REPO_ROOT / spec["base"], runs[run_dir.name].overrides)
    recorded = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    # A borrowed GPU machine trains from a packed copy of the encoder (--set model.encoder=PATH,
    # scripts/pack_encoder.py names it after the alias's family, e.g. .device/e5-weibo): the
    # same weights under another name, recorded as given.
    theirs, ours = recorded["model"]["encoder"], planned["model"]["encoder"]
    if theirs != ours and "/" in theirs and Path(theirs).name.startswith(ours.split("-")[0] + "-"):
        planned["model"]["encoder"] = theirs
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert config_hash(planned) == metrics["config_hash"]
