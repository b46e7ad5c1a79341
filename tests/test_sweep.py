"""Sweeps: the plan is the product the file asks for, runs train in their own processes and
equal a plain `train` of the same config, a sweep run again trains nothing, a deadline stops
what is left, and the table aggregates finished seeds only."""
import csv
import json

import pytest
import yaml

from knowfree import yamlio
from knowfree.errors import ConfigError
from knowfree.provenance import REPO_ROOT
from knowfree.__main__ import call
from knowfree.sweep import _knowledge_of, plan
from knowfree.train import train
from knowfree.config import load_config

from test_train import toy, toy_config  # noqa: F401  (the fixture is used by name)


def test_plan_is_the_product_of_each_group_grid_with_later_sets_winning():
    runs = plan({"base": "b.yaml", "set": {"train.epochs": 3},
                 "groups": [{"name": "a", "set": {"train.epochs": 5},
                             "grid": {"model.head": ["knowfree", "cnn"], "train.seed": [0, 1]}},
                            {"name": "b", "grid": {"train.seed": [7]}}]})
    assert [r.name for r in runs] == ["a-head=knowfree-seed=0", "a-head=knowfree-seed=1",
                                      "a-head=cnn-seed=0", "a-head=cnn-seed=1", "b-seed=7"]
    assert runs[0].overrides == ["train.epochs=3", "train.epochs=5", 'model.head="knowfree"',
                                 "train.seed=0"]
    for bad in ({"groups": [{"name": "a"}]},                                  # no base
                {"base": "b", "groups": [{"grid": {"x": [1]}}]},              # no name
                {"base": "b", "groups": [{"name": "a", "grid": {"x": []}}]},  # empty axis
                {"base": "b", "groups": [{"name": "a"}, {"name": "a"}]},      # same run twice
                {"base": "b", "groups": [{"name": "a", "seeds": [1]}]},       # unknown key
                {"base": "b", "groups": []}):
        with pytest.raises(ConfigError):
            plan(bad)


def test_a_group_set_can_pair_each_run_with_the_same_seed_of_another_group():
    runs = plan({"base": "b", "groups": [
        {"name": "warm", "set": {"train.init_from": "out/fusion-seed={train.seed}", "train.epochs": 2},
         "grid": {"train.seed": [0, 2]}}]})
    assert [r.overrides[0] for r in runs] == ['train.init_from="out/fusion-seed=0"',
                                              'train.init_from="out/fusion-seed=2"']
    with pytest.raises(ConfigError, match=r"\{model.head\} names no key"):
        plan({"base": "b", "groups": [{"name": "w", "set": {"train.init_from": "x-{model.head}"},
                                       "grid": {"train.seed": [0]}}]})


def test_sweep_runs_equal_plain_training_and_are_not_repeated(toy, tmp_path):  # noqa: F811
    config = toy_config(toy, epochs=2)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": str(tmp_path / "base.yaml"),
        "groups": [{"name": "g", "grid": {"train.seed": [0, 1]}}]}), encoding="utf-8")
    out = tmp_path / "out"
    args = [str(tmp_path / "sweep.yaml"), "--out", str(out), "--jobs", "2"]
    assert call(["sweep"] + args + ["--table", str(tmp_path / "table")]) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["run"], r["status"], r["seed"]) for r in rows] == [("g-seed=0", "done", "0"),
                                                                  ("g-seed=1", "done", "1")]
    plain = train(config, tmp_path / "plain", progress=False)  # seed 0, in this process
    assert float(rows[0]["test_f1"]) == plain["test"]["f1"]
    assert float(rows[0]["dev_f1"]) == plain["dev"]["f1"]
    assert rows[0]["config_hash"] == plain["config_hash"]

    table = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(table) == 1 and table[0]["finished"] == "2"
    f1s = [100 * float(r["test_f1"]) for r in rows]
    assert table[0]["test_f1"].startswith(f"{sum(f1s) / 2:.2f} ± ")

    stamp = (out / "g-seed=0" / "metrics.json").stat().st_mtime_ns
    assert call(["sweep"] + args) == 0  # everything complete: nothing retrained
    assert (out / "g-seed=0" / "metrics.json").stat().st_mtime_ns == stamp


def test_deadline_reports_what_did_not_run(toy, tmp_path):  # noqa: F811
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(toy_config(toy, epochs=2)), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": str(tmp_path / "base.yaml"), "groups": [{"name": "g", "grid": {"train.seed": [0]}}]}),
        encoding="utf-8")
    code = call(["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out"), "--deadline", "0"])
    assert code == 1
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["not started"]


def test_collect_applies_a_provenance_file_to_every_row(toy, tmp_path):  # noqa: F811
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(toy_config(toy, epochs=1)), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": str(tmp_path / "base.yaml"), "groups": [{"name": "g", "grid": {"train.seed": [0]}}]}),
        encoding="utf-8")
    out = tmp_path / "out"
    assert call(["sweep", str(tmp_path / "sweep.yaml"), "--out", str(out)]) == 0
    (out / "provenance.json").write_text(json.dumps({"git_commit": "abc", "why": "test"}))
    assert call(["sweep", str(tmp_path / "sweep.yaml"), "--out", str(out), "--collect"]) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert rows[0]["git_commit"] == "abc" and rows[0]["status"] == "done"


def test_only_some_groups_keeps_every_row_of_the_summary(toy, tmp_path):  # noqa: F811
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(toy_config(toy, epochs=1)), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": str(tmp_path / "base.yaml"),
        "groups": [{"name": "a", "grid": {"train.seed": [0]}}, {"name": "b", "grid": {"train.seed": [0]}},
                   {"name": "c", "grid": {"train.seed": [0]}}]}), encoding="utf-8")
    out = tmp_path / "out"
    args = ["sweep", str(tmp_path / "sweep.yaml"), "--out", str(out), "--only"]
    assert call(args + ["a"]) == 0
    first = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["run"], r["status"]) for r in first] == [("a-seed=0", "done"), ("b-seed=0", "not started"),
                                                        ("c-seed=0", "not started")]
    assert call(args + ["b"]) == 0  # run b alone: a's finished row stays, as it was
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["run"], r["status"]) for r in rows] == [("a-seed=0", "done"), ("b-seed=0", "done"),
                                                       ("c-seed=0", "not started")]
    assert rows[0] == first[0]


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "configs" / "sweeps").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_sweeps_give_valid_trainer_configs(path):
    sweep = yamlio.load_file(path, "sweep")
    runs = plan(sweep)
    for r in runs:
        cfg = load_config(REPO_ROOT / sweep["base"], r.overrides)  # raises on a bad key or value
        train_file = cfg["data"]["train_file"]
        if train_file is not None:
            # a training set a shipped sweep names is committed, with the stats naming its source
            assert (REPO_ROOT / train_file).is_file(), f"{r.name}: {train_file} is not in the repository"
            knowledge, _ = _knowledge_of(str(REPO_ROOT / train_file))
            assert not knowledge.startswith("as in"), f"{r.name}: no stats.json beside {train_file}"



def test_a_terminated_sweep_stops_its_trainings(toy, tmp_path):  # noqa: F811
    """`kill PID` of a sweep: its training processes end with it (no orphan keeps writing a run
    folder that a restarted sweep would train again beside it), and the run resumes later."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(toy_config(toy, epochs=400)), encoding="utf-8")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "base": str(tmp_path / "base.yaml"), "groups": [{"name": "g", "grid": {"train.seed": [0]}}]}),
        encoding="utf-8")
    sweep = subprocess.Popen([sys.executable, "-m", "knowfree", "sweep", str(tmp_path / "sweep.yaml"),
                              "--out", str(tmp_path / "out")])
    child = []
    for _ in range(600):  # until the sweep has started its training process
        child = subprocess.run(["pgrep", "-P", str(sweep.pid)], capture_output=True, text=True).stdout.split()
        if child:
            break
        time.sleep(0.1)
    assert len(child) == 1
    time.sleep(2)
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=60) == 128 + signal.SIGTERM
    assert subprocess.run(["ps", "-p", child[0]], capture_output=True).returncode != 0  # gone
