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

Every key is declared once in ``KEYS`` (type, meaning) and every notebook lists the keys its
``parameters`` cell defines in ``NOTEBOOKS``. The notebooks' own defaults are the smoke setting,
so a file only states what differs; keys it leaves out keep the notebook's default. A test keeps
each notebook's ``parameters`` cell and this table in step.

Validation happens before anything runs and reports every problem at once, each with the file,
the dotted key, the expected type and what was found.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from knowfree import yamlio
from knowfree.config import HEADS, PRECISIONS
from knowfree.errors import ConfigError
from knowfree.provenance import REPO_ROOT, decode_utf8, hash_json

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass(frozen=True)
class Key:
    type: str  # one of TYPES
    help: str
    choices: tuple = ()  # allowed values (every element, for lists); empty: any
    minimum: float | None = None
    # False for keys that only say where output goes: the same setting written to another
    # folder must keep its params hash.
    hashed: bool = True


TYPES = ("int", "float", "str", "bool", "list[int]", "list[str]")

KNOWLEDGE_CHOICES = ("none", "taggers", "llm", "both")
TRAIN_SETS = ("gold", "fusion", "syn_fusion")
# Rows of the ablation table (notebooks 04 and 05), see knowfree.experiment.VARIANTS.
VARIANTS = ("full", "fusion_only", "synthetic_only", "plain", "cnn", "tagger")

KEYS: dict[str, Key] = {
    "run_name": Key("str", "names results/runs/<run_name>/ and prefixes table and figure files",
                    hashed=False),
    "results_dir": Key("str", "folder, relative to the repository root, for tables/, figures/, "
                              "index.json and README.md (an absolute path is taken as it is)",
                       hashed=False),
    "dataset": Key("str", "registry name (knowfree.data.registry)"),
    "datasets": Key("list[str]", "registry names, one table block each"),
    "k": Key("int", "training sentences: the first k of the seeded nested subset", minimum=1),
    "k_shot": Key("int", "0: train on k sentences; N > 0: on the sentences that hold N mentions of "
                         "every target label instead (the K-shot sampler; k is then unused)", minimum=0),
    "ks": Key("list[int]", "training-set sizes to compare", minimum=1),
    "sample_seed": Key("int", "seed of the K-sentence subset (one subset per K, nested across K; "
                              "committed LLM caches are made for one such subset)"),
    "seed": Key("int", "training seed"),
    "seeds": Key("list[int]", "training seeds to average over"),
    "max_len": Key("int", "drop sentences longer than this many tokens from every split "
                          "(0: keep all); only for quick runs, the test set then differs from "
                          "the published one", minimum=0),
    "eval_limit": Key("int", "score on the first this many dev and test sentences (0: all)",
                      minimum=0),
    "encoder": Key("str", "encoder alias, hub id or folder (knowfree.encoder), or 'tiny': a "
                          "random 2-layer encoder for smoke runs"),
    "knowledge": Key("str", "where extension labels come from; llm and both also synthesise "
                            "explanations", choices=KNOWLEDGE_CHOICES),
    "llm": Key("str", "LLM model name as the response cache records it"),
    "llm_replay": Key("bool", "answer LLM requests only from the response cache (no server); "
                              "a missing answer is an error that lists it"),
    "llm_base_url": Key("str", "OpenAI-compatible server for live requests; '' starts the "
                               "offline llama.cpp model here"),
    "llm_servers": Key("int", "with llm_base_url '': how many local llama.cpp servers to start, each "
                              "pinned to its share of the cores (on 2 cores, 2 one-thread servers "
                              "gave 1.56x the tokens/s of one: results/benchmarks/llm_servers.md)",
                       minimum=1),
    "llm_cache": Key("str", "response cache folder; '' means data/cache/llm/<dataset>-k<k>-s<sample_seed>"),
    "synthesis": Key("bool", "with llm or both knowledge, also synthesise explanation sentences "
                             "(syn_fusion); false: label extension only"),
    "syn_init": Key("str", "what a syn_fusion run starts from: 'pretrained' (the encoder alone) or "
                           "'fusion' (the selected weights of the fusion-set model that "
                           "pseudo-labelled the synthetic sentences, as in the paper's workflow)",
                    choices=("pretrained", "fusion")),
    "epochs": Key("int", "training epochs", minimum=1),
    "tagger_epochs": Key("int", "training epochs of a BIO-tagger run (head tagger); 0: epochs. A tagger "
                                "step costs about half a span-head step, so a grid of both heads "
                                "side by side (jobs 2) gives the tagger twice the epochs at no wall "
                                "time", minimum=0),
    "batch_size": Key("int", "training batch size", minimum=1),
    "encoder_lr": Key("float", "learning rate of the encoder", minimum=0),
    "head_lr": Key("float", "learning rate of the span head", minimum=0),
    "threads": Key("int", "torch CPU threads", minimum=1),
    "eval_every": Key("int", "score dev every this many epochs (and after the last); dev "
                             "scoring can cost more than the epoch on CPU", minimum=1),
    "precision": Key("str", "compute precision of training and scoring: fp32, bf16, or auto "
                            "(bf16 where the hardware has it)", choices=PRECISIONS),
    "freeze_embeddings": Key("bool", "do not train the encoder's word-embedding table"),
    "freeze_layers": Key("int", "do not train the encoder's embedding block and bottom this many "
                                "layers (their output is cached per sentence)", minimum=0),
    "max_span_length": Key("int", "widest span (tokens) the span heads score; 0: every span",
                           minimum=0),
    "jobs": Key("int", "trainings of the grid run side by side, each in its own process with "
                       "threads // jobs torch threads (one training keeps about 1.1 CPU cores busy)",
                minimum=1),
    "head": Key("str", "model head", choices=HEADS),
    "train_set": Key("str", "what notebook 03 trains on", choices=TRAIN_SETS),
    "variants": Key("list[str]", "ablation rows to run", choices=VARIANTS),
    "n_show": Key("int", "sentences rendered in browsers and error lists", minimum=0),
    # notebook 06: your own data
    "data_path": Key("str", "your labelled data: a file or a folder of train/dev/test files "
                            "(knowfree.data.project); '' writes a small synthetic sample to try"),
    "data_format": Key("str", "auto (by extension) or a format of knowfree.data.formats",
                       choices=("auto", "jsonl", "conll", "bio", "bioes", "bmes", "weibo", "msra",
                                "stockmark", "kmou")),
    "dataset_name": Key("str", "the name your data goes by in configs (lower case, digits, - and _)"),
    "labels": Key("str", "comma-separated labels to keep; '' keeps every label of train"),
    "lang": Key("str", "language of the data; '' guesses it from the script",
                choices=("", "zh", "ja", "ko", "en")),
    "selection": Key("str", "how the trained weights are chosen: dev (the epoch with the best dev F1) "
                            "or cv (the epoch by cv_folds-fold cross-validation over the training "
                            "set, then one model on all of it; the dev split is not used)",
                     choices=("dev", "cv")),
    "cv_folds": Key("int", "folds of selection = cv", minimum=2),
    "export_format": Key("str", "export the trained run: hf, onnx, or none", choices=("hf", "onnx", "none")),
}

_WHERE = ("run_name", "results_dir")
_DATA = ("dataset", "k", "sample_seed", "max_len")
_KNOW = ("knowledge", "llm", "llm_replay", "llm_base_url", "llm_servers", "llm_cache", "synthesis")
_TRAIN = ("encoder", "eval_limit", "epochs", "batch_size", "encoder_lr", "head_lr", "threads",
          "eval_every", "precision", "freeze_embeddings", "freeze_layers", "max_span_length")
_GRID = ("ks", "sample_seed", "seeds", "max_len", "variants", "jobs")

NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "01_data_exploration": _WHERE + _DATA + ("n_show",),
    # the training keys serve the pseudo-label model of explanation synthesis (LLM knowledge)
    "02_llm_augmentation": _WHERE + _DATA + _KNOW + _TRAIN + ("seed", "n_show"),
    "03_training": _WHERE + _DATA + _KNOW + ("syn_init",) + _TRAIN + ("tagger_epochs", "seed", "head", "train_set",
                                                                      "n_show"),
    "04_ablations": _WHERE + ("dataset",) + _GRID + _KNOW + ("syn_init",) + _TRAIN + ("tagger_epochs",),
    "05_cross_lingual": _WHERE + ("datasets",) + _GRID + _KNOW + ("syn_init",) + _TRAIN + ("tagger_epochs",),
    "06_your_data": _WHERE + ("data_path", "data_format", "dataset_name", "labels", "lang", "k",
                              "k_shot", "sample_seed") + _KNOW + _TRAIN + ("seed", "selection", "cv_folds", "n_show",
                                                                        "export_format"),
}
TOP_LEVEL = ("run_name", "train_ahead", "shared", "notebooks")
# the notebooks whose runs `reproduce` can train ahead (knowfree.experiment.train_ahead)
TRAINING_NOTEBOOKS = ("03_training", "04_ablations", "05_cross_lingual")


class ParamsError(ConfigError):
    """All problems of one parameter file, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source, self.problems = source, problems
        super().__init__(f"invalid parameters in {source}:\n" + "\n".join(f"  - {p}" for p in problems))


def _type_problem(name: str, value: Any, key: Key) -> str | None:
    """Why ``value`` does not fit ``key``, or None. bool is never accepted as a number."""
    def scalar_ok(v, t):
        if isinstance(v, bool):
            return t == "bool"
        return {"int": isinstance(v, int), "float": isinstance(v, (int, float)),
                "str": isinstance(v, str), "bool": False}[t]

    if key.type.startswith("list["):
        inner = key.type[5:-1]
        ok = isinstance(value, list) and all(scalar_ok(v, inner) for v in value)
        items = value if ok else []
        if ok and not value:
            return f"{name}: expected a non-empty {key.type}, got []"
    else:
        ok = scalar_ok(value, key.type)
        items = [value] if ok else []
    if not ok:
        return f"{name}: expected {key.type}, got {type(value).__name__} {value!r}"
    for v in items:
        if isinstance(v, float) and not math.isfinite(v):
            return f"{name}: expected a finite number, got {v!r}"
        if key.choices and v not in key.choices:
            return f"{name}: {v!r} is not one of {', '.join(map(str, key.choices))}"
        if key.minimum is not None and v < key.minimum:
            return f"{name}: must be >= {key.minimum:g}, got {v!r}"
    return None


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
    for k, v in shared.items():
        if k not in used:
            problems.append(_unknown(f"shared.{k}", used))
        elif (p := _type_problem(f"shared.{k}", v, KEYS[k])):
            problems.append(p)

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
        for k, v in section.items():
            if k not in allowed:
                problems.append(_unknown(f"notebooks.{name}.{k}", allowed | {"enabled"}))
            elif (p := _type_problem(f"notebooks.{name}.{k}", v, KEYS[k])):
                problems.append(p)
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
    problems, values = [], {}
    for k in NOTEBOOKS[notebook]:
        if k not in namespace:
            problems.append(f"{k}: not defined (the parameters cell must define every key of "
                            f"knowfree.params.NOTEBOOKS[{notebook!r}])")
        elif (p := _type_problem(k, namespace[k], KEYS[k])):
            problems.append(p)
        else:
            values[k] = namespace[k]
    if problems:
        raise ParamsError(f"the parameters cell of {notebook}", problems)
    return values


def params_hash(values: Mapping[str, Any]) -> str:
    """Hash of the values that can change a result (output locations are left out)."""
    return hash_json({k: v for k, v in values.items() if KEYS[k].hashed})

