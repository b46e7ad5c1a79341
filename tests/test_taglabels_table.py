"""scripts/taglabels_table.py pairs an LLM-labelled and a tagger-labelled explanation run of the same
seed only when they differ in their training file alone and their sets share every sentence and
target span; its paired interval is the textbook paired t interval."""
import gzip
import json
import sys

import pytest

from knowfree.provenance import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import taglabels_table as tt  # noqa: E402

CONFIG = {"data": {"dataset": "weibo", "k": None}, "train": {"epochs": 20, "seed": 0, "init_from": "llm-seed=0"}}
SENTENCE = {"text": "马云在杭州", "id": "s0", "meta": {}}
TARGET = {"start": 0, "end": 2, "entity": "PER.NAM", "text": "马云"}


def make_run(tmp_path, name, entities, **train):
    folder = tmp_path / name
    folder.mkdir()
    data = folder / "syn_fusion.jsonl.gz"
    with gzip.open(data, "wt", encoding="utf-8") as f:
        f.write(json.dumps({**SENTENCE, "entities": entities}, ensure_ascii=False) + "\n")
    config = {"data": {**CONFIG["data"], "train_file": str(data)}, "train": {**CONFIG["train"], **train}}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return {"run_dir": str(folder)}


def test_extension_labels_may_differ_and_nothing_else(tmp_path):
    llm = make_run(tmp_path, "llm", [TARGET, {"start": 2, "end": 3, "entity": "ext.pos.ADP", "text": "在"}])
    tag = make_run(tmp_path, "tag", [TARGET, {"start": 3, "end": 5, "entity": "ext.ent.LOC", "text": "杭州"}])
    tt.check_pair(llm, tag)

    lr = make_run(tmp_path, "lr", [TARGET], encoder_lr=1e-4)
    with pytest.raises(tt.PairMismatch, match="train.encoder_lr = 0.0001"):
        tt.check_pair(llm, lr)

    moved = make_run(tmp_path, "moved", [{**TARGET, "end": 1}])
    with pytest.raises(tt.PairMismatch, match="target"):
        tt.check_pair(llm, moved)


def test_paired_interval():
    # differences 1, 2, 3: mean 2, sample std 1, t(0.975, 2 df) = 4.303
    d, lo, hi = tt.paired_t([10.0, 20.0, 30.0], [11.0, 22.0, 33.0])
    assert d == pytest.approx(2.0)
    assert (lo, hi) == pytest.approx((2 - 4.303 / 3 ** 0.5, 2 + 4.303 / 3 ** 0.5), abs=1e-3)


def test_committed_pairs_check():
    """The committed sweep's pairs pass the check (skipped before the sweep is committed)."""
    if not (REPO_ROOT / tt.SUMMARY).is_file():
        pytest.skip(f"{tt.SUMMARY} not committed yet")
    llm = sorted(tt.read_runs(tt.SUMMARY, {tt.LLM_LABELS}), key=lambda r: int(r["seed"]))
    tag = sorted(tt.read_runs(tt.SUMMARY, {tt.TAGGER_LABELS}), key=lambda r: int(r["seed"]))
    assert llm and [r["seed"] for r in llm] == [r["seed"] for r in tag]
    for a, b in zip(llm, tag):
        tt.check_pair(a, b)
