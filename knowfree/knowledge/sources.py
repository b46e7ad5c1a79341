"""Where extension spans come from: the offline taggers, the LLM (entity and POS answers,
parsed, aligned and normalised), or both (the union). ``KnowledgeSources.annotate`` gives
samples with extension spans added and a report of what each source did."""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, Sequence

from knowfree.data.sample import Sample, Span
from knowfree.knowledge import align
from knowfree.knowledge.augment_config import repo_path
from knowfree.knowledge.normalise import SEG_WORD, Normaliser, alias_tables, wants_segment

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
    path = assemble_gguf(serve) if serve in MODELS else repo_path(serve)
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
            prompts = repo_path(prompts)
        self.lang, self.unknown_entities, self.kinds = lang, unknown_entities, list(llm["kinds"])
        kinds = set(self.kinds) | ({"explain", "describe"} if cfg["synthesis"]["enabled"] else set())
        self.templates = {k: load_template(k, lang, prompts) for k in sorted(kinds)}
        self.cache = ResponseCache(repo_path(llm["cache"]), llm["mode"], [repo_path(f) for f in llm["reuse"]])
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


class KnowledgeSources:
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
