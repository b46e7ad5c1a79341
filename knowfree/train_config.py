"""The trainer's configuration: every key with its default, type and range (``CONFIG_SCHEMA``),
the validation that fills in defaults and names a bad key with a suggestion (``validate_config``),
the hash that names a run (``config_hash``) and YAML loading with ``--set`` overrides."""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from knowfree import yamlio
from knowfree.data.sampling import DEFAULT_SEED
from knowfree.data.schema import WEIGHT_PRESETS, check_rule
from knowfree.errors import ConfigError, KnowfreeError
from knowfree.model import ModelConfig
from knowfree.precision import PRECISIONS
from knowfree.predict import BATCH_SIZE as PREDICT_BATCH_SIZE
from knowfree.provenance import hash_json



@dataclass(frozen=True)
class _Field:
    types: tuple
    default: Any
    nullable: bool = False
    check: Any = None  # (predicate, "what it must be") or None


_POS = (lambda v: v > 0, "> 0")
_NONNEG = (lambda v: v >= 0, ">= 0")

CONFIG_SCHEMA: dict[str, dict[str, _Field]] = {
    "data": {
        "dataset": _Field((str,), None, nullable=True),
        "train_file": _Field((str,), None, nullable=True),
        "dev_file": _Field((str,), None, nullable=True),
        "test_file": _Field((str,), None, nullable=True),
        "format": _Field((str,), "jsonl"),
        "k": _Field((int,), None, nullable=True, check=_POS),
        # K mentions per target label instead of K sentences (the K-shot sampler); not with k
        "k_shot": _Field((int,), None, nullable=True, check=_POS),
        "sample_seed": _Field((int,), DEFAULT_SEED),  # the sampler's default, as notebooks use
        "schema_file": _Field((str,), None, nullable=True),
        # a rule name of knowfree.data.schema, or {rule: NAME, **its arguments}
        "extension_weight_rule": _Field((str, dict), "count"),
    },
    "train": {
        "epochs": _Field((int,), 20, check=_POS),
        "batch_size": _Field((int,), 8, check=_POS),
        # the Predictor's default, so that rescoring a split with a loaded run gives this score
        "eval_batch_size": _Field((int,), PREDICT_BATCH_SIZE, check=_POS),
        "encoder_lr": _Field((float,), 2e-5, check=_NONNEG),
        "head_lr": _Field((float,), 1e-3, check=_NONNEG),
        "weight_decay": _Field((float,), 0.01, check=_NONNEG),
        # int: steps; float in [0, 1): fraction of all planned steps
        "warmup": _Field((int, float), 0.1, check=_NONNEG),
        "clip": _Field((float,), 1.0, nullable=True, check=_POS),
        "seed": _Field((int,), 0),
        # stop when dev F1 has not improved for this many epochs; null: never stop early
        "patience": _Field((int,), None, nullable=True, check=_POS),
        "eval_every": _Field((int,), 1, check=_POS),
        # multiplies the loss weight of synthetic samples (1: as gold)
        "synthetic_weight": _Field((float,), 1.0, check=_NONNEG),
        # batches are drawn from chunks of length_buckets * batch_size samples sorted by length;
        # 0 or 1: plain shuffled batches
        "length_buckets": _Field((int,), 8, check=_NONNEG),
        "device": _Field((str,), "cpu"),
        "threads": _Field((int,), None, nullable=True, check=_POS),
        # fp32 | bf16 | auto (bf16 where the device computes it in hardware): the forward of
        # encoder and head under bf16 autocast; loss, optimizer state and weights stay fp32
        "precision": _Field((str,), "fp32", check=(lambda v: v in PRECISIONS, f"one of {PRECISIONS}")),
        # a finished run folder whose selected weights this run starts from (the paper's
        # "continue training from the fusion model"); new optimizer and schedule
        "init_from": _Field((str,), None, nullable=True),
        # a name of knowfree.data.schema.WEIGHT_PRESETS: the extension weight rule and the loss
        # weight of every synthetic sample, as one of the authors' schedules (null: the two keys
        # data.extension_weight_rule and train.synthetic_weight as given)
        "weight_preset": _Field((str,), None, nullable=True),
    },
    "output": {
        "run_dir": _Field((str,), None, nullable=True),
        # false: when the run completes, delete the last checkpoint and optimizer state
        # (hundreds of MB with a real encoder) and keep only the selected weights
        "keep_last": _Field((bool,), True),
        # epochs between resumable checkpoints (weights + optimizer state: ~1.4 GB with e5-small,
        # which on a GPU takes longer to write than an epoch to train); the selected weights
        # are held in memory and written with each checkpoint and at the end
        "checkpoint_every": _Field((int,), 1, check=_POS),
    },
}
SECTIONS = ("data", "model", "train", "output")


def _type_ok(value, types: tuple) -> bool:
    if isinstance(value, bool):  # YAML `yes` must not pass as the integer 1
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _unknown(key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (known: {', '.join(sorted(known))})")


def validate_config(config: dict) -> dict:
    """Return the config with defaults filled in; raise ConfigError naming the offending key."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config is a mapping of sections {SECTIONS}, got {type(config).__name__}")
    for section in config:
        if section not in SECTIONS:
            raise _unknown(str(section), SECTIONS)
    out: dict[str, dict] = {}
    for section, fields in CONFIG_SCHEMA.items():
        given = config.get(section) or {}
        if not isinstance(given, dict):
            raise ConfigError(f"config section {section!r} must be a mapping, got {given!r}")
        for key in given:
            if key not in fields:
                raise _unknown(f"{section}.{key}", fields)
        values = {}
        for key, f in fields.items():
            v = given.get(key, f.default)
            name = f"{section}.{key}"
            if v is None:
                if not f.nullable and f.default is not None:
                    raise ConfigError(f"config key {name!r} must not be null")
            elif not _type_ok(v, f.types):
                want = " or ".join("null" if t is type(None) else t.__name__ for t in f.types)
                raise ConfigError(f"config key {name!r} must be {want}"
                                  f"{' or null' if f.nullable else ''}, got {type(v).__name__} {v!r}")
            elif isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"config key {name!r} must be a finite number, got {v!r}")
            elif f.check and not f.check[0](v):
                raise ConfigError(f"config key {name!r} must be {f.check[1]}, got {v!r}")
            if isinstance(v, int) and not isinstance(v, bool) and f.types == (float,):
                v = float(v)
            values[key] = v
        out[section] = values

    model = config.get("model") or {}
    if not isinstance(model, dict):
        raise ConfigError(f"config section 'model' must be a mapping, got {model!r}")
    try:
        out["model"] = ModelConfig.from_dict(dict(model)).to_dict()
    except KnowfreeError as e:
        raise ConfigError(f"config section 'model': {e}") from None

    d, t = out["data"], out["train"]
    if d["dataset"] is None and d["train_file"] is None:
        raise ConfigError("config needs data.dataset (a registry name) or data.train_file (a file "
                          "with dev_file beside it), or both (train from the file, dev and test "
                          "from the dataset)")
    if d["dataset"] is None and d["dev_file"] is None:
        raise ConfigError("data.dev_file is required with data.train_file: the checkpoint is "
                          "selected on dev, never on test")
    if d["dataset"] is not None and (d["dev_file"] or d["test_file"]):
        raise ConfigError("data.dev_file / data.test_file go with data.train_file, not data.dataset "
                          "(with both, dev and test come from the dataset)")
    if d["k"] is not None and d["k_shot"] is not None:
        raise ConfigError(f"data.k ({d['k']} sentences) and data.k_shot ({d['k_shot']} mentions per label) "
                          "are two ways to draw the training subset; set one of them (the other null)")
    if d["dataset"] is not None and d["train_file"] is not None and d["k_shot"] is not None:
        raise ConfigError("data.k_shot draws from the dataset's train split; with data.train_file the "
                          "file is the training set (fix: k_shot: null)")
    if d["dataset"] is not None and d["train_file"] is not None and d["k"] is not None:
        raise ConfigError("data.k draws from the dataset's train split; with data.train_file the "
                          "file is the training set (fix: k: null; a fusion set of a K-sentence "
                          "setting already holds just those K sentences)")
    rule = d["extension_weight_rule"]
    check_rule(rule, "data.extension_weight_rule")
    preset = t["weight_preset"]
    if preset is not None:
        if preset not in WEIGHT_PRESETS:
            close = difflib.get_close_matches(preset, list(WEIGHT_PRESETS), n=1)
            raise ConfigError(f"train.weight_preset must be one of {sorted(WEIGHT_PRESETS)} or null, "
                              f"got {preset!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        if d["schema_file"]:
            raise ConfigError(f"train.weight_preset={preset!r} cannot apply to data.schema_file, whose "
                              "label weights are fixed (fix: drop one of the two)")
        if rule != "count" or t["synthetic_weight"] != 1.0:
            raise ConfigError(f"train.weight_preset={preset!r} sets the extension weight rule and the "
                              "synthetic weight itself (fix: leave data.extension_weight_rule and "
                              "train.synthetic_weight at their defaults, or drop the preset)")
    if isinstance(t["warmup"], float) and t["warmup"] >= 1:
        raise ConfigError(f"train.warmup as a float is a fraction of all steps and must be < 1, "
                          f"got {t['warmup']}; give an int for a number of steps")
    return {s: out[s] for s in SECTIONS}


# Keys added after runs were committed, at the value those runs had: left out of the hash when
# they hold it, so that older run folders (whose config.json lacks them) keep their hash.
_HASH_NEUTRAL = {("train", "precision"): "fp32", ("model", "freeze_embeddings"): False,
                 ("model", "freeze_layers"): 0, ("model", "max_span_length"): None,
                 ("train", "init_from"): None, ("data", "k_shot"): None, ("train", "weight_preset"): None}


def config_hash(config: dict) -> str:
    """Hash of everything that can change the result: the output location is left out."""
    kept = {}
    for section, values in config.items():
        if section == "output":
            continue
        if isinstance(values, dict):
            values = {k: v for k, v in values.items()
                      if _HASH_NEUTRAL.get((section, k), object()) != v}
        kept[section] = values
    return hash_json(kept)


apply_overrides = yamlio.apply_overrides


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
    return validate_config(apply_overrides(yamlio.load_file(path, "config"), list(overrides)))
