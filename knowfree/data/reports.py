"""What a reader or writer tells its caller: the samples, each repair counted by kind with its
first line numbers, what was dropped and why (``ReadReport``, ``WriteReport``)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from knowfree.data.sample import Sample, Span
from knowfree.errors import InputError

_REPORTED_LINES = 20  # line numbers kept per repair kind: enough to find them, bounded in size



@dataclass
class Dropped:
    what: str  # "sentence" or "span"
    line: int | None
    reason: str


@dataclass
class ReadReport:
    """What a reader saw and did: counts, repairs by kind (with line numbers), drops."""
    path: str
    fmt: str
    sentences: int = 0
    tokens: int = 0
    spans: int = 0
    overlapping_spans: int = 0  # spans overlapping another in their sentence (nested/crossing)
    scheme: str | None = None
    newline: str = "\n"
    repairs: Counter = field(default_factory=Counter)
    repair_lines: dict[str, list[int]] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)
    # every sample's id comes from the file itself (a JSONL "id"), not made up by the reader
    # from the file name and position: only then can two files be paired by id
    ids_from_file: bool = False
    # the line each sentence starts on, in order (None for stockmark's JSON array): how a
    # command points at one sentence in the file
    lines: list[int | None] = field(default_factory=list)

    def repair(self, kind: str, line: int | None) -> None:
        self.repairs[kind] += 1
        lines = self.repair_lines.setdefault(kind, [])
        if line is not None and len(lines) < _REPORTED_LINES:
            lines.append(line)

    def drop(self, what: str, line: int | None, reason: str) -> None:
        self.dropped.append(Dropped(what, line, reason))

    def dropped_counts(self) -> Counter:
        return Counter(f"{d.what}: {d.reason}" for d in self.dropped)

    def summary(self) -> str:
        head = (f"{self.path} ({self.fmt}{', ' + self.scheme if self.scheme else ''}): "
                f"{self.sentences} sentences, {self.tokens} tokens, {self.spans} spans")
        if self.overlapping_spans:
            head += f", {self.overlapping_spans} overlapping"
        parts = [head]
        for kind, n in sorted(self.repairs.items()):
            parts.append(f"  repaired {n} x {kind} (lines {_lines(self.repair_lines.get(kind, []), n)})")
        for reason, n in sorted(self.dropped_counts().items()):
            lines = [d.line for d in self.dropped if f"{d.what}: {d.reason}" == reason and d.line]
            parts.append(f"  dropped {n} x {reason} (lines {_lines(lines[:_REPORTED_LINES], n)})")
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {"path": self.path, "fmt": self.fmt, "sentences": self.sentences,
                "tokens": self.tokens, "spans": self.spans,
                "overlapping_spans": self.overlapping_spans, "scheme": self.scheme,
                "repairs": dict(self.repairs), "repair_lines": self.repair_lines,
                "dropped": [vars(d) for d in self.dropped]}


def _lines(lines: list[int], n: int) -> str:
    shown = ", ".join(map(str, lines)) or "?"
    return shown + (", ..." if n > len(lines) else "")


@dataclass
class ReadResult:
    samples: list[Sample]
    report: ReadReport


@dataclass
class WriteReport:
    path: str
    fmt: str
    sentences: int = 0
    spans: int = 0
    skipped_extensions: int = 0  # extension-label spans left out (include_extensions=False)
    dropped: list[Dropped] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.path} ({self.fmt}): wrote {self.sentences} sentences, {self.spans} spans"
        if self.skipped_extensions:
            s += f"; left out {self.skipped_extensions} extension-label spans"
        if self.dropped:
            s += f"; dropped {len(self.dropped)} overlapping spans (flat format)"
        return s


def written_spans(s: Sample, report: WriteReport, include_extensions: bool) -> list[Span]:
    if include_extensions:
        return list(s.spans)
    report.skipped_extensions += len(s.extensions())
    return s.targets()


# -- checks every reader applies ---------------------------------------------------------

def check_label(label: str, labels: set[str] | None, where: str, tag: str | None = None) -> None:
    if labels is not None and label not in labels:
        shown = f"tag {tag!r}" if tag else f"label {label!r}"
        raise InputError(f"{shown} has label {label!r}, which is not in the label schema "
                         f"({', '.join(sorted(labels))})", where,
                         "fix the label, or pass the schema that includes it (labels=...)")


def check_span(start: int, end: int, length: int, label: str, where: str) -> None:
    if not 0 <= start < end <= length:
        raise InputError(f"span [{start}, {end}) {label!r} lies outside the sentence of {length} "
                         "tokens (or is empty)", where,
                         "offsets are 0-based with the end exclusive; fix or remove the entity")
