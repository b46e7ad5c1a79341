"""``python -m knowfree data stats NAME`` and ``python -m knowfree data convert IN OUT``."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import pandas as pd

from knowfree.data.formats import (FORMATS, count_overlapping, read, read_options, spellings,
                                   write, write_options)
from knowfree.data.registry import REGISTRY, open_dataset
from knowfree.data.sample import LANGS, Sample
from knowfree.errors import InputError, spelled
from knowfree.provenance import guard_outputs


def sample_stats(samples: Sequence[Sample]) -> dict:
    """Sentences, tokens, spans (total and per label), longest sentence, nested spans."""
    return {"sentences": len(samples), "tokens": sum(len(s) for s in samples),
            "spans": sum(len(s.spans) for s in samples),
            "longest": max((len(s) for s in samples), default=0),
            "nested": sum(count_overlapping(s) for s in samples),
            "labels": Counter(sp.label for s in samples for sp in s.spans)}


def stats_text(splits: dict[str, Sequence[Sample]]) -> str:
    stats = {name: sample_stats(samples) for name, samples in splits.items()}
    table = pd.DataFrame({name: {k: v for k, v in st.items() if k != "labels"}
                          for name, st in stats.items()}).T
    table.index.name = "split"
    labels = pd.DataFrame({name: st["labels"] for name, st in stats.items()}).fillna(0).astype(int)
    labels = labels.sort_index()
    labels.index.name = "label"
    return (table.to_string() + "\n\nspans per label (nested = spans overlapping another):\n"
            + labels.to_string())


def _stats(args) -> int:
    if args.name in REGISTRY:
        ds = open_dataset(args.name, download=not args.no_download)
        e = ds.entry
        sources = Counter(f.source for f in ds.files.values())
        verified = all(f.verified for f in ds.files.values())
        print(f"{e.name}: {e.description}")
        print(f"  lang {e.lang}; {e.repo}@{e.commit}; licence: {e.licence}")
        print("  files: " + ", ".join(f"{n} from {s}" for s, n in sources.items())
              + ("; sha256 verified" if verified else "; sha256 NOT verified (unknown upstream hash)"))
        if e.notes:
            print(f"  note: {e.notes}")
        print()
        print(stats_text(ds.splits))
        for key, rep in ds.reports.items():
            if rep.repairs or rep.dropped:
                print(f"\n{key}: " + rep.summary())
        for w in ds.warnings:
            print(f"\nwarning: {w}")
        return 0
    if not Path(args.name).is_file():
        raise InputError(f"{args.name!r} is neither a registered dataset nor a file",
                         fix=f"use one of {', '.join(REGISTRY)}, or a file path with --fmt")
    if not args.fmt:
        raise InputError("a file needs its format", args.name, f"pass --fmt (one of {', '.join(FORMATS)})")
    result = read(args.name, args.fmt)
    print(stats_text({Path(args.name).name: result.samples}))
    print("\n" + result.report.summary())
    return 0


def _convert(args) -> int:
    guard_outputs([("INPUT", args.input)], files=[("OUTPUT", args.output)])
    ropts = {"scheme": args.scheme, "lang": args.lang}
    ropts = {k: v for k, v in ropts.items() if v is not None}
    result = read(args.input, args.src, **_only(ropts, read_options(args.src), args.src, "reading"))
    newline = {"lf": "\n", "crlf": "\r\n", "same": result.report.newline}[args.newline]
    # --newline given for a format that has no such option is refused like the other flags;
    # left at "same", it applies where it can
    explicit = newline if args.newline != "same" or "newline" in write_options(args.dst) else None
    wopts = {"scheme": args.to_scheme, "on_overlap": args.on_overlap,
             "include_extensions": args.include_extensions or None, "newline": explicit}
    wopts = _only({k: v for k, v in wopts.items() if v is not None}, write_options(args.dst),
                  args.dst, "writing")
    print(result.report.summary())
    print(write(result.samples, args.output, args.dst, **wopts).summary())
    return 0


# The flags of `data convert` that set format options, by option.
_FLAGS = {"scheme": "--scheme", "lang": "--lang", "on_overlap": "--on-overlap",
          "include_extensions": "--include-extensions", "newline": "--newline"}
_WRITE_FLAGS = {**_FLAGS, "scheme": "--to-scheme"}


def _only(opts: dict, allowed: list[str], fmt: str, doing: str) -> dict:
    flags = _FLAGS if doing == "reading" else _WRITE_FLAGS
    bad = set(opts) - set(allowed)
    if bad:
        takes = [flags[o] for o in allowed if o in flags]
        raise InputError(f"{', '.join(sorted(flags[o] for o in bad))} "
                         f"{'does' if len(bad) == 1 else 'do'} not apply when {doing} {fmt}",
                         fix=f"{doing} {fmt} takes {', '.join(takes) if takes else 'none of these flags'}")
    return opts


def add_arguments(ap) -> None:
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stats", help="per-split statistics of a dataset or a file")
    st.add_argument("name", help=f"a registered dataset ({', '.join(REGISTRY)}) or a file")
    st.add_argument("--fmt", choices=FORMATS, help="format, when NAME is a file")
    st.add_argument("--no-download", action="store_true", help="only use the cache and the mirror")
    cv = sub.add_parser("convert", help="convert a file between formats")
    cv.add_argument("input")
    cv.add_argument("output")
    cv.add_argument("--from", dest="src", required=True, choices=FORMATS)
    cv.add_argument("--to", dest="dst", required=True, choices=FORMATS)
    cv.add_argument("--scheme", help="tag scheme of the input (conll family; default auto)")
    cv.add_argument("--to-scheme", help="tag scheme of the output (conll; default BIO)")
    cv.add_argument("--lang", choices=LANGS, help="language of the input")
    cv.add_argument("--on-overlap", choices=("error", "drop"),
                    help="flat outputs: fail on overlapping spans (default) or drop and count them")
    cv.add_argument("--include-extensions", action="store_true",
                    help="flat outputs: also write ext.* spans")
    cv.add_argument("--newline", choices=("same", "lf", "crlf"), default="same",
                    help="line ends of the output (default: as the input)")


def run(args) -> int:
    if args.cmd == "stats":
        with spelled(spellings("--fmt")):
            return _stats(args)
    with spelled(spellings("--from", "--scheme", "--to", "--on-overlap")):
        return _convert(args)
