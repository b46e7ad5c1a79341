"""The trainer's configuration, typed once: every key with its default, type, range and meaning.

A training config is four sections, ``data``, ``model``, ``train`` and ``output``; each is a
pydantic model below, and from these models come the defaults (``validate_config`` fills them
in), the validation (strict types: YAML ``yes`` is not the integer 1, ``"8"`` is not 8; ranges
as field constraints; unknown keys refused), the error messages (:func:`config_error` turns
pydantic's report into one line with the dotted key, the value, what was expected and, for a
typo, the closest known key), the ``--set key.sub=value`` overrides (applied to the YAML, then
validated like the file) and ``python -m knowfree config show`` (:func:`show`: every default
with its meaning).

Notebook parameters (``params/*.yaml``, ``knowfree.params``) are flat names; the ones that set
a trainer key are listed in ``NOTEBOOK_KEYS`` with the dotted key they set, which is the whole
translation. Checks that involve several keys (a dataset or a train file; k or k_shot) follow
the field checks in ``validate_config``.
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from knowfree.data.sampling import DEFAULT_SEED
from knowfree.data.schema import WEIGHT_PRESETS, check_rule
from knowfree import yamlio
from knowfree.errors import ConfigError
from knowfree.provenance import REPO_ROOT, hash_json

HEADS = ("knowfree", "cnn", "tagger")
PRECISIONS = ("fp32", "bf16", "auto")
# the Predictor's batch size, and the trainer's default for scoring, so that rescoring a split
# with a loaded run gives the run's own score
PREDICT_BATCH_SIZE = 16

Pos = Annotated[int, Field(gt=0)]
NonNeg = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    """The base of every config schema (trainer, augment, sweep): unknown keys, wrong types and
    non-finite numbers are refused; an int is accepted where a float is expected."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True)


def null_means(empty: type):
    """A before-validator: a key given as null (``llm:`` with nothing under it) is ``empty()``."""
    return lambda value: empty() if value is None else value


class Section(Strict):
    """One section of a trainer config (an int given for a float is stored as the float)."""
    model_config = ConfigDict(frozen=True)
    section: ClassVar[str]

    def __init__(self, **values):
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise config_error(e, type(self), prefix=(self.section,)) from None

    @classmethod
    def from_dict(cls, values: dict):
        if not isinstance(values, dict):
            raise ConfigError(f"config section {cls.section!r} must be a mapping, got {values!r}")
        return cls(**{str(k): v for k, v in values.items()})

    def to_dict(self) -> dict:
        return self.model_dump()


class DataConfig(Section):
    section: ClassVar[str] = "data"
    dataset: Optional[str] = Field(None, description="registry name (knowfree.data.registry)")
    train_file: Optional[str] = Field(None, description="a training file instead of the dataset's train split")
    dev_file: Optional[str] = Field(None, description="with train_file: the dev file (selection is on dev, never test)")
    test_file: Optional[str] = Field(None, description="with train_file: the test file (optional)")
    format: str = Field("jsonl", description="format of the files (knowfree.data.formats)")
    k: Optional[Pos] = Field(None, description="train on the first k sentences of the seeded nested subset")
    k_shot: Optional[Pos] = Field(None, description="instead of k: K mentions of every target label (the K-shot sampler)")
    sample_seed: int = Field(DEFAULT_SEED, description="seed of the subset sampler (the notebooks' default)")
    schema_file: Optional[str] = Field(None, description="a label schema with fixed label weights")
    extension_weight_rule: Union[str, dict] = Field(
        "count", description="loss weight of extension labels: a rule of knowfree.data.schema, "
                             "or {rule: NAME, **its arguments}")


class ModelConfig(Section):
    section: ClassVar[str] = "model"
    head: Literal[HEADS] = Field("knowfree", description="knowfree (biaffine + local attention), cnn, or tagger (BIO)")
    encoder: str = Field("e5-small-offline", description="encoder alias, hub id or folder (knowfree.backbones)")
    piece_position: bool = Field(True, description="add the position of a piece inside its token")
    encoder_attention: str = Field("bidirectional", description="attention mask of decoder-only encoders")
    # e5-small's token vectors come out at RMS ~0.2 and Qwen2.5's at ~7; at the head's lr 1e-3
    # the small ones left every head predicting "O" for hundreds of steps (a linear probe on
    # frozen e5 vectors fit 32 Weibo sentences in 100 steps with the norm, 300 without)
    input_norm: bool = Field(True, description="LayerNorm on the token vectors before any head")
    freeze_embeddings: bool = Field(
        False, description="do not train the word-embedding table (e5-small: 96 M of 118 M "
                           "parameters); positions, types and the embedding LayerNorm still train")
    freeze_layers: NonNeg = Field(
        0, description="N > 0: freeze the embedding block and the bottom N layers (run without dropout)")
    # Weibo's longest entity is 11 characters and its sentences average 55: a width of 16
    # computes half the cells of all i <= j
    max_span_length: Optional[Pos] = Field(None, description="widest span cell (tokens); null: every i <= j, as the paper")
    channels: Pos = Field(200, description="head/tail MLP size = span feature channels")
    biaffine_heads: Pos = Field(4, description="heads of the multi-head biaffine")
    size_embedding: Pos = Field(25, description="width of the span-length embedding")
    size_buckets: Pos = Field(30, description="span lengths embedded (longer share the last)")
    local_attention: bool = Field(True, description="multi-head attention over neighbouring span cells")
    window: NonNeg = Field(3, description="local attention reach in cells")
    attention_heads: Pos = Field(10, description="heads of the local attention")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.4, description="dropout of the head")
    cnn_layers: NonNeg = Field(3, description="convolution layers of the cnn head")
    use_extensions: bool = Field(True, description="train the extension-label channels")
    flat: bool = Field(True, description="decode non-overlapping spans (false: nested)")
    threshold: Annotated[float, Field(gt=0, lt=1)] = Field(0.5, description="span probability that counts as a prediction")
    tagger_crf: bool = Field(False, description="a CRF over the tagger's BIO tags")

    @model_validator(mode="after")
    def _heads_divide_channels(self):
        for heads in ("biaffine_heads", "attention_heads"):
            if self.channels % getattr(self, heads):
                raise ConfigError(f"config key 'model.channels' ({self.channels}) must be divisible "
                                  f"by model.{heads} ({getattr(self, heads)})")
        return self


class TrainConfig(Section):
    section: ClassVar[str] = "train"
    epochs: Pos = Field(20, description="training epochs")
    batch_size: Pos = Field(8, description="sentences per optimizer step")
    eval_batch_size: Pos = Field(PREDICT_BATCH_SIZE, description="sentences per scoring batch")
    encoder_lr: Rate = Field(2e-5, description="learning rate of the encoder")
    head_lr: Rate = Field(1e-3, description="learning rate of the head")
    weight_decay: Rate = Field(0.01, description="AdamW weight decay")
    warmup: Union[int, float] = Field(
        0.1, description="int: warm-up steps; float in [0, 1): fraction of all planned steps")
    clip: Optional[Annotated[float, Field(gt=0)]] = Field(1.0, description="gradient norm clip; null: none")
    seed: int = Field(0, description="training seed")
    patience: Optional[Pos] = Field(None, description="stop after this many epochs without a better dev F1; null: never")
    eval_every: Pos = Field(1, description="score dev every this many epochs (and after the last)")
    synthetic_weight: Rate = Field(1.0, description="multiplies the loss weight of synthetic samples (1: as gold)")
    length_buckets: NonNeg = Field(
        8, description="draw batches from chunks of length_buckets * batch_size samples sorted by "
                       "length; 0 or 1: plain shuffled batches")
    device: str = Field("cpu", description="cpu, cuda, cuda:N or auto")
    threads: Optional[Pos] = Field(None, description="torch CPU threads for this run; null: as set")
    precision: Literal[PRECISIONS] = Field(
        "fp32", description="forward of encoder and head under bf16 autocast or not; auto: bf16 "
                            "where the device computes it in hardware. Loss, optimizer state and "
                            "weights stay fp32")
    init_from: Optional[str] = Field(
        None, description="a finished run folder whose selected weights this run starts from (the "
                          "paper's 'continue from the fusion model'); new optimizer and schedule")
    weight_preset: Optional[str] = Field(
        None, description="a schedule of knowfree.data.schema.WEIGHT_PRESETS that sets the extension "
                          "weight rule and the synthetic weight together")
    select: Union[Literal["best_dev", "last"], Pos] = Field(
        "best_dev", description="which epoch's weights the run keeps: best_dev (needs a dev set); last; "
                                "or an epoch N <= epochs, where training stops (the learning-rate "
                                "schedule still spans all epochs). With last or N, dev is optional "
                                "and only reported: the final model of `python -m knowfree cv`")


    @model_validator(mode="after")
    def _warmup_range(self):
        w = self.warmup
        if w < 0:
            raise ConfigError(f"config key 'train.warmup' must be >= 0, got {w!r}")
        if isinstance(w, float) and w >= 1:
            raise ConfigError(f"config key 'train.warmup' as a float is a fraction of all steps and "
                              f"must be < 1, got {w}; give an int for a number of steps")
        return self


class OutputConfig(Section):
    section: ClassVar[str] = "output"
    run_dir: Optional[str] = Field(None, description="run folder; null: results/runs/<name>-<hash>")
    # the last checkpoint with its optimizer state is hundreds of MB with a real encoder
    keep_last: bool = Field(True, description="false: when the run completes keep only the selected weights")
    # on a GPU a checkpoint (weights + optimizer state) can take longer to write than an epoch
    checkpoint_every: Pos = Field(1, description="epochs between resumable checkpoints")


SECTION_MODELS: dict[str, type[Section]] = {
    "data": DataConfig, "model": ModelConfig, "train": TrainConfig, "output": OutputConfig}
SECTIONS = tuple(SECTION_MODELS)


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


# --- errors ----------------------------------------------------------------------------------

_TYPE_WORDS = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool",
               "dict_type": "a mapping", "model_type": "a mapping", "none_required": "null"}
_BOUNDS = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
           "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}


def _dotted(key: tuple) -> str:
    """('groups', '0', 'name') -> 'groups[0].name'."""
    return "".join(f"[{k}]" if k.isdigit() else (f".{k}" if i else k) for i, k in enumerate(key))


def _want(err: dict) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "list_type":
        return "a list"
    if kind == "too_short":
        return f"a list of at least {ctx['min_length']} item{'s' if ctx['min_length'] != 1 else ''}"
    if kind == "string_too_short":
        return "a non-empty str"
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    if kind in _BOUNDS:
        sign, key = _BOUNDS[kind]
        return f"{sign} {ctx[key]}"
    if kind == "literal_error":
        return f"one of {ctx['expected']}"
    if kind == "finite_number":
        return "a finite number"
    return err["msg"]


def _field_path(model: type[BaseModel], loc: tuple) -> tuple[tuple, type[BaseModel], type[BaseModel] | None]:
    """The part of an error location that names config keys (a union adds the member's type
    name, a list the index), the model that holds the last of them, and the model that key
    itself is (None for a value)."""
    path, holder, inner = [], model, model
    listed = mapped = False  # the last key is a list (an index may follow) or a free mapping
    for part in loc:
        if (listed and part.isdigit()) or mapped:
            path.append(part)
            listed = mapped = False
            continue
        names = {(f.alias or n): n for n, f in inner.model_fields.items()} if inner else {}
        if part not in names:
            break
        path.append(part)
        annotation = inner.model_fields[names[part]].annotation
        holder, inner = inner, _section_type(annotation)
        listed = getattr(annotation, "__origin__", None) is list
        mapped = getattr(annotation, "__origin__", None) is dict and inner is None
    return tuple(path), holder, inner


def _field(model: type[BaseModel], key: str):
    return next((f for n, f in model.model_fields.items() if (f.alias or n) == key), None)


def _section_type(annotation) -> type[BaseModel] | None:
    for t in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _got(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (int, float)) or isinstance(value, bool) else repr(value)


def config_error(error: ValidationError, root: type[BaseModel] | None = None, prefix: tuple = (),
                 noun: str = "config key") -> ConfigError:
    """One message for a failed validation: every key at fault, by its dotted name, with the
    value found and what it must be (alternatives of a union joined), or a suggestion for an
    unknown key. ``root``: the model the error's locations start from (a run config by default;
    ``prefix`` names where that model sits)."""
    root = root or RunConfig
    by_key: dict[tuple, list[dict]] = {}
    for err in error.errors(include_url=False):
        loc = tuple(str(x) for x in err["loc"])
        path, holder, inner = _field_path(root, loc)
        if err["type"] == "extra_forbidden":  # the unknown key, and the keys its section knows
            path, holder = path + loc[len(path):len(path) + 1], inner
        by_key.setdefault(path, []).append((err, holder))
    lines = []
    for key, errs in by_key.items():
        name = _dotted(tuple(prefix) + key)
        first, holder = errs[0]
        if first["type"] == "missing":
            field = _field(holder, key[-1]) if holder and key else None
            what = f" ({field.description})" if field is not None and field.description else ""
            lines.append(f"{noun} {name!r} is required{what}")
            continue
        if first["type"] == "extra_forbidden":
            known = [f.alias or n for n, f in holder.model_fields.items()] if holder else []
            close = difflib.get_close_matches(key[-1], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            lines.append(f"unknown {noun} {name!r}{hint} (known: {', '.join(sorted(known))})")
            continue
        field = _field(holder, key[-1]) if holder and key else None
        if first["type"] in ("model_type", "model_attributes_type", "dict_type") and field \
                and _section_type(field.annotation):
            lines.append(f"config section {name!r} must be a mapping, got {first['input']!r}")
            continue
        # an error inside a list (an int in the location) is about one of its items
        wants = list(dict.fromkeys(("a list of " if any(isinstance(x, int) for x in e["loc"][len(key):]) else "")
                                   + _want(e) for e, _ in errs))
        if field is not None and type(None) in getattr(field.annotation, "__args__", ()) \
                and first["input"] is not None and "null" not in wants:
            wants.append("null")
        lines.append(f"{noun} {name!r} must be {' or '.join(wants)}, got {_got(first['input'])}")
    return ConfigError("; ".join(lines))


# --- validation ------------------------------------------------------------------------------

def validate_config(config: dict) -> dict:
    """The config with every default filled in, as plain dicts in section order; a ConfigError
    naming the key otherwise."""
    if not isinstance(config, dict):
        raise ConfigError(f"a config is a mapping of sections {SECTIONS}, got {type(config).__name__}")
    given = {str(s): ({} if v is None else v) for s, v in config.items()}
    try:
        out = RunConfig.model_validate(given).model_dump()
    except ValidationError as e:
        raise config_error(e) from None
    _check_together(out)
    return {s: out[s] for s in SECTIONS}


def _check_together(out: dict) -> None:
    d, t = out["data"], out["train"]
    if d["dataset"] is None and d["train_file"] is None:
        raise ConfigError("config needs data.dataset (a registry name) or data.train_file (a file "
                          "with dev_file beside it), or both (train from the file, dev and test "
                          "from the dataset)")
    if d["dataset"] is None and d["dev_file"] is None and t["select"] == "best_dev":
        raise ConfigError("data.dev_file is required with data.train_file: the checkpoint is "
                          "selected on dev, never on test (without a dev set: train.select: last "
                          "with train.epochs chosen by `python -m knowfree cv`)")
    if t["select"] != "best_dev" and t["patience"] is not None:
        raise ConfigError(f"train.patience={t['patience']} stops on dev F1, but train.select: {t['select']} "
                          "keeps a fixed epoch whatever dev says (fix: patience: null, or select: best_dev)")
    if isinstance(t["select"], int) and t["select"] > t["epochs"]:
        raise ConfigError(f"train.select={t['select']} is an epoch after the last one (train.epochs="
                          f"{t['epochs']}); fix: select an epoch <= {t['epochs']}, or raise train.epochs")
    if d["dataset"] is not None and (d["dev_file"] or d["test_file"]):
        raise ConfigError("data.dev_file / data.test_file go with data.train_file, not data.dataset "
                          "(with both, dev and test come from the dataset)")
    if d["k"] is not None and d["k_shot"] is not None:
        raise ConfigError(f"data.k ({d['k']} sentences) and data.k_shot ({d['k_shot']} mentions per label) "
                          "are two ways to draw the training subset; set one of them (the other null)")
    for key, what in (("k_shot", "k_shot: null"),
                      ("k", "k: null; a fusion set of a K-sentence setting already holds just those K sentences")):
        if d["dataset"] is not None and d["train_file"] is not None and d[key] is not None:
            raise ConfigError(f"data.{key} draws from the dataset's train split; with data.train_file the "
                              f"file is the training set (fix: {what})")
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


# --- hash ------------------------------------------------------------------------------------

# Keys added after runs were committed, at the value those runs had: left out of the hash when
# they hold it, so that older run folders (whose config.json lacks them) keep their hash.
HASH_NEUTRAL = {("train", "precision"): "fp32", ("model", "freeze_embeddings"): False,
                ("model", "freeze_layers"): 0, ("model", "max_span_length"): None,
                ("train", "init_from"): None, ("data", "k_shot"): None, ("train", "weight_preset"): None,
                ("train", "select"): "best_dev"}


def _portable(value: Any) -> Any:
    """An absolute path inside the repository as the path from its root, so that two checkouts
    of one commit give a run the same hash (notebook configs hold absolute paths to their work
    folder); anything else as it is. The files' contents are hashed apart (metrics' data)."""
    if isinstance(value, str) and value and Path(value).is_absolute():
        try:
            return Path(value).resolve().relative_to(REPO_ROOT.resolve()).as_posix()
        except (ValueError, OSError):
            return value
    return value


def config_hash(config: dict) -> str:
    """Hash of everything that can change the result: the output location is left out, and paths
    inside the repository count from its root."""
    kept = {}
    for section, values in config.items():
        if section == "output":
            continue
        if isinstance(values, dict):
            values = {k: _portable(v) for k, v in values.items()
                      if HASH_NEUTRAL.get((section, k), object()) != v}
        kept[section] = values
    return hash_json(kept)


# --- notebook parameters ---------------------------------------------------------------------

# Flat notebook parameter -> the trainer key it sets (knowfree.experiment.train_config). Where
# the notebook spells "none" as 0 (YAML files for papermill stay free of nulls), the trainer's
# null is written beside it.
NOTEBOOK_KEYS: dict[str, str] = {
    "encoder": "model.encoder", "head": "model.head",
    "freeze_embeddings": "model.freeze_embeddings", "freeze_layers": "model.freeze_layers",
    "max_span_length": "model.max_span_length",  # 0 -> null
    "epochs": "train.epochs", "batch_size": "train.batch_size", "encoder_lr": "train.encoder_lr",
    "head_lr": "train.head_lr", "seed": "train.seed", "threads": "train.threads",
    "eval_every": "train.eval_every", "precision": "train.precision",
    "k": "data.k", "k_shot": "data.k_shot",  # k_shot 0 -> null
    "sample_seed": "data.sample_seed",
}
ZERO_IS_NULL = ("max_span_length", "k_shot")


def notebook_config(P: dict, keys=NOTEBOOK_KEYS) -> dict:
    """The trainer sections the notebook parameters ``P`` set, by ``NOTEBOOK_KEYS``."""
    out: dict[str, dict] = {}
    for name, dotted in keys.items():
        if name in P:
            section, key = dotted.split(".")
            value = P[name]
            out.setdefault(section, {})[key] = None if name in ZERO_IS_NULL and not value else value
    return out


# --- show ------------------------------------------------------------------------------------

def show(model: type[BaseModel] | None = None, title: str = "knowfree trainer config") -> str:
    """Every key of ``model`` (the trainer config by default) at its default, as YAML a config
    file can start from, each key with its meaning as a comment; sections nest."""
    lines = [f"# {title}: every key at its default (python -m knowfree config show)"]

    def walk(m: type[BaseModel], indent: str) -> None:
        for name, field in m.model_fields.items():
            key = field.alias or name
            note = f"  # {field.description}" if field.description else ""
            inner = _section_type(field.annotation)
            if inner is not None and getattr(field.annotation, "__origin__", None) is not list:
                lines.append(f"{indent}{key}:{note}")
                walk(inner, indent + "  ")
                continue
            value = field.default_factory() if field.default_factory else field.default
            text = yaml.safe_dump({key: value}, default_flow_style=True, allow_unicode=True, width=10**6).strip()[1:-1]
            lines.append(f"{indent}{text}{note}")

    walk(model or RunConfig, "")
    return "\n".join(lines) + "\n"


def default(dotted: str) -> Any:
    """The default of one key, e.g. ``default('train.head_lr')``."""
    section, key = dotted.split(".")
    return SECTION_MODELS[section].model_fields[key].default


def load_config(path, overrides: list[str] = ()) -> dict:
    """A YAML config file with ``--set key.sub=value`` overrides applied, validated."""
    return validate_config(yamlio.apply_overrides(yamlio.load_file(path, "config"), list(overrides)))


def add_arguments(p) -> None:
    """`python -m knowfree config show|check`."""
    p.description = "the trainer's config keys: defaults, meanings, checks"
    sub = p.add_subparsers(dest="cmd", required=True)
    shown = sub.add_parser("show", help="every key at its default, with its meaning (YAML)")
    shown.add_argument("--augment", action="store_true",
                       help="the keys of `python -m knowfree augment` configs instead of the trainer's")
    check = sub.add_parser("check", help="validate a config file and print it with the defaults filled in")
    check.add_argument("config", help="YAML config file")
    check.add_argument("--set", action="append", default=[], metavar="KEY.SUB=VALUE",
                       help="override a key, as `train --set` does (repeatable)")


def run(args) -> int:
    if args.cmd == "show" and args.augment:
        from knowfree.knowledge.augment_config import AugmentConfig
        sys.stdout.write(show(AugmentConfig, "knowfree augment config"))
    elif args.cmd == "show":
        sys.stdout.write(show())
    else:
        config = load_config(args.config, args.set)
        sys.stdout.write(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        print(f"# config hash {config_hash(config)}")
    return 0
