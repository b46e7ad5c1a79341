"""Readers and writers of two corpora's own formats: Stockmark's Japanese NER JSON and the KMOU
Korean morpheme format (described in knowfree/data/formats.py, which dispatches to them)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from knowfree.data.sample import Sample, Span
from knowfree.errors import InputError, shown as _shown
from knowfree.data.reports import Dropped, ReadReport, WriteReport, check_label, check_span, written_spans
from knowfree.data.tags import spans_to_tags


# ---------------------------------------------------------------------------------------
# Stockmark JSON


def read_stockmark(text: str, path: Path, report: ReadReport, *, lang: str = "ja",
                    labels: Iterable[str] | None = None, id_prefix: str = "") -> list[Sample]:
    allowed = set(labels) if labels is not None else None
    samples = []
    for n, rec in _json_array_records(text, path):
        where = f"{path}:{n}"
        if not (isinstance(rec, dict) and isinstance(rec.get("text"), str)
                and isinstance(rec.get("entities", []), list)):
            raise InputError('expected {"curid", "text": string, "entities": [...]}', where)
        tokens = list(rec["text"])
        if not tokens:
            report.drop("sentence", n, "empty text")
            continue
        spans = []
        for e in rec.get("entities", []):
            try:
                (start, end), label, name = e["span"], e["type"], e.get("name")
            except (KeyError, TypeError, ValueError):
                raise InputError(f'entity {_shown(e)}: expected {{"name", "span": [start, end], "type"}}',
                                 where) from None
            if not (type(start) is int and type(end) is int and isinstance(label, str)):
                raise InputError(f"entity {_shown(e)}: span must be two integers, type a string", where)
            check_span(start, end, len(tokens), label, where)
            check_label(label, allowed, where)
            if name is not None and name != rec["text"][start:end]:
                report.repair("entity name differs from the text at its span (span kept)", n)
            if Span(start, end, label) in spans:
                report.repair("duplicate span removed", n)
                continue
            spans.append(Span(start, end, label))
        meta = {"curid": rec["curid"]} if "curid" in rec else {}
        samples.append(Sample(tokens, spans, f"{id_prefix}-{len(samples)}", lang, meta=meta))
        report.lines.append(None)
    return samples


def _json_array_records(text: str, path: Path):
    """Yield (line number, record) for each element of a top-level JSON array."""
    dec = json.JSONDecoder()
    i, line = _skip_ws(text, 0), 1
    if text[i:i + 1] != "[":
        raise InputError("expected a JSON array of records", f"{path}:{text.count(chr(10), 0, i) + 1}")
    i, last = i + 1, 0
    while True:
        i = _skip_ws(text, i)
        if text[i:i + 1] == "]":
            return
        line += text.count("\n", last, i)
        last = i
        try:
            rec, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise InputError(f"malformed JSON ({e.msg})", f"{path}:{e.lineno}") from None
        yield line, rec
        i = _skip_ws(text, i)
        if text[i:i + 1] == ",":
            i += 1
        elif text[i:i + 1] != "]":
            raise InputError("expected ',' or ']' between records",
                             f"{path}:{text.count(chr(10), 0, i) + 1}")


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def write_stockmark(samples: Sequence[Sample], report: WriteReport, *,
                     include_extensions: bool = False) -> str:
    records = []
    for s in samples:
        # Offsets are characters of the joined text, so word tokens (en) convert too.
        starts, pos = [], 0
        for tok in s.tokens:
            starts.append(pos)
            pos += len(tok) + len(s.sep)
        text = s.text
        ents = []
        for sp in sorted(written_spans(s, report, include_extensions)):
            a, b = starts[sp.start], starts[sp.end - 1] + len(s.tokens[sp.end - 1])
            ents.append({"name": text[a:b], "span": [a, b], "type": sp.label})
        records.append({"curid": s.meta.get("curid", s.id), "text": text, "entities": ents})
        report.spans += len(ents)
    # Stockmark's own file is exactly this serialisation, so a read/write round trip is exact.
    return json.dumps(records, ensure_ascii=False, indent=4)


# ---------------------------------------------------------------------------------------
# KMOU morpheme format


def read_kmou(text: str, path: Path, report: ReadReport, *, lang: str = "ko",
               labels: Iterable[str] | None = None, id_prefix: str = "") -> list[Sample]:
    allowed = set(labels) if labels is not None else None
    samples: list[Sample] = []
    block: list[tuple[int, str]] = []
    lines = text.split("\n")
    for n, raw in enumerate(lines + [""], 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if line.strip():
            block.append((n, line))
            continue
        if block:
            sample = _kmou_sentence(block, path, report, allowed, lang)
            if sample is not None:
                sample.id = f"{id_prefix}-{len(samples)}"
                samples.append(sample)
                report.lines.append(block[0][0])
        block = []
    return samples


def _kmou_sentence(block: list[tuple[int, str]], path: Path, report: ReadReport,
                   allowed: set[str] | None, lang: str) -> Sample | None:
    meta: dict[str, Any] = {}
    tokens: list[str] = []
    pos: list[str] = []
    words: list[int] = []
    spans: list[Span] = []
    open_label, open_start = None, 0
    for n, line in block:
        if line.startswith(";"):
            meta["raw"] = line[2:] if line.startswith("; ") else line[1:]
            continue
        if line.startswith("$"):
            meta["marked"] = line[1:]
            continue
        cols = line.split("\t")
        if len(cols) != 4 or not cols[0].isdigit() or not cols[1]:
            raise InputError(f"malformed line {_shown(line)}: expected WORD_INDEX<TAB>MORPHEME<TAB>POS<TAB>TAG, "
                             "or a '; raw' / '$marked' line", f"{path}:{n}", "fix the line")
        i = len(tokens)
        tag = cols[3]
        if tag == "O" or (tag[:1] == "B" and tag[1:2] in ("_", "-") and len(tag) > 2):
            if open_label is not None:
                spans.append(Span(open_start, i, open_label))
                open_label = None
            if tag != "O":
                open_label, open_start = tag[2:], i
                check_label(open_label, allowed, f"{path}:{n}", tag)
        elif tag == "I" or (tag[:2] in ("I_", "I-") and len(tag) > 2):
            label = tag[2:] or open_label
            if open_label is None and label is None:
                report.drop("span", n, "I without B: a bare I after O has no type to give it")
            elif label != open_label:
                check_label(label, allowed, f"{path}:{n}", tag)
                if open_label is not None:
                    spans.append(Span(open_start, i, open_label))
                report.repair("I without B", n)
                open_label, open_start = label, i
        else:
            raise InputError(f"tag {_shown(tag)} is not a KMOU tag (expected O, B_<TYPE> or I)",
                             f"{path}:{n}", "fix the tag")
        tokens.append(cols[1])
        pos.append(cols[2])
        words.append(int(cols[0]))
    if open_label is not None:
        spans.append(Span(open_start, len(tokens), open_label))
    if not tokens:
        report.drop("sentence", block[0][0], "no morpheme lines")
        return None
    if "marked" in meta and _KMOU_MARK.findall(meta["marked"]) != [sp.label for sp in spans]:
        report.repair("marked line disagrees with the morpheme tags (tags kept)", block[0][0])
    meta.update(pos=pos, word=words)
    return Sample(tokens, spans, "", lang, meta=meta)


def write_kmou(samples: Sequence[Sample], report: WriteReport, *, newline: str = "\n",
                on_overlap: str = "error", include_extensions: bool = False) -> str:
    out = []
    for s in samples:
        spans = set(written_spans(s, report, include_extensions))
        tagging = spans_to_tags(spans, len(s), "BIO", on_overlap, where=f"sample {s.id!r}")
        report.dropped += [Dropped("span", None, f"overlap in {s.id!r}: {d}") for d in tagging.dropped]
        kept = sorted(spans - set(tagging.dropped))
        report.spans += len(kept)
        pos = s.meta.get("pos") if len(s.meta.get("pos", ())) == len(s) else ["NA"] * len(s)
        words = s.meta.get("word") if len(s.meta.get("word", ())) == len(s) else range(1, len(s) + 1)
        raw = s.meta.get("raw", s.text)
        # Morphemes are normalised forms, so marks cannot be put back into the raw text in
        # general: the marked line read from the file is kept while its marks still name the
        # sample's spans (same types, same order); otherwise marks wrap the tokens.
        marked = s.meta.get("marked")
        if marked is None or _KMOU_MARK.findall(marked) != [sp.label for sp in kept]:
            marked = _kmou_marked(s, kept)
        out.append(f"; {raw}{newline}${marked}{newline}")
        for tok, p, w, tag in zip(s.tokens, pos, words, tagging.tags):
            if "\t" in tok or "\n" in tok:
                raise InputError(f"token {_shown(tok)} of sample {s.id!r} cannot be written as a KMOU line")
            kmou_tag = "O" if tag == "O" else ("B_" + tag[2:] if tag[0] == "B" else "I")
            out.append(f"{w}\t{tok}\t{p}\t{kmou_tag}{newline}")
        out.append(newline)
    return "".join(out)


_KMOU_MARK = re.compile(r"<[^<>]*:([^<>:]+)>")


def _kmou_marked(s: Sample, spans: list[Span]) -> str:
    pieces = list(s.tokens)
    for sp in spans:
        pieces[sp.start] = "<" + pieces[sp.start]
        pieces[sp.end - 1] = pieces[sp.end - 1] + f":{sp.label}>"
    return s.sep.join(pieces)


