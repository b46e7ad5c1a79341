"""`python -m knowfree augment CONFIG.yaml`: fusion and syn_fusion training sets.

Steps (docs/method.md): take the K-sentence training subset; add extension spans from
the configured knowledge source (``llm``: entity and POS answers, parsed, aligned and
normalised; ``taggers``: an offline segmenter/POS tagger; ``both``: the union); write
``fusion.jsonl`` and its label schema. With synthesis on: ask the LLM to continue and explain
each sentence, cut the answers into synthetic sentences, give them extension spans the same
way, pseudo-label their targets with a model trained on this same setting only, and write
``syn_fusion.jsonl``.

Output folder (every file written atomically; ``stats.json`` last, so its presence marks a
finished run)::

    fusion.jsonl        gold targets + extension spans of the K training sentences
    schema.json         LabelSchema.from_samples(fusion, dataset targets, weight rule)
    dev.jsonl           gold dev split (synthesis with a pseudo-label model trained here)
    pseudo_label_run/   that model's run folder (synthesis.pseudo_label.train)
    syn_fusion.jsonl    fusion + pseudo-labelled synthetic samples (synthesis on)
    syn_schema.json     its label schema
    stats.json          counts, rates, timings and provenance; llm_cache: the cache lines
                        skipped (partial, corrupt) and segments that differ from its provenance

``python -m knowfree augment pack RUN_DIR`` copies a finished run's sets (gzip), schemas and
stats into results/augment/NAME, the compact form that is committed behind a result.

Resuming: LLM answers come from the response cache (a rerun asks only for what is missing,
and failed requests are asked again); the pseudo-label trainer resumes its own run folder;
everything else is recomputed, which is cheap. Relative paths in a config are relative to the
repository root, so the command gives the same result from any working directory.

Config (YAML, defaults in ``DEFAULTS``)::

    dataset: weibo          # registry name; or train_file (+ dev_file, format) instead
    k: 250                  # K-sentence subset (null: the whole training split)
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

import argparse
import copy
import difflib
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence


from knowfree import yamlio
from knowfree import __version__
from knowfree.data.sample import LANGS, Sample, Span, is_extension
from knowfree.data.schema import LabelSchema, check_rule
from knowfree.errors import ConfigError, InputError, KnowfreeError, path_given, shown
from knowfree.knowledge import align
from knowfree.knowledge.normalise import (SEG_WORD, UNKNOWN_ENTITY_POLICIES, Normaliser, alias_tables,
                                          wants_segment)
from knowfree.provenance import (REPO_ROOT, atomic_write_gzip, atomic_write_json, atomic_write_text,
                                 cache_root, git_commit, guard_outputs, hash_json, hash_samples,
                                 read_json_file, sha256_bytes, sha256_file)

KNOWLEDGE = ("llm", "taggers", "both")
LLM_KINDS = ("entity", "pos")

_REQUIRED = object()
DEFAULTS: dict[str, Any] = {
    "dataset": None, "train_file": None, "dev_file": None, "format": "jsonl", "lang": None,
    "k": None, "sample_seed": 42,
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
    "dataset": (str,), "train_file": (str,), "dev_file": (str,), "lang": (str,), "k": (int,),
    "tagger": (str,), "schema": (dict, str), "output": (str,),
    "llm.base_url": (str, list), "llm.model": (str,), "llm.serve": (str,), "llm.cache": (str,), "llm.seed": (int,),
    "llm.prompts": (str, dict), "llm.temperature": (float, int), "llm.timeout": (float, int),
    "llm.top_p": (float, int),
    "synthesis.max_per_source": (int,), "synthesis.temperature": (float, int),
    "synthesis.weight": (float, int), "synthesis.type_names": (dict,),
    "synthesis.pseudo_label.run_dir": (str,), "synthesis.pseudo_label.train": (dict, str),
}


# -- config ------------------------------------------------------------------------------


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


def validate_config(raw: dict) -> dict:
    """The config with defaults filled in; ConfigError names any offending key."""
    cfg = _merge(DEFAULTS, raw or {}, "")
    if (cfg["dataset"] is None) == (cfg["train_file"] is None):
        raise ConfigError("augment config needs exactly one of dataset (a registry name) and "
                          "train_file (a file)")
    if cfg["knowledge"] not in KNOWLEDGE:
        raise ConfigError(f"knowledge must be one of {KNOWLEDGE}, got {cfg['knowledge']!r}")
    if cfg["unknown_entities"] not in UNKNOWN_ENTITY_POLICIES:
        raise ConfigError(f"unknown_entities must be one of {UNKNOWN_ENTITY_POLICIES}")
    if cfg["lang"] is not None and cfg["lang"] not in LANGS:
        raise ConfigError(f"lang must be one of {', '.join(LANGS)} (or null: the data's own), "
                          f"got {shown(cfg['lang'])}")
    if cfg["k"] is not None and cfg["k"] < 1:
        raise ConfigError(f"k must be >= 1 or null, got {cfg['k']}")
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


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    raw = yamlio.load_file(path, "augment config")
    return validate_config(yamlio.apply_overrides(raw, overrides))


def _path(p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


# -- data --------------------------------------------------------------------------------


@dataclass
class Setting:
    name: str
    lang: str
    gold: list[Sample]  # the K training sentences
    dev: list[Sample]
    targets: list[str]
    subset: dict  # k, seed, content_hash, method
    data: dict  # provenance of the data


def load_setting(cfg: dict) -> Setting:
    from knowfree.data import formats, sampling

    if cfg["dataset"] is not None:
        from knowfree.data.registry import open_dataset
        ds = open_dataset(cfg["dataset"])
        train, dev = ds.splits["train"], ds.splits.get("dev", [])
        targets, lang, data, name = list(ds.entry.labels), ds.entry.lang, ds.provenance(), ds.entry.name
    else:
        path = _path(cfg["train_file"])
        opts = {"lang": cfg["lang"]} if cfg["lang"] else {}
        train = formats.read(path, cfg["format"], **opts).samples
        dev = formats.read(_path(cfg["dev_file"]), cfg["format"], **opts).samples if cfg["dev_file"] else []
        targets = sorted({s.label for x in train + dev for s in x.targets()})
        lang = cfg["lang"] or (train[0].lang if train else "zh")
        name = path.stem
        data = {"train_file": str(path), "sha256": sha256_file(path),
                "content_hash": {"train": hash_samples(train), "dev": hash_samples(dev)}}
    if cfg["lang"] and cfg["lang"] != lang:
        raise ConfigError(f"lang {cfg['lang']!r} differs from the data's language {lang!r}")
    if cfg["k"] is not None:
        sub = sampling.k_sentences(train, cfg["k"], seed=cfg["sample_seed"], dataset=name)
        gold = sub.select(train)
        subset = {"method": sub.method, "k": sub.k, "seed": sub.seed, "content_hash": sub.content_hash}
    else:
        gold = list(train)
        subset = {"method": "all", "k": len(gold), "seed": None, "content_hash": hash_samples(gold)}
    # The extension spans must be ours: drop any a file brought along.
    gold = [s.with_spans(s.targets()) for s in gold]
    return Setting(name, lang, gold, list(dev), targets, subset, data)


# -- knowledge sources -------------------------------------------------------------------


def _merge_spans(a: Sequence[Sample], b: Sequence[Sample]) -> list[Sample]:
    return [x.with_spans(set(x.spans) | set(y.spans)) for x, y in zip(a, b)]


class TaggerSource:
    def __init__(self, lang: str, name: str | None, unknown_entities: str):
        from knowfree.knowledge.taggers import get_tagger
        self.tagger = get_tagger(lang, name)
        self.lang, self.unknown_entities = lang, unknown_entities

    def describe(self) -> dict:
        return {"tagger": self.tagger.name, "version": self.tagger.version, "tagset": self.tagger.tagset}

    def annotate(self, samples: Sequence[Sample]) -> tuple[list[Sample], dict]:
        from knowfree.knowledge.taggers import annotate
        norm = Normaliser(self.lang, self.unknown_entities)
        out, st = annotate(samples, self.tagger, norm)
        return out, {**st.to_dict(), "normalisation": norm.report()}


def _local_servers(serve: str, alias: str, n: int) -> list:
    from knowfree.knowledge.server import MODELS, LlamaServer, assemble_gguf, split_cores
    path = assemble_gguf(serve) if serve in MODELS else _path(serve)
    if n == 1:
        return [LlamaServer(path, alias=alias)]
    return [LlamaServer(path, alias=alias, cpus=cores) for cores in split_cores(n)]


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 6) if d else None


class LLMSource:
    """Entity and POS answers for each sentence, through the client and its response cache."""

    def __init__(self, cfg: dict, lang: str, unknown_entities: str):
        from knowfree.knowledge.cache import ResponseCache
        from knowfree.knowledge.llm import LLMClient, Sampling
        from knowfree.knowledge.prompts import load_template

        llm = cfg["llm"]
        prompts = llm["prompts"]
        if isinstance(prompts, str):
            prompts = _path(prompts)
        self.lang, self.unknown_entities, self.kinds = lang, unknown_entities, list(llm["kinds"])
        kinds = set(self.kinds) | ({"explain", "describe"} if cfg["synthesis"]["enabled"] else set())
        self.templates = {k: load_template(k, lang, prompts) for k in sorted(kinds)}
        self.cache = ResponseCache(_path(llm["cache"]), llm["mode"])
        self.servers: list = []
        model = llm["model"]
        if llm["serve"] is not None:
            from knowfree.knowledge.server import MODELS
            model = model or MODELS[llm["serve"]].alias
            if llm["mode"] == "live":
                self.servers = _local_servers(llm["serve"], model, llm["servers"])

        def client(base_url):
            n_urls = len(base_url) if isinstance(base_url, list) else 1
            # every server needs a worker of its own, whatever concurrency says
            return LLMClient(model, base_url, cache=self.cache, api_key_env=llm["api_key_env"],
                             concurrency=max(llm["concurrency"], n_urls), timeout=float(llm["timeout"]),
                             max_retries=llm["max_retries"],
                             server_label=self.servers[0].label if self.servers else None)
        self._client_for = client
        # With local servers the client is made once they have their ports (start()).
        self.client = client(llm["base_url"]) if not self.servers else None
        self.sampling = Sampling(float(llm["temperature"]), llm["max_tokens"], float(llm["top_p"]), llm["seed"])
        syn = cfg["synthesis"]
        temp = syn["temperature"] if syn["temperature"] is not None else llm["temperature"]
        self.synth_sampling = Sampling(float(temp), syn["max_tokens"], float(llm["top_p"]), llm["seed"])
        # Every raw answer of this run, for the notebook inspector (answers.jsonl).
        self.answers: list[dict] = []

    def start(self) -> None:
        """Start the local server if the config asks for one, then check the client can work."""
        if self.servers:
            try:
                for server in self.servers:
                    server.start()
            except BaseException:
                self.close_servers()
                raise
            urls = [s.base_url for s in self.servers]
            self.client = self._client_for(urls if len(urls) > 1 else urls[0])
        self.client.preflight()

    def close_servers(self) -> None:
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        self.cache.close()
        self.close_servers()

    def describe(self) -> dict:
        served = {"served_locally": str(self.servers[0].model_path),
                  "local_servers": [{"threads": s.n_threads, "cpus": s.cpus} for s in self.servers]
                  } if self.servers else {}
        return {**self.client.describe(), **served, "sampling": self.sampling.to_dict(),
                "templates": {k: {"version": t.version, "sha256": t.sha256, "source": t.source}
                              for k, t in self.templates.items()}}

    def ask(self, requests: list, progress: bool, what: str) -> list:
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(requests), desc=what, unit="answer", file=sys.stderr)
        try:
            results = self.client.complete_many(requests, on_result=(lambda r: bar.update(1)) if bar else None)
        finally:
            if bar is not None:
                bar.close()
        self.answers += [{"id": req.meta.get("id"), "kind": req.kind, "text": res.text}
                         for req, res in zip(requests, results) if res.ok]
        return results

    def annotate(self, samples: Sequence[Sample], progress: bool = False) -> tuple[list[Sample], dict]:
        from knowfree.knowledge.llm import Request

        norm = Normaliser(self.lang, self.unknown_entities)
        texts = [align.layout(s).text for s in samples]
        requests = [Request.from_template(self.templates[kind], self.sampling,
                                          meta={"id": s.id, "kind": kind}, sentence=t)
                    for kind in self.kinds for s, t in zip(samples, texts)]
        results = self.ask(requests, progress, "LLM label extension")
        st: dict[str, Any] = {k: Counter() for k in self.kinds}
        words_without_tag = 0
        invented: Counter = Counter()
        covered = total = 0
        coverages = []
        spans_by_sample: list[list] = [list(s.spans) for s in samples]
        for j, res in enumerate(results):
            kind, i = self.kinds[j // len(samples)], j % len(samples)
            sample, c = samples[i], st[kind]
            c["requests"] += 1
            if not res.ok:
                c["failed_requests"] += 1
                continue
            c["cache_hits"] += res.cached
            c["truncated"] += res.finish_reason == "length"
            parsed = align.parse_pairs(res.text, kind)
            c[f"parse_{parsed.status}"] += 1
            c["invalid_items"] += parsed.invalid_items
            c["items"] += len(parsed.pairs)
            if kind == "entity":
                al = align.align_entities(sample.tokens, parsed.pairs)
                c["hallucinated"] += len(al.hallucinated)
                invented.update(al.hallucinated)
                c["casefold_matches"] += al.casefold_matches
                for a, b, raw in al.spans:
                    label = norm.entity(raw)
                    if label is not None:
                        c["spans_ent"] += 1
                        spans_by_sample[i].append(Span(a, b, label))
            else:
                al = align.align_words(sample.tokens, parsed.pairs)
                c["hallucinated"] += len(al.hallucinated)
                invented.update(al.hallucinated)
                c["casefold_matches"] += al.casefold_matches
                covered, total = covered + al.covered_chars, total + al.total_chars
                coverages.append(al.coverage)
                for a, b, word, raw in al.words:
                    if wants_segment(sample.sep, b - a):
                        spans_by_sample[i].append(Span(a, b, SEG_WORD))
                        c["spans_seg"] += 1
                    label = norm.pos(raw, word) if raw else None
                    words_without_tag += not raw
                    if label is not None:
                        spans_by_sample[i].append(Span(a, b, label))
                        c["spans_pos"] += 1
        out = [s.with_spans(sp) for s, sp in zip(samples, spans_by_sample)]
        answers = {k: c["requests"] - c["failed_requests"] for k, c in st.items()}
        report = {
            "model": self.client.model,
            "by_kind": {k: dict(sorted(c.items())) for k, c in st.items()},
            "requests": sum(c["requests"] for c in st.values()),
            "cache_hits": sum(c["cache_hits"] for c in st.values()),
            "failed_requests": sum(c["failed_requests"] for c in st.values()),
            "parse_failure_rate": _rate(sum(c["parse_failed"] + c["parse_empty"] for c in st.values()),
                                        sum(answers.values())),
            "hallucination_rate": _rate(sum(c["hallucinated"] for c in st.values()),
                                        sum(c["items"] for c in st.values())),
            "pos_words_without_tag": words_without_tag,
            "hallucinated_examples": dict(invented.most_common(20)),
            "pos_coverage": _rate(covered, total) if "pos" in self.kinds else None,
            "pos_coverage_mean": round(sum(coverages) / len(coverages), 6) if coverages else None,
            "normalisation": norm.report(),
        }
        return out, report


class Knowledge:
    """The configured source(s); ``annotate`` gives samples with extension spans added."""

    def __init__(self, cfg: dict, lang: str):
        self.mode = cfg["knowledge"]
        self.tagger = TaggerSource(lang, cfg["tagger"], cfg["unknown_entities"]) \
            if self.mode in ("taggers", "both") else None
        needs_llm = self.mode in ("llm", "both") or cfg["synthesis"]["enabled"]
        self.llm = LLMSource(cfg, lang, cfg["unknown_entities"]) if needs_llm else None

    def start(self) -> None:
        if self.llm is not None:
            self.llm.start()

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()

    def describe(self) -> dict:
        return {"source": self.mode,
                "tagger": self.tagger.describe() if self.tagger else None,
                "llm": self.llm.describe() if self.llm else None,
                "alias_tables": alias_tables().version}

    def annotate(self, samples: Sequence[Sample], progress: bool = False) -> tuple[list[Sample], dict]:
        stats: dict[str, Any] = {}
        parts = []
        if self.tagger is not None:
            t0 = time.perf_counter()
            out, stats["taggers"] = self.tagger.annotate(samples)
            stats["taggers"]["seconds"] = round(time.perf_counter() - t0, 3)
            parts.append(out)
        if self.mode in ("llm", "both"):
            t0 = time.perf_counter()
            out, stats["llm"] = self.llm.annotate(samples, progress)
            stats["llm"]["seconds"] = round(time.perf_counter() - t0, 3)
            parts.append(out)
        merged = parts[0] if len(parts) == 1 else _merge_spans(*parts)
        return merged, stats


def span_stats(samples: Sequence[Sample]) -> dict:
    """Extension-span counts of a sample set (per label, per family, per sentence)."""
    ext = Counter(s.label for x in samples for s in x.spans if is_extension(s.label))
    tgt = Counter(s.label for x in samples for s in x.spans if not is_extension(s.label))
    fam = Counter()
    for label, n in ext.items():
        fam[label.split(".")[1]] += n
    n = len(samples)
    return {"sentences": n, "target_spans": sum(tgt.values()), "extension_spans": sum(ext.values()),
            "ext_spans_per_sentence": round(sum(ext.values()) / n, 4) if n else 0.0,
            "ext_spans_per_sentence_by_family": {f: round(c / n, 4) for f, c in sorted(fam.items())} if n else {},
            "label_inventory_size": len(ext),
            "extension_labels": dict(sorted(ext.items())),
            "target_labels": dict(sorted(tgt.items())),
            "sentences_without_extensions": sum(1 for x in samples if not x.extensions())}


# -- synthesis ---------------------------------------------------------------------------


def _explain_entities(sample: Sample, norm: Normaliser, names: dict) -> list[tuple[str, str]]:
    seen, out = set(), []
    for s in sample.targets():
        pair = (sample.span_text(s), names.get(s.label) or norm.readable_type(s.label))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def synthesise(cfg: dict, setting: Setting, knowledge: Knowledge, fusion: list[Sample], out_dir: Path,
               progress: bool) -> tuple[list[Sample], dict]:
    """Synthetic samples with extension spans and pseudo-labelled targets."""
    from knowfree.knowledge.llm import Request
    from knowfree.knowledge.synth import SynthConfig, Synthesiser, check_pseudo_label_run, pseudo_label

    syn = cfg["synthesis"]
    llm = knowledge.llm
    norm = Normaliser(setting.lang)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    requests = []
    for s in setting.gold:
        text = align.layout(s).text
        ents = _explain_entities(s, norm, syn["type_names"])
        kind = "explain" if ents else "describe"
        fields = {"sentence": text, "entities": ents} if ents else {"sentence": text}
        requests.append(Request.from_template(llm.templates[kind], llm.synth_sampling,
                                              meta={"id": s.id, "kind": kind}, **fields))
    results = llm.ask(requests, progress, "LLM explanation synthesis")
    synthesiser = Synthesiser(setting.lang, SynthConfig(syn["min_chars"], syn["max_chars"],
                                                        float(syn["weight"]), syn["max_per_source"]),
                              gold=setting.gold)
    synthetic: list[Sample] = []
    kinds, failed, cached = Counter(), 0, 0
    for s, req, res in zip(setting.gold, requests, results):
        kinds[req.kind] += 1
        if not res.ok:
            failed += 1
            continue
        cached += res.cached
        synthetic += synthesiser.from_text(s, res.text, {"template": req.version, "request": res.key[:16]})
    timings["generate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    synthetic, ext_stats = knowledge.annotate(synthetic, progress)
    timings["extension_labels"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_dir, trained = _pseudo_label_run(cfg, setting, out_dir, progress)
    fusion_file = out_dir / "fusion.jsonl"
    fp = check_pseudo_label_run(run_dir, setting.subset["k"], setting.subset["content_hash"],
                                {hash_samples(setting.gold), hash_samples(fusion), sha256_file(fusion_file)})
    from knowfree.predict import Predictor
    predictor = Predictor.load(run_dir)
    synthetic = pseudo_label(predictor, synthetic, syn["pseudo_label"]["batch_size"]) if synthetic else []
    timings["pseudo_label"] = time.perf_counter() - t0
    pseudo = Counter(t.label for x in synthetic for t in x.targets())
    model_dev = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("dev") or {}
    return synthetic, {
        "requests": len(requests), "by_kind": dict(kinds), "cache_hits": cached, "failed_requests": failed,
        "sampling": llm.synth_sampling.to_dict(),
        "split": synthesiser.stats.to_dict(),
        "extension": ext_stats,
        "pseudo_label": {"run_dir": str(run_dir), "trained_here": trained, "run_training": fp,
                         "model_dev": {k: model_dev.get(k) for k in ("f1", "precision", "recall")},
                         "spans": sum(pseudo.values()), "labels": dict(sorted(pseudo.items())),
                         "sentences_with_targets": sum(1 for x in synthetic if x.targets())},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def _pseudo_label_run(cfg: dict, setting: Setting, out_dir: Path, progress: bool) -> tuple[Path, bool]:
    pl = cfg["synthesis"]["pseudo_label"]
    if pl["run_dir"] is not None:
        return _path(pl["run_dir"]), False
    from knowfree.data import formats
    from knowfree.train import train

    if not setting.dev:
        raise ConfigError("training the pseudo-label model needs a dev split for model selection "
                          "(fix: give dev_file, or use a dataset with a dev split)")
    formats.write(setting.dev, out_dir / "dev.jsonl", "jsonl")
    tcfg = pl["train"]
    if isinstance(tcfg, str):
        tcfg = yamlio.load_file(_path(tcfg), "synthesis.pseudo_label.train config")
    # Only the model and how to train it are taken: the data are this setting's fusion set.
    tcfg = {k: copy.deepcopy(v) for k, v in tcfg.items() if k in ("model", "train")}
    # the model is only used to predict: no resumable checkpoint (~1.4 GB with e5-small) is kept
    tcfg["output"] = {"keep_last": False}
    tcfg["data"] = {"train_file": str(out_dir / "fusion.jsonl"), "dev_file": str(out_dir / "dev.jsonl"),
                    "format": "jsonl", "schema_file": str(out_dir / "schema.json"),
                    "extension_weight_rule": cfg["schema"]}
    run_dir = out_dir / "pseudo_label_run"
    metrics = train(tcfg, run_dir, progress=progress)
    if not metrics.get("complete"):
        raise KnowfreeError(f"the pseudo-label model in {run_dir} did not finish training; rerun to resume")
    return run_dir, True


# -- the command -------------------------------------------------------------------------


@dataclass
class AugmentResult:
    output: Path
    fusion: list[Sample]
    syn_fusion: list[Sample] | None
    schema: LabelSchema
    stats: dict

    @property
    def complete(self) -> bool:
        return self.stats["complete"]


def knowledge_code_hash() -> str:
    """sha256 over this package's code, alias tables and prompts: git_commit() ignores files
    that are not committed yet, this does not."""
    root = Path(__file__).resolve().parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".json", ".yaml"))
    return hash_json({str(p.relative_to(root)): sha256_file(p) for p in files})


def default_output(cfg: dict, setting_name: str) -> Path:
    parts = [setting_name, f"k{cfg['k']}" if cfg["k"] else "full", f"s{cfg['sample_seed']}", cfg["knowledge"]]
    if cfg["knowledge"] != "llm" and cfg["tagger"]:
        parts.append(cfg["tagger"])
    if cfg["synthesis"]["enabled"]:
        parts.append("syn")
    chash = hash_json({k: v for k, v in cfg.items() if k != "output"})[:8]
    return REPO_ROOT / "results" / "runs" / "augment" / ("-".join(parts) + "-" + chash)


def _schema(samples: Sequence[Sample], targets: list[str], rule: dict) -> LabelSchema:
    args = {k: v for k, v in rule.items() if k != "rule"}
    return LabelSchema.from_samples(samples, targets=targets, rule=rule["rule"], **args)


def _write_jsonl(samples: Sequence[Sample], path: Path) -> None:
    from knowfree.data import formats
    formats.write(samples, path, "jsonl")


# Raw LLM answers of a run, one JSON object per line: sentence ``id``, prompt ``kind``, ``text``.
ANSWERS_FILE = "answers.jsonl"


# Files an augment run writes in its output folder (besides pseudo_label_run/, a train run).
OUTPUT_FILES = ("fusion.jsonl", "schema.json", "dev.jsonl", "syn_fusion.jsonl", "syn_schema.json",
                ANSWERS_FILE, "stats.json")


def _guard(cfg: dict, out_dir: Path, inputs) -> None:
    """Before anything is read: no output may be one of the run's inputs (a rerun on its own
    fusion.jsonl, an output folder that is the pseudo-label run)."""
    named = [*inputs, ("train_file", cfg["train_file"] and _path(cfg["train_file"])),
             ("dev_file", cfg["dev_file"] and _path(cfg["dev_file"]))]
    if isinstance(cfg["llm"]["prompts"], str):
        named.append(("llm.prompts", _path(cfg["llm"]["prompts"])))
    pl = cfg["synthesis"]["pseudo_label"]
    if isinstance(pl["train"], str):
        named.append(("synthesis.pseudo_label.train", _path(pl["train"])))
    if pl["run_dir"]:
        from knowfree.train import RUN_FILES
        named += [("synthesis.pseudo_label.run_dir file", _path(pl["run_dir"]) / n) for n in RUN_FILES]
    guard_outputs(named, files=[("output file", out_dir / n) for n in OUTPUT_FILES],
                  folders=[("output", out_dir)])


def augment(config: dict, progress: bool = False, inputs=()) -> AugmentResult:
    """Run the configured augmentation (module doc) and write its output folder. ``inputs``:
    further (name, path) pairs no output may overwrite (the CLI's config file)."""
    cfg = validate_config(config)
    wall0 = time.perf_counter()
    timings: dict[str, float] = {}

    setting_name = cfg["dataset"] or _path(cfg["train_file"]).stem  # as load_setting names it
    out_dir = _path(cfg["output"]) if cfg["output"] else default_output(cfg, setting_name)
    _guard(cfg, out_dir, inputs)
    t0 = time.perf_counter()
    setting = load_setting(cfg)
    timings["load"] = time.perf_counter() - t0

    knowledge = Knowledge(cfg, setting.lang)
    try:
        knowledge.start()  # a dead server or a bad key fails here, before any work
        t0 = time.perf_counter()
        fusion, ext_stats = knowledge.annotate(setting.gold, progress)
        timings["knowledge"] = time.perf_counter() - t0
        fusion_schema = _schema(fusion, setting.targets, cfg["schema"])
        _write_jsonl(fusion, out_dir / "fusion.jsonl")
        fusion_schema.save(out_dir / "schema.json")

        syn_fusion, syn_stats, syn_schema = None, None, None
        if cfg["synthesis"]["enabled"]:
            t0 = time.perf_counter()
            synthetic, syn_stats = synthesise(cfg, setting, knowledge, fusion, out_dir, progress)
            syn_fusion = fusion + synthetic
            syn_schema = _schema(syn_fusion, setting.targets, cfg["schema"])
            _write_jsonl(syn_fusion, out_dir / "syn_fusion.jsonl")
            syn_schema.save(out_dir / "syn_schema.json")
            timings["synthesis"] = time.perf_counter() - t0
        usage = knowledge.llm.client.usage.to_dict() if knowledge.llm else None
        cache = knowledge.llm.cache.report if knowledge.llm else None
        if cache is not None and cache.changed_segments:
            print(f"warning: LLM cache {knowledge.llm.cache.folder}: {len(cache.changed_segments)} "
                  f"segments differ from its provenance.json ({', '.join(cache.changed_segments[:3])}); "
                  "this live run records them as they are now", file=sys.stderr)
        if knowledge.llm:
            atomic_write_text(out_dir / ANSWERS_FILE, "".join(
                json.dumps(a, ensure_ascii=False) + "\n" for a in knowledge.llm.answers))
        described = knowledge.describe()
    finally:
        knowledge.close()

    failed = sum(s.get("failed_requests", 0) for s in ext_stats.values())
    failed += (syn_stats or {}).get("failed_requests", 0)
    timings["total"] = time.perf_counter() - wall0
    stats = {
        "complete": failed == 0,
        "failed_requests": failed,
        "setting": {"name": setting.name, "lang": setting.lang, **setting.subset,
                    "sentences": len(setting.gold), "targets": setting.targets},
        "knowledge": cfg["knowledge"],
        "sources": ext_stats,
        "fusion": span_stats(fusion),
        "schema": {"extension_labels": len(fusion_schema.extensions), "weight_rule": fusion_schema.rule},
        "synthesis": None if syn_stats is None else {
            **syn_stats, "synthetic": span_stats(syn_fusion[len(fusion):]),
            "synthetic_per_source": syn_stats["split"]["synthetic_per_source"],
            "syn_fusion": span_stats(syn_fusion)},
        "llm_usage": usage,
        # what the response cache could not read: never a silent drop
        "llm_cache": None if cache is None else {
            "loaded_entries": cache.entries, "segments": cache.segments, "duplicates": cache.duplicates,
            "skipped": cache.skipped(), "changed_segments": cache.changed_segments,
            "unlisted_segments": cache.unlisted_segments, "summary": cache.summary()},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "provenance": {
            "git_commit": git_commit(), "knowledge_code_hash": knowledge_code_hash(), "knowfree": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": _redacted(cfg), "config_hash": hash_json({k: v for k, v in cfg.items() if k != "output"}),
            "data": setting.data, "subset": setting.subset,
            "gold_hash": hash_samples(setting.gold), "fusion_hash": hash_samples(fusion),
            "knowledge": described, "python": sys.version.split()[0],
        },
        "output": str(out_dir),
    }
    atomic_write_json(out_dir / "stats.json", stats)
    return AugmentResult(out_dir, fusion, syn_fusion, fusion_schema, stats)


def _redacted(cfg: dict) -> dict:
    """The config as stats.json records it: credentials in llm.base_url replaced by ***."""
    from knowfree.knowledge.llm import redact_url
    urls = cfg["llm"]["base_url"]
    urls = [redact_url(u) for u in urls] if isinstance(urls, list) else redact_url(urls)
    return {**cfg, "llm": {**cfg["llm"], "base_url": urls}}


# -- the results table -------------------------------------------------------------------


def source_name(stats: dict, synthesis: bool | None = None) -> str:
    """A row label for a run's knowledge, e.g. 'taggers:lac + llm:qwen2.5-coder-1.5b'; ends in
    ' + synthesis' when the run made synthetic sentences (or as ``synthesis`` says, for a
    training set of such a run: its fusion.jsonl has none)."""
    src = stats["provenance"]["knowledge"]
    parts = []
    if src.get("tagger") and "taggers" in stats["sources"]:
        parts.append(f"taggers:{src['tagger']['tagger']}")
    if "llm" in stats["sources"]:
        parts.append(f"llm:{src['llm']['model']}")
    if bool(stats.get("synthesis")) if synthesis is None else synthesis:
        parts.append("synthesis")
    return " + ".join(parts)


def _source_row(st: dict) -> dict:
    prov, src, fus = st["provenance"], st["sources"], st["fusion"]
    llm = src.get("llm")
    tag = src.get("taggers")
    syn = st.get("synthesis")
    versions = []
    if tag:
        versions.append(tag["version"])
    if llm:
        versions.append(f"{llm['model']} ({', '.join(t['version'] for t in prov['knowledge']['llm']['templates'].values())})")
    versions.append(f"aliases {prov['knowledge']['alias_tables']}")
    data_hash = (prov["data"].get("content_hash") or {}).get("train") or prov["data"].get("sha256")
    return {
        "knowledge_source": source_name(st),
        "dataset": st["setting"]["name"], "k": st["setting"]["k"], "sample_seed": st["setting"]["seed"],
        "sentences": fus["sentences"],
        "ext_spans_per_sentence": fus["ext_spans_per_sentence"],
        **{f"{fam}_per_sentence": v for fam, v in fus["ext_spans_per_sentence_by_family"].items()},
        "label_inventory_size": fus["label_inventory_size"],
        "parse_failure_rate": llm["parse_failure_rate"] if llm else "n/a",
        "hallucination_rate": llm["hallucination_rate"] if llm else "n/a",
        "pos_coverage": (llm or tag or {}).get("pos_coverage"),
        "synthetic_per_source": syn["synthetic_per_source"] if syn else "n/a",
        "synthetic_sentences": syn["synthetic"]["sentences"] if syn else "n/a",
        # what the pseudo-label model put on the synthetic sentences, and how good it was
        "synthetic_target_spans_per_sentence": (
            round(syn["synthetic"]["target_spans"] / syn["synthetic"]["sentences"], 4)
            if syn and syn["synthetic"]["sentences"] else "n/a"),
        "synthetic_ext_spans_per_sentence": syn["synthetic"]["ext_spans_per_sentence"] if syn else "n/a",
        "pseudo_label_model_dev_f1": ((syn["pseudo_label"].get("model_dev") or {}).get("f1", "n/a")
                                      if syn else "n/a"),
        "knowledge_seconds": st["seconds"].get("knowledge"),
        # a replayed run reads every answer from the cache: its seconds are not the LLM's cost
        "llm_mode": prov["config"]["llm"]["mode"] if llm else "n/a",
        "llm_http_requests": (st.get("llm_usage") or {}).get("http_requests", "n/a") if llm else "n/a",
        "git_commit": prov["git_commit"], "knowledge_code_hash": prov.get("knowledge_code_hash"),
        "data_hash": data_hash,
        "subset_hash": st["setting"]["content_hash"], "tool_versions": "; ".join(versions),
    }


def knowledge_source_table(stats_files: Iterable[str | Path]):
    """One row per augment run (its stats.json): what each knowledge source added."""
    import pandas as pd

    rows = []
    for f in stats_files:
        st = read_json_file(f, "augment stats", "name the stats.json of a finished augment run")
        try:
            rows.append(_source_row(st))
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(f"not the stats.json of an augment run ({type(e).__name__}: {e})", str(f),
                             "name the stats.json of a finished augment run") from None
    df = pd.DataFrame(rows)
    fam_cols = sorted(c for c in df.columns
                      if c.endswith("_per_sentence") and not c.startswith(("ext_spans_", "synthetic_")))
    order = ["knowledge_source", "dataset", "k", "sample_seed", "sentences", "ext_spans_per_sentence",
             *fam_cols, "label_inventory_size", "parse_failure_rate", "hallucination_rate", "pos_coverage",
             "synthetic_per_source", "synthetic_sentences", "synthetic_target_spans_per_sentence",
             "synthetic_ext_spans_per_sentence", "pseudo_label_model_dev_f1", "knowledge_seconds",
             "llm_mode", "llm_http_requests", "git_commit", "knowledge_code_hash", "data_hash",
             "subset_hash", "tool_versions"]
    return df[[c for c in order if c in df.columns]]


def write_knowledge_source_table(stats_files: Iterable[str | Path], stem: str | Path):
    """``<stem>.csv`` and ``<stem>.md`` from :func:`knowledge_source_table`."""
    from knowfree.results import to_markdown

    stats_files = list(stats_files)
    stem = Path(stem)
    guard_outputs([("STATS", f) for f in stats_files],
                  files=[("--out", stem.with_suffix(ext)) for ext in (".csv", ".md")])
    df = knowledge_source_table(stats_files)
    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    note = ("What each knowledge source added to the same training setting. Rows come from the "
            "augment runs' stats.json (`knowfree.knowledge.pipeline.knowledge_source_table`); "
            "parse and hallucination rates are n/a for taggers, which parse nothing and invent "
            "no strings; the synthetic_* columns need the LLM source with synthesis on "
            "(target spans of synthetic sentences are the pseudo-label model's predictions; "
            "pseudo_label_model_dev_f1 is that model's dev F1, trained on this setting's "
            "fusion set only).\n\n")
    atomic_write_text(stem.with_suffix(".md"), "# Knowledge sources\n\n" + note + to_markdown(df))
    return df


# -- packing a run for the repository -----------------------------------------------------

# What `augment pack` keeps of a run folder: the training sets (gzip), their schemas, the stats,
# and the pseudo-label model's metrics and learning curve (its weights are ~470 MB).
PACKED_SETS = ("fusion.jsonl", "syn_fusion.jsonl")
PACKED_FILES = ("schema.json", "syn_schema.json", "pseudo_label_run/metrics.json",
                "pseudo_label_run/epochs.csv")


def _portable(obj: Any) -> Any:
    """``obj`` with absolute paths under the repository or the knowfree cache written relative
    to them (``$KNOWFREE_CACHE`` defaults to ~/.cache/knowfree), so a committed file names no
    machine."""
    if isinstance(obj, dict):
        return {k: _portable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_portable(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        for root, shown in ((REPO_ROOT, None), (cache_root(), "$KNOWFREE_CACHE")):
            try:
                rel = Path(obj).relative_to(root)
            except ValueError:
                continue
            return str(rel) if shown is None else f"{shown}/{rel}"
    return obj


def _packed_name(name: str) -> str:
    """Where ``augment pack`` puts a run file: sets gzipped, the pseudo-label run's files flat."""
    return f"{name}.gz" if name in PACKED_SETS else name.replace("pseudo_label_run/", "pseudo_label_")


def pack(run_dir: str | Path, dest: str | Path) -> dict:
    """Copy the commit-sized part of a finished augment run into ``dest`` (see PACKED_*).

    The sets are written as ``.jsonl.gz`` (deterministic bytes) and the trainer reads them as
    they are; stats.json keeps its content with paths made portable and gains a ``packed``
    entry naming each file's source and the sha256 of its uncompressed bytes. Returns that
    entry.
    """
    import shutil

    run_dir, dest = _path(run_dir), _path(dest)
    names = ("stats.json", *PACKED_SETS, *PACKED_FILES)
    guard_outputs([("RUN_DIR file", run_dir / n) for n in names],
                  files=[("--dest file", dest / _packed_name(n)) for n in names], folders=[("--dest", dest)])
    stats_file = run_dir / "stats.json"
    if not stats_file.is_file():
        raise InputError("no stats.json: the augment run has not finished (stats.json is written last)",
                         str(run_dir), "rerun `python -m knowfree augment CONFIG` until it completes")
    stats = read_json_file(stats_file, "augment stats", "rerun the augment command; it writes stats.json last")
    if not isinstance(stats, dict):
        raise InputError("augment stats must be a JSON object", str(stats_file))
    if not stats.get("complete"):
        raise InputError(f"the augment run is incomplete ({stats.get('failed_requests')} failed LLM requests)",
                         str(run_dir), "rerun the same augment command; it asks only for the missing answers")
    packed = {"from": _portable(str(run_dir)), "files": {}}
    dest.mkdir(parents=True, exist_ok=True)
    for name in PACKED_SETS:
        src = run_dir / name
        if src.is_file():
            data = src.read_bytes()
            atomic_write_gzip(dest / _packed_name(name), data)
            packed["files"][_packed_name(name)] = {"sha256_uncompressed": sha256_bytes(data), "bytes": len(data)}
    for name in PACKED_FILES:
        src = run_dir / name
        if src.is_file():
            target = dest / _packed_name(name)
            if src.suffix == ".json":
                atomic_write_json(target, _portable(json.loads(src.read_text(encoding="utf-8"))))
            else:
                shutil.copyfile(src, target)
            packed["files"][target.name] = {"sha256": sha256_file(src)}
    atomic_write_json(dest / "stats.json", {**_portable(stats), "packed": packed})
    return packed


def cli_main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and argv[0] == "pack":
        p = argparse.ArgumentParser(prog="python -m knowfree augment pack",
                                    description="Copy a finished augment run's training sets (gzip), schemas "
                                                "and stats into a folder meant to be committed.")
        p.add_argument("run_dir", help="augment output folder (results/runs/augment/NAME)")
        p.add_argument("--dest", type=path_given, help="target folder (default results/augment/NAME)")
        args = p.parse_args(argv[1:])
        dest = args.dest or REPO_ROOT / "results" / "augment" / _path(args.run_dir).name
        packed = pack(args.run_dir, dest)
        print(f"packed {len(packed['files'])} files into {_portable(str(_path(dest)))}")
        return 0
    if argv and argv[0] == "table":
        p = argparse.ArgumentParser(prog="python -m knowfree augment table",
                                    description="Compare knowledge sources from augment stats.json files.")
        p.add_argument("stats", nargs="+", help="stats.json files of augment runs")
        p.add_argument("--out", type=path_given, default=str(REPO_ROOT / "results" / "tables" / "knowledge_sources"),
                       help="output path without suffix (.csv and .md are written)")
        args = p.parse_args(argv[1:])
        df = write_knowledge_source_table(args.stats, args.out)
        print(f"wrote {args.out}.csv / .md ({len(df)} rows)")
        return 0
    p = argparse.ArgumentParser(prog="python -m knowfree augment",
                                description="Build fusion / syn_fusion training sets with LLM or tagger "
                                            "knowledge. `augment table STATS...` compares runs.")
    p.add_argument("config", help="augment YAML config (see configs/augment_*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set k=500 or --set llm.mode=replay")
    p.add_argument("--output", type=path_given, help="output folder (default: the config's output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.output:
        cfg["output"] = args.output
    result = augment(cfg, progress=not args.no_progress, inputs=[("CONFIG", args.config)])
    st = result.stats
    fus = st["fusion"]
    print(f"{result.output}: {fus['sentences']} sentences, {fus['extension_spans']} extension spans "
          f"({fus['ext_spans_per_sentence']} per sentence, {fus['label_inventory_size']} labels) "
          f"in {st['seconds']['total']:.1f} s")
    if st["llm_cache"]:
        print(f"LLM cache: {st['llm_cache']['summary']}")
    if st["synthesis"]:
        print(f"synthetic: {st['synthesis']['split']['kept']} sentences "
              f"({st['synthesis']['synthetic_per_source']} per source sentence)")
    if not result.complete:
        print(f"warning: {st['failed_requests']} LLM requests failed after retries; the outputs lack "
              f"their answers. Rerun the same command to ask for them again (answers so far are cached).",
              file=sys.stderr)
        return 3
    return 0
