"""Explanation synthesis (pipeline 2 in docs/method.md): LLM text -> synthetic samples.

For each training sentence the LLM continues it and explains its gold entities (``explain``)
or, for a sentence without entities, its key words (``describe``; the authors' code skipped
those sentences). The answer is cut into sentences, cleaned, deduplicated and length-limited;
each survivor becomes an unlabelled synthetic :class:`~knowfree.data.sample.Sample` that keeps
the id of the sentence it came from (``source_id``), ``synthetic=True`` and its loss weight.

Pseudo-labels come from a model trained on the *same* K-sentence setting only. The authors
labelled the synthetic data of the 250- and 500-sentence settings with a model trained on
1000 gold sentences (fault 10 in docs/faults.md); :func:`check_pseudo_label_run` refuses
any run whose training data is not this setting's.

Sentence splitting:
- zh / ja: after 。！？!?… (runs of them); a run followed by closing quotes or brackets
  (「本当？」と聞いた。, “好！”他说。) ends a sentence only at the end of a line, since the
  quoted speech usually belongs to the sentence that continues after it.
- en / ko: after . ! ? followed by optional closing quotes/brackets and whitespace, except
  after a known abbreviation (Dr., Mr., etc., e.g.), a dotted acronym (U.S., a.m.) or a
  single-letter initial (J. Smith); a period inside a number (3.5) is never followed by
  whitespace and so never splits.
- A line break always ends a sentence; list bullets and numbering at a line start and
  markdown emphasis are removed (the prompts ask for prose, small models still emit them).
"""
from __future__ import annotations

import copy
import json
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from knowfree import yamlio
from knowfree.data.sample import Sample
from knowfree.errors import ConfigError, InputError, KnowfreeError
from knowfree.knowledge import align
from knowfree.knowledge.augment_config import repo_path
from knowfree.knowledge.normalise import Normaliser
from knowfree.provenance import hash_samples, sha256_file

if TYPE_CHECKING:
    from knowfree.knowledge.setting import AugmentSetting
    from knowfree.knowledge.sources import KnowledgeSources

_CJK_END = re.compile(r"[。！？!?…]+([”’」』）)】》〉\"']*)")
_LATIN_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s)")
_ABBREVIATIONS = frozenset("""
mr mrs ms dr prof st jr sr vs etc e.g i.e cf al fig figs no nos vol vols pp ed eds inc ltd co corp
jan feb mar apr jun jul aug sep sept oct nov dec gen gov sen rep mt ft approx dept est univ
""".split())
_BULLET = re.compile(r"^\s*(?:[-*•·●▪]|\(?\d{1,2}[.)、．]|[（(]\d{1,2}[)）]|[一二三四五六七八九十]+、)\s*")
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*")


def _ends_sentence(text: str, dot_at: int) -> bool:
    """Whether the period at ``dot_at`` ends a sentence (English rules, module doc)."""
    word = re.search(r"(\S+)$", text[:dot_at])
    if word is None:
        return True
    w = word.group(1).lstrip("\"'“‘([")
    if w.casefold().rstrip(".") in _ABBREVIATIONS or w.casefold() in _ABBREVIATIONS:
        return False
    if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", w):  # U.S / e.g / a.m before the final dot
        return False
    if re.fullmatch(r"[A-Z]", w):  # an initial
        return False
    return True


def split_sentences(text: str, lang: str) -> list[str]:
    """Cut generated text into sentences (module doc); empty pieces are dropped."""
    out = []
    for line in str(text).splitlines():
        line = _MARKUP.sub("", _BULLET.sub("", line)).strip()
        if not line:
            continue
        cuts = []
        if lang in ("zh", "ja"):
            # 「本当？」と聞いた。 is one sentence: a terminator inside closing quotes ends the
            # sentence only at the end of the line.
            cuts = [m.end() for m in _CJK_END.finditer(line) if not m.group(1) or m.end() == len(line)]
        else:
            for m in _LATIN_END.finditer(line):
                dot = m.start() + m.group(0).find(".") if m.group(0).startswith(".") else -1
                if dot < 0 or _ends_sentence(line, dot):
                    cuts.append(m.end())
        start = 0
        for c in cuts + [len(line)]:
            piece = line[start:c].strip()
            if piece:
                out.append(piece)
            start = c
    return out


def _dedup_key(s: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", s).casefold() if ch.isalnum())


# CoNLL-like: dotted acronyms whole (U.S.), numbers with their decimals, clitics apart ('s).
_LATIN_TOKEN = re.compile(r"(?:[A-Za-z]\.){2,}|\d+(?:[.,]\d+)*|\w+|['’]\w+|[^\w\s]")


class SentenceTokenizer:
    """Tokens in the dataset's own granularity: characters (zh, ja), words and punctuation
    (en), Kiwi morphemes with their eojeol index in ``meta["word"]`` (ko, like KMOU)."""

    def __init__(self, lang: str):
        self.lang = lang
        self._kiwi = None

    def __call__(self, sentence: str) -> tuple[list[str], dict]:
        if self.lang in ("zh", "ja"):
            return [c for c in sentence if not c.isspace()], {}
        if self.lang == "ko":
            if self._kiwi is None:
                from kiwipiepy import Kiwi
                self._kiwi = Kiwi()
            morphs = self._kiwi.tokenize(sentence)
            # eojeol index: 1 + the number of spaces before the morpheme
            words = [sentence[:m.start].count(" ") + 1 for m in morphs]
            return [m.form for m in morphs], {"word": words}
        return _LATIN_TOKEN.findall(sentence), {}


@dataclass(frozen=True)
class SynthConfig:
    min_chars: int = 8
    max_chars: int = 160
    weight: float = 0.5  # loss weight of every synthetic sample
    max_per_source: int | None = None  # keep at most this many sentences per source sentence

    def __post_init__(self):
        if not 0 < self.min_chars <= self.max_chars:
            raise ConfigError(f"synthesis needs 0 < min_chars <= max_chars, got {self.min_chars}, "
                              f"{self.max_chars}")
        if not 0 <= self.weight:
            raise ConfigError(f"synthesis weight must be >= 0, got {self.weight}")
        if self.max_per_source is not None and self.max_per_source < 1:
            raise ConfigError(f"synthesis max_per_source must be >= 1 or null, got {self.max_per_source}")


@dataclass
class SynthStats:
    answers: int = 0
    empty_answers: int = 0
    pieces: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    per_source: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        n_src = len(self.per_source)
        return {"answers": self.answers, "empty_answers": self.empty_answers,
                "sentences_split": self.pieces, "kept": self.kept,
                "dropped": dict(sorted(self.dropped.items())),
                "source_sentences": n_src,
                "synthetic_per_source": round(self.kept / n_src, 4) if n_src else 0.0,
                "sources_without_synthetic": sum(1 for v in self.per_source.values() if v == 0)}


class Synthesiser:
    """Turns generated texts into synthetic samples, deduplicated across the whole run."""

    def __init__(self, lang: str, config: SynthConfig, gold: Iterable[Sample] = ()):
        self.lang, self.config = lang, config
        self.tokenize = SentenceTokenizer(lang)
        # The LLM often repeats its input sentence: a copy of a gold sentence without its
        # gold labels would teach the model that those entities are not entities.
        self._gold = {_dedup_key(s.sep.join(s.tokens)) for s in gold}
        self._seen: set[str] = set()
        self.stats = SynthStats()

    def from_text(self, source: Sample, text: str | None, meta: dict | None = None) -> list[Sample]:
        st, cfg = self.stats, self.config
        st.answers += 1
        st.per_source.setdefault(source.id, 0)
        if not text or not text.strip():
            st.empty_answers += 1
            return []
        out = []
        for sentence in split_sentences(text, self.lang):
            st.pieces += 1
            n = sum(1 for c in sentence if not c.isspace())
            key = _dedup_key(sentence)
            if n < cfg.min_chars:
                st.dropped["too_short"] += 1
            elif n > cfg.max_chars:
                st.dropped["too_long"] += 1
            elif not key:
                st.dropped["no_letters"] += 1
            elif key in self._gold:
                st.dropped["copy_of_gold"] += 1
            elif key in self._seen:
                st.dropped["duplicate"] += 1
            elif cfg.max_per_source is not None and st.per_source[source.id] >= cfg.max_per_source:
                st.dropped["over_per_source_cap"] += 1
            else:
                tokens, tok_meta = self.tokenize(sentence)
                if not tokens:
                    st.dropped["no_tokens"] += 1
                    continue
                self._seen.add(key)
                j = st.per_source[source.id]
                st.per_source[source.id] += 1
                st.kept += 1
                out.append(Sample(tokens, [], f"{source.id}-syn{j}", self.lang, synthetic=True,
                                  source_id=source.id, weight=cfg.weight,
                                  meta={**tok_meta, **(meta or {})}))
        return out


# -- pseudo-labelling ---------------------------------------------------------------------


def run_training_fingerprints(run_dir: str | Path) -> dict:
    """What a trained run says about its training data (its ``data.json``)."""
    path = Path(run_dir) / "data.json"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("the pseudo-label run has no data.json, so its training data cannot be "
                         "checked", where=str(run_dir),
                         fix="use a run folder written by `python -m knowfree train`") from None
    except json.JSONDecodeError as e:
        raise InputError(f"data.json is not JSON: {e}", where=str(path)) from None
    subset = info.get("subset") or {}
    return {"subset_hash": subset.get("content_hash") or subset.get("hash"),
            "k": subset.get("k"),
            "train_hash": (info.get("hashes") or {}).get("train"),
            "train_file_sha256": ((info.get("files") or {}).get("train") or {}).get("sha256"),
            "train_count": (info.get("counts") or {}).get("train")}


def check_pseudo_label_run(run_dir: str | Path, k: int, subset_hash: str,
                           allowed_train_hashes: Iterable[str] = ()) -> dict:
    """Refuse a pseudo-label model not trained on this K-sentence setting (fault 10 in
    docs/faults.md).

    Accepted: a run whose K-sentence subset hash is ``subset_hash`` (trained through the
    registry with the same dataset, k and seed), or whose training set's content hash or file
    sha256 is one of ``allowed_train_hashes`` (trained on this setting's gold or fusion file)."""
    fp = run_training_fingerprints(run_dir)
    allowed = set(allowed_train_hashes)
    if fp["subset_hash"] == subset_hash or allowed & {fp["train_hash"], fp["train_file_sha256"]} - {None}:
        return fp
    trained_on = (f"a {fp['k']}-sentence subset (hash {fp['subset_hash']})" if fp["subset_hash"]
                  else f"{fp['train_count']} sentences (content hash {fp['train_hash']})")
    raise InputError(
        f"the pseudo-label model was trained on {trained_on}, not on this {k}-sentence setting "
        f"(subset hash {subset_hash}): labels learned from other gold sentences would leak into "
        f"this setting", where=str(run_dir),
        fix="train the pseudo-label model on this setting (same dataset, k and sample_seed), or "
            "give synthesis.pseudo_label.train instead of run_dir")


def pseudo_label(predictor, samples: Sequence[Sample], batch_size: int = 16) -> list[Sample]:
    """Samples with the model's target spans added to their extension spans; flags, weight
    and source kept, the model's probabilities in ``meta["pseudo_label_probs"]``."""
    predicted = predictor.predict_samples([s.with_spans([]) for s in samples], batch_size=batch_size)
    out = []
    for src, pred in zip(samples, predicted):
        s = src.with_spans(list(src.spans) + pred.targets())
        s.meta["pseudo_label_probs"] = pred.meta.get("probs", {})
        out.append(s)
    return out


# -- the synthesis stage of `augment` ---------------------------------------------------


def _explain_entities(sample: Sample, norm: Normaliser, names: dict) -> list[tuple[str, str]]:
    seen, out = set(), []
    for s in sample.targets():
        pair = (sample.span_text(s), names.get(s.label) or norm.readable_type(s.label))
        if pair not in seen:
            seen.add(pair)
            out.append(pair)
    return out


def explanation_sentences(cfg: dict, setting: AugmentSetting, knowledge: KnowledgeSources,
                          progress: bool) -> tuple[list[Sample], dict]:
    """The synthetic sentences cut from the LLM's explanations, with their extension spans and
    no targets yet; every LLM answer synthesis needs is asked (and cached) here."""
    from knowfree.knowledge.llm import Request

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
    if syn["extension_labels"] == "taggers":
        from knowfree.knowledge.sources import TaggerSource
        tagger = knowledge.tagger or TaggerSource(setting.lang, cfg["tagger"], cfg["unknown_entities"])
        synthetic, tagged = tagger.annotate(synthetic)
        ext_stats = {"taggers": {**tagged, "seconds": round(time.perf_counter() - t0, 3)}}
    else:
        synthetic, ext_stats = knowledge.annotate(synthetic, progress)
    timings["extension_labels"] = time.perf_counter() - t0
    return synthetic, {
        "requests": len(requests), "by_kind": dict(kinds), "cache_hits": cached, "failed_requests": failed,
        "sampling": llm.synth_sampling.to_dict(),
        "split": synthesiser.stats.to_dict(),
        "extension": ext_stats,
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }


def synthesise(cfg: dict, setting: AugmentSetting, knowledge: KnowledgeSources, fusion: list[Sample], out_dir: Path,
               progress: bool) -> tuple[list[Sample], dict]:
    """Synthetic samples with extension spans and pseudo-labelled targets."""
    synthetic, stats = explanation_sentences(cfg, setting, knowledge, progress)
    syn = cfg["synthesis"]
    t0 = time.perf_counter()
    run_dir, trained = _pseudo_label_run(cfg, setting, out_dir, progress)
    fusion_file = out_dir / "fusion.jsonl"
    fp = check_pseudo_label_run(run_dir, setting.subset["k"], setting.subset["content_hash"],
                                {hash_samples(setting.gold), hash_samples(fusion), sha256_file(fusion_file)})
    from knowfree.predict import Predictor
    predictor = Predictor.load(run_dir)
    synthetic = pseudo_label(predictor, synthetic, syn["pseudo_label"]["batch_size"]) if synthetic else []
    seconds = {**stats.pop("seconds"), "pseudo_label": round(time.perf_counter() - t0, 3)}
    pseudo = Counter(t.label for x in synthetic for t in x.targets())
    model_dev = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")).get("dev") or {}
    return synthetic, {
        **stats,
        "pseudo_label": {"run_dir": str(run_dir), "trained_here": trained, "run_training": fp,
                         "model_dev": {k: model_dev.get(k) for k in ("f1", "precision", "recall")},
                         "spans": sum(pseudo.values()), "labels": dict(sorted(pseudo.items())),
                         "sentences_with_targets": sum(1 for x in synthetic if x.targets())},
        "seconds": seconds,
    }


def _pseudo_label_run(cfg: dict, setting: AugmentSetting, out_dir: Path, progress: bool) -> tuple[Path, bool]:
    pl = cfg["synthesis"]["pseudo_label"]
    if pl["run_dir"] is not None:
        return repo_path(pl["run_dir"]), False
    from knowfree.data import formats
    from knowfree.train import train

    if not setting.dev:
        raise ConfigError("training the pseudo-label model needs a dev split for model selection "
                          "(fix: give dev_file, or use a dataset with a dev split)")
    formats.write(setting.dev, out_dir / "dev.jsonl", "jsonl")
    tcfg = pl["train"]
    if isinstance(tcfg, str):
        tcfg = yamlio.load_file(repo_path(tcfg), "synthesis.pseudo_label.train config")
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
