"""train.init_from: a run starts from another run's selected weights (the paper's "continue
training from the fusion model"), label rows matched by name, mismatches refused."""
import json

import pytest
import torch
from safetensors.torch import load_file

from knowfree.data.formats import write
from knowfree.data.sample import EXT_PREFIX, Sample, Span
from knowfree.data.schema import LabelSchema
from knowfree.errors import ConfigError
from knowfree.model import ModelConfig, build_model
from knowfree.checkpoints import init_from_run
from knowfree.train import train
from knowfree.config import config_hash, validate_config
from test_train import toy, toy_config  # noqa: F401  (toy is a fixture)


@pytest.fixture(scope="module")
def source_run(toy, tmp_path_factory):  # noqa: F811
    run = tmp_path_factory.mktemp("source") / "run"
    metrics = train(toy_config(toy, epochs=3), run, progress=False)
    assert metrics["complete"]
    return run


def fresh_model(run, schema=None):
    config = json.loads((run / "config.json").read_text())
    torch.manual_seed(123)  # other initial weights than the source had
    return build_model(ModelConfig.from_dict(config["model"]),
                       schema or LabelSchema.load(run / "schema.json")), config


def test_initial_weights_equal_the_source_runs_selected_weights(source_run):
    model, config = fresh_model(source_run)
    selected = load_file(str(source_run / "model.safetensors"))
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in selected.items())
    info = init_from_run(model, source_run, config["model"])
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in selected.items())
    assert info["labels"] == {"kept": 2, "new": 0, "dropped": 0}
    assert info["epoch"] == json.loads((source_run / "metrics.json").read_text())["best_epoch"]


def test_training_at_learning_rate_zero_keeps_the_source_weights(toy, source_run, tmp_path):  # noqa: F811
    cfg = toy_config(toy, epochs=1, encoder_lr=0.0, head_lr=0.0, init_from=str(source_run))
    metrics = train(cfg, tmp_path / "run", progress=False)
    assert metrics["init_from"]["run_dir"] == str(source_run)
    a, b = load_file(str(source_run / "model.safetensors")), load_file(str(tmp_path / "run" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics["dev"]["f1"] == pytest.approx(
        json.loads((source_run / "metrics.json").read_text())["dev"]["f1"])
    plain = validate_config(toy_config(toy, epochs=1, encoder_lr=0.0, head_lr=0.0))
    assert config_hash(validate_config(cfg)) != config_hash(plain)


def with_extensions(samples, labels):
    """Each sample gets extension spans of ``labels`` over its first characters."""
    return [s.with_spans(list(s.spans) + [Span(0, 1 + i, EXT_PREFIX + label) for i, label in enumerate(labels)])
            for s in samples]


def test_extension_labels_are_matched_by_name(toy, tmp_path):  # noqa: F811
    from test_train import toy_samples

    root, encoder = toy
    write(with_extensions(toy_samples(16, 0, "train"), ["名词", "地名"]), tmp_path / "src.jsonl", "jsonl")
    write(with_extensions(toy_samples(16, 0, "train"), ["地名", "动词"]), tmp_path / "new.jsonl", "jsonl")
    cfg = toy_config(toy, epochs=2)
    cfg["data"]["train_file"] = str(tmp_path / "src.jsonl")
    train(cfg, tmp_path / "source", progress=False)
    src_schema = LabelSchema.load(tmp_path / "source" / "schema.json")
    assert EXT_PREFIX + "名词" in src_schema.names

    new_schema = LabelSchema.from_samples(with_extensions(toy_samples(16, 0, "train"), ["地名", "动词"]),
                                          targets=src_schema.targets)
    model, config = fresh_model(tmp_path / "source", new_schema)
    before = model.state_dict()["head.classifier.weight"].clone()
    info = init_from_run(model, tmp_path / "source", config["model"])
    selected = load_file(str(tmp_path / "source" / "model.safetensors"))["head.classifier.weight"]
    w = model.state_dict()["head.classifier.weight"]
    for r, label in enumerate(model.channel_names):
        if label in src_schema.names:
            assert torch.equal(w[r], selected[src_schema.names.index(label)]), label
        else:
            assert label == EXT_PREFIX + "动词" and torch.equal(w[r], before[r])
    assert info["labels"] == {"kept": 3, "new": 1, "dropped": 1}
    assert info["dropped_labels"] == [EXT_PREFIX + "名词"]

    # the trainer does the same from a config, and says so in the run's metrics
    cfg2 = toy_config(toy, epochs=1, init_from=str(tmp_path / "source"))
    cfg2["data"]["train_file"] = str(tmp_path / "new.jsonl")
    metrics = train(cfg2, tmp_path / "continued", progress=False)
    assert metrics["init_from"]["labels"] == {"kept": 3, "new": 1, "dropped": 1}


@pytest.mark.parametrize("change, message", [
    (lambda c: c["model"].update(channels=16), "model.channels"),
    (lambda c: c["model"].update(head="tagger"), "model.head"),
])
def test_a_different_model_is_refused(source_run, change, message):
    model, config = fresh_model(source_run)
    change(config)
    with pytest.raises(ConfigError, match=message):
        init_from_run(model, source_run, config["model"])


def test_other_targets_and_unfinished_runs_are_refused(source_run, tmp_path):
    samples = [Sample(list("王小明在东京"), [Span(0, 3, "PER"), Span(3, 6, "ORG")])]
    model, config = fresh_model(source_run, LabelSchema.from_samples(samples, targets=["ORG", "PER"]))
    with pytest.raises(ConfigError, match="target labels differ"):
        init_from_run(model, source_run, config["model"])
    with pytest.raises(ConfigError, match="has no"):
        init_from_run(model, tmp_path, config["model"])
    for name in ("config.json", "schema.json", "model.safetensors"):
        (tmp_path / name).write_bytes((source_run / name).read_bytes())
    (tmp_path / "metrics.json").write_text(json.dumps({"complete": False}))
    model, config = fresh_model(source_run)
    with pytest.raises(ConfigError, match="not finished"):
        init_from_run(model, tmp_path, config["model"])


def test_notebooks_continue_only_knowfree_syn_fusion_runs_from_the_fusion_model():
    from types import SimpleNamespace

    from knowfree.experiment import Knowledge, init_for

    know = Knowledge(SimpleNamespace(stats={"synthesis": {"pseudo_label": {"run_dir": "R"}}}), "llm", {})
    fusion = {"syn_init": "fusion"}
    assert init_for("syn_fusion", "knowfree", True, know, fusion) == "R"
    assert init_for("fusion", "knowfree", True, know, fusion) is None
    assert init_for("syn_fusion", "cnn", True, know, fusion) is None       # another architecture
    assert init_for("syn_fusion", "knowfree", True, know, {"syn_init": "pretrained"}) is None
    with pytest.raises(ValueError, match="pseudo-label model"):
        init_for("syn_fusion", "knowfree", True, Knowledge(SimpleNamespace(stats={}), "llm", {}), fusion)
