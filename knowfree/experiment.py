"""The workflow steps the notebooks share: a K-sentence setting, its knowledge, trained variants.

Notebooks 02 to 05 all go through these functions, so a setting, an augmentation and a score
mean the same thing in every table. Everything is written under a work folder
(``Recorder.work_dir``: ``results/runs/<run_name>/work``) and reused when a notebook is run
again: settings are plain JSONL files, augmentations are the pipeline's own resumable output,
and a trained run folder that completed returns its metrics without training again.
"""
from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from knowfree.config import notebook_config
from knowfree.data import formats, registry, sampling
from knowfree.data.sample import Sample
from knowfree.provenance import hash_json, hash_samples
from knowfree import results
from knowfree.results import data_hashes
from knowfree.workers import train_in_workers

# the training sets that hold explanation sentences
SYNTHETIC_SETS = ("syn_fusion", "syn_gold")

# Ablation rows: training data, head, whether extension labels are trained.
#   syn_fusion: gold + extension labels + pseudo-labelled synthetic sentences (the full method)
#   fusion:     gold + extension labels ("no explanations")
#   syn_gold:   gold + synthetic sentences, extension labels removed ("no extension labels")
#   gold:       the K gold sentences alone
VARIANTS: dict[str, tuple[str, str, bool]] = {
    "full": ("syn_fusion", "knowfree", True),
    "fusion_only": ("fusion", "knowfree", True),
    "synthetic_only": ("syn_gold", "knowfree", False),
    "plain": ("gold", "knowfree", False),
    "cnn": ("gold", "cnn", False),
    "tagger": ("gold", "tagger", False),
}


@functools.lru_cache(maxsize=4)
def _load(dataset: str) -> dict[str, tuple[Sample, ...]]:
    """Parsing a dataset takes seconds (MSRA: about 10): once per kernel is enough."""
    return {k: tuple(v) for k, v in registry.load_dataset(dataset).items()}


def load_full(dataset: str) -> dict[str, list[Sample]]:
    """All splits of a registered dataset, as the registry gives them."""
    return {k: list(v) for k, v in _load(dataset).items()}


@dataclass
class Setting:
    """One low-resource setting: K training sentences of a dataset (or the sentences that hold K
    mentions of every label, ``k_shot``), dev and test, as files."""
    dataset: str
    k: int  # training sentences
    sample_seed: int
    max_len: int
    eval_limit: int
    folder: Path
    splits: dict[str, list[Sample]]
    dropped: dict[str, int]  # sentences longer than max_len, per split
    k_shot: int = 0  # > 0: the training set is the K-shot sampler's, with this many mentions per label

    @property
    def size_name(self) -> str:
        return f"kshot{self.k_shot}" if self.k_shot else f"k{self.k}"

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def lang(self) -> str:
        return self.splits["train"][0].lang

    def file(self, split: str) -> Path:
        return self.folder / f"{split}.jsonl"

    def hashes(self) -> dict[str, str]:
        return {split: hash_samples(samples) for split, samples in self.splits.items()}


def prepare(dataset: str, k: int, sample_seed: int, work_dir: Path, max_len: int = 0,
            eval_limit: int = 0, k_shot: int = 0) -> Setting:
    """The K-sentence setting: ``max_len`` filters every split first (0: no filter), then the
    training set is the first K of the seeded permutation (nested across K for one seed) or,
    with ``k_shot`` > 0, the K-shot sampler's sentences (``k_shot`` mentions of every target
    label, ``k`` unused), and dev and test are cut to their first ``eval_limit`` sentences (0: all)."""
    splits, dropped = {}, {}
    for split, samples in _load(dataset).items():
        kept = [s for s in samples if not max_len or len(s) <= max_len]
        splits[split], dropped[split] = kept, len(samples) - len(kept)
    if k_shot:
        labels = sorted({t.label for x in splits["train"] + splits.get("dev", []) for t in x.targets()})
        subset = sampling.k_shot(splits["train"], k_shot, seed=sample_seed, labels=labels, dataset=dataset)
        for label, found in subset.shortfall.items():
            print(f"warning: k_shot={k_shot}: label {label} has only {found} mentions in train; all are used",
                  file=sys.stderr)
    else:
        subset = sampling.k_sentences(splits["train"], k, seed=sample_seed, dataset=dataset)
    splits["train"] = subset.select(splits["train"])
    if eval_limit:
        splits["dev"], splits["test"] = splits["dev"][:eval_limit], splits["test"][:eval_limit]
    size = f"kshot{k_shot}" if k_shot else f"k{k}"
    folder = Path(work_dir) / "data" / f"{dataset}-{size}-s{sample_seed}-len{max_len}-eval{eval_limit}"
    for split, samples in splits.items():
        formats.write(samples, folder / f"{split}.jsonl", "jsonl")
    sampling.save_subset(subset, folder / "subset.json")
    return Setting(dataset, len(splits["train"]), sample_seed, max_len, eval_limit, folder, splits, dropped, k_shot)


# ---------------------------------------------------------------------------- statistics


def split_stats(splits: Mapping[str, list[Sample]]) -> pd.DataFrame:
    """Per split: sentences, tokens, lengths, target spans, nested spans, sentences without any."""
    rows = []
    for split, samples in splits.items():
        lengths = [len(s) for s in samples]
        spans = [sp for s in samples for sp in s.targets()]
        rows.append({
            "split": split, "sentences": len(samples), "tokens": sum(lengths),
            "mean_len": sum(lengths) / max(1, len(lengths)), "max_len": max(lengths, default=0),
            "spans": len(spans), "labels": len({sp.label for sp in spans}),
            "mean_span_len": sum(sp.end - sp.start for sp in spans) / max(1, len(spans)),
            "overlapping_spans": sum(formats.count_overlapping(s.with_spans(s.targets()))
                                     for s in samples),
            "no_entity": sum(1 for s in samples if not s.targets()),
        })
    return pd.DataFrame(rows)


def label_counts(splits: Mapping[str, list[Sample]], extensions: bool = False) -> pd.DataFrame:
    """Spans per label (rows) and split (columns), most frequent first."""
    counts = {split: Counter(sp.label for s in samples
                             for sp in (s.spans if extensions else s.targets()))
              for split, samples in splits.items()}
    df = pd.DataFrame(counts).fillna(0).astype(int)
    df = df.loc[df.sum(axis=1).sort_values(ascending=False).index]
    df.index.name = "label"
    return df.reset_index()


# ---------------------------------------------------------------------------- knowledge


def llm_used(knowledge: str) -> bool:
    """Whether the extension labels come (partly) from the LLM."""
    return knowledge in ("llm", "both")


def asks_llm(P: Mapping[str, Any]) -> bool:
    """Whether the LLM is asked anything: for extension labels, or for the explanations that
    synthesis cuts into sentences whatever the labels' source."""
    return P["knowledge"] != "none" and (llm_used(P["knowledge"]) or P["synthesis"])


def llm_cache_dir(P: Mapping[str, Any], setting: Setting) -> str:
    """The response cache: ``llm_cache``, or the committed one named after the setting."""
    return P["llm_cache"] or f"data/cache/llm/{setting.dataset}-{setting.size_name}-s{setting.sample_seed}"


def describe_llm(P: Mapping[str, Any]) -> str:
    """The provenance column ``llm``."""
    if not asks_llm(P):
        return "none"
    return f"{P['llm']} ({'replayed from cache' if P['llm_replay'] else 'live'})"


@dataclass
class Knowledge:
    """An augmentation of one setting: its result and the training sets it offers."""
    result: Any  # knowfree.knowledge.pipeline.AugmentResult
    source: str  # e.g. "taggers:lac", "llm:qwen2.5-... + taggers:lac"
    sets: dict[str, tuple[Path, list[Sample]]]  # training set name -> (file, samples)

    @property
    def stats(self) -> dict:
        return self.result.stats


def _augment_config(setting: Setting, P: Mapping[str, Any], llm: bool) -> dict:
    """The augment config of the label extension (the fusion set), with the LLM's settings
    where ``llm`` (its labels, or synthesis to follow)."""
    cfg: dict[str, Any] = {
        "train_file": str(setting.file("train")), "dev_file": str(setting.file("dev")),
        "format": "jsonl", "lang": setting.lang, "knowledge": P["knowledge"],
    }
    if llm:
        llm = {"model": P["llm"], "cache": llm_cache_dir(P, setting),
               "mode": "replay" if P["llm_replay"] else "live"}
        if not P["llm_replay"]:
            llm.update({"base_url": P["llm_base_url"]} if P["llm_base_url"]
                       else {"serve": "1.5b", "servers": P["llm_servers"]})
        cfg["llm"] = llm
    return cfg


def labeller(setting: Setting, fusion_file: Path, P: Mapping[str, Any], seed: int) -> tuple[dict, str]:
    """The model that pseudo-labels the explanation sentences, as ``(config, label)``: the
    KnowFREE head trained on this setting's fusion set with ``seed``, which is the grid's
    fusion_only run of that seed (one run folder, trained once, weights kept)."""
    return (train_config(setting, fusion_file, "knowfree", True, seed=seed, P=P),
            run_label(setting, "fusion", "knowfree", seed))


def augment(setting: Setting, P: Mapping[str, Any], work_dir: Path, seed: int,
            progress: bool = True) -> Knowledge | None:
    """Run the knowledge pipeline on the setting's K sentences (None when knowledge is 'none').

    ``P``: the notebook's validated parameters. First the label extension (the fusion set);
    with ``synthesis`` then the explanation sentences: the LLM's answers (replayed from the
    cache or asked live), extension labels from the knowledge source, target spans from the
    ``labeller`` of ``seed``, trained here unless its run folder is complete already (a
    model of this setting only, never of a larger one). An augmentation that finished before
    in the work folder (same config, knowledge code and training file) is read back, not rebuilt."""
    from knowfree.knowledge import pipeline
    from knowfree.knowledge.report import source_name

    if P["knowledge"] == "none":
        return None
    # without LLM labels the fusion set's config (and folder name) holds no LLM settings
    cfg = _augment_config(setting, P, llm=llm_used(P["knowledge"]))
    name = f"{setting.name}-{P['knowledge']}"
    cfg["output"] = str(Path(work_dir) / "augment" / f"{name}-{hash_json(cfg)[:8]}")
    result = pipeline.augment(cfg, progress=progress, reuse=True)
    fusion_file = result.output / "fusion.jsonl"
    sets = {"fusion": (fusion_file, result.fusion)}
    if P["synthesis"]:
        config, label = labeller(setting, fusion_file, P, seed)
        train_run(config, work_dir, label, progress=progress)
        cfg = {**_augment_config(setting, P, llm=True), "synthesis": {
            "enabled": True, "pseudo_label": {"run_dir": str(run_folder(config, work_dir, label))}}}
        cfg["output"] = str(Path(work_dir) / "augment" / f"{name}-syn-{hash_json(cfg)[:8]}")
        result = pipeline.augment(cfg, progress=progress, reuse=True)
        sets["syn_fusion"] = (result.output / "syn_fusion.jsonl", result.syn_fusion)
        syn_gold = without_extensions(result.syn_fusion)
        formats.write(syn_gold, result.output / "syn_gold.jsonl", "jsonl")
        sets["syn_gold"] = (result.output / "syn_gold.jsonl", syn_gold)
    return Knowledge(result, source_name(result.stats), sets)


def parse_rates(k: Knowledge) -> pd.DataFrame:
    """Per LLM answer kind: parse outcomes and hallucinated strings as fractions of answers/items."""
    rows = []
    for kind, c in (k.stats["sources"].get("llm") or {}).get("by_kind", {}).items():
        answers = max(1, c.get("requests", 0) - c.get("failed_requests", 0))
        rows.append({"kind": kind, **{f"parse_{s}": c.get(f"parse_{s}", 0) / answers
                                      for s in ("ok", "repaired", "empty", "failed")},
                     "hallucinated": c.get("hallucinated", 0) / max(1, c.get("items", 0))})
    return pd.DataFrame(rows)


def inspect_records(k: Knowledge) -> list[dict]:
    """Per training sentence, what ``viz.knowledge_card`` shows: the sample with its extension
    spans, the synthetic sentences cut from its explanation, and the raw LLM answers."""
    synthetic: dict[str, list[Sample]] = {}
    for s in k.sets.get("syn_fusion", (None, []))[1]:
        if s.synthetic:
            synthetic.setdefault(s.source_id or "", []).append(s)
    answers: dict[str, dict[str, str]] = {}
    from knowfree.knowledge.pipeline import ANSWERS_FILE
    path = Path(k.result.output) / ANSWERS_FILE
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                answers.setdefault(str(d["id"]), {})[str(d["kind"])] = str(d["text"])
    return [{"sample": s, "synthetic": synthetic.get(s.id, []), "answers": answers.get(s.id, {})}
            for s in k.result.fusion]


# ---------------------------------------------------------------------------- training

# Encoder name for a randomly initialised 2-layer BERT with the setting's characters as its
# vocabulary: seconds per epoch instead of minutes, for smoke runs whose scores mean nothing.
TINY_ENCODER = "tiny"


def encoder_path(name: str, setting: Setting) -> str:
    """What the model config gets: ``name`` itself, or the tiny encoder built for ``setting``."""
    if name != TINY_ENCODER:
        return name
    from knowfree.encoder import build_tiny_encoder

    folder = setting.folder / "tiny-encoder"
    if not (folder / "config.json").is_file():
        build_tiny_encoder(folder, [s.tokens for samples in setting.splits.values() for s in samples])
    return str(folder)


def without_extensions(samples: list[Sample]) -> list[Sample]:
    return [s.with_spans(s.targets()) for s in samples]


def training_set(setting: Setting, train_set: str, knowledge: Knowledge | None
                 ) -> tuple[Path, list[Sample]] | None:
    """The file and samples a variant trains on; None when the knowledge does not offer it
    (no knowledge at all, or no synthetic sentences without the LLM)."""
    if train_set == "gold":
        return setting.file("train"), setting.splits["train"]
    return knowledge.sets.get(train_set) if knowledge is not None else None


def missing_set_reason(train_set: str, knowledge: str) -> str:
    if knowledge == "none":
        return f"needs knowledge ({train_set} set), but knowledge is 'none'"
    return f"needs the {train_set} set, which only synthesis (synthesis: true) makes"


def init_for(train_set: str, head: str, extensions: bool, knowledge: Knowledge | None,
             P: Mapping[str, Any]) -> str | None:
    """The run folder a training starts from under ``syn_init``, or None (the pretrained encoder).

    ``syn_init: fusion`` continues a syn_fusion run from the model that pseudo-labelled its
    synthetic sentences: the KnowFREE head with extension labels, trained on this setting's
    fusion set (seed: the notebook's first). Runs with another head or without extension
    channels have another architecture and start from the encoder."""
    if P.get("syn_init") != "fusion" or train_set != "syn_fusion" or knowledge is None:
        return None
    if (head, extensions) != ("knowfree", True):
        return None
    synthesis = knowledge.stats.get("synthesis") or {}
    run_dir = (synthesis.get("pseudo_label") or {}).get("run_dir")
    if not run_dir:
        raise ValueError("syn_init='fusion' needs the pseudo-label model of explanation synthesis, "
                         "and this augmentation has none (fix: synthesis=True)")
    return run_dir


# notebook parameters every training run takes from P (the others come from the setting, the
# run's head and seed)
TRAINER_PARAMS = ("freeze_embeddings", "freeze_layers", "max_span_length", "epochs", "batch_size",
                  "encoder_lr", "head_lr", "threads", "eval_every", "precision")


def train_config(setting: Setting, train_file: Path, head: str, extensions: bool, *, seed: int,
                 P: Mapping[str, Any], init_from: str | None = None, synthetic: bool = False) -> dict:
    """The trainer config of one run (knowfree.config) from notebook parameters;
    ``init_from``: a run folder to start from (``init_for``); a tagger run trains
    ``tagger_epochs`` epochs where that is set (not 0); a run on a ``synthetic`` set
    ``syn_epochs`` (where set), scoring dev every epoch."""
    # the notebook parameters that set trainer keys, translated by knowfree.config.NOTEBOOK_KEYS
    config = notebook_config({k: P[k] for k in TRAINER_PARAMS})
    config["data"] = {"train_file": str(train_file), "dev_file": str(setting.file("dev")),
                      "test_file": str(setting.file("test")), "format": "jsonl"}
    config["model"].update(head=head, encoder=encoder_path(P["encoder"], setting), use_extensions=extensions)
    config["train"]["seed"] = seed
    if head == "tagger" and P.get("tagger_epochs"):
        config["train"]["epochs"] = P["tagger_epochs"]
    if synthetic and P.get("syn_epochs"):
        # an epoch of a synthetic set is several gold epochs long: scored every epoch
        config["train"].update(epochs=P["syn_epochs"], eval_every=1)
    config["output"] = {"keep_last": False}
    if init_from is not None:
        config["train"]["init_from"] = str(init_from)
    return config


@dataclass
class SingleRun:
    """Notebook 03's run, planned: its setting, knowledge, training sentences and config."""
    setting: Setting
    knowledge: Knowledge | None
    train_samples: list[Sample]
    config: dict
    label: str


def single_run(P: Mapping[str, Any], work_dir: Path, progress: bool = True) -> SingleRun:
    """The run notebook 03 trains under its parameters ``P`` (``train_run`` trains it);
    ``train_ahead`` plans it the same way."""
    setting = prepare(P["dataset"], P["k"], P["sample_seed"], work_dir, P["max_len"], P["eval_limit"])
    train_set, head = P["train_set"], P["head"]
    know = augment(setting, P, work_dir, P["seed"], progress) if train_set != "gold" else None
    chosen = training_set(setting, train_set, know)
    if chosen is None:
        raise ValueError(f"train_set={train_set!r} " + missing_set_reason(train_set, P["knowledge"]))
    train_file, samples = chosen
    # the tagger baseline has no span grid to put extension labels on
    extensions = train_set != "gold" and head != "tagger"
    config = train_config(setting, train_file, head, extensions, seed=P["seed"], P=P,
                          init_from=init_for(train_set, head, extensions, know, P),
                          synthetic=train_set in SYNTHETIC_SETS)
    return SingleRun(setting, know, samples, config, run_label(setting, train_set, head, P["seed"]))


def run_folder(config: dict, work_dir: Path, label: str) -> Path:
    """Where a run of ``config`` lives: named by its label and config hash."""
    from knowfree.config import config_hash, validate_config
    return Path(work_dir) / "train" / f"{label}-{config_hash(validate_config(config))[:8]}"


def train_run(config: dict, work_dir: Path, label: str, keep_weights: bool = True,
              progress: bool = True) -> dict:
    """Train (or resume, or reuse) one run; its folder is named by ``label`` and the config, so
    notebooks 03 and 04 share a run they both ask for.

    ``keep_weights=False`` deletes the selected weights of a run this call completed, once its
    metrics are written: ablation grids need only scores, and each e5-small checkpoint is about
    0.5 GB. A run that was complete before (notebook 03's) keeps its weights."""
    from knowfree.train import train

    folder = run_folder(config, work_dir, label)
    existed = (folder / "metrics.json").is_file()
    metrics = train(config, run_dir=folder, progress=progress)
    if not keep_weights and not existed:
        (folder / "model.safetensors").unlink(missing_ok=True)
    return metrics


def cv_run(config: dict, work_dir: Path, label: str, folds: int, progress: bool = True) -> dict:
    """Notebook 06 with ``selection = "cv"``: the epoch chosen by ``folds``-fold
    cross-validation over the config's training file, then the final model on all of it
    (``knowfree.crossval``); the dev file is not used. Resumable and reused like ``train_run``:
    the folder is named by ``label`` and the config. Returns cv.json's record with the final
    run's metrics under ``final_metrics``."""
    from knowfree.config import config_hash, validate_config
    from knowfree.crossval import cross_validate

    config = json.loads(json.dumps(config))
    config["data"]["dev_file"] = None
    config["train"]["select"] = "last"  # hashed as the final run is validated; cv sets its epoch
    folder = Path(work_dir) / "cv" / f"{label}-cv{folds}-{config_hash(validate_config(config))[:8]}"
    del config["train"]["select"]
    done = folder / "cv.json"
    record = json.loads(done.read_text(encoding="utf-8")) if done.is_file() else \
        cross_validate(config, folder, folds, progress=progress)
    record["final_metrics"] = json.loads((folder / "final" / "metrics.json").read_text(encoding="utf-8"))
    record["report"] = (folder / "cv.md").read_text(encoding="utf-8")
    return record


def run_label(setting: Setting, train_set: str, head: str, seed: int) -> str:
    return f"{setting.name}-{train_set}-{head}-s{seed}"


def scores_row(metrics: Mapping[str, Any]) -> dict:
    """Dev and test P/R/F1 in percent, best epoch and time of one completed run."""
    row = {}
    for split in ("dev", "test"):
        m = metrics.get(split) or {}
        for key, short in (("precision", "p"), ("recall", "r"), ("f1", "f1")):
            row[f"{split}_{short}"] = 100 * m[key] if key in m else float("nan")
    row["best_epoch"] = metrics.get("best_epoch")
    row["wall_s"] = round(metrics.get("wall_seconds", float("nan")), 1)
    history = Path(metrics.get("run_dir", "")) / "epochs.csv"
    row.update(results.convergence(pd.read_csv(history)) if history.is_file()
               else {"dev_rise_last_quarter": float("nan"), "converged": None})
    return row


def is_complete(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def as_grid_trains(config: dict, work_dir: Path, label: str, jobs: int, ready=is_complete
                    ) -> tuple[dict, Path]:
    """The config and folder a grid of ``jobs`` parallel trainings uses for ``config``: as given
    where that run is ``ready`` (complete: notebook 03's, say) or ``jobs`` is 1, else with
    ``threads // jobs`` torch threads."""
    folder = run_folder(config, work_dir, label)
    if jobs == 1 or ready(folder):
        return config, folder
    config = json.loads(json.dumps(config))
    config["train"]["threads"] = max(1, (config["train"].get("threads") or 1) // jobs)
    return config, run_folder(config, work_dir, label)


def train_many(jobs_list: list[tuple[dict, str]], work_dir: Path, jobs: int = 1,
               progress: bool = True, backend: str = "process") -> list[dict]:
    """Train (or reuse) the runs ``(config, label)`` of a grid, ``jobs`` at a time; metrics in
    the order given.

    A complete run of a config as given is reused (notebook 03's run among them). With
    ``jobs`` > 1 each run still to train gets ``threads // jobs`` torch threads and its own
    spawned process: one training keeps only about 1.1 of 2 CPU cores busy, so two side by side
    nearly halve the grid's time. Thread count is part of a run's config (its float reductions
    may differ), so those runs are their own folders and are reused as such on the next call."""
    out: list[dict | None] = [None] * len(jobs_list)
    todo: dict[Path, tuple[dict, bool]] = {}
    where: dict[int, Path] = {}
    for i, (config, label) in enumerate(jobs_list):
        config, folder = as_grid_trains(config, work_dir, label, jobs)
        if jobs > 1 and not is_complete(folder):
            todo.setdefault(folder, (config, False))
            where[i] = folder
        else:  # in this process: a run to train one after another, or a complete one to reuse
            out[i] = train_run(config, work_dir, label, keep_weights=False, progress=progress and jobs == 1)
    if todo:
        trained = train_in_workers(todo, jobs, progress, backend)
        for i, folder in where.items():
            out[i] = trained[folder]
    return out


def grid(datasets: list[str], P: Mapping[str, Any], work_dir: Path, progress: bool = True
         ) -> tuple[pd.DataFrame, list[dict]]:
    """Notebooks 04 and 05: every dataset x K x training seed x variant, one row per run,
    trained ``P["jobs"]`` at a time (``train_many``).

    Returns the rows (scores in percent, provenance per row) and the variants that could not
    run, with the reason (a knowledge set the configured knowledge cannot give)."""
    planned, rows, skipped = plan_grid(datasets, P, work_dir, progress)
    trained = train_many(planned, work_dir, P.get("jobs", 1), progress, P.get("grid_backend", "process"))
    for i, (row, metrics) in enumerate(zip(rows, trained)):
        keys = ("dataset", "k", "variant", "seed")
        threads = json.loads((Path(metrics["run_dir"]) / "config.json").read_text(encoding="utf-8"))["train"]["threads"]
        rows[i] = {**{key: row.pop(key) for key in keys}, **scores_row(metrics), "threads": threads, **row}
    return pd.DataFrame(rows), skipped


def plan_grid(datasets: list[str], P: Mapping[str, Any], work_dir: Path, progress: bool = True
              ) -> tuple[list[tuple[dict, str]], list[dict], list[dict]]:
    """The runs of ``grid`` before any is trained: ``(config, label)`` pairs, their table rows
    (provenance, no scores yet) and the variants that cannot run."""
    planned, rows, skipped = [], [], []
    for dataset in datasets:
        for k in P["ks"]:
            setting = prepare(dataset, k, P["sample_seed"], work_dir, P["max_len"], P["eval_limit"])
            hashes = setting.hashes()
            wanted = {VARIANTS[v][0] for v in P["variants"]}
            know = augment(setting, P, work_dir, P["seeds"][0], progress) \
                if wanted != {"gold"} else None
            for variant in P["variants"]:
                train_set, head, extensions = VARIANTS[variant]
                chosen = training_set(setting, train_set, know)
                if chosen is None:
                    skipped.append({"dataset": dataset, "k": k, "variant": variant,
                                    "reason": missing_set_reason(train_set, P["knowledge"])})
                    continue
                path, samples = chosen
                init = init_for(train_set, head, extensions, know, P)
                for seed in P["seeds"]:
                    config = train_config(setting, path, head, extensions, seed=seed, P=P, init_from=init,
                                          synthetic=train_set in SYNTHETIC_SETS)
                    planned.append((config, run_label(setting, train_set, head, seed)))
                    rows.append({"dataset": dataset, "k": k, "variant": variant, "seed": seed,
                                 "data_hashes": data_hashes({**hashes, "train": hash_samples(samples)}),
                                 "encoder": P["encoder"],
                                 "knowledge": know.source if train_set != "gold" else "none",
                                 "llm": describe_llm(P) if train_set != "gold" else "none",
                                 "init": "fusion model" if init else "pretrained"})
    if not rows:
        raise ValueError("no variant could run: " + "; ".join(
            f"{s['variant']} ({s['dataset']}, K={s['k']}) {s['reason']}" for s in skipped))
    return planned, rows, skipped
