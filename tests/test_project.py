"""`knowfree init`: a user's file becomes a local dataset that every command takes by name. The
text of every span survives (character splitting, format conversion), splits are seeded and
disjoint, repairs are counted, the generated train/augment/params files pass the commands' own
validation and train, and what cannot work is refused with the flag to fix."""
import json

import pytest
import yaml

from knowfree import params as params_mod
from knowfree.__main__ import main
from knowfree.data import formats
from knowfree.data.project import init_project
from knowfree.data.registry import ChecksumError, open_dataset
from knowfree.data.sample import Sample, Span
from knowfree.errors import ConfigError, InputError
from knowfree.knowledge.augment_config import load_augment_config
from knowfree.train import train
from knowfree.config import load_config
from test_train import toy, toy_samples  # noqa: F401  (the fixture is used by name)


@pytest.fixture
def local(tmp_path, monkeypatch):
    root = tmp_path / "local"
    monkeypatch.setenv("KNOWFREE_LOCAL_DATA", str(root))
    return root


def span_texts(samples):
    return sorted((sp.label, "".join(s.tokens[sp.start:sp.end])) for s in samples for sp in s.spans)


def as_words(sample: Sample) -> Sample:
    """The same sentence with tokens of two characters where no span boundary is inside one."""
    cuts = {0, len(sample.tokens)} | {b for sp in sample.spans for b in (sp.start, sp.end)}
    bounds = sorted(cuts | set(range(0, len(sample.tokens), 2)))
    keep = [b for b in bounds if b in cuts or b % 2 == 0]
    words = ["".join(sample.tokens[a:b]) for a, b in zip(keep, keep[1:])]
    index = {b: i for i, b in enumerate(keep)}
    return Sample(words, [Span(index[sp.start], index[sp.end], sp.label) for sp in sample.spans], sample.id)


def test_one_file_becomes_a_dataset_that_trains_by_name(toy, local, tmp_path):  # noqa: F811
    samples = toy_samples(60, 3, "mine")
    words = [as_words(s) for s in samples]
    assert any(len(t) > 1 for s in words for t in s.tokens)
    formats.write(words, tmp_path / "mine.jsonl", "jsonl")
    before = (tmp_path / "mine.jsonl").read_bytes()
    r = init_project(tmp_path / "mine.jsonl", "my-domain", out=local / "my-domain")
    assert (tmp_path / "mine.jsonl").read_bytes() == before  # the input is only read
    assert r.lang == "zh" and set(r.labels) == {"PER", "LOC"}
    assert r.repairs["sentences split into characters"] > 0
    # every span keeps its text; splits are 48/6/6, disjoint, and cover the input
    loaded = open_dataset("my-domain").splits
    assert {k: len(v) for k, v in loaded.items()} == {"train": 48, "dev": 6, "test": 6}
    assert span_texts([s for v in loaded.values() for s in v]) == span_texts(samples)
    assert all(len(t) == 1 for v in loaded.values() for s in v for t in s.tokens)
    texts = [{"".join(s.tokens) for s in v} for v in loaded.values()]
    assert sum(map(len, texts)) == len({"".join(s.tokens) for s in samples})
    manifest = json.loads((local / "my-domain" / "dataset.json").read_text(encoding="utf-8"))
    assert manifest["source"]["all"]["sha256"] and manifest["nested"] is False
    # the generated files pass each command's own validation, and train.yaml trains
    params_mod.load(local / "my-domain" / "params.yaml")
    load_augment_config(local / "my-domain" / "augment.yaml")
    _, encoder = toy
    config = load_config(local / "my-domain" / "train.yaml",
                         [f"model.encoder={encoder}", "train.epochs=1", "model.channels=32",
                          "model.biaffine_heads=2", "model.attention_heads=4", "train.threads=1"])
    metrics = train(config, tmp_path / "run", progress=False)
    assert metrics["complete"] and metrics["data"]["dataset"]["dataset"] == "my-domain"
    assert metrics["data"]["counts"]["test"] == 6
    # a file changed after init is refused, not read as another dataset
    with open(local / "my-domain" / "test.jsonl", "a", encoding="utf-8") as f:
        f.write("\n")
    with pytest.raises(ChecksumError, match="changed after"):
        open_dataset("my-domain")


def test_a_folder_without_dev_gets_one_carved_and_labels_nesting_and_leaks_are_reported(local, tmp_path):
    train_set = toy_samples(40, 1, "tr")
    test_set = toy_samples(10, 2, "te") + train_set[:8]  # sentences that leak from train
    nested = Sample(list("王小明在东京"), [Span(0, 3, "PER"), Span(0, 6, "MISC"), Span(4, 6, "LOC")], "n")
    (tmp_path / "data").mkdir()
    formats.write(train_set + [nested] * 10, tmp_path / "data" / "train.jsonl", "jsonl")
    formats.write(test_set, tmp_path / "data" / "test.jsonl", "jsonl")
    r = init_project(tmp_path / "data", "folder-set", out=local / "folder-set", labels=["PER", "LOC"])
    assert r.repairs["spans of labels outside --labels dropped"] == 10  # the MISC spans
    kept = {"".join(x.tokens) for x in r.splits["train"]}
    leaks = sum("".join(x.tokens) in kept for x in r.splits["test"])
    assert leaks >= 1 and any(f"{leaks} test sentences also occur in train" in n for n in r.notes)
    assert any("no dev file" in n for n in r.notes)
    assert r.nested is False  # MISC dropped: the rest is flat
    assert len(r.splits["dev"]) == 5 and len(r.splits["train"]) == 45 and len(r.splits["test"]) == 18
    r2 = init_project(tmp_path / "data", "nested-set", out=local / "nested-set")
    assert r2.nested and "MISC" in r2.labels
    cfg = yaml.safe_load((local / "nested-set" / "train.yaml").read_text(encoding="utf-8"))
    assert cfg["model"]["flat"] is False
    report = (local / "folder-set" / "report.md").read_text(encoding="utf-8")
    assert "| train | 45 |" in report and "spans of labels outside --labels dropped: 10" in report


def test_what_cannot_work_is_refused_with_the_flag_to_fix(local, tmp_path, capsys):
    formats.write(toy_samples(20, 1, "x"), tmp_path / "x.jsonl", "jsonl")
    with pytest.raises(ConfigError, match="--name"):
        init_project(tmp_path / "x.jsonl", "Bad Name")
    with pytest.raises(ConfigError, match="registered dataset"):
        init_project(tmp_path / "x.jsonl", "weibo")
    with pytest.raises(ConfigError, match="--llm-url"):
        init_project(tmp_path / "x.jsonl", "x", out=local / "x", knowledge="llm")
    (local / "full").mkdir(parents=True)
    (local / "full" / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        init_project(tmp_path / "x.jsonl", "full", out=local / "full")
    assert (local / "full" / "mine.txt").read_text() == "keep"
    with pytest.raises(InputError, match="not empty"):  # the folder that holds the input
        init_project(tmp_path / "x.jsonl", "inside", out=tmp_path)
    # dev or test labels that train lacks
    (tmp_path / "d").mkdir()
    formats.write(toy_samples(20, 1, "a"), tmp_path / "d" / "train.jsonl", "jsonl")
    formats.write([Sample(list("东京"), [Span(0, 2, "CITY")], "t")], tmp_path / "d" / "test.jsonl", "jsonl")
    with pytest.raises(InputError, match="CITY"):
        init_project(tmp_path / "d", "d", out=local / "d")
    assert main(["init", str(tmp_path / "nothing.jsonl"), "--name", "n"]) == 1
    assert "DATA" in capsys.readouterr().err
    assert main(["init", str(tmp_path / "x.jsonl"), "--name", "ok", "--out", str(local / "ok")]) == 0
    assert "python -m knowfree train" in capsys.readouterr().out


def test_k_shot_reaches_train_augment_and_notebook_settings_alike(toy, local, tmp_path):  # noqa: F811
    """init --k-shot N: train.yaml and augment.yaml both draw the K-shot sampler's subset, and
    notebook 06's setting (experiment.prepare with k_shot) holds the same sentences."""
    from knowfree import experiment
    from knowfree.knowledge.pipeline import augment

    formats.write(toy_samples(60, 3, "mine"), tmp_path / "mine.jsonl", "jsonl")
    with pytest.raises(ConfigError, match="--k 10 and --k-shot 2"):
        init_project(tmp_path / "mine.jsonl", "both", out=local / "both", k=10, k_shot=2)
    assert main(["init", str(tmp_path / "mine.jsonl"), "--name", "shots", "--k-shot", "2",
                 "--out", str(local / "shots")]) == 0
    folder = local / "shots"
    train_cfg = yaml.safe_load((folder / "train.yaml").read_text(encoding="utf-8"))
    assert train_cfg["data"]["k_shot"] == 2 and train_cfg["data"]["k"] is None
    _, encoder = toy
    config = load_config(folder / "train.yaml", [f"model.encoder={encoder}", "train.epochs=1", "model.channels=32",
                                                 "model.biaffine_heads=2", "model.attention_heads=4",
                                                 "train.threads=1"])
    train(config, tmp_path / "run", progress=False)
    trained = json.loads((tmp_path / "run" / "subset.json").read_text(encoding="utf-8"))
    cfg = load_augment_config(folder / "augment.yaml")
    cfg["output"] = str(tmp_path / "augmented")
    fusion = augment(cfg).fusion
    setting = experiment.prepare("shots", 0, 42, tmp_path / "work", k_shot=2)
    assert trained["method"] == "k-shot" and trained["ids"] == [s.id for s in fusion] == \
        [s.id for s in setting.splits["train"]]
    assert setting.k == len(trained["ids"]) and "kshot2" in setting.folder.name
    counts = {}
    for s in fusion:
        for sp in s.targets():
            counts[sp.label] = counts.get(sp.label, 0) + 1
    assert min(counts.values()) >= 2


@pytest.mark.parametrize("folder", ["elsewhere/my-domain", "my-project"])
def test_the_printed_export_finds_the_dataset_wherever_out_puts_it(tmp_path, monkeypatch, capsys, folder):
    """`init --out FOLDER` prints the KNOWFREE_LOCAL_DATA that makes every command find the
    dataset by name: FOLDER's parent where FOLDER is named after the dataset, else FOLDER itself."""
    monkeypatch.delenv("KNOWFREE_LOCAL_DATA", raising=False)
    formats.write(toy_samples(20, 1, "x"), tmp_path / "x.jsonl", "jsonl")
    out = tmp_path / folder
    assert main(["init", str(tmp_path / "x.jsonl"), "--name", "my-domain", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    exports = [line.split("export KNOWFREE_LOCAL_DATA=", 1)[1] for line in printed.splitlines()
               if "export KNOWFREE_LOCAL_DATA=" in line]
    assert exports == [str((out.parent if out.name == "my-domain" else out).resolve())]
    with pytest.raises(Exception, match="my-domain"):  # not found before the export
        open_dataset("my-domain")
    monkeypatch.setenv("KNOWFREE_LOCAL_DATA", exports[0])
    assert len(open_dataset("my-domain").splits["train"]) == 16
    # another dataset's folder given as a root does not answer for this name
    monkeypatch.setenv("KNOWFREE_LOCAL_DATA", str(out))
    with pytest.raises(Exception, match="other-name"):
        open_dataset("other-name")
