"""Free-form entity types and POS tags -> a compact extension-label inventory.

The authors never released their alias tables, so every unknown type collapsed into one
catch-all label (fault 9 in docs/faults.md). Ours ship as package data
(``knowfree/knowledge/aliases/*.json``) and every lookup records *how* it resolved, so a
stats report can show what was matched exactly, what needed a fallback, and what stayed
unknown.

Inventory (labels carry the ``ext.`` prefix of :mod:`knowfree.data.sample`):

- ``ext.ent.<C>`` for C in PER, ROLE, ORG, GPE, LOC, TIME, NUM, PRODUCT, EVENT, WORK, MISC
  (descriptions in ``aliases/entity_types.json``). MISC is a *listed* class (languages,
  nationalities, diseases, species, ...), not a catch-all.
- Unknown entity types are counted with their raw strings and, by default, dropped
  (``unknown_entities="drop"``); ``"other"`` keeps them as ``ext.ent.OTHER`` instead, as an
  explicit, reported choice.
- ``ext.pos.<UPOS>`` for the 17 Universal Dependencies tags. Unknown POS strings are counted
  and give no POS span (the word still gives its segmentation span).
- ``ext.seg.WORD`` for words. In character-tokenised languages (zh, ja: ``Sample.sep == ""``)
  every word gives one, single characters included: "this character is a word on its own"
  is information the characters do not carry. In word- or morpheme-tokenised languages
  (en, ko) only words covering more than one token do, since a one-token word would restate
  the dataset's own tokenisation.

Free-form strings resolve in this order, each step counted under its name:
``exact`` (also after dropping generic suffixes such as 名称 / "name" and an English plural
"s"), ``tagset`` (a tagger code such as ICTCLAS ``nr`` or Penn ``NNP`` used by the LLM),
``part`` (``人物/演员``, ``PER (person)``: the first part that resolves), ``head`` (the
longest known alias ending the string, 足球运动员 -> 运动员; for space-separated strings the
last word, "football club" -> "club"), else ``unknown``.
Tagger tags resolve exactly, then by longest prefix (``prefix``), since those tagsets are
hierarchical.
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from knowfree.data.sample import EXT_PREFIX
from knowfree.errors import InputError

ENT_PREFIX = EXT_PREFIX + "ent."
POS_PREFIX = EXT_PREFIX + "pos."
SEG_WORD = EXT_PREFIX + "seg.WORD"
UNKNOWN_ENTITY_POLICIES = ("drop", "other")
OTHER_CLASS = "OTHER"

_SEPARATORS = re.compile(r"[/|、,，;；()（）\[\]【】:：.]+|\s+or\s+|\s+and\s+")
# Words that name the kind of thing rather than the thing ("company name", "公司名称").
_GENERIC_SUFFIXES = ("名称", "名字", "类型", "实体", "名", "類", "の名前", "名前", "명", " 이름", " name", " names",
                     " entity", " entities", " type")


def _key(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).casefold()
    s = re.sub(r"[\s_\-]+", " ", s)
    return s.strip(" \t\"'`.。·・*#")


def _is_spaced(key: str) -> bool:
    return " " in key


@dataclass(frozen=True)
class AliasTables:
    version: str
    entity_classes: tuple[str, ...]
    entity_aliases: dict[str, str]  # key -> class
    entity_tagsets: dict[str, dict[str, str]]  # tagset -> casefolded tag -> class
    entity_names: dict[str, dict[str, str]]  # class -> lang -> readable name
    upos: tuple[str, ...]
    pos_aliases: dict[str, str]  # key -> UPOS
    pos_tagsets: dict[str, dict[str, str | None]]  # tagset -> casefolded tag -> UPOS or None
    llm_tagsets: dict[str, tuple[str, ...]]  # lang -> tagsets an LLM may borrow codes from


def _read_alias_file(name: str) -> dict:
    try:
        return json.loads(resources.files("knowfree.knowledge").joinpath("aliases").joinpath(name)
                          .read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read alias table {name}: {e}", where="knowfree/knowledge/aliases",
                         fix="reinstall the package; the alias tables are package data") from None


def _invert(groups: dict[str, list[str]], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for cls, aliases in groups.items():
        for a in aliases:
            k = _key(a)
            if k in out and out[k] != cls:
                raise InputError(f"{what} alias {a!r} maps to both {out[k]} and {cls}",
                                 where="knowfree/knowledge/aliases", fix="keep it under one class")
            out[k] = cls
    return out


@lru_cache(maxsize=1)
def alias_tables() -> AliasTables:
    """Load and check both alias tables (once per process)."""
    ent, pos = _read_alias_file("entity_types.json"), _read_alias_file("pos_tags.json")
    classes = tuple(ent["classes"])
    ent_aliases = _invert({c: v["aliases"] for c, v in ent["classes"].items()}, "entity type")
    for ts, table in ent["tagsets"].items():
        bad = sorted(set(table.values()) - set(classes))
        if bad:
            raise InputError(f"entity tagset {ts!r} maps to unknown classes {bad}",
                             where="knowfree/knowledge/aliases/entity_types.json")
    upos = tuple(pos["upos"])
    bad = sorted(set(pos["free_form"]) - set(upos))
    bad += sorted({v for t in pos["tagsets"].values() for v in t.values() if v is not None} - set(upos))
    if bad:
        raise InputError(f"POS tables map to tags outside UPOS: {bad}",
                         where="knowfree/knowledge/aliases/pos_tags.json")
    pos_tagsets = {}
    for ts, table in pos["tagsets"].items():
        folded = {k.casefold(): v for k, v in table.items()}
        if len(folded) != len(table):
            raise InputError(f"POS tagset {ts!r} has tags that differ only in case",
                             where="knowfree/knowledge/aliases/pos_tags.json")
        pos_tagsets[ts] = folded
    return AliasTables(
        version=f"entity:{ent['version']}+pos:{pos['version']}",
        entity_classes=classes, entity_aliases=ent_aliases,
        entity_tagsets={ts: {k.casefold(): v for k, v in t.items()} for ts, t in ent["tagsets"].items()},
        entity_names={c: dict(v["names"]) for c, v in ent["classes"].items()},
        upos=upos, pos_aliases=_invert(pos["free_form"], "POS"), pos_tagsets=pos_tagsets,
        llm_tagsets={lang: tuple(v) for lang, v in pos["llm_tagsets"].items()})


def _prefix_lookup(table: dict, tag: str) -> tuple[bool, str | None, str]:
    """Exact, then longest prefix. Returns (found, value, how)."""
    t = tag.casefold()
    if t in table:
        return True, table[t], "exact"
    for n in range(len(t) - 1, 0, -1):
        if t[:n] in table:
            return True, table[t[:n]], "prefix"
    return False, None, "unknown"


def _stems(key: str):
    """The key itself, then the key without a generic suffix and without an English plural."""
    yield key
    for suf in _GENERIC_SUFFIXES:
        if key.endswith(suf) and len(key) - len(suf) >= 2:
            yield key[: -len(suf)].strip()
    if _is_spaced(key) or key.isascii():
        if key.endswith("es") and len(key) > 3:
            yield key[:-2]
        if key.endswith("s") and len(key) > 2:
            yield key[:-1]


class Normaliser:
    """Resolves raw types and tags of one language and counts how each one resolved."""

    def __init__(self, lang: str, unknown_entities: str = "drop"):
        if unknown_entities not in UNKNOWN_ENTITY_POLICIES:
            raise InputError(f"unknown_entities must be one of {UNKNOWN_ENTITY_POLICIES}, "
                             f"got {unknown_entities!r}")
        self.lang = lang
        self.unknown_entities = unknown_entities
        self.tables = alias_tables()
        self.entity_how: Counter = Counter()
        self.pos_how: Counter = Counter()
        self.unknown_entity_types: Counter = Counter()
        self.unknown_pos: Counter = Counter()
        # Longest aliases first, for head matching of unspaced (CJK) strings.
        self._ent_heads = sorted((k for k in self.tables.entity_aliases if len(k) >= 2 and not k.isascii()),
                                 key=len, reverse=True)
        self._pos_heads = sorted((k for k in self.tables.pos_aliases if len(k) >= 2 and not k.isascii()),
                                 key=len, reverse=True)

    # -- free-form strings (LLM output) ------------------------------------------------------

    def _resolve(self, raw: str, aliases: dict, heads: list[str], tagsets: tuple[str, ...]):
        key = _key(raw)
        if not key:
            return None, "unknown"

        def direct(k: str):
            for stem in _stems(k):
                if stem in aliases:
                    return aliases[stem], "exact"
            return None, None

        found, how = direct(key)
        if found:
            return found, how
        code = unicodedata.normalize("NFKC", raw).strip().casefold()
        for ts in tagsets:
            if self.tables.pos_tagsets[ts].get(code) is not None:
                return self.tables.pos_tagsets[ts][code], "tagset"
        parts = [p.strip() for p in _SEPARATORS.split(key) if p and p.strip()]
        if len(parts) > 1:
            for p in parts:
                found, _ = direct(p)
                if found:
                    return found, "part"
        if _is_spaced(key):
            found, _ = direct(key.rsplit(" ", 1)[1])
            if found:
                return found, "head"
        else:
            for h in heads:
                if key.endswith(h) and len(key) > len(h):
                    return aliases[h], "head"
        return None, "unknown"

    def entity(self, raw_type: str) -> str | None:
        """Extension label for a free-form entity type, or None (dropped, counted)."""
        cls, how = self._resolve(str(raw_type), self.tables.entity_aliases, self._ent_heads, ())
        self.entity_how[how] += 1
        if cls is None:
            self.unknown_entity_types[_key(str(raw_type)) or "<empty>"] += 1
            return ENT_PREFIX + OTHER_CLASS if self.unknown_entities == "other" else None
        return ENT_PREFIX + cls

    def pos(self, raw_tag: str, word: str = "") -> str | None:
        """Extension label for a free-form POS string, or None (counted)."""
        upos, how = self._resolve(str(raw_tag), self.tables.pos_aliases, self._pos_heads,
                                  self.tables.llm_tagsets.get(self.lang, ()))
        return self._finish_pos(upos, how, str(raw_tag), word)

    def readable_type(self, label: str) -> str:
        """A target label as a word for prompts: ``PER.NAM`` -> 人物 (zh) / person (en).

        Labels that are already words of a language (人名, 製品名) and codes the tables do not
        know (HCCX) are returned unchanged; nothing is counted."""
        if not label.isascii():
            return label
        cls, _ = self._resolve(label, self.tables.entity_aliases, self._ent_heads, ())
        if cls is None:
            return label
        names = self.tables.entity_names[cls]
        return names.get(self.lang, names["en"])

    # -- tagger tags --------------------------------------------------------------------------

    def tagger_pos(self, tagset: str, tag: str, word: str = "") -> str | None:
        table = self.tables.pos_tagsets.get(tagset)
        if table is None:
            raise InputError(f"no POS table for tagset {tagset!r}",
                             fix=f"known: {sorted(self.tables.pos_tagsets)}")
        found, upos, how = _prefix_lookup(table, tag)
        if found and upos is None:  # the table says: no POS span (whitespace)
            self.pos_how["skip"] += 1
            return None
        return self._finish_pos(upos, how, f"{tagset}:{tag}", word)

    def tagger_entity(self, tagset: str, tag: str) -> str | None:
        """Entity class a tagger's tag implies, or None when the tag is no entity class."""
        table = self.tables.entity_tagsets.get(tagset, {})
        found, cls, how = _prefix_lookup(table, tag)
        if found:
            self.entity_how["tagger_" + how] += 1
            return ENT_PREFIX + cls
        return None

    def _finish_pos(self, upos: str | None, how: str, raw: str, word: str) -> str | None:
        # Taggers and LLMs often file punctuation under a generic "other" tag (jieba's x):
        # the characters themselves settle it.
        if upos in (None, "X") and word and not word.isspace():
            cats = {unicodedata.category(c)[0] for c in word if not c.isspace()}
            if cats == {"P"}:
                upos, how = "PUNCT", how + "+chars"
            elif cats <= {"P", "S"} and "S" in cats:
                upos, how = "SYM", how + "+chars"
        self.pos_how[how] += 1
        if upos is None:
            self.unknown_pos[raw] += 1
            return None
        return POS_PREFIX + upos

    def report(self, top: int = 50) -> dict:
        return {
            "alias_tables": self.tables.version,
            "unknown_entity_policy": self.unknown_entities,
            "entity_resolution": dict(sorted(self.entity_how.items())),
            "pos_resolution": dict(sorted(self.pos_how.items())),
            "unknown_entity_types": dict(self.unknown_entity_types.most_common(top)),
            "unknown_entity_types_distinct": len(self.unknown_entity_types),
            "unknown_pos": dict(self.unknown_pos.most_common(top)),
            "unknown_pos_distinct": len(self.unknown_pos),
        }


def wants_segment(sep: str, n_tokens: int) -> bool:
    """Whether a word of ``n_tokens`` tokens gets an ``ext.seg.WORD`` span (module docstring)."""
    return sep == "" or n_tokens > 1


def inventory() -> dict[str, list[str]]:
    """Every extension label this module can emit, by family (for docs and notebooks)."""
    t = alias_tables()
    return {"ent": [ENT_PREFIX + c for c in t.entity_classes],
            "ent_unknown_policy_other": [ENT_PREFIX + OTHER_CLASS],
            "pos": [POS_PREFIX + u for u in t.upos],
            "seg": [SEG_WORD]}
