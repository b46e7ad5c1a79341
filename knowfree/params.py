"""Parameter files for the numbered notebooks: schema, validation, hashing.

A parameter file is YAML with three top-level keys::

    run_name: smoke                 # names results/runs/<run_name>/ and prefixes every table
    shared:                         # values for every notebook that uses the key
      dataset: msra
      k: 50
    notebooks:                      # a notebook runs when its section is present ...
      01_data_exploration: {}
      03_training:
        head: cnn                   # ... and its section may set any key that notebook uses
      04_ablations:
        enabled: false              # ... unless it says so

Every key is declared once, as a field of the pydantic model ``Parameters`` (type, range,
choices, meaning; ``KEYS`` summarises each field), and every notebook lists the keys its
``parameters`` cell defines in ``NOTEBOOKS``; validation runs that model over the keys a notebook
or the ``shared`` section may set, and writes pydantic's findings in the file's terms. The
notebooks' own defaults are the smoke setting, so a file only states what differs; keys it leaves
out keep the notebook's default. A test keeps each notebook's ``parameters`` cell and this table
in step.

Validation happens before anything runs and reports every problem at once, each with the file,
the dotted key, the expected type and what was found.
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from knowfree import yamlio
from knowfree.config import HEADS, PRECISIONS
from knowfree.errors import ConfigError
from knowfree.provenance import REPO_ROOT, decode_utf8, hash_json

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


KNOWLEDGE_CHOICES = ("none", "taggers", "llm", "both")
TRAIN_SETS = ("gold", "fusion", "syn_fusion")
# Rows of the ablation table (notebooks 04 and 05), see knowfree.experiment.VARIANTS.
VARIANTS = ("full", "fusion_only", "synthetic_only", "plain", "cnn", "tagger")
DATA_FORMATS = ("auto", "jsonl", "conll", "bio", "bioes", "bmes", "weibo", "msra", "stockmark", "kmou")

PositiveInts = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]


def _key(help: str, *, hashed: bool = True, **constraints):
    """One parameter: its meaning and range. The default None means "not given here": the
    notebooks' parameters cells hold the defaults. ``hashed=False`` for keys that cannot change a
    result (where output goes, how runs are scheduled): the same setting must keep its params hash."""
    return Field(None, description=help, json_schema_extra=None if hashed else {"hashed": False}, **constraints)


class Parameters(BaseModel):
    """Every notebook parameter, typed once (pydantic, strict: YAML ``yes`` is no int, ``"8"``
    no number, an int is accepted for a float). Each notebook uses the subset NOTEBOOKS lists."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    run_name: str = _key("names results/runs/<run_name>/ and prefixes table and figure files", hashed=False)
    results_dir: str = _key("folder, relative to the repository root, for tables/, figures/, index.json and "
                            "README.md (an absolute path is taken as it is)", hashed=False)
    dataset: str = _key("registry name (knowfree.data.registry)")
    datasets: Annotated[list[str], Field(min_length=1)] = _key("registry names, one table block each")
    k: int = _key("training sentences: the first k of the seeded nested subset", ge=1)
    k_shot: int = _key("0: train on k sentences; N > 0: on the sentences that hold N mentions of every "
                       "target label instead (the K-shot sampler; k is then unused)", ge=0)
    ks: PositiveInts = _key("training-set sizes to compare")
    sample_seed: int = _key("seed of the K-sentence subset (one subset per K, nested across K; committed "
                            "LLM caches are made for one such subset)")
    seed: int = _key("training seed")
    seeds: Annotated[list[int], Field(min_length=1)] = _key("training seeds to average over")
    max_len: int = _key("drop sentences longer than this many tokens from every split (0: keep all); "
                        "only for quick runs, the test set then differs from the published one", ge=0)
    eval_limit: int = _key("score on the first this many dev and test sentences (0: all)", ge=0)
    encoder: str = _key("encoder alias, hub id or folder (knowfree.encoder), or 'tiny': a random "
                        "2-layer encoder for smoke runs")
    knowledge: Literal[KNOWLEDGE_CHOICES] = _key("where extension labels come from (explanation sentences "
                                                 "always come from the LLM: synthesis)")
    llm: str = _key("LLM model name as the response cache records it")
    llm_replay: bool = _key("answer LLM requests only from the response cache (no server); a missing "
                            "answer is an error that lists it")
    llm_base_url: str = _key("OpenAI-compatible server for live requests; '' starts the offline "
                             "llama.cpp model here")
    llm_servers: int = _key("with llm_base_url '': how many local llama.cpp servers to start, each pinned "
                            "to its share of the cores (on 2 cores, 2 one-thread servers gave 1.56x the "
                            "tokens/s of one: results/benchmarks/llm_servers.md)", ge=1)
    llm_cache: str = _key("response cache folder; '' means data/cache/llm/<dataset>-k<k>-s<sample_seed>")
    synthesis: bool = _key("also synthesise explanation sentences (syn_fusion): the LLM explains each "
                           "training sentence (replayed from llm_cache with llm_replay), the fusion-set "
                           "model of the first seed labels the sentences, and they take their extension "
                           "labels from the knowledge source; false: label extension only")
    syn_init: Literal["pretrained", "fusion"] = _key(
        "what a syn_fusion run starts from: 'pretrained' (the encoder alone) or 'fusion' (the selected "
        "weights of the fusion-set model that pseudo-labelled the synthetic sentences, as in the "
        "paper's workflow)")
    epochs: int = _key("training epochs", ge=1)
    tagger_epochs: int = _key("training epochs of a BIO-tagger run (head tagger); 0: epochs. A tagger "
                              "epoch costs about 0.4 of a span-head epoch, so a grid of both heads side "
                              "by side can give the tagger more epochs at no wall time", ge=0)
    syn_epochs: int = _key("training epochs of a run on a synthetic set (syn_fusion, syn_gold), which "
                           "scores dev every epoch; 0: epochs. These sets are several times the gold "
                           "set, so their epochs are that much longer", ge=0)
    batch_size: int = _key("training batch size", ge=1)
    encoder_lr: float = _key("learning rate of the encoder", ge=0)
    head_lr: float = _key("learning rate of the span head", ge=0)
    threads: int = _key("torch CPU threads", ge=1)
    eval_every: int = _key("score dev every this many epochs (and after the last); dev scoring can cost "
                           "more than the epoch on CPU", ge=1)
    precision: Literal[PRECISIONS] = _key("compute precision of training and scoring: fp32, bf16, or "
                                          "auto (bf16 where the hardware has it)")
    freeze_embeddings: bool = _key("do not train the encoder's word-embedding table")
    freeze_layers: int = _key("do not train the encoder's embedding block and bottom this many layers "
                              "(their output is cached per sentence)", ge=0)
    max_span_length: int = _key("widest span (tokens) the span heads score; 0: every span", ge=0)
    jobs: int = _key("trainings of the grid run side by side, each in its own process with "
                     "threads // jobs torch threads (one training keeps about 1.1 CPU cores busy)", ge=1)
    grid_backend: Literal["process", "ray"] = _key(
        "how a grid with jobs > 1 trains its runs: 'process' (spawned processes on this machine) or "
        "'ray' (one Ray task each: a local instance with jobs CPUs, or the cluster $RAY_ADDRESS names); "
        "scheduling only, so not hashed: the runs are the same", hashed=False)
    head: Literal[HEADS] = _key("model head")
    train_set: Literal[TRAIN_SETS] = _key("what notebook 03 trains on")
    variants: Annotated[list[Literal[VARIANTS]], Field(min_length=1)] = _key("ablation rows to run")
    n_show: int = _key("sentences rendered in browsers and error lists", ge=0)
    # notebook 06: your own data
    data_path: str = _key("your labelled data: a file or a folder of train/dev/test files "
                          "(knowfree.data.project); '' writes a small synthetic sample to try")
    data_format: Literal[DATA_FORMATS] = _key("auto (by extension) or a format of knowfree.data.formats")
    dataset_name: str = _key("the name your data goes by in configs (lower case, digits, - and _)")
    labels: str = _key("comma-separated labels to keep; '' keeps every label of train")
    lang: Literal["", "zh", "ja", "ko", "en"] = _key("language of the data; '' guesses it from the script")
    selection: Literal["dev", "cv"] = _key(
        "how the trained weights are chosen: dev (the epoch with the best dev F1) or cv (the epoch by "
        "cv_folds-fold cross-validation over the training set, then one model on all of it; the dev "
        "split is not used)")
    cv_folds: int = _key("folds of selection = cv", ge=2)
    export_format: Literal["hf", "onnx", "none"] = _key("export the trained run: hf, onnx, or none")


@dataclass(frozen=True)
class Key:
    """A read-only summary of one field of Parameters (for messages, docs and parity tests)."""
    type: str  # int, float, str, bool, list[int], list[str]
    help: str
    choices: tuple = ()  # allowed values (every element, for lists); empty: any
    minimum: float | None = None
    hashed: bool = True


def _words(annotation) -> tuple[str, tuple]:
    """('int', ()) for int, ('str', choices) for a Literal, ('list[int]', ...) for a list."""
    inner = getattr(annotation, "__args__", ())
    if getattr(annotation, "__origin__", None) is list:
        word, choices = _words(inner[0])
        return f"list[{word}]", choices
    if getattr(annotation, "__metadata__", None) is not None:  # Annotated[int, Field(ge=1)]
        return _words(inner[0])
    if inner:  # Literal
        return type(inner[0]).__name__, tuple(inner)
    return annotation.__name__, ()


def _minimum(field) -> float | None:
    annotation = field.annotation
    metadata = list(field.metadata)
    while getattr(annotation, "__origin__", None) is list or getattr(annotation, "__metadata__", None):
        if getattr(annotation, "__metadata__", None):
            metadata += list(annotation.__metadata__)
        annotation = annotation.__args__[0]
    return next((m.ge for m in metadata if hasattr(m, "ge")), None)


def _summary(field) -> Key:
    word, choices = _words(field.annotation)
    return Key(word, field.description, choices, _minimum(field), not field.json_schema_extra)


KEYS: dict[str, Key] = {name: _summary(f) for name, f in Parameters.model_fields.items()}

_WHERE = ("run_name", "results_dir")
_DATA = ("dataset", "k", "sample_seed", "max_len")
_KNOW = ("knowledge", "llm", "llm_replay", "llm_base_url", "llm_servers", "llm_cache", "synthesis")
_TRAIN = ("encoder", "eval_limit", "epochs", "batch_size", "encoder_lr", "head_lr", "threads",
          "eval_every", "precision", "freeze_embeddings", "freeze_layers", "max_span_length")
_GRID = ("ks", "sample_seed", "seeds", "max_len", "variants", "jobs", "grid_backend")

NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "01_data_exploration": _WHERE + _DATA + ("n_show",),
    # the training keys serve the pseudo-label model of explanation synthesis
    "02_llm_augmentation": _WHERE + _DATA + _KNOW + _TRAIN + ("seed", "n_show"),
    "03_training": _WHERE + _DATA + _KNOW + ("syn_init",) + _TRAIN + ("tagger_epochs", "syn_epochs", "seed",
                                                                      "head", "train_set", "n_show"),
    "04_ablations": _WHERE + ("dataset",) + _GRID + _KNOW + ("syn_init",) + _TRAIN + ("tagger_epochs", "syn_epochs"),
    "05_cross_lingual": _WHERE + ("datasets",) + _GRID + _KNOW + ("syn_init",) + _TRAIN + ("tagger_epochs", "syn_epochs"),
    "06_your_data": _WHERE + ("data_path", "data_format", "dataset_name", "labels", "lang", "k",
                              "k_shot", "sample_seed") + _KNOW + _TRAIN + ("seed", "selection", "cv_folds", "n_show",
                                                                        "export_format"),
}
TOP_LEVEL = ("run_name", "train_ahead", "shared", "notebooks")
# the notebooks whose runs `reproduce` can train ahead (knowfree.reproduce.train_ahead; 02: the
# pseudo-label model of explanation synthesis)
TRAINING_NOTEBOOKS = ("02_llm_augmentation", "03_training", "04_ablations", "05_cross_lingual")


class ParamsError(ConfigError):
    """All problems of one parameter file, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"invalid parameters in {source}:\n" + "\n".join(f"  - {p}" for p in problems))


@functools.lru_cache(maxsize=None)
def _model(keys: frozenset) -> type[BaseModel]:
    """The part of Parameters one notebook (or the shared section) may set."""
    fields = Parameters.model_fields
    return create_model("NotebookParameters", __config__=Parameters.model_config,
                        **{k: (fields[k].annotation, fields[k]) for k in sorted(keys)})


def _got(value) -> str:
    return f"{type(value).__name__} {value!r}"


def _problems(values: Mapping[str, Any], keys, prefix: str = "", also_known=()) -> list[str]:
    """Every key of ``values`` that ``keys`` do not allow or whose value does not fit, one line
    each in the file's terms: the dotted key, what was expected, what was found (``also_known``:
    keys of the section that are not parameters, offered for a typo)."""
    try:
        _model(frozenset(keys)).model_validate(dict(values))
        return []
    except ValidationError as e:
        errors = e.errors(include_url=False)
    lines: dict[str, str] = {}
    for err in errors:
        key = str(err["loc"][0])
        name, kind, ctx = prefix + key, err["type"], err.get("ctx", {})
        if name in lines:
            continue
        if kind == "extra_forbidden":
            lines[name] = _unknown(name, set(keys) | set(also_known))
            continue
        info, value, item = KEYS[key], values[key], err["input"]
        if kind == "literal_error":
            lines[name] = f"{name}: {item!r} is not one of {', '.join(map(str, info.choices))}"
        elif kind == "greater_than_equal":
            lines[name] = f"{name}: must be >= {ctx['ge']:g}, got {item!r}"
        elif kind == "too_short":
            lines[name] = f"{name}: expected a non-empty {info.type}, got []"
        elif kind == "finite_number":
            lines[name] = f"{name}: expected a finite number, got {item!r}"
        else:  # a wrong type, of the value or of one list item
            lines[name] = f"{name}: expected {info.type}, got {_got(value)}"
    return list(lines.values())


def _unknown(name: str, known) -> str:
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{name}: unknown key{hint}; known here: {', '.join(sorted(known))}"


@dataclass
class Params:
    """A validated parameter file."""
    source: str
    run_name: str
    shared: dict[str, Any]
    notebooks: dict[str, dict[str, Any]]  # section of each listed notebook, 'enabled' removed
    enabled: dict[str, bool]
    # scheduling only, so not hashed: trained ahead or by the notebooks, the runs are the same
    train_ahead: int = 0

    @property
    def hash(self) -> str:
        return hash_json({"shared": self.shared, "notebooks": self.notebooks, "enabled": self.enabled})

    def selected(self) -> list[str]:
        """Notebooks this file runs, in their numbered order."""
        return [n for n in NOTEBOOKS if self.enabled.get(n, False)]

    def for_notebook(self, name: str) -> dict[str, Any]:
        """The papermill parameters of one notebook: its keys from `shared`, then its section."""
        keys = NOTEBOOKS[name]
        out = {"run_name": self.run_name}
        out.update({k: v for k, v in self.shared.items() if k in keys})
        out.update(self.notebooks.get(name, {}))
        return out


def validate(raw: Any, source: str = "<params>") -> Params:
    """Check a parsed parameter file; raise ParamsError listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ParamsError(source, [f"expected a mapping with keys {', '.join(TOP_LEVEL)}, "
                                   f"got {type(raw).__name__}"])
    problems += [_unknown(str(k), TOP_LEVEL) for k in raw if k not in TOP_LEVEL]
    run_name = raw.get("run_name")
    if not isinstance(run_name, str) or not run_name.strip():
        problems.append(f"run_name: expected a non-empty str, got {run_name!r}")
    elif not run_name.replace("_", "").replace("-", "").isalnum():
        problems.append(f"run_name: use letters, digits, '-' and '_' only (it names folders and "
                        f"files), got {run_name!r}")

    ahead = raw.get("train_ahead", 0)
    if isinstance(ahead, bool) or not isinstance(ahead, int) or ahead < 0:
        problems.append(f"train_ahead: expected an int >= 0 (trainings side by side before the first "
                        f"training notebook; 0: none), got {type(ahead).__name__} {ahead!r}")
        ahead = 0

    used = {k for keys in NOTEBOOKS.values() for k in keys} - {"run_name"}
    shared = raw.get("shared") or {}
    if not isinstance(shared, dict):
        problems.append(f"shared: expected a mapping, got {type(shared).__name__}")
        shared = {}
    problems += _problems({str(k): v for k, v in shared.items()}, used, "shared.")

    sections = raw.get("notebooks") or {}
    if not isinstance(sections, dict):
        problems.append(f"notebooks: expected a mapping of notebook name to section, "
                        f"got {type(sections).__name__}")
        sections = {}
    notebooks, enabled = {}, {}
    for name, section in sections.items():
        if name not in NOTEBOOKS:
            problems.append(_unknown(f"notebooks.{name}", NOTEBOOKS))
            continue
        section = {} if section is None else section
        if not isinstance(section, dict):
            problems.append(f"notebooks.{name}: expected a mapping, got {type(section).__name__}")
            continue
        section = dict(section)
        on = section.pop("enabled", True)
        if not isinstance(on, bool):
            problems.append(f"notebooks.{name}.enabled: expected bool, got {type(on).__name__} {on!r}")
        allowed = set(NOTEBOOKS[name]) - {"run_name"}
        problems += _problems({str(k): v for k, v in section.items()}, allowed, f"notebooks.{name}.", {"enabled"})
        notebooks[name], enabled[name] = section, on is True
    if not problems and not any(enabled.values()):
        problems.append("notebooks: no notebook is enabled, nothing would run")
    if problems:
        raise ParamsError(source, problems)
    return Params(source, run_name, dict(shared), notebooks, enabled, ahead)


def load(path: str | Path) -> Params:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ParamsError(str(path), [f"cannot read the file: {e.strerror}"]) from None
    try:
        raw = yamlio.load(decode_utf8(data, str(path)))
    except yaml.YAMLError as e:
        raise ParamsError(str(path), [f"not valid YAML: {e}"]) from None
    return validate(raw, str(path))


def collect(notebook: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The values of one notebook's parameters, checked against the schema.

    Called right after the ``parameters`` cell, so a value edited by hand in JupyterLab gets
    the same clear error a parameter file would."""
    if notebook not in NOTEBOOKS:
        raise ParamsError(notebook, [_unknown(notebook, NOTEBOOKS)])
    keys = NOTEBOOKS[notebook]
    values = {k: namespace[k] for k in keys if k in namespace}
    problems = [f"{k}: not defined (the parameters cell must define every key of "
                f"knowfree.params.NOTEBOOKS[{notebook!r}])" for k in keys if k not in namespace]
    problems += _problems(values, keys)
    if problems:
        raise ParamsError(f"the parameters cell of {notebook}", problems)
    return values


def params_hash(values: Mapping[str, Any]) -> str:
    """Hash of the values that can change a result (output locations are left out)."""
    return hash_json({k: v for k, v in values.items() if KEYS[k].hashed})

