"""The typed trainer config (knowfree.config): one schema gives the defaults, the checks, the
messages, `config show` and the notebook translation, and they agree with each other."""
import json
import subprocess
import sys

import pytest
import yaml

from knowfree import config as C
from knowfree import params as P
from knowfree.errors import ConfigError

MINIMAL = {"data": {"dataset": "weibo"}}


def test_config_show_is_every_default_and_loads_back_as_the_validated_defaults():
    shown = yaml.safe_load(C.show())
    assert list(shown) == list(C.SECTIONS)
    for section, model in C.SECTION_MODELS.items():
        assert list(shown[section]) == list(model.model_fields), section
        assert all(f.description for f in model.model_fields.values()), f"{section}: a key without meaning"
    shown["data"]["dataset"] = "weibo"
    assert C.validate_config(shown) == C.validate_config(MINIMAL)
    assert C.default("train.head_lr") == C.validate_config(MINIMAL)["train"]["head_lr"] == 1e-3


def test_cli_show_and_check(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "knowfree", "config", *a],  # noqa: E731
                                    capture_output=True, text=True)
    shown = run("show")
    assert shown.returncode == 0 and shown.stdout == C.show()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL), encoding="utf-8")
    checked = run("check", str(path), "--set", "train.epochs=3")
    assert checked.returncode == 0
    filled = yaml.safe_load(checked.stdout)
    assert filled["train"]["epochs"] == 3 and filled["model"] == C.ModelConfig().to_dict()
    assert checked.stdout.strip().endswith(C.config_hash(filled))
    typo = run("check", str(path), "--set", "train.epohs=3")
    assert typo.returncode == 1
    assert "unknown config key 'train.epohs'; did you mean 'epochs'?" in typo.stderr


@pytest.mark.parametrize("change, message", [
    ({"model": {"dropout": 1.0}}, "config key 'model.dropout' must be < 1.0, got 1.0"),
    ({"model": {"threshold": 0}}, "config key 'model.threshold' must be > 0.0, got 0"),
    ({"train": {"encoder_lr": -1e-5}}, "config key 'train.encoder_lr' must be >= 0.0, got -1e-05"),
    ({"train": {"head_lr": float("inf")}}, "config key 'train.head_lr' must be a finite number, got inf"),
    ({"train": {"patience": 0}}, "config key 'train.patience' must be > 0 or null, got 0"),
    ({"train": {"warmup": -2}}, "config key 'train.warmup' must be >= 0, got -2"),
    ({"train": {"warmup": "5"}}, "config key 'train.warmup' must be int or float, got str '5'"),
    ({"output": {"keep_last": 1}}, "config key 'output.keep_last' must be bool, got 1"),
    ({"train": "fast"}, "config section 'train' must be a mapping, got 'fast'"),
    ({"model": {"channels": 30, "attention_heads": 4, "biaffine_heads": 3}},
     "config key 'model.channels' (30) must be divisible by model.attention_heads (4)"),
])
def test_each_bad_value_is_named_with_what_it_must_be(change, message):
    config = json.loads(json.dumps(MINIMAL))
    for section, values in change.items():
        config[section] = values if not isinstance(values, dict) else {**config.get(section, {}), **values}
    with pytest.raises(ConfigError) as e:
        C.validate_config(config)
    assert str(e.value) == message


def test_every_wrong_key_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        C.validate_config({"data": {"dataset": "weibo"}, "train": {"epochs": 0, "batch_size": "8"}})
    assert str(e.value) == ("config key 'train.epochs' must be > 0, got 0; "
                            "config key 'train.batch_size' must be int, got str '8'")


def test_an_int_where_a_float_is_expected_is_stored_as_the_float():
    # the run hash depends on it: 1 and 1.0 must name the same run
    a = C.validate_config({**MINIMAL, "train": {"encoder_lr": 1}})
    b = C.validate_config({**MINIMAL, "train": {"encoder_lr": 1.0}})
    assert a == b and isinstance(a["train"]["encoder_lr"], float) and C.config_hash(a) == C.config_hash(b)


@pytest.mark.parametrize("name", sorted(C.NOTEBOOK_KEYS))
def test_each_notebook_key_is_the_trainer_key_it_names(name):
    """Parity of the two vocabularies: a notebook parameter that sets a trainer key allows the
    same values (choices, and the lower bound up to the documented 0 = null)."""
    section, key = C.NOTEBOOK_KEYS[name].split(".")
    field = C.SECTION_MODELS[section].model_fields[key]
    nb = P.KEYS[name]
    choices = getattr(field.annotation, "__args__", ())
    if nb.choices:
        assert tuple(nb.choices) == tuple(choices), name
    lowest = nb.minimum if nb.minimum is not None else (nb.choices[0] if nb.choices else
                                                        {"int": 7, "float": 0.5, "bool": True, "str": "x"}[nb.type])
    value = C.notebook_config({name: lowest})[section][key]
    assert value is None if name in C.ZERO_IS_NULL and not lowest else value == lowest
    config = json.loads(json.dumps(MINIMAL))
    config.setdefault(section, {})[key] = value
    C.validate_config(config)  # the notebook's smallest allowed value is a valid trainer value
    if nb.minimum is not None and nb.type == "int":
        below = C.notebook_config({name: int(nb.minimum) - 1})[section][key]
        config[section][key] = below
        with pytest.raises(ConfigError, match=f"'{section}.{key}'"):
            C.validate_config(config)  # and the one below it is refused by both


@pytest.mark.parametrize("sweep, message", [
    ({"base": "b", "groups": [{"name": "g", "grid": {"train.seed": []}}]},
     "sweep key 'groups[0].grid.train.seed' must be a list of at least 1 item, got list []"),
    ({"base": "b", "groups": [{"nam": "g"}]},
     "sweep key 'groups[0].name' is required; unknown sweep key 'groups[0].nam'; did you mean 'name'? "
     "(known: grid, name, set)"),
    ({"base": "b", "groups": [{"name": "g", "set": 3}]}, "sweep key 'groups[0].set' must be a mapping or null, got 3"),
    ({"groups": []}, "sweep key 'base' is required (the path of the trainer config its runs start from)"),
])
def test_sweep_files_are_checked_by_the_same_schema_machinery(sweep, message):
    from knowfree.sweep import plan

    with pytest.raises(ConfigError) as e:
        plan(sweep)
    assert str(e.value) == message


def test_augment_config_errors_name_nested_keys():
    from knowfree.knowledge.augment_config import validate_augment_config

    with pytest.raises(ConfigError) as e:
        validate_augment_config({"dataset": "weibo", "llm": {"top_p": 0, "kinds": ["entity", "ner"]}})
    assert str(e.value) == ("augment config key 'llm.top_p' must be > 0, got 0; augment config key "
                            "'llm.kinds[1]' must be one of 'entity' or 'pos', got str 'ner'")


def test_config_show_augment_is_every_augment_default_with_its_meaning():
    from knowfree.knowledge.augment_config import AugmentConfig, validate_augment_config

    def described(model):
        for name, field in model.model_fields.items():
            assert field.description, name
            inner = C._section_type(field.annotation)
            if inner is not None:
                described(inner)
    described(AugmentConfig)
    shown = yaml.safe_load(C.show(AugmentConfig, "augment"))
    shown["dataset"] = "weibo"
    assert validate_augment_config(shown) == validate_augment_config({"dataset": "weibo"})
    done = subprocess.run([sys.executable, "-m", "knowfree", "config", "show", "--augment"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == C.show(AugmentConfig, "knowfree augment config")


def test_a_run_hashes_alike_in_two_checkouts_of_the_repository(monkeypatch, tmp_path):
    # notebook configs hold absolute paths to their work folder; the run folder's name (the hash)
    # must not depend on where the repository was cloned
    def hashed(root, train="work/train.jsonl", encoder="m3e-small-offline"):
        monkeypatch.setattr(C, "REPO_ROOT", root)
        cfg = C.validate_config({"data": {"train_file": str(root / train), "dev_file": str(root / "d/dev.jsonl")},
                                 "model": {"encoder": encoder}})
        return C.config_hash(cfg)

    a, b = tmp_path / "one" / "knowfree", tmp_path / "two" / "knowfree"
    assert hashed(a) == hashed(b)
    assert hashed(a) != hashed(a, train="work/other.jsonl")
    assert hashed(a, encoder=str(a / "tiny")) == hashed(b, encoder=str(b / "tiny"))
    # a path outside the repository is the user's own file: kept as typed
    outside = tmp_path / "elsewhere" / "train.jsonl"
    monkeypatch.setattr(C, "REPO_ROOT", a)
    assert C._portable(str(outside)) == str(outside)
