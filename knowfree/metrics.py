"""Span-level micro precision / recall / F1 over exact (start, end, label) matches.

Spans are compared as sets per sentence (a duplicate prediction counts once), over all
sentences together (micro average), with a per-label table beside. Extension labels
(``ext.*``) are ignored unless ``include_extensions=True``: they are training aids, not targets.
P, R and F1 are computed exactly as seqeval does (F1 = 2PR / (P + R), 0 when undefined), so on
flat BIO data the numbers equal seqeval's entity-level scores bit for bit (tests/test_metrics.py).

``python -m knowfree eval GOLD PRED`` scores two KnowFREE JSONL files; samples are paired by
id when both files carry ids of their own (readers make up ``<file name>-<index>`` ids
otherwise, which never match across two files) and all are unique, else by position, and
must have the same tokens; the command says which rule it used.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from knowfree.data.formats import read, spellings
from knowfree.data.sample import Sample, Span, is_extension
from knowfree.errors import InputError, spelled


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    per_label: pd.DataFrame  # index label; columns precision recall f1 support predicted tp

    def as_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1,
                "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "per_label": self.per_label.reset_index().to_dict(orient="records")}

    def summary(self) -> str:
        head = (f"precision {self.precision:.4f}  recall {self.recall:.4f}  f1 {self.f1:.4f}  "
                f"(tp {self.tp}, fp {self.fp}, fn {self.fn})")
        return head + "\n" + self.per_label.to_string(float_format=lambda x: f"{x:.4f}")


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def evaluate(gold: Sequence[Sample | Iterable[Span]], pred: Sequence[Sample | Iterable[Span]],
             include_extensions: bool = False) -> Scores:
    """Score ``pred`` against ``gold``, paired by position (Samples or span lists)."""
    if len(gold) != len(pred):
        raise InputError(f"{len(gold)} gold sentences but {len(pred)} predicted ones",
                         fix="predict every gold sentence, in the same order")
    tp, n_gold, n_pred = Counter(), Counter(), Counter()
    for i, (g, p) in enumerate(zip(gold, pred)):
        if isinstance(g, Sample) and isinstance(p, Sample) and g.tokens != p.tokens:
            raise InputError(f"sentence {i} (gold id {g.id!r}, predicted id {p.id!r}) has "
                             "different tokens in gold and prediction",
                             fix="pair each prediction with the sentence it was made for")
        gs, ps = _spans(g, include_extensions), _spans(p, include_extensions)
        n_gold.update(s.label for s in gs)
        n_pred.update(s.label for s in ps)
        tp.update(s.label for s in gs & ps)
    rows = []
    for label in sorted(set(n_gold) | set(n_pred)):
        lp, lr, lf = prf(tp[label], n_pred[label] - tp[label], n_gold[label] - tp[label])
        rows.append({"label": label, "precision": lp, "recall": lr, "f1": lf,
                     "support": n_gold[label], "predicted": n_pred[label], "tp": tp[label]})
    table = pd.DataFrame(rows, columns=["label", "precision", "recall", "f1", "support",
                                        "predicted", "tp"]).set_index("label")
    t, g, p = sum(tp.values()), sum(n_gold.values()), sum(n_pred.values())
    precision, recall, f1 = prf(t, p - t, g - t)
    return Scores(precision, recall, f1, t, p - t, g - t, table)


def _spans(x: Sample | Iterable[Span], include_extensions: bool) -> set[Span]:
    spans = x.spans if isinstance(x, Sample) else x
    return {s for s in spans if include_extensions or not is_extension(s.label)}


def pair_samples(gold: list[Sample], pred: list[Sample], by_id: bool = True,
                 names: tuple[str, str] = ("gold", "predicted")) -> tuple[list[Sample], str]:
    """``pred`` in the order of ``gold``, and the rule used: by id when ``by_id`` (both files
    carry ids of their own) and every id is unique, else by position. ``names`` name the two
    sides in errors (the files, for the CLI)."""
    g_ids, p_ids = [s.id for s in gold], [s.id for s in pred]
    unique = (all(g_ids) and all(p_ids) and len(set(g_ids)) == len(g_ids)
              and len(set(p_ids)) == len(p_ids))
    if not (by_id and unique):
        if len(gold) != len(pred):
            raise InputError(f"{names[0]} has {len(gold)} sentences but {names[1]} has {len(pred)}; "
                             "without ids of their own on both sides they are paired by position",
                             fix="predict every gold sentence, in the same order (or keep their ids)")
        why = "ids are not unique" if by_id else "not both files carry ids of their own"
        return pred, f"by position ({why})"
    by_pred_id = dict(zip(p_ids, pred))
    missing = [i for i in g_ids if i not in by_pred_id]
    extra = set(p_ids) - set(g_ids)
    if missing or extra:
        raise InputError(f"paired by id: {len(missing)} of the {len(gold)} ids of {names[0]} have no "
                         f"sentence in {names[1]} and {len(extra)} of its {len(pred)} ids are not in "
                         f"{names[0]} (e.g. {(missing or sorted(extra))[0]!r})",
                         fix="predict exactly the gold sentences, keeping their ids")
    return [by_pred_id[i] for i in g_ids], "by id"


def add_arguments(ap) -> None:
    ap.description = ("Span-level micro P/R/F1 of PRED against GOLD. Sentences are paired by id when "
                      "both files carry unique ids of their own (a JSONL \"id\" on every line), else "
                      "by position.")
    ap.add_argument("gold", help="gold KnowFREE JSONL file")
    ap.add_argument("pred", help="predicted KnowFREE JSONL file")
    ap.add_argument("--fmt", default="jsonl", help="format of both files (default jsonl)")
    ap.add_argument("--include-extensions", action="store_true",
                    help="also score ext.* labels (ignored by default)")
    ap.add_argument("--json", action="store_true", help="print the scores as JSON")


def run(args) -> int:
    with spelled(spellings("--fmt")):
        gold, pred = read(args.gold, args.fmt), read(args.pred, args.fmt)
    paired, rule = pair_samples(gold.samples, pred.samples,
                                gold.report.ids_from_file and pred.report.ids_from_file,
                                (f"GOLD {args.gold}", f"PRED {args.pred}"))
    # on stderr: --json output stays one JSON document
    print(f"{len(paired)} sentences paired {rule}", file=sys.stderr)
    scores = evaluate(gold.samples, paired, args.include_extensions)
    print(json.dumps(scores.as_dict(), indent=2) if args.json else scores.summary())
    return 0

