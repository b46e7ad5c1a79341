"""The configuration of `python -m knowfree augment`: defaults, types and validation.

Relative paths in a config are relative to the repository root (``repo_path``), so a command
gives the same result from any working directory.

The typed schema is ``AugmentConfig`` below: every key with its default, type, range and
meaning (``python -m knowfree config show --augment`` prints them as YAML); errors come out in
the trainer config's format (``knowfree.config.config_error``). Checks that involve several
keys (a dataset or a train file; the LLM keys a knowledge source needs) follow in
``validate_augment_config``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence, Union

from pydantic import Field, ValidationError, field_validator

from knowfree import yamlio
from knowfree.config import Pos, Strict, config_error, null_means
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


class PseudoLabel(Strict):
    run_dir: Optional[str] = Field(None, description="a trained run of this same setting that pseudo-labels the synthetic sentences")
    train: Union[dict, str, None] = Field(None, description="or a train config (mapping or YAML path) to train one here; its data are this setting's fusion set")
    batch_size: Pos = Field(16, description="sentences per pseudo-labelling batch")


class Synthesis(Strict):
    enabled: bool = Field(False, description="ask the LLM to explain each entity and cut synthetic sentences from the answers")
    min_chars: int = Field(8, description="shortest synthetic sentence kept (characters)")
    max_chars: int = Field(160, description="longest synthetic sentence kept (characters)")
    weight: Number = Field(0.5, description="loss weight of each synthetic sentence")
    max_per_source: Optional[int] = Field(None, description="at most this many synthetic sentences per training sentence; null: all")
    temperature: Optional[Annotated[Number, Field(ge=0)]] = Field(None, description="sampling temperature of explanations; null: llm.temperature")
    max_tokens: Pos = Field(512, description="longest explanation answer (tokens)")
    type_names: dict = Field({}, description="label -> the type name the explanation prompt shows for it")
    pseudo_label: PseudoLabel = Field(PseudoLabel(), description="the model that labels the synthetic sentences")
    # with LLM knowledge the synthetic sentences' own extension labels are about 85 % of a run's
    # requests (Weibo K=250); the offline taggers label them in seconds
    extension_labels: Literal["same", "taggers"] = Field(
        "same", description="extension labels of the synthetic sentences: same (from the knowledge source "
                            "of the training sentences) or taggers (the offline taggers, no LLM requests)")

    _empty = field_validator("pseudo_label", mode="before")(null_means(dict))


class LLM(Strict):
    base_url: Union[str, list[str], None] = Field(None, description="OpenAI-compatible server(s) of one model: a URL or a list of URLs")
    model: Optional[str] = Field(None, description="model name, as the response cache records it")
    serve: Optional[str] = Field(None, description="1.5b | 0.5b | a GGUF path: start llama.cpp on loopback for the run instead of base_url")
    servers: Pos = Field(1, description="with serve: how many servers, each pinned to its share of the cores")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable that holds the API key")
    mode: Literal["live", "replay"] = Field("live", description="replay: answer only from the cache (a missing answer is an error)")
    cache: Optional[str] = Field(None, description="response cache folder (resumable; committed caches replay without a server)")
    reuse: list[str] = Field([], description="other cache folders whose answers are used too, read only (e.g. the committed cache of a smaller nested setting); new answers go to cache")
    temperature: Annotated[Number, Field(ge=0)] = Field(0.0, description="sampling temperature")
    # 1024: a POS answer for a long Weibo post needs ~1000 tokens (the committed caches are
    # keyed with it, so notebooks and configs that keep the default replay them)
    max_tokens: Pos = Field(1024, description="longest label answer (tokens)")
    top_p: Annotated[Number, Field(gt=0, le=1)] = Field(1.0, description="nucleus sampling mass")
    seed: Optional[int] = Field(None, description="sampling seed sent with each request")
    concurrency: Pos = Field(2, description="requests in flight (raised to one per server)")
    timeout: Annotated[Number, Field(gt=0)] = Field(300.0, description="seconds per request")
    max_retries: Annotated[int, Field(ge=0)] = Field(4, description="retries of a failed request")
    prompts: Union[str, dict, None] = Field(None, description="prompt templates: a folder laid out like the packaged one, or a mapping '<kind>[.<lang>]' -> text or file; null: the packaged ones")
    kinds: list[Literal[LLM_KINDS]] = Field(["entity", "pos"], description="label extension asked of the LLM: entity types, word segmentation + POS")


class AugmentConfig(Strict):
    dataset: Optional[str] = Field(None, description="registry name; or train_file (+ dev_file, format) instead")
    train_file: Optional[str] = Field(None, description="a training file instead of a dataset")
    dev_file: Optional[str] = Field(None, description="with train_file: its dev file")
    format: str = Field("jsonl", description="format of the files (knowfree.data.formats)")
    lang: Optional[Literal[LANGS]] = Field(None, description="language; null: the data's own")
    k: Optional[Pos] = Field(None, description="K-sentence subset; null: the whole training split")
    k_shot: Optional[Pos] = Field(None, description="or K mentions per target label (the K-shot sampler), not with k")
    sample_seed: int = Field(42, description="seed of the subset (committed LLM caches are made for 42)")
    knowledge: Literal[KNOWLEDGE_SOURCES] = Field("taggers", description="where extension labels come from: llm, taggers or both")
    tagger: Optional[str] = Field(None, description="lac | jieba | sudachi | kiwi; null: the language's default")
    unknown_entities: Literal[UNKNOWN_ENTITY_POLICIES] = Field("drop", description="LLM entity types outside the label set: drop, or other (ext.ent.OTHER)")
    schema_: Union[dict, str] = Field({"rule": "count"}, alias="schema", description="extension weight rule of knowfree.data.schema, and its arguments")
    llm: LLM = Field(LLM(), description="the LLM: endpoint or local server, sampling, cache")
    synthesis: Synthesis = Field(Synthesis(), description="explanation sentences (needs the LLM)")
    output: Optional[str] = Field(None, description="output folder; null: results/runs/augment/<name>")

    _empty = field_validator("llm", "synthesis", mode="before")(null_means(dict))


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

