"""Tags <-> spans for the flat tag schemes (BIO/IOB2, BIOES/IOBES, BMES): pure functions, with
every repair of a malformed tag sequence returned for the reader to count (the policy is in
knowfree/data/formats.py)."""
from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

from knowfree.data.sample import Span
from knowfree.errors import InputError, option, shown as _shown

SCHEMES = {"BIO": "BIO", "IOB2": "BIO", "BIOES": "BIOES", "IOBES": "BIOES", "BMES": "BMES"}
# Role of each tag prefix per scheme: begin, inside, end, single, outside.
_ROLES = {
    "BIO": {"B": "begin", "I": "inside", "O": "outside"},
    "BIOES": {"B": "begin", "I": "inside", "E": "end", "S": "single", "O": "outside"},
    "BMES": {"B": "begin", "M": "inside", "E": "end", "S": "single", "O": "outside"},
}
_PREFIX = {scheme: {role: p for p, role in roles.items()} for scheme, roles in _ROLES.items()}



class Repair(NamedTuple):
    index: int  # token position the repair happened at
    kind: str


class Decoded(NamedTuple):
    spans: list[Span]
    repairs: list[Repair]


class Tagging(NamedTuple):
    tags: list[str]
    dropped: list[Span]  # spans a flat scheme could not hold (only with on_overlap="drop")


def normalize_scheme(scheme: str) -> str:
    key = str(scheme).upper()
    if key not in SCHEMES:
        raise InputError(f"unknown tag scheme {scheme!r}",
                         fix=f"use one of {', '.join(SCHEMES)} (or 'auto' when reading)")
    return SCHEMES[key]


def split_tag(tag: str) -> tuple[str, str | None]:
    """``'B-PER' -> ('B', 'PER')``, ``'O' -> ('O', None)``; ``-`` or ``_`` after the prefix."""
    if tag == "O":
        return "O", None
    if len(tag) > 2 and tag[1] in "-_":
        return tag[0], tag[2:]
    raise ValueError(f"{_shown(tag)} is not a tag: expected O or a prefix letter, '-', and a label")


def tags_to_spans(tags: Sequence[str], scheme: str = "BIO") -> Decoded:
    """Decode one sentence's tags into spans, repairing invalid sequences (see module doc).

    Raises ValueError for a tag that is not of the scheme (the readers add file and line)."""
    scheme = normalize_scheme(scheme)
    roles = _ROLES[scheme]
    strict_end = scheme != "BIO"  # BIOES/BMES spans must be closed by E-; BIO spans just stop
    spans: list[Span] = []
    repairs: list[Repair] = []
    open_label: str | None = None
    open_start = 0

    def close(end: int, at: int, proper: bool) -> None:
        nonlocal open_label
        if open_label is not None:
            if strict_end and not proper:
                repairs.append(Repair(at, "unclosed span"))
            spans.append(Span(open_start, end, open_label))
            open_label = None

    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        role = roles.get(prefix)
        if role is None:
            raise ValueError(f"tag {_shown(tag)} is not a {scheme} tag (allowed prefixes: "
                             f"{', '.join(p + '-' if p != 'O' else p for p in roles)})")
        if role == "outside":
            close(i, i, False)
        elif role == "begin":
            close(i, i, False)
            open_label, open_start = label, i
        elif role == "inside":
            if open_label != label:
                close(i, i, False)
                repairs.append(Repair(i, "I without B"))
                open_label, open_start = label, i
        elif role == "end":
            if open_label == label:
                close(i + 1, i, True)
            else:
                close(i, i, False)
                repairs.append(Repair(i, "E without B"))
                spans.append(Span(i, i + 1, label))
        else:  # single
            close(i, i, False)
            spans.append(Span(i, i + 1, label))
    close(len(tags), len(tags), False)
    return Decoded(spans, repairs)


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str = "BIO",
                  on_overlap: str = "error", where: str | None = None) -> Tagging:
    """Encode spans as one tag per token. Flat schemes cannot hold overlapping spans: with
    ``on_overlap="error"`` they raise InputError, with ``"drop"`` the spans kept are chosen by
    earliest start, longest first, and the others are returned in ``Tagging.dropped``."""
    scheme = normalize_scheme(scheme)
    if on_overlap not in ("error", "drop"):
        raise InputError(f"on_overlap must be 'error' or 'drop', got {on_overlap!r}", where)
    p = _PREFIX[scheme]
    tags = ["O"] * length
    taken: list[Span | None] = [None] * length
    dropped: list[Span] = []
    for s in sorted(set(spans), key=lambda s: (s.start, -(s.end - s.start), s.label)):
        if s.end > length:
            raise InputError(f"span [{s.start}, {s.end}) {s.label!r} lies outside the sentence "
                             f"({length} tokens)", where, "fix the span offsets (end is exclusive)")
        clash = next((taken[i] for i in range(s.start, s.end) if taken[i] is not None), None)
        if clash is not None:
            if on_overlap == "error":
                raise InputError(
                    f"spans [{clash.start}, {clash.end}) {clash.label!r} and [{s.start}, {s.end}) "
                    f"{s.label!r} overlap: a flat {scheme} tagging cannot hold both", where,
                    f"write JSONL, which holds nested spans, or pass {option('on_overlap', 'drop')} "
                    "to keep the earliest, longest span and count the others as dropped")
            dropped.append(s)
            continue
        for i in range(s.start, s.end):
            taken[i] = s
        if s.end - s.start == 1 and "single" in p:
            tags[s.start] = f"{p['single']}-{s.label}"
            continue
        tags[s.start] = f"{p['begin']}-{s.label}"
        for i in range(s.start + 1, s.end):
            tags[i] = f"{p['inside']}-{s.label}"
        if "end" in p:
            tags[s.end - 1] = f"{p['end']}-{s.label}"
    return Tagging(tags, dropped)


def detect_scheme(tags: Iterable[str]) -> str:
    """BMES if any M- tag, BIOES if any E-/S- tag, else BIO. Raises ValueError on a prefix
    that belongs to no scheme, or on I- and M- mixed."""
    prefixes = set()
    for tag in tags:
        prefix, _ = split_tag(tag)
        if prefix not in "BIOESM":
            raise ValueError(f"tag {_shown(tag)} has prefix {prefix!r}, which no known scheme uses "
                             f"(known: {', '.join(sorted(set(SCHEMES.values())))})")
        prefixes.add(prefix)
    if "M" in prefixes:
        if "I" in prefixes:
            raise ValueError("the tags mix I- and M- prefixes, which matches no single scheme")
        return "BMES"
    return "BIOES" if prefixes & {"E", "S"} else "BIO"

