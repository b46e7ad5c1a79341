"""The configuration of `python -m knowfree augment`: defaults, types and validation.

Relative paths in a config are relative to the repository root (``repo_path``), so a command
gives the same result from any working directory.

Config (YAML; the typed schema, defaults and ranges are ``AugmentConfig`` below; errors come
out in the trainer config's format, ``knowfree.config.config_error``)::


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

from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from knowfree import yamlio
from knowfree.config import config_error
from knowfree.data.sample import LANGS
from knowfree.data.schema import check_rule
from knowfree.errors import ConfigError
from knowfree.knowledge.normalise import UNKNOWN_ENTITY_POLICIES
from knowfree.provenance import REPO_ROOT

KNOWLEDGE_SOURCES = ("llm", "taggers", "both")
LLM_KINDS = ("entity", "pos")

# An int stays an int where a float is allowed: the config's hash names the output folder and
# the LLM request (temperature 0 and 0.0 are different JSON), so committed runs keep their names.
Number = Union[int, float]
Pos = Annotated[int, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_default=True)


def _none_is_empty(value):
    return {} if value is None else value  # `llm:` with nothing under it: every default


class PseudoLabel(_Section):
    run_dir: Optional[str] = None       # a trained run of this same setting, or
    train: Union[dict, str, None] = None  # a train config (mapping or YAML path) to train one here
    batch_size: Pos = 16


class Synthesis(_Section):
    enabled: bool = False
    min_chars: int = 8
    max_chars: int = 160
    weight: Number = 0.5
    max_per_source: Optional[int] = None
    temperature: Optional[Annotated[Number, Field(ge=0)]] = None
    max_tokens: Pos = 512
    type_names: dict = {}
    pseudo_label: PseudoLabel = PseudoLabel()

    _empty = field_validator("pseudo_label", mode="before")(_none_is_empty)


class LLM(_Section):
    base_url: Union[str, list[str], None] = None
    model: Optional[str] = None
    serve: Optional[str] = None
    servers: Pos = 1
    api_key_env: str = "OPENAI_API_KEY"
    mode: Literal["live", "replay"] = "live"
    cache: Optional[str] = None
    temperature: Annotated[Number, Field(ge=0)] = 0.0
    # 1024: a POS answer for a long Weibo post needs ~1000 tokens (the committed caches are
    # keyed with it, so notebooks and configs that keep the default replay them)
    max_tokens: Pos = 1024
    top_p: Annotated[Number, Field(gt=0, le=1)] = 1.0
    seed: Optional[int] = None
    concurrency: Pos = 2
    timeout: Annotated[Number, Field(gt=0)] = 300.0
    max_retries: Annotated[int, Field(ge=0)] = 4
    prompts: Union[str, dict, None] = None
    kinds: list[Literal[LLM_KINDS]] = ["entity", "pos"]


class AugmentConfig(_Section):
    dataset: Optional[str] = None
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    format: str = "jsonl"
    lang: Optional[Literal[LANGS]] = None
    k: Optional[Pos] = None
    k_shot: Optional[Pos] = None
    sample_seed: int = 42
    knowledge: Literal[KNOWLEDGE_SOURCES] = "taggers"
    tagger: Optional[str] = None
    unknown_entities: Literal[UNKNOWN_ENTITY_POLICIES] = "drop"
    schema_: Union[dict, str] = Field({"rule": "count"}, alias="schema")
    llm: LLM = LLM()
    synthesis: Synthesis = Synthesis()
    output: Optional[str] = None

    model_config = ConfigDict(populate_by_name=False)
    _empty = field_validator("llm", "synthesis", mode="before")(_none_is_empty)


def validate_augment_config(raw: dict) -> dict:
    """The config with defaults filled in; ConfigError names any offending key."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"an augment config is a mapping of keys, got {raw!r}")
    try:
        cfg = AugmentConfig.model_validate({str(k): v for k, v in raw.items()}).model_dump(by_alias=True)
    except ValidationError as e:
        raise config_error(e, AugmentConfig, noun="augment config key") from None
    if (cfg["dataset"] is None) == (cfg["train_file"] is None):
        raise ConfigError("augment config needs exactly one of dataset (a registry name) and "
                          "train_file (a file)")
    if cfg["k"] is not None and cfg["k_shot"] is not None:
        raise ConfigError(f"k ({cfg['k']} sentences) and k_shot ({cfg['k_shot']} mentions per label) are two "
                          "ways to draw the subset; set one of them (the other null)")
    rule = cfg["schema"] if isinstance(cfg["schema"], dict) else {"rule": cfg["schema"]}
    check_rule(rule, "schema")
    cfg["schema"] = {"rule": "count", **rule}
    llm, syn = cfg["llm"], cfg["synthesis"]
    # a kind listed twice would be asked and counted twice
    if not llm["kinds"] or len(set(llm["kinds"])) < len(llm["kinds"]):
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
        if llm["servers"] > 1 and llm["serve"] is None:
            raise ConfigError(f"llm.servers is {llm['servers']}: more than 1 only with llm.serve (for "
                              "running servers, list their URLs in llm.base_url)")
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

