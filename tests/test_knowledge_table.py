"""scripts/knowledge_table.py averages knowledge runs against gold only when they share the gold
recipe: a run that differs from its gold run in any key outside the allowed few, or in its dev
or test data, is refused with the run and the key named."""
import copy
import json
import sys

import pytest

from knowfree.provenance import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import knowledge_table as kt  # noqa: E402

CONFIG = {"data": {"dataset": "weibo", "k": 250, "train_file": None},
          "model": {"encoder": "m3e-small-offline", "max_span_length": 16},
          "train": {"epochs": 60, "encoder_lr": 5e-5, "seed": 0, "init_from": None}}
HASHES = {"dev": "d", "test": "t", "train": "gold"}


def run(tmp_path, name, config, hashes):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return {"run_dir": str(folder), "data_hashes": json.dumps(hashes)}


def test_allowed_keys_pass_and_others_are_named(tmp_path):
    gold = run(tmp_path, "gold", CONFIG, HASHES)
    variant = copy.deepcopy(CONFIG)
    variant["data"].update(k=None, train_file="fusion.jsonl.gz")
    variant["train"].update(epochs=6, init_from="llm-seed=0")
    kt.check_recipe(run(tmp_path, "ok", variant, {**HASHES, "train": "other"}), gold)

    variant["train"]["encoder_lr"] = 1e-4
    with pytest.raises(kt.RecipeMismatch, match="train.encoder_lr = 0.0001"):
        kt.check_recipe(run(tmp_path, "lr", variant, HASHES), gold)

    added = copy.deepcopy(CONFIG)
    added["model"]["window"] = 5  # a key the gold run does not have at all
    with pytest.raises(kt.RecipeMismatch, match="model.window"):
        kt.check_recipe(run(tmp_path, "added", added, HASHES), gold)


def test_other_dev_or_test_data_is_refused(tmp_path):
    gold = run(tmp_path, "gold", CONFIG, HASHES)
    with pytest.raises(kt.RecipeMismatch, match="test data"):
        kt.check_recipe(run(tmp_path, "test", CONFIG, {**HASHES, "test": "x"}), gold)


@pytest.mark.parametrize("k", sorted(kt.SETTINGS))
def test_committed_runs_share_the_gold_recipe(k):
    """Every finished run a committed table averages passes the check (skipped before its sweep ran)."""
    setting = kt.SETTINGS[k]
    (gold_file, gold_group), sweep_file = setting["gold"], setting["sweep"]
    if not (REPO_ROOT / sweep_file).is_file():
        pytest.skip(f"{sweep_file} not committed yet")
    gold = {r["seed"]: r for r in kt.read_runs(gold_file, {gold_group})}
    runs = kt.read_runs(sweep_file, {g for g, _ in kt.VARIANTS})
    assert runs and gold
    for r in runs:
        kt.check_recipe(r, gold[r["seed"]])
