"""The one data model every stage shares: a tokenised sentence with labelled spans.

Spans are half-open token intervals ``[start, end)``; nested and overlapping spans are
allowed (a span may carry a target label and several extension labels at once).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

# Extension labels (LLM or tagger knowledge) are told apart from target labels by this
# prefix, e.g. "ext.pos.NOUN", "ext.ent.PER", "ext.seg.WORD". The label schema is the
# authority on which labels are targets; the prefix keeps files self-describing.
EXT_PREFIX = "ext."


# The languages the project handles: raw text splits into characters (zh, ja), Kiwi morphemes
# (ko) or whitespace words (en), and the LLM prompts exist in each. Another code would be read
# as whitespace-separated words without a word of warning, so flags and configs refuse it.
LANGS = ("zh", "en", "ja", "ko")


def is_extension(label: str) -> bool:
    return label.startswith(EXT_PREFIX)


@dataclass(frozen=True, order=True)
class Span:
    start: int
    end: int  # exclusive
    label: str

    def __post_init__(self):
        if not (isinstance(self.start, int) and isinstance(self.end, int)):
            raise TypeError(f"span offsets must be ints, got {self.start!r}, {self.end!r}")
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"empty or negative span [{self.start}, {self.end}) label {self.label!r}")


@dataclass
class Sample:
    tokens: list[str]
    spans: list[Span] = field(default_factory=list)
    id: str = ""
    lang: str = "zh"
    synthetic: bool = False
    source_id: str | None = None  # for synthetic samples: the id of the sentence they came from
    weight: float = 1.0  # per-sample loss weight (synthetic samples are down-weighted)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def sep(self) -> str:
        """How tokens join back into text: characters for zh/ja, spaces otherwise."""
        return "" if self.lang in ("zh", "ja") else " "

    @property
    def text(self) -> str:
        return self.sep.join(self.tokens)

    def span_text(self, span: Span) -> str:
        return self.sep.join(self.tokens[span.start:span.end])

    def targets(self) -> list[Span]:
        return [s for s in self.spans if not is_extension(s.label)]

    def extensions(self) -> list[Span]:
        return [s for s in self.spans if is_extension(s.label)]

    def check(self) -> None:
        """Raise ValueError naming the sample and span if a span lies outside the sentence."""
        for s in self.spans:
            if s.end > len(self.tokens):
                raise ValueError(
                    f"sample {self.id!r}: span [{s.start}, {s.end}) {s.label!r} ends past the "
                    f"sentence ({len(self.tokens)} tokens)")

    def overlaps(self, labels: Iterable[str] | None = None) -> list[tuple[Span, Span]]:
        """Pairs of spans that overlap (nested or crossing), among ``labels`` if given.

        Flat-mode data must return []; the readers use this to report, never hide, overlaps."""
        keep = set(labels) if labels is not None else None
        spans = sorted(s for s in self.spans if keep is None or s.label in keep)
        out = []
        for i, a in enumerate(spans):
            for b in spans[i + 1:]:
                if b.start >= a.end:
                    break
                out.append((a, b))
        return out

    def with_spans(self, spans: Iterable[Span]) -> "Sample":
        return Sample(list(self.tokens), sorted(set(spans)), self.id, self.lang,
                      self.synthetic, self.source_id, self.weight, dict(self.meta))

    def to_dict(self) -> dict:
        """KnowFREE JSONL record, plus our optional fields when they differ from defaults."""
        d: dict[str, Any] = {
            "text": list(self.tokens),
            "entities": [{"start": s.start, "end": s.end, "entity": s.label,
                          "text": self.sep.join(self.tokens[s.start:s.end])}
                         for s in sorted(self.spans)],
        }
        if self.id:
            d["id"] = self.id
        if self.lang != "zh":
            d["lang"] = self.lang
        if self.synthetic:
            d["synthetic"] = True
        if self.source_id is not None:
            d["source_id"] = self.source_id
        if self.weight != 1.0:
            d["weight"] = self.weight
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict, lang: str = "zh") -> "Sample":
        tokens = d["text"]
        if isinstance(tokens, str):  # some KnowFREE files store the sentence as one string
            tokens = list(tokens)
        spans = [Span(int(e["start"]), int(e["end"]), str(e["entity"])) for e in d.get("entities", [])]
        s = cls(list(tokens), sorted(set(spans)), str(d.get("id", "")), d.get("lang", lang),
                bool(d.get("synthetic", False)), d.get("source_id"), float(d.get("weight", 1.0)),
                dict(d.get("meta", {})))
        s.check()
        return s
