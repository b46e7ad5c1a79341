"""Cross-validation (`python -m knowfree cv`): folds partition the training sentences, the chosen
epoch is the best of the fold-averaged dev curve, and the final model is the ordinary run with
that epoch's weights kept (train.select: N), which follows the same trajectory as a full run."""
import csv
import json

import pytest
from safetensors.torch import load_file

from knowfree import crossval
from knowfree.__main__ import main as knowfree_main
from knowfree.config import validate_config
from knowfree.data.formats import read, write
from knowfree.encoder import build_tiny_encoder
from knowfree.errors import ConfigError
from knowfree.train import train
from test_train import FILLER, PEOPLE, PLACES, toy_samples  # the toy sentences of the trainer tests


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    encoder = build_tiny_encoder(root / "encoder", [FILLER + "".join(PEOPLE + PLACES)])
    write(toy_samples(12, 0, "s"), root / "train.jsonl", "jsonl")
    write(toy_samples(6, 1, "t"), root / "test.jsonl", "jsonl")
    return root, encoder


def config(data, **train):
    root, encoder = data
    return {"data": {"train_file": str(root / "train.jsonl"), "test_file": str(root / "test.jsonl")},
            "model": {"encoder": encoder, "channels": 16, "biaffine_heads": 2, "attention_heads": 2,
                      "size_embedding": 8, "dropout": 0.1},
            "train": {"epochs": 4, "batch_size": 4, "encoder_lr": 1e-3, "head_lr": 5e-3, "threads": 1,
                      "length_buckets": 0, "select": "last", **train}}


@pytest.mark.parametrize("n,folds,seed", [(12, 3, 0), (13, 5, 1), (5, 5, 2)])
def test_folds_partition_the_sentences_evenly(n, folds, seed):
    parts = crossval.deal_folds(n, folds, seed)
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(n)) and len(parts) == folds
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == crossval.deal_folds(n, folds, seed)


def test_fold_counts_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="cannot fill 5 folds"):
        crossval.deal_folds(4, 5, 0)
    with pytest.raises(ConfigError, match="at least 2"):
        crossval.deal_folds(10, 1, 0)


def test_the_chosen_epoch_is_the_best_mean_over_common_epochs_ties_earlier():
    curves = [{2: 50.0, 4: 64.0, 6: 60.0}, {2: 70.0, 4: 60.0, 6: 60.0, 8: 99.0}]
    epoch, rows = crossval.choose_epoch(curves)
    assert [r["epoch"] for r in rows] == [2, 4, 6]  # 8 was scored by one fold only
    assert epoch == 4 and rows[1]["mean_dev_f1"] == 62.0
    tie = [{2: 50.0, 4: 60.0}, {2: 70.0, 4: 60.0}]  # both means 60: the earlier epoch
    assert crossval.choose_epoch(tie)[0] == 2


def test_select_n_keeps_epoch_n_on_the_trajectory_of_the_full_run(data, tmp_path):
    full = train(config(data, select="last"), run_dir=tmp_path / "full", progress=False)
    cut = train(config(data, select=2), run_dir=tmp_path / "cut", progress=False)
    assert full["best_epoch"] == 4 and cut["best_epoch"] == 2 and cut["epochs_run"] == 2
    rows = {name: list(csv.DictReader(open(tmp_path / name / "epochs.csv"))) for name in ("full", "cut")}
    for a, b in zip(rows["full"][:2], rows["cut"]):
        assert (a["train_loss"], a["lr_encoder"], a["lr_head"]) == (b["train_loss"], b["lr_encoder"], b["lr_head"])
    meta = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert meta["dev"] is None and meta["test"] is not None  # no dev set: nothing selected on test


def test_without_a_dev_set_best_dev_selection_is_a_clear_error(data):
    with pytest.raises(ConfigError, match="train.select: last"):
        validate_config(config(data, select="best_dev"))
    with pytest.raises(ConfigError, match="after the last one"):
        validate_config(config(data, select=9))
    with pytest.raises(ConfigError, match="patience"):
        validate_config(config(data, select=2, patience=1))


def test_cross_validation_end_to_end(data, tmp_path):
    root, _ = data
    cfg = config(data)
    del cfg["train"]["select"]
    record = crossval.cross_validate(cfg, tmp_path / "cv", folds=3, seed=7, progress=False)
    # the folds' dev sets are the training sentences, each once, never in their own fold's train
    all_ids = sorted(s.id for s in read(root / "train.jsonl", "jsonl").samples)
    dev_ids = []
    for i in range(3):
        dev = {s.id for s in read(tmp_path / "cv" / f"fold-{i}" / "dev.jsonl", "jsonl").samples}
        fold_train = {s.id for s in read(tmp_path / "cv" / f"fold-{i}" / "train.jsonl", "jsonl").samples}
        assert not dev & fold_train and sorted(dev | fold_train) == all_ids
        dev_ids += dev
    assert sorted(dev_ids) == all_ids
    # the chosen epoch is the best of the mean of the folds' own epochs.csv
    curves = []
    for i in range(3):
        with open(tmp_path / "cv" / f"fold-{i}" / "run" / "epochs.csv") as f:
            curves.append({int(r["epoch"]): 100 * float(r["dev_f1"]) for r in csv.DictReader(f) if r["dev_f1"]})
    means = {e: sum(c[e] for c in curves) / 3 for e in curves[0]}
    assert record["chosen_epoch"] == min(e for e in means if means[e] == max(means.values()))
    assert record["cv_dev_f1_per_fold"] == [c[record["chosen_epoch"]] for c in curves]
    # the final model is a run folder whose kept weights are those of the chosen epoch
    final = tmp_path / "cv" / "final"
    meta = json.loads((final / "metrics.json").read_text())
    assert meta["best_epoch"] == record["chosen_epoch"] and meta["data"]["counts"]["train"] == 12
    assert load_file(str(final / "model.safetensors"))  # loadable weights
    assert "Chosen epoch" in (tmp_path / "cv" / "cv.md").read_text()
    # a second call trains nothing and gives the same record
    again = crossval.cross_validate(cfg, tmp_path / "cv", folds=3, seed=7, progress=False)
    assert {k: v for k, v in again.items() if k != "git_commit"} == \
        {k: v for k, v in record.items() if k != "git_commit"}


def test_cli_refuses_one_fold_in_the_flags_terms(data, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(config(data)))
    with pytest.raises(SystemExit) as stop:
        knowfree_main(["cv", str(path), "--out", str(tmp_path / "o"), "--folds", "1"])
    assert stop.value.code == 2 and "--folds" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_runs_a_config_without_dev_set(data, tmp_path, capsys):
    cfg = config(data, epochs=2)
    del cfg["train"]["select"]
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    assert knowfree_main(["cv", str(path), "--out", str(tmp_path / "o"), "--folds", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "o" / "cv.json").read_text())
    assert f"chosen epoch {record['chosen_epoch']}" in out and (tmp_path / "o" / "final" / "metrics.json").is_file()
