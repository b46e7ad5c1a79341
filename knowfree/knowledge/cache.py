"""Loss-free, append-only cache of LLM answers, and its provenance.

Layout of a cache folder (commit it next to the results it feeds):

``seg-<UTC time>-<pid>-<random>.jsonl``
    the segment a live process is appending to: one JSON line per completed answer, flushed
    and fsync'd before the answer is used, so a kill at any moment loses no completed answer.
    A kill in the middle of a write leaves a partial last line; loading skips and reports it.
``seg-....jsonl.gz``
    a sealed segment: the complete lines of a finished (or dead) writer, gzipped
    deterministically. Sealed segments are never rewritten; new answers go to new segments,
    so git only ever gains files. The prompts repeat, so gzip keeps well under 1 KB per answer.
``provenance.json``
    models, servers, template versions, dates and counts, recomputed from the entries, and
    the sha256 of every sealed segment. Opening a cache checks those: a segment changed or
    gone since is an error in replay mode (the answers replayed would not be the recorded
    ones) and is reported in live mode (``LoadReport.changed_segments``).

A writer holds an ``flock`` on its open segment. A live cache seals, on open, every plain
segment whose lock is free (its writer died) and, on close, its own.

Modes: ``live`` answers what it has and lets the client ask for the rest; ``replay`` never
writes and makes the client raise :class:`CacheMissError`, listing what is missing, instead of
opening any connection.

A cache may reuse other folders read only (``llm.reuse``): a K=1000 setting sampled with the
same seed contains the K=250 one, so its cache serves the K=250 answers from their committed
folder and stores only the new ones.
"""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from knowfree import __version__
from knowfree.errors import InputError, KnowfreeError
from knowfree.provenance import atomic_write_gzip, atomic_write_json, git_commit, sha256_file

FORMAT = "knowfree-llm-cache/1"
MODES = ("live", "replay")


def request_key(model: str, kind: str, version: str, messages: list[dict], sampling: dict) -> str:
    """sha256 over everything that changes an answer; bookkeeping (sample ids) stays out."""
    blob = json.dumps({"model": model, "kind": kind, "version": version, "messages": messages,
                       "sampling": sampling}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CacheMissError(KnowfreeError):
    """Replay mode met requests whose answers are not cached."""

    def __init__(self, folder: Path, missing: list, total: int, show: int = 5):
        self.missing = missing  # (key, request) pairs
        lines = [f"{len(missing)} of {total} LLM answers are missing from the cache {folder} "
                 f"(replay mode makes no requests); first {min(show, len(missing))}:"]
        for key, req in missing[:show]:
            prompt = req.messages[-1]["content"].replace("\n", " ")
            lines.append(f"  {key[:16]} {req.version}: {prompt[:100]!r}")
        lines.append("fix: run once in live mode with a server (llm mode: live), or restore the "
                     "committed cache files of this setting")
        super().__init__("\n".join(lines))


@dataclass
class LoadReport:
    """What loading found; partial and corrupt lines are skipped, never silently."""
    segments: int = 0
    entries: int = 0
    duplicates: int = 0
    partial_lines: list[str] = field(default_factory=list)  # "file:line (N bytes)"
    corrupt_lines: list[str] = field(default_factory=list)
    sealed: list[str] = field(default_factory=list)  # dead writers' segments sealed on open
    # sealed segments whose sha256 differs from provenance.json's, or that it lists and are gone
    changed_segments: list[str] = field(default_factory=list)
    # sealed segments provenance.json does not list yet (their writer died before closing)
    unlisted_segments: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def skipped(self) -> dict:
        """Lines of the segments that were not read, by reason, with the first few places."""
        return {"partial_lines": len(self.partial_lines), "corrupt_lines": len(self.corrupt_lines),
                "examples": (self.partial_lines + self.corrupt_lines)[:5]}

    def summary(self) -> str:
        """One line for a run's printout: entries, skipped lines and why, segment checks."""
        sk = self.skipped()
        text = (f"loaded {self.entries} answers from {self.segments} segments; skipped "
                f"{sk['partial_lines']} partial lines (a write cut short) and "
                f"{sk['corrupt_lines']} corrupt lines")
        if sk["examples"]:
            text += f" (e.g. {', '.join(sk['examples'][:3])})"
        if self.changed_segments:
            text += (f"; {len(self.changed_segments)} segments differ from provenance.json "
                     f"(e.g. {self.changed_segments[0]})")
        return text


class ResponseCache:
    """Answers keyed by :func:`request_key`; use as a context manager so the segment is sealed."""

    def __init__(self, folder: str | Path, mode: str = "live", reuse: Sequence[str | Path] = ()):
        """``reuse``: other cache folders whose answers this one serves too, read only (replay
        mode, their segments verified): the committed cache of a smaller setting nested in this
        one, so that its answers are not asked again. New answers go to ``folder`` only."""
        if mode not in MODES:
            raise InputError(f"unknown cache mode {mode!r}", fix=f"use one of {', '.join(MODES)}")
        self.folder, self.mode = Path(folder), mode
        self.report = LoadReport()
        self._entries: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._segment = None  # (path, file) of this process's open segment
        self._added = 0
        self._stale = False  # provenance.json does not describe the sealed segments on disk
        if mode == "live":
            self.folder.mkdir(parents=True, exist_ok=True)
            self._seal_dead_segments()
        elif not self.folder.is_dir():
            raise InputError("replay cache folder does not exist", where=str(self.folder),
                             fix="restore the committed cache or run once in live mode")
        self._verify_segments()
        self._load()
        self.reused = [ResponseCache(f, "replay") for f in reuse]
        self.reuse_hits = Counter()  # folder -> answers served from it

    # -- reading -------------------------------------------------------------------------

    def _verify_segments(self) -> None:
        """Compare the sealed segments with the sha256 that provenance.json records for them."""
        prov_file = self.folder / "provenance.json"
        if not prov_file.is_file():
            return
        try:
            listed = json.loads(prov_file.read_bytes().decode("utf-8")).get("segments") or {}
            if not isinstance(listed, dict):
                raise ValueError("segments is not a mapping")
        except (ValueError, AttributeError) as e:
            listed, self.report.changed_segments = {}, [f"provenance.json (unreadable: {e})"]
        have = {p.name: sha256_file(p) for p in sorted(self.folder.glob("seg-*.jsonl.gz"))}
        self.report.changed_segments += sorted(n for n, h in listed.items() if have.get(n) != h)
        self.report.unlisted_segments = sorted(set(have) - set(listed))
        self._stale = bool(self.report.changed_segments or self.report.unlisted_segments)
        if self.mode == "replay" and self.report.changed_segments:
            changed = self.report.changed_segments
            raise InputError(f"{len(changed)} sealed segment(s) differ from the sha256 recorded in "
                             f"provenance.json, or are gone (e.g. {changed[0]}): the answers replayed "
                             "would not be the recorded ones", where=str(self.folder),
                             fix="restore the committed cache files (git checkout -- FOLDER), or run "
                                 "once in live mode, which records the segments as they are")

    def _load(self) -> None:
        for path in sorted(self.folder.glob("seg-*.jsonl*")):
            if path.name.endswith(".jsonl.gz"):
                try:
                    data = gzip.decompress(path.read_bytes())
                except (OSError, EOFError) as e:
                    raise InputError(f"sealed cache segment is damaged ({e})", where=str(path),
                                     fix="restore it from git; it is written atomically and "
                                         "should never be truncated") from e
            elif path.name.endswith(".jsonl"):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # sealed by its writer since the listing
                    data = gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
            else:
                continue
            self.report.segments += 1
            for entry in self._parse_lines(path, data):
                if entry["key"] in self._entries:
                    self.report.duplicates += 1
                else:
                    self._entries[entry["key"]] = entry
        self.report.entries = len(self._entries)

    def _parse_lines(self, path: Path, data: bytes):
        lines = data.split(b"\n")
        for no, raw in enumerate(lines, 1):
            if not raw:
                continue
            if no == len(lines):  # no newline after it: the write was cut short
                self.report.partial_lines.append(f"{path.name}:{no} ({len(raw)} bytes)")
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            if not isinstance(entry, dict) or "key" not in entry:
                self.report.corrupt_lines.append(f"{path.name}:{no}")
                continue
            yield entry

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return self.get(key, count=False) is not None

    def get(self, key: str, count: bool = True) -> dict | None:
        entry = self._entries.get(key)
        if entry is None:
            for other in self.reused:
                entry = other.get(key)
                if entry is not None:
                    if count:
                        self.reuse_hits[str(other.folder)] += 1
                    break
        return entry

    def reuse_report(self) -> dict:
        """For each reused folder: its answers and how many of them this run used."""
        return {str(o.folder): {"entries": len(o), "used": self.reuse_hits[str(o.folder)]}
                for o in self.reused}

    def entries(self) -> list[dict]:
        return list(self._entries.values())

    # -- writing -------------------------------------------------------------------------

    def put(self, entry: dict) -> None:
        """Append one completed answer; it is on disk when this returns."""
        if self.mode != "live":
            raise KnowfreeError(f"cache {self.folder} is in {self.mode} mode and takes no new answers")
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
        with self._lock:
            if entry["key"] in self._entries:
                return
            f = self._open_segment()
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
            self._entries[entry["key"]] = entry
            self._added += 1

    def _open_segment(self):
        if self._segment is None:
            # Time first so segments sort in writing order; the random part keeps two runs of
            # one process within the same second apart.
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = self.folder / f"seg-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.jsonl"
            # Lock under a hidden name, then rename: another process that sees the segment
            # always finds it locked, so it cannot mistake it for a dead writer's and seal it.
            hidden = path.with_name("." + path.name)
            f = open(hidden, "xb")
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, path)
            self._segment = (path, f)
        return self._segment[1]

    def _seal_dead_segments(self) -> None:
        for path in sorted(self.folder.glob("seg-*.jsonl")):
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                continue  # another process sealed it meanwhile
            with f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer still owns it
                self._seal(path, f.read())
                self.report.sealed.append(path.name)

    def _seal(self, path: Path, data: bytes) -> None:
        complete = data[:data.rfind(b"\n") + 1]
        if len(complete) < len(data):
            self.report.partial_lines.append(f"{path.name}:end ({len(data) - len(complete)} bytes dropped on sealing)")
        if complete:
            atomic_write_gzip(path.with_name(path.name + ".gz"), complete)
        path.unlink(missing_ok=True)

    def close(self) -> None:
        """Seal this process's segment and refresh provenance.json (live mode only)."""
        with self._lock:
            if self._segment is not None:
                path, f = self._segment
                with open(path, "rb") as g:  # sealed while still locked: no one else seals it
                    self._seal(path, g.read())
                f.close()
                self._segment = None
            if self.mode == "live" and (self._added or self.report.sealed or self._stale):
                atomic_write_json(self.folder / "provenance.json", self.provenance())
                self._added, self._stale = 0, False
                self.report.sealed = []

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- provenance ----------------------------------------------------------------------

    def provenance(self) -> dict:
        entries = self._entries.values()
        created = sorted(e.get("created", "") for e in entries)
        return {
            "format": FORMAT,
            "entries": len(self._entries),
            "models": dict(Counter(e.get("model") for e in entries)),
            "servers": dict(Counter(e.get("server") for e in entries)),
            "template_versions": dict(Counter(e.get("version") for e in entries)),
            "kinds": dict(Counter(e.get("kind") for e in entries)),
            "prompt_tokens": sum(e.get("prompt_tokens") or 0 for e in entries),
            "completion_tokens": sum(e.get("completion_tokens") or 0 for e in entries),
            "first_answer": created[0] if created else None,
            "last_answer": created[-1] if created else None,
            "segments": {p.name: sha256_file(p) for p in sorted(self.folder.glob("seg-*.jsonl.gz"))},
            "written_by": {"knowfree": __version__, "git_commit": git_commit()},
        }
