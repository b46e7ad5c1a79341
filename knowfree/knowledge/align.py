"""LLM output -> (string, type) pairs -> token spans.

Parsing goes through ``json_repair`` (code fences, prose around the JSON, single quotes,
trailing commas, cut-off answers); shapes that are not a list of objects (a dict wrapper,
a ``{entity: type}`` mapping, type-grouped lists, ``[string, type]`` pairs) are unwrapped and
counted as repaired. Nothing here raises on model output: every failure is a status.

Alignment is on tokens, not characters, so that spans land on token boundaries in every
language. Matching ignores whitespace and applies NFKC (an LLM writes ``U.S.troops`` or
full-width digits as it likes), then falls back to case-insensitive matching (counted).

- Entities: EVERY occurrence of the string becomes a span, several spans may start at the
  same token, and one-token spans are kept. (The authors kept only the first span per start
  and dropped single characters, so repeated and one-character entities were lost.) Strings found nowhere are
  hallucinations: dropped and counted.
- Words of a POS answer cover the sentence in order, so they are aligned with a cursor: each
  word is looked for from the end of the previous aligned word onward, which puts a repeated
  word (的, "the") at its actual position. A word not found ahead of the cursor is dropped and
  counted and the cursor stays, so one bad word does not derail the rest. Coverage is the
  fraction of non-space characters covered by aligned words.
"""
from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Sequence

import json_repair

# Keys LLMs use for the string and for its type, by answer kind. Compared case-folded.
_FIELD_KEYS = {
    "entity": (("entity", "name", "text", "span", "mention", "entity_name", "word", "value",
                "实体", "实体名", "名称", "词", "エンティティ", "固有表現", "名前", "개체", "개체명", "엔티티"),
               ("type", "label", "category", "class", "entity_type", "tag", "kind",
                "类型", "类别", "种类", "標籤", "種類", "タイプ", "ラベル", "유형", "종류", "타입")),
    "pos": (("word", "token", "text", "form", "surface", "词", "词语", "単語", "語", "단어", "형태소"),
            ("pos", "tag", "upos", "part_of_speech", "type", "label", "词性", "品詞", "품사")),
}
PARSE_STATUSES = ("ok", "repaired", "empty", "failed")


@dataclass
class Parsed:
    """``status``: ok (strict JSON list of objects), repaired (json_repair or a reshaped
    container was needed), empty (blank answer), failed (no JSON structure at all)."""
    pairs: list[tuple[str, str]]
    status: str
    invalid_items: int = 0


def _field(d: dict, names: Sequence[str]) -> Any:
    folded = {str(k).strip().casefold(): v for k, v in d.items()}
    for n in names:
        if n in folded:
            return folded[n]
    return None


def _text(v: Any) -> str | None:
    if isinstance(v, bool) or v is None or isinstance(v, (dict, list)):
        return None
    s = str(v).strip()
    return s or None


class _Collector:
    def __init__(self, kind: str):
        self.word_keys, self.type_keys = _FIELD_KEYS[kind]
        self.kind = kind
        self.pairs: list[tuple[str, str]] = []
        self.invalid = 0
        self.reshaped = False

    def item(self, x: Any, depth: int = 0) -> None:
        if isinstance(x, dict):
            self.obj(x, depth)
        elif isinstance(x, (list, tuple)):
            if len(x) == 2 and all(_text(v) is not None for v in x):
                self.reshaped = True
                self.pairs.append((_text(x[0]), _text(x[1])))
            elif depth < 2 and x:
                self.reshaped = True
                for y in x:
                    self.item(y, depth + 1)
            else:
                self.invalid += 1
        else:
            self.invalid += 1

    def obj(self, d: dict, depth: int) -> None:
        word = _text(_field(d, self.word_keys))
        if word is not None:
            # A POS word with no usable tag still segments the sentence.
            typ = _text(_field(d, self.type_keys))
            if typ is None and self.kind == "entity":
                self.invalid += 1
            else:
                self.pairs.append((word, typ or ""))
            return
        if not d or depth >= 2:
            self.invalid += 1
            return
        self.reshaped = True
        for k, v in d.items():
            if isinstance(v, (list, dict)):
                # {"entities": [...]} wrappers, or {"人名": ["李明", ...]} type-grouped lists.
                strings = [_text(s) for s in v] if isinstance(v, list) else []
                if strings and all(s is not None for s in strings):
                    self.pairs.extend((s, str(k).strip()) for s in strings)
                else:
                    self.item(v, depth + 1)
            elif isinstance(v, str) and v.strip() and str(k).strip():
                self.pairs.append((str(k).strip(), v.strip()))  # {"北京": "地点"}
            else:
                self.invalid += 1


def parse_pairs(text: str | None, kind: str) -> Parsed:
    """Parse one LLM answer of ``kind`` ("entity" or "pos") into (string, type) pairs."""
    if kind not in _FIELD_KEYS:
        raise ValueError(f"kind must be one of {sorted(_FIELD_KEYS)}, got {kind!r}")
    if text is None or not str(text).strip():
        return Parsed([], "empty")
    text = str(text)
    try:
        obj, strict = json.loads(text), True
    except ValueError:
        try:
            obj, strict = json_repair.loads(text), False
        except Exception:  # json_repair promises not to raise; a bug there must not stop a run
            return Parsed([], "failed")
    if not isinstance(obj, (list, dict)):
        return Parsed([], "failed")
    c = _Collector(kind)
    for x in obj if isinstance(obj, list) else [obj]:
        c.item(x)
    ok = strict and isinstance(obj, list) and not c.reshaped
    if not c.pairs and c.invalid:
        return Parsed([], "failed", c.invalid)
    return Parsed(c.pairs, "ok" if ok else "repaired", c.invalid)


def _norm(s: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", s) if not ch.isspace())


class TokenText:
    """A sentence's tokens as one whitespace-free string with token boundaries, for matching."""

    def __init__(self, tokens: Sequence[str], fold: bool = False):
        pieces = [_norm(t).casefold() if fold else _norm(t) for t in tokens]
        self.text = "".join(pieces)
        self.start_tok: dict[int, int] = {}  # char offset -> token starting there
        self.end_tok: dict[int, int] = {}  # char offset -> (index + 1) of token ending there
        self.tok_start: list[int] = []
        pos = 0
        for i, p in enumerate(pieces):
            self.tok_start.append(pos)
            if p:  # whitespace-only tokens vanish; spans never start or end on them
                self.start_tok[pos] = i
                self.end_tok[pos + len(p)] = i + 1
            pos += len(p)
        self.fold = fold

    @property
    def n_chars(self) -> int:
        return len(self.text)

    def key(self, s: str) -> str:
        s = _norm(s)
        return s.casefold() if self.fold else s

    def find(self, s: str, from_token: int = 0) -> list[tuple[int, int]]:
        """Every occurrence of ``s`` (overlapping ones too) that starts and ends on token
        boundaries at or after token ``from_token``, as token spans [start, end)."""
        key = self.key(s)
        out = []
        if not key:
            return out
        at = self.text.find(key, self.char_of(from_token))
        while at >= 0:
            end = at + len(key)
            if at in self.start_tok and end in self.end_tok:
                out.append((self.start_tok[at], self.end_tok[end]))
            at = self.text.find(key, at + 1)
        return out

    def char_of(self, token: int) -> int:
        return self.tok_start[token] if token < len(self.tok_start) else len(self.text)

    def chars_in(self, start: int, end: int) -> int:
        return self.char_of(end) - self.char_of(start)


@dataclass
class EntityAlignment:
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, raw type)
    found: int = 0
    hallucinated: list[str] = field(default_factory=list)
    casefold_matches: int = 0


def align_entities(tokens: Sequence[str], pairs: Sequence[tuple[str, str]]) -> EntityAlignment:
    exact = TokenText(tokens)
    folded = None
    out = EntityAlignment()
    seen = set()
    for string, typ in pairs:
        hits = exact.find(string)
        if not hits:
            folded = folded or TokenText(tokens, fold=True)
            hits = folded.find(string)
            out.casefold_matches += bool(hits)
        if not hits:
            out.hallucinated.append(string)
            continue
        out.found += 1
        for a, b in hits:
            if (a, b, typ) not in seen:
                seen.add((a, b, typ))
                out.spans.append((a, b, typ))
    return out


@dataclass
class WordAlignment:
    words: list[tuple[int, int, str, str]] = field(default_factory=list)  # (start, end, word, raw pos)
    hallucinated: list[str] = field(default_factory=list)
    covered_chars: int = 0
    total_chars: int = 0
    casefold_matches: int = 0

    @property
    def coverage(self) -> float:
        return self.covered_chars / self.total_chars if self.total_chars else 1.0


def align_words(tokens: Sequence[str], pairs: Sequence[tuple[str, str]]) -> WordAlignment:
    exact = TokenText(tokens)
    folded = None
    out = WordAlignment(total_chars=exact.n_chars)
    cursor = 0  # token index; as an index it means the same in the exact and the folded text
    for word, pos in pairs:
        hits = exact.find(word, cursor)[:1]
        if not hits:
            folded = folded or TokenText(tokens, fold=True)
            hits = folded.find(word, cursor)[:1]
            out.casefold_matches += bool(hits)
        if not hits:
            out.hallucinated.append(word)
            continue
        a, b = hits[0]
        out.words.append((a, b, word, pos))
        out.covered_chars += exact.chars_in(a, b)
        cursor = b
    return out


class CharTokenMap:
    """Tokens laid out as a text for a tagger, with each token's character range in it.

    ``groups`` (one id per token, e.g. KMOU's eojeol index) joins tokens of one group without
    a space, so a Korean tagger sees ``홍길동이보다는`` rather than ``홍길동 이 보다 는``."""

    def __init__(self, tokens: Sequence[str], sep: str, groups: Sequence[Any] | None = None):
        if groups is not None and len(groups) != len(tokens):
            groups = None
        parts, self.ranges, pos = [], [], 0
        for i, t in enumerate(tokens):
            if i and sep and not (groups is not None and groups[i] == groups[i - 1]):
                parts.append(sep)
                pos += len(sep)
            parts.append(t)
            self.ranges.append((pos, pos + len(t)))
            pos += len(t)
        self.text = "".join(parts)
        self._starts = {a: i for i, (a, b) in enumerate(self.ranges) if b > a}
        self._ends = {b: i + 1 for i, (a, b) in enumerate(self.ranges) if b > a}

    def to_tokens(self, start: int, end: int) -> tuple[int, int] | None:
        """Token span whose characters are exactly [start, end) (edges' whitespace ignored),
        or None when a boundary falls inside a token."""
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        if start >= end:
            return None
        a, b = self._starts.get(start), self._ends.get(end)
        if a is None or b is None or b <= a:
            return None
        return a, b


def layout(sample) -> CharTokenMap:
    """The sentence as a tagger or an LLM should read it.

    KMOU keeps each morpheme's eojeol index in ``meta["word"]``: morphemes of one eojeol are
    written together, so Korean reads as Korean (홍길동이보다는), not as spaced morphemes."""
    groups = sample.meta.get("word") if sample.lang == "ko" else None
    return CharTokenMap(sample.tokens, sample.sep, groups)
