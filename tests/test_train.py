"""Trainer (fault numbers as in docs/faults.md): it learns, it is deterministic and resumable,
it selects on dev (fault 1), it never truncates (fault 8), it reshuffles every epoch from a
seed (fault 11), and bad configs fail with a message that names the key."""
import csv
import json
import random
from collections import Counter

import pytest
import torch
import yaml
from safetensors.torch import load_file

import knowfree.train as train_mod
from knowfree.__main__ import main as knowfree_main
from knowfree.data.formats import write
from knowfree.data.sample import Sample, Span
from knowfree.data.schema import LabelSchema
from knowfree.encoder import TokenEncoder, build_tiny_encoder
from knowfree.errors import ConfigError
from knowfree.model import ModelConfig, build_model
from knowfree.predict import split_long
from knowfree.provenance import REPO_ROOT
from knowfree.train import make_batches, train
from knowfree.config import load_config, validate_config

FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过"
PEOPLE = ["王小明", "赵丽", "孙悟空"]
PLACES = ["东京", "巴黎市"]
SMALL_MODEL = {"channels": 32, "biaffine_heads": 2, "attention_heads": 4, "size_embedding": 8,
               "dropout": 0.1}


def toy_samples(n, seed, prefix):
    """Short sentences of filler characters with one or two people / places in them."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        tokens, spans = [], []
        for _ in range(r.randint(1, 2)):
            tokens += r.choices(FILLER, k=r.randint(1, 4))
            label, name = ("PER", r.choice(PEOPLE)) if r.random() < 0.6 else ("LOC", r.choice(PLACES))
            spans.append(Span(len(tokens), len(tokens) + len(name), label))
            tokens += list(name)
        tokens += r.choices(FILLER, k=r.randint(1, 3))
        out.append(Sample(tokens, spans, id=f"{prefix}-{i}"))
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Tiny encoder folder and train/dev/test JSONL files; dev is the training set itself, so
    dev F1 is training F1 (what the overfitting test needs)."""
    root = tmp_path_factory.mktemp("toy")
    encoder = build_tiny_encoder(root / "encoder", [FILLER + "".join(PEOPLE + PLACES)])
    train_set = toy_samples(16, 0, "train")
    write(train_set, root / "train.jsonl", "jsonl")
    write([Sample(s.tokens, s.spans, id=s.id.replace("train", "dev")) for s in train_set],
          root / "dev.jsonl", "jsonl")
    write(toy_samples(8, 1, "test"), root / "test.jsonl", "jsonl")
    return root, encoder


def toy_config(toy, **train_opts):
    root, encoder = toy
    return {
        "data": {"train_file": str(root / "train.jsonl"), "dev_file": str(root / "dev.jsonl"),
                 "test_file": str(root / "test.jsonl")},
        "model": {"encoder": encoder, **SMALL_MODEL},
        "train": {"epochs": 4, "batch_size": 4, "encoder_lr": 1e-3, "head_lr": 5e-3,
                  "warmup": 0.1, "length_buckets": 2,
                  # one thread: a tiny model on a busy machine is slower with more
                  "threads": 1, **train_opts},
    }


def weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def without_times(history):
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in history]


# --- learning ---------------------------------------------------------------------------------

def test_knowfree_head_overfits_16_sentences(toy, tmp_path):
    metrics = train(toy_config(toy, epochs=30), tmp_path / "run", progress=False)
    assert metrics["dev"]["f1"] == 1.0  # dev is the training set
    assert metrics["n_train"] == 16
    assert metrics["data"]["windows"]["train"]["long_samples"] == 0
    for key in ("config_hash", "git_commit", "wall_seconds", "best_epoch", "encoder"):
        assert key in metrics
    assert set(metrics["data"]["hashes"]) == {"train", "dev", "test"}
    rows = list(csv.DictReader(open(tmp_path / "run" / "epochs.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 31))
    assert {"train_loss", "dev_p", "dev_r", "dev_f1", "lr_encoder", "lr_head", "seconds"} <= set(rows[0])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


# --- determinism and resumption (fault 11 in docs/faults.md) ----------------------------------

@pytest.fixture(scope="module")
def reference_run(toy, tmp_path_factory):
    """One uninterrupted 4-epoch run, trained through the command line."""
    root = tmp_path_factory.mktemp("ref")
    (root / "config.yaml").write_text(yaml.safe_dump(toy_config(toy, epochs=3)), encoding="utf-8")
    code = knowfree_main(["train", str(root / "config.yaml"), "--set", "train.epochs=4",
                          "--run-dir", str(root / "run"), "--no-progress"])
    assert code == 0
    return root / "run", json.loads((root / "run" / "metrics.json").read_text())


def test_same_seed_gives_identical_metrics_and_weights(toy, reference_run, tmp_path):
    run_dir, reference = reference_run
    again = train(toy_config(toy, epochs=4), tmp_path / "run", progress=False)
    assert again["dev"] == reference["dev"] and again["test"] == reference["test"]
    assert again["config_hash"] == reference["config_hash"]
    assert same_weights(weights(tmp_path / "run"), weights(run_dir))

    other = train(toy_config(toy, epochs=4, seed=1), tmp_path / "other", progress=False)
    assert not same_weights(weights(tmp_path / "other"), weights(run_dir))
    assert other["config_hash"] != reference["config_hash"]


def test_stopped_run_resumes_to_the_uninterrupted_result(toy, reference_run, tmp_path):
    run_dir, reference = reference_run
    partial = train(toy_config(toy, epochs=4), tmp_path / "run", progress=False, stop_after=1)
    assert partial["complete"] is False and partial["epoch"] == 1
    assert not (tmp_path / "run" / "metrics.json").exists()
    resumed = train(toy_config(toy, epochs=4), tmp_path / "run", progress=False)
    assert resumed["dev"] == reference["dev"] and resumed["test"] == reference["test"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert same_weights(weights(tmp_path / "run"), weights(run_dir))
    state = torch.load(tmp_path / "run" / "checkpoints" / "state-0004.pt", weights_only=True)
    ref_state = torch.load(run_dir / "checkpoints" / "state-0004.pt", weights_only=True)
    assert without_times(state["history"]) == without_times(ref_state["history"])


def test_sparse_checkpoints_select_and_resume_like_every_epoch(toy, reference_run, tmp_path):
    """checkpoint_every=3 of 4 epochs: the selected weights wait in memory until epoch 3 or
    the end, a run stopped at epoch 2 resumes from epoch 2's checkpoint (stop_after always
    writes one), and the result equals the every-epoch reference."""
    run_dir, reference = reference_run
    config = toy_config(toy, epochs=4)
    config["output"] = {"checkpoint_every": 3}
    partial = train(config, tmp_path / "run", progress=False, stop_after=2)
    assert partial["epoch"] == 2
    assert json.loads((tmp_path / "run" / "checkpoints" / "last.json").read_text())["epoch"] == 2
    resumed = train(config, tmp_path / "run", progress=False)
    assert resumed["config_hash"] == reference["config_hash"]  # output options are not hashed
    assert resumed["dev"] == reference["dev"] and resumed["test"] == reference["test"]
    assert resumed["best_epoch"] == reference["best_epoch"]
    assert same_weights(weights(tmp_path / "run"), weights(run_dir))


def test_completed_run_is_not_retrained_and_other_config_is_refused(toy, reference_run):
    run_dir, reference = reference_run
    again = train(toy_config(toy, epochs=4), run_dir, progress=False)
    assert again["wall_seconds"] == reference["wall_seconds"]  # read back, not retrained
    with pytest.raises(ConfigError, match="another config"):
        train(toy_config(toy, epochs=5), run_dir, progress=False)


def test_batches_reshuffle_every_epoch_from_the_seed():
    r = random.Random(3)
    lengths = [r.randint(1, 60) for _ in range(100)]

    def epochs(seed, buckets, n=3):
        gen = torch.Generator().manual_seed(seed)
        return [make_batches(lengths, 8, buckets, gen) for _ in range(n)]

    for buckets in (0, 4):
        first = epochs(0, buckets)
        assert first == epochs(0, buckets)  # seeded
        assert first[0] != first[1] != first[2]  # a fresh order every epoch
        assert first != epochs(1, buckets)
        for batches in first:
            assert sorted(i for b in batches for i in b) == list(range(100))
            assert len(batches) == 13
    # bucketing: batches hold similar lengths, far less spread than random batches
    spread = lambda bs: sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in bs)
    assert spread(epochs(0, 4, 1)[0]) < 0.5 * spread(epochs(0, 0, 1)[0])


def test_synthetic_weight_reaches_the_batch_weights(toy):
    """Fault 3 in docs/faults.md: down-weighting synthetic samples must reach the loss, per
    sample."""
    _, encoder_dir = toy
    gold = toy_samples(2, 0, "gold")
    synthetic = [Sample(s.tokens, s.spans, id=f"syn-{i}", synthetic=True, weight=0.5)
                 for i, s in enumerate(toy_samples(2, 1, "x"))]
    weighed = train_mod.weigh_synthetic(gold + synthetic, 0.2)
    assert [s.weight for s in weighed] == [1.0, 1.0, 0.1, 0.1]
    assert synthetic[0].weight == 0.5  # the loaded data are not modified
    schema = LabelSchema.from_samples(gold, targets=["LOC", "PER"])
    model = build_model(ModelConfig(encoder=encoder_dir, **SMALL_MODEL), schema)
    assert model.collate(weighed)["weights"].tolist() == pytest.approx([1.0, 1.0, 0.1, 0.1])


def test_a_weight_preset_sets_both_weights_and_is_recorded(toy, tmp_path):
    root, _ = toy
    train_set = toy_samples(8, 0, "train")
    train_set = [s.with_spans(list(s.spans) + [Span(0, 1, "ext.名词")]) for s in train_set]
    train_set += [Sample(s.tokens, s.spans, id=f"syn-{i}", synthetic=True, weight=0.5)
                  for i, s in enumerate(toy_samples(4, 3, "syn"))]
    write(train_set, tmp_path / "train.jsonl", "jsonl")
    cfg = toy_config(toy, epochs=1, weight_preset="authors_notes_resume_0.15")
    cfg["data"]["train_file"] = str(tmp_path / "train.jsonl")
    metrics = train(cfg, tmp_path / "run", progress=False)
    assert metrics["weights"]["preset"] == "authors_notes_resume_0.15"
    assert metrics["weights"]["synthetic_weight"] == 0.15
    assert metrics["weights"]["extension_rule"]["rule"] == "count"
    assert train_mod.weigh_synthetic(train_set, 0.15, absolute=True)[-1].weight == 0.15

    flat = toy_config(toy, epochs=1, weight_preset="authors_notes_flat")
    flat["data"]["train_file"] = str(tmp_path / "train.jsonl")
    train(flat, tmp_path / "flat", progress=False)
    schema = LabelSchema.load(tmp_path / "flat" / "schema.json")
    assert [l.weight for l in schema.labels if l.kind == "extension"] == [0.13]

    for bad, message in [({"weight_preset": "authors_cod"}, "did you mean 'authors_code'"),
                         ({"weight_preset": "project", "synthetic_weight": 0.3}, "leave data.extension_weight_rule")]:
        with pytest.raises(ConfigError, match=message):
            validate_config(toy_config(toy, **bad))


# --- model selection on dev, never test (fault 1 in docs/faults.md) ---------------------------

def scripted_evaluation(monkeypatch, dev_f1):
    """Replace the scorer: dev F1 follows ``dev_f1`` by epoch; every call is logged with a copy
    of the weights it scored."""
    calls = []

    def fake(model, samples, batch_size, device, precision):
        split = samples[0].id.split("-")[0]
        n_dev = sum(1 for c in calls if c[0] == "dev")
        calls.append((split, {k: v.clone() for k, v in model.state_dict().items()}))
        f1 = dev_f1[n_dev] if split == "dev" else 0.5
        return {"precision": f1, "recall": f1, "f1": f1}

    monkeypatch.setattr(train_mod, "_evaluate", fake)
    return calls


def test_checkpoint_is_selected_on_dev_and_test_scored_once(toy, tmp_path, monkeypatch):
    calls = scripted_evaluation(monkeypatch, [0.2, 0.9, 0.5, 0.7])
    metrics = train(toy_config(toy, epochs=4), tmp_path / "run", progress=False)
    assert [c[0] for c in calls] == ["dev"] * 4 + ["test"]
    assert metrics["best_epoch"] == 2 and metrics["dev"]["f1"] == 0.9
    # test scored the weights dev chose (epoch 2), not the last ones
    assert same_weights(calls[-1][1], calls[1][1])
    assert not same_weights(calls[-1][1], calls[3][1])


def test_early_stopping_on_dev_f1(toy, tmp_path, monkeypatch):
    calls = scripted_evaluation(monkeypatch, [0.5, 0.6, 0.6, 0.4, 0.7, 0.8])
    metrics = train(toy_config(toy, epochs=6, patience=2), tmp_path / "run", progress=False)
    assert metrics["epochs_run"] == 4 and metrics["stopped_early"]
    assert metrics["best_epoch"] == 2
    assert [c[0] for c in calls] == ["dev"] * 4 + ["test"]


# --- no truncation (fault 8 in docs/faults.md) ------------------------------------------------

def test_long_training_sentences_become_windows_without_losing_spans(toy):
    _, encoder_dir = toy
    tokens = list(random.Random(0).choices(FILLER, k=300)) + ["王", "小", "明"] + \
        list(random.Random(1).choices(FILLER, k=60))
    long = Sample(tokens, [Span(300, 303, "PER"), Span(0, 2, "LOC")], id="long")
    schema = LabelSchema.from_samples([long], targets=["LOC", "PER"])
    model = build_model(ModelConfig(encoder=encoder_dir, **SMALL_MODEL), schema,
                        encoder=TokenEncoder(encoder_dir, max_pieces=66))
    short = toy_samples(3, 0, "short")
    out, stats = split_long(model, short + [long])
    assert out[:3] == short
    windows = out[3:]
    assert stats["long_samples"] == 1 and stats["windows"] == len(windows) >= 6
    assert stats["spans_lost"] == 0
    assert all(len(w) <= 64 for w in windows)
    covered = {i for w in windows for i in range(w.meta["window"][0], w.meta["window"][1])}
    assert covered == set(range(len(tokens)))
    found = {(w.meta["window"][0] + s.start, w.meta["window"][0] + s.end, s.label)
             for w in windows for s in w.spans}
    assert found == {(300, 303, "PER"), (0, 2, "LOC")}


# --- configs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"train": {"epoch": 3}}, r"unknown config key 'train.epoch'; did you mean 'epochs'"),
    ({"trian": {}}, r"unknown config key 'trian'"),
    ({"train": {"batch_size": "8"}}, r"'train.batch_size' must be int.*got str '8'"),
    ({"train": {"epochs": True}}, r"'train.epochs' must be int"),
    ({"train": {"epochs": 0}}, r"'train.epochs' must be > 0"),
    ({"train": {"warmup": 1.5}}, r"train.warmup.*fraction"),
    ({"model": {"hed": "cnn"}}, r"unknown config key 'model.hed'; did you mean 'head'"),
    ({"model": {"head": "crf"}}, r"'model.head' must be one of 'knowfree', 'cnn' or 'tagger', got str 'crf'"),
    ({"data": {"dataset": "weibo", "dev_file": None}}, r"go with data.train_file, not data.dataset"),
    ({"data": {"dataset": "weibo", "dev_file": None, "test_file": None, "k": 250}}, r"data.k draws from the dataset"),
    ({"data": {"k": 8, "k_shot": 2}}, r"data.k \(8 sentences\) and data.k_shot \(2 mentions per label\)"),
    ({"data": {"k_shot": 0}}, r"'data.k_shot' must be > 0"),
    ({"data": {"train_file": None, "dev_file": None}}, r"needs data.dataset .* or data.train_file"),
    ({"data": {"dev_file": None}}, r"dev_file is required"),
    ({"data": {"extension_weight_rule": "loud"}}, r"extension_weight_rule"),
    ({"train": {"precision": "fp16"}}, r"train.precision.*one of"),
    ({"model": {"freeze_layers": -1}}, r"'model.freeze_layers' must be >= 0, got -1"),
    ({"model": {"max_span_length": 0}}, r"'model.max_span_length' must be > 0 or null, got 0"),
    ({"model": {"max_span_length": "16"}}, r"max_span_length.*int or null"),
])
def test_bad_config_is_refused_with_the_key_named(toy, change, message):
    config = toy_config(toy)
    for section, values in change.items():
        config.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_k_shot_trains_on_k_mentions_per_label_and_records_the_subset(toy, tmp_path):
    """data.k_shot: the training set is the K-shot sampler's subset of train (every label at
    least K mentions where train has them, no sentence removable without breaking that), written
    to subset.json, and the same config gives the same subset and the same weights."""
    from knowfree.data.sampling import k_shot, load_subset

    config = toy_config(toy, epochs=1)
    config["data"]["k_shot"] = 2
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        train(config, run, progress=False)
    subset = load_subset(runs[0] / "subset.json")
    train_set = toy_samples(16, 0, "train")
    assert subset.method == "k-shot" and subset.k == 2
    assert subset.ids == k_shot(train_set, 2, seed=subset.seed).ids
    chosen = subset.select(train_set)
    counts = Counter(sp.label for s in chosen for sp in s.targets())
    assert min(counts.values()) >= 2 and len(chosen) < len(train_set)
    data = json.loads((runs[0] / "data.json").read_text())
    assert data["counts"]["train"] == len(chosen) == data["subset"]["sentences"]
    assert same_weights(weights(runs[0]), weights(runs[1]))


def test_config_file_overrides_and_cli_error(toy, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(toy_config(toy)), encoding="utf-8")
    config = load_config(path, ["train.epochs=7", "train.warmup=20", "model.window=2"])
    assert config["train"]["epochs"] == 7 and config["train"]["warmup"] == 20
    assert config["model"]["window"] == 2 and config["train"]["encoder_lr"] == 1e-3
    assert config["train"]["clip"] == 1.0  # default filled in
    assert knowfree_main(["train", str(path), "--set", "train.epoch=2"]) == 1
    assert "did you mean 'epochs'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(path, ["train.epochs"])


def test_a_train_file_beside_a_dataset_replaces_only_its_train_split(mirror, tmp_path):
    from knowfree.data.registry import load_dataset
    from knowfree.train import load_data
    gold = load_dataset("weibo")
    augmented = [s.with_spans([*s.targets(), Span(0, 1, "ext.pos.NOUN")]) for s in gold["train"][:5]]
    write(augmented, tmp_path / "fusion.jsonl", "jsonl")
    data = validate_config({"data": {"dataset": "weibo", "train_file": str(tmp_path / "fusion.jsonl")},
                            "model": {"encoder": "tiny"}})["data"]
    splits, info, subset = load_data(data)
    assert subset is None and info["source"] == "dataset:weibo+train_file"
    assert [(s.tokens, s.spans) for s in splits["train"]] == [(s.tokens, s.spans) for s in augmented]
    assert [s.id for s in splits["dev"]] == [s.id for s in gold["dev"]]
    assert [s.id for s in splits["test"]] == [s.id for s in gold["test"]]
    assert info["files"]["train"]["path"] == str(tmp_path / "fusion.jsonl")


@pytest.mark.parametrize("name", ["weibo_k250.yaml", "tiny.yaml"])
def test_shipped_training_configs_are_valid(name):
    config = load_config(REPO_ROOT / "configs" / name)
    assert config["data"]["dataset"] == "weibo"


# --- precision and frozen encoder parts -------------------------------------------------------

FAST = {"precision": "bf16"}
FROZEN = {"freeze_embeddings": True, "freeze_layers": 1, "max_span_length": 4}


def fast_config(toy, epochs=3, **train_opts):
    config = toy_config(toy, epochs=epochs, **FAST, **train_opts)
    config["model"].update(FROZEN)
    return config


@pytest.fixture(scope="module")
def fast_run(toy, tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    return root / "run", train(fast_config(toy), root / "run", progress=False)


def test_bf16_with_frozen_layers_reruns_and_resumes_bit_identically(toy, fast_run, tmp_path):
    """The promise of fp32 holds in bf16 with a frozen, cached bottom layer: the same seed
    gives the same weights and scores, and a run stopped after epoch 1 (its frozen-layer
    cache gone with the process state) resumes to exactly the uninterrupted result."""
    run_dir, reference = fast_run
    assert reference["precision"] == "bf16"
    again = train(fast_config(toy), tmp_path / "again", progress=False)
    assert again["dev"] == reference["dev"] and again["test"] == reference["test"]
    assert same_weights(weights(tmp_path / "again"), weights(run_dir))
    partial = train(fast_config(toy), tmp_path / "resumed", progress=False, stop_after=1)
    assert partial["complete"] is False
    resumed = train(fast_config(toy), tmp_path / "resumed", progress=False)
    assert resumed["dev"] == reference["dev"] and resumed["test"] == reference["test"]
    assert same_weights(weights(tmp_path / "resumed"), weights(run_dir))
    fp32 = train(toy_config(toy, epochs=3), tmp_path / "fp32", progress=False)
    assert fp32["precision"] == "fp32" and fp32["frozen"] == {}


def test_checkpoints_hold_only_trained_tensors_and_the_frozen_hash(toy, fast_run):
    from knowfree.predict import Predictor, tensors_sha256
    run_dir, metrics = fast_run
    saved = weights(run_dir)
    predictor = Predictor.load(run_dir)
    frozen = {n for n, p in predictor.model.named_parameters() if not p.requires_grad}
    assert frozen and not frozen & set(saved)
    assert set(saved) | frozen == set(predictor.model.state_dict())
    assert "encoder.backbone.embeddings.word_embeddings.weight" in frozen
    assert any(".layer.0." in n for n in frozen) and not any(".layer.1." in n for n in frozen)
    params = dict(predictor.model.named_parameters())
    assert metrics["frozen"]["frozen_sha256"] == tensors_sha256({n: params[n] for n in frozen})
    assert metrics["parameters"]["frozen"] == sum(params[n].numel() for n in frozen)
    # the loaded run scores test as the trainer did, in the run's own precision
    assert predictor.precision == "bf16"
    test = formats_read(toy[0] / "test.jsonl")
    from knowfree.metrics import evaluate
    assert evaluate(test, predictor.predict_samples(test)).as_dict()["f1"] == metrics["test"]["f1"]


def test_a_run_on_other_frozen_weights_is_refused(toy, fast_run, tmp_path):
    """The frozen tensors are not in the run folder: loading it on top of an encoder with other
    weights would mix them silently; the recorded sha256 refuses it."""
    import shutil
    from knowfree.errors import InputError
    from knowfree.predict import Predictor
    run_dir, _ = fast_run
    other = build_tiny_encoder(tmp_path / "other", [FILLER + "".join(PEOPLE + PLACES)], seed=7)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    spec = json.loads((copy / "encoder.json").read_text())
    (copy / "encoder.json").write_text(json.dumps({**spec, "name": other}))
    with pytest.raises(InputError, match="frozen encoder weights"):
        Predictor.load(copy)


def formats_read(path):
    from knowfree.data import formats
    return formats.read(path, "jsonl").samples

