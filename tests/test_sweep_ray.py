"""The Ray backend of `knowfree sweep`: each run one task of a local Ray instance the test starts;
the same run folders and summary as the process backend (bit-identical scores: the same command
runs), resumable (a finished run is not trained again), and a run that fails is reported."""
import csv

import pytest
import ray  # noqa: F401  (pinned: without it the environment is broken, which must not read as a skip)
import yaml

from knowfree.__main__ import call
from knowfree.sweep import RayUnavailable
from test_train import toy, toy_config  # noqa: F401  (the fixture is used by name)


def test_ray_backend_gives_the_process_backends_runs_and_resumes(toy, tmp_path):  # noqa: F811
    config = toy_config(toy, epochs=2)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": str(tmp_path / "base.yaml"),
        "groups": [{"name": "g", "grid": {"train.seed": [0, 1]}},
                   {"name": "bad", "set": {"train.batch_size": 0}, "grid": {"train.seed": [0]}}]}),
        encoding="utf-8")
    sweep = [str(tmp_path / "sweep.yaml"), "--jobs", "2"]
    try:
        code = call(["sweep"] + sweep + ["--out", str(tmp_path / "ray"), "--backend", "ray", "--only", "g"])
    except RayUnavailable as e:
        pytest.skip(f"Ray cannot start on this machine: {e}")
    assert code == 0
    assert call(["sweep"] + sweep + ["--out", str(tmp_path / "proc"), "--only", "g"]) == 0
    via_ray = list(csv.DictReader((tmp_path / "ray" / "summary.csv").open()))
    via_proc = list(csv.DictReader((tmp_path / "proc" / "summary.csv").open()))
    keys = ("run", "status", "seed", "best_epoch", "dev_f1", "test_f1", "config_hash", "data_hashes")
    assert [{k: r[k] for k in keys} for r in via_ray] == [{k: r[k] for k in keys} for r in via_proc]
    # resumable: run again, nothing is trained (the log of a finished run does not grow)
    log = tmp_path / "ray" / "g-seed=0" / "train.log"
    size = log.stat().st_size
    assert call(["sweep"] + sweep + ["--out", str(tmp_path / "ray"), "--backend", "ray", "--only", "g"]) == 0
    assert log.stat().st_size == size
    # a config no run could train with is refused before Ray starts
    with pytest.raises(Exception, match="batch_size"):
        call(["sweep"] + sweep + ["--out", str(tmp_path / "bad"), "--backend", "ray", "--only", "bad"])
