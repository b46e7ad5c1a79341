"""The configuration of `python -m knowfree augment`: defaults, types and validation.

Relative paths in a config are relative to the repository root (``repo_path``), so a command
gives the same result from any working directory.

Config (YAML, defaults in ``DEFAULTS``)::


    dataset: weibo          # registry name; or train_file (+ dev_file, format) instead
    k: 250                  # K-sentence subset (null: the whole training split)
    k_shot: null            # or K mentions per target label (the K-shot sampler), not with k
    sample_seed: 42
    knowledge: taggers      # llm | taggers | both
    tagger: null            # lac | jieba | sudachi | kiwi; null: the language's default
    unknown_entities: drop  # drop | other (keep unknown LLM types as ext.ent.OTHER)
    schema: {rule: count}   # extension weight rule of knowfree.data.schema, and its arguments
    llm: {base_url, model, api_key_env, mode: live|replay, cache, temperature, max_tokens,
          top_p, seed, concurrency, timeout, max_retries, prompts, kinds: [entity, pos],
          serve, servers}   # serve: 1.5b | 0.5b | a GGUF path: start llama.cpp on loopback
                            # for the run (live mode) instead of using base_url; servers: how
                            # many, each pinned to its share of the cores; base_url may also be
                            # a list of running servers of the same model
    synthesis: {enabled, min_chars, max_chars, weight, max_per_source, temperature,
                max_tokens, type_names, pseudo_label: {run_dir | train, batch_size}}
                            # train: a train config (mapping or YAML path); its model and
                            # train sections are used, its data are this setting's fusion set
    output: null            # default results/runs/augment/<name>
"""
from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Any, Sequence

from knowfree import yamlio
from knowfree.data.sample import LANGS
from knowfree.data.schema import check_rule
from knowfree.errors import ConfigError, shown
from knowfree.knowledge.normalise import UNKNOWN_ENTITY_POLICIES
from knowfree.provenance import REPO_ROOT

KNOWLEDGE_SOURCES = ("llm", "taggers", "both")
LLM_KINDS = ("entity", "pos")

_REQUIRED = object()
DEFAULTS: dict[str, Any] = {
    "dataset": None, "train_file": None, "dev_file": None, "format": "jsonl", "lang": None,
    "k": None, "k_shot": None, "sample_seed": 42,
    "knowledge": "taggers", "tagger": None, "unknown_entities": "drop",
    "schema": {"rule": "count"},
    "llm": {"base_url": None, "model": None, "serve": None, "servers": 1, "api_key_env": "OPENAI_API_KEY",
            "mode": "live",
            # 1024: a POS answer for a long Weibo post needs ~1000 tokens (the committed caches
            # are keyed with it, so notebooks and configs that keep the default replay them)
            "cache": None, "temperature": 0.0, "max_tokens": 1024, "top_p": 1.0, "seed": None,
            "concurrency": 2, "timeout": 300.0, "max_retries": 4, "prompts": None,
            "kinds": ["entity", "pos"]},
    "synthesis": {"enabled": False, "min_chars": 8, "max_chars": 160, "weight": 0.5,
                  "max_per_source": None, "temperature": None, "max_tokens": 512, "type_names": {},
                  "pseudo_label": {"run_dir": None, "train": None, "batch_size": 16}},
    "output": None,
}
# Values whose type differs from their default's (None defaults, or several types allowed).
_TYPES: dict[str, tuple] = {
    "dataset": (str,), "train_file": (str,), "dev_file": (str,), "lang": (str,), "k": (int,), "k_shot": (int,),
    "tagger": (str,), "schema": (dict, str), "output": (str,),
    "llm.base_url": (str, list), "llm.model": (str,), "llm.serve": (str,), "llm.cache": (str,), "llm.seed": (int,),
    "llm.prompts": (str, dict), "llm.temperature": (float, int), "llm.timeout": (float, int),
    "llm.top_p": (float, int),
    "synthesis.max_per_source": (int,), "synthesis.temperature": (float, int),
    "synthesis.weight": (float, int), "synthesis.type_names": (dict,),
    "synthesis.pseudo_label.run_dir": (str,), "synthesis.pseudo_label.train": (dict, str),
}



def _merge(defaults: dict, given: Any, prefix: str) -> dict:
    if not isinstance(given, dict):
        raise ConfigError(f"config {prefix.rstrip('.') or 'file'} must be a mapping, got {given!r}")
    for key in given:
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown augment config key {prefix}{key!r}{hint} "
                              f"(known: {', '.join(defaults)})")
    out = {}
    for key, default in defaults.items():
        name = prefix + key
        value = given.get(key, copy.deepcopy(default))
        if isinstance(default, dict) and name not in _TYPES:
            out[key] = _merge(default, value if value is not None else {}, name + ".")
            continue
        types = _TYPES.get(name) or (type(default),)
        if value is not None and (isinstance(value, bool) != (bool in types) or not isinstance(value, types)):
            want = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"augment config key {name!r} must be {want}, got {value!r}")
        out[key] = value
    return out


def validate_augment_config(raw: dict) -> dict:
    """The config with defaults filled in; ConfigError names any offending key."""
    cfg = _merge(DEFAULTS, raw or {}, "")
    if (cfg["dataset"] is None) == (cfg["train_file"] is None):
        raise ConfigError("augment config needs exactly one of dataset (a registry name) and "
                          "train_file (a file)")
    if cfg["knowledge"] not in KNOWLEDGE_SOURCES:
        raise ConfigError(f"knowledge must be one of {KNOWLEDGE_SOURCES}, got {cfg['knowledge']!r}")
    if cfg["unknown_entities"] not in UNKNOWN_ENTITY_POLICIES:
        raise ConfigError(f"unknown_entities must be one of {UNKNOWN_ENTITY_POLICIES}")
    if cfg["lang"] is not None and cfg["lang"] not in LANGS:
        raise ConfigError(f"lang must be one of {', '.join(LANGS)} (or null: the data's own), "
                          f"got {shown(cfg['lang'])}")
    if cfg["k"] is not None and cfg["k"] < 1:
        raise ConfigError(f"k must be >= 1 or null, got {cfg['k']}")
    if cfg["k_shot"] is not None and cfg["k_shot"] < 1:
        raise ConfigError(f"k_shot must be >= 1 or null, got {cfg['k_shot']}")
    if cfg["k"] is not None and cfg["k_shot"] is not None:
        raise ConfigError(f"k ({cfg['k']} sentences) and k_shot ({cfg['k_shot']} mentions per label) are two "
                          "ways to draw the subset; set one of them (the other null)")
    rule = cfg["schema"] if isinstance(cfg["schema"], dict) else {"rule": cfg["schema"]}
    check_rule(rule, "schema")
    cfg["schema"] = {"rule": "count", **rule}
    llm, syn = cfg["llm"], cfg["synthesis"]
    bad = [k for k in llm["kinds"] if k not in LLM_KINDS]
    # a kind listed twice would be asked and counted twice
    if bad or not llm["kinds"] or len(set(llm["kinds"])) < len(llm["kinds"]):
        raise ConfigError(f"llm.kinds must be a non-empty subset of {LLM_KINDS}, each once, got {llm['kinds']}")
    if cfg["knowledge"] in ("llm", "both") or syn["enabled"]:
        from knowfree.knowledge.server import MODELS
        if llm["serve"] is not None and llm["serve"] not in MODELS and not llm["model"]:
            raise ConfigError("llm.model must be set when llm.serve is a GGUF path (it names the "
                              "model in the response cache)")
        if llm["serve"] is not None and llm["base_url"]:
            raise ConfigError("give llm.base_url (a running server) or llm.serve (start one), not both")
        if llm["serve"] is None and llm["mode"] == "live" and not llm["base_url"]:
            raise ConfigError("llm.base_url must be set in live mode (or llm.serve: 1.5b to start "
                              "the offline model here)")
        missing = [k for k in ("model", "cache") if not llm[k] and not (k == "model" and llm["serve"])]
        if missing:
            raise ConfigError(f"llm.{' and llm.'.join(missing)} must be set: knowledge "
                              f"{cfg['knowledge']!r}{' with synthesis' if syn['enabled'] else ''} uses the LLM")
        if llm["servers"] < 1 or (llm["servers"] > 1 and llm["serve"] is None):
            raise ConfigError(f"llm.servers is {llm['servers']}: it must be >= 1, and more than 1 only "
                              "with llm.serve (for running servers, list their URLs in llm.base_url)")
        if isinstance(llm["base_url"], list) and not all(isinstance(u, str) for u in llm["base_url"]):
            raise ConfigError("llm.base_url must be a URL or a list of URLs, got a list holding "
                              f"{sorted({type(u).__name__ for u in llm['base_url']})}")
        if llm["mode"] not in ("live", "replay"):
            raise ConfigError(f"llm.mode must be live or replay, got {llm['mode']!r}")
        # in replay mode too: a value that only a live run would trip over is still wrong
        for key, ok, want in (("concurrency", llm["concurrency"] >= 1, ">= 1"),
                              ("max_retries", llm["max_retries"] >= 0, ">= 0"),
                              ("max_tokens", llm["max_tokens"] >= 1, ">= 1"),
                              ("timeout", math.isfinite(llm["timeout"]) and llm["timeout"] > 0, "a number > 0"),
                              ("temperature", math.isfinite(llm["temperature"]) and llm["temperature"] >= 0,
                               "a number >= 0"),
                              ("top_p", 0 < llm["top_p"] <= 1, "in (0, 1]")):
            if not ok:
                raise ConfigError(f"llm.{key} must be {want}, got {llm[key]!r}")
    if syn["enabled"]:
        pl = syn["pseudo_label"]
        if (pl["run_dir"] is None) == (pl["train"] is None):
            raise ConfigError("synthesis.pseudo_label needs exactly one of run_dir (a trained run "
                              "of this same setting) and train (a train config to train one here)")
        from knowfree.knowledge.synth import SynthConfig
        SynthConfig(syn["min_chars"], syn["max_chars"], float(syn["weight"]), syn["max_per_source"])
    return cfg


def load_augment_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    raw = yamlio.load_file(path, "augment config")
    return validate_augment_config(yamlio.apply_overrides(raw, overrides))


def repo_path(p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p

