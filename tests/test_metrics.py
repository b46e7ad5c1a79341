"""Span-level P/R/F1: hand-checked cases, and exact parity with seqeval on real Weibo data."""
import random

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

from knowfree.data.formats import write
from knowfree.data.tags import spans_to_tags, tags_to_spans
from knowfree.data.registry import load_dataset
from knowfree.data.sample import Sample, Span
from knowfree.errors import InputError
from knowfree.__main__ import call
from knowfree.metrics import evaluate, prf


def test_hand_checked_scores():
    gold = [Sample(list("abcdef"), [Span(0, 2, "A"), Span(3, 4, "B")]),
            Sample(list("xyz"), [Span(0, 3, "A")])]
    pred = [Sample(list("abcdef"), [Span(0, 2, "A"), Span(3, 5, "B"), Span(5, 6, "B")]),
            Sample(list("xyz"), [Span(0, 3, "B")])]
    s = evaluate(gold, pred)
    assert (s.tp, s.fp, s.fn) == (1, 3, 2)
    assert (s.precision, s.recall) == (0.25, 1 / 3)
    assert s.f1 == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    assert s.per_label.loc["A"].tolist() == [1.0, 0.5, 2 / 3, 2, 1, 1]
    assert s.per_label.loc["B", "predicted"] == 3 and s.per_label.loc["B", "f1"] == 0.0


def test_extension_labels_ignored_unless_asked():
    gold = [Sample(list("ab"), [Span(0, 2, "A"), Span(0, 1, "ext.pos.NOUN")])]
    pred = [Sample(list("ab"), [Span(0, 2, "A"), Span(1, 2, "ext.pos.NOUN")])]
    assert evaluate(gold, pred).f1 == 1.0
    assert list(evaluate(gold, pred).per_label.index) == ["A"]
    assert evaluate(gold, pred, include_extensions=True).f1 == 0.5


def test_degenerate_cases_and_duplicates():
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
    s = evaluate([[Span(0, 1, "A")]], [[Span(0, 1, "A"), Span(0, 1, "A")]])
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)
    assert evaluate([[]], [[]]).f1 == 0.0


def test_misaligned_input_is_an_error():
    with pytest.raises(InputError, match="1 gold sentences but 2"):
        evaluate([[]], [[], []])
    with pytest.raises(InputError, match="different tokens"):
        evaluate([Sample(list("ab"), [], "g")], [Sample(list("ac"), [], "p")])


def perturb(spans, length, rng, labels):
    out = []
    for s in spans:
        r = rng.random()
        if r < 0.15:
            continue  # missed
        if r < 0.3:
            out.append(Span(s.start, s.end, rng.choice(labels)))  # wrong type
        elif r < 0.45 and s.end < length:
            out.append(Span(s.start, s.end + 1, s.label))  # boundary
        else:
            out.append(s)
    if length > 2 and rng.random() < 0.3:
        a = rng.randrange(length - 1)
        out.append(Span(a, a + rng.randint(1, 2), rng.choice(labels)))  # spurious
    return spans_to_tags(out, length, "BIO", on_overlap="drop").tags


@pytest.mark.parametrize("split", ["dev", "test"])
def test_parity_with_seqeval_on_real_weibo(mirror, split):
    data = load_dataset("weibo")[split]
    labels = sorted({s.label for smp in data for s in smp.spans})
    # gold tags straight from the upstream file, with its own I-without-B sequences
    raw = (mirror / "weibo" / f"weiboNER_2nd_conll.{split}").read_text(encoding="utf-8")
    gold_tags = [[ln.split("\t")[1] for ln in block.split("\n") if ln]
                 for block in raw.split("\n\n") if block.strip()]
    assert [len(t) for t in gold_tags] == [len(s) for s in data]
    for seed in range(3):
        rng = random.Random(seed)
        pred_tags = [perturb(s.spans, len(s), rng, labels) for s in data]
        # also invalid sequences, which both sides must decode the same lenient way
        for tags in pred_tags[::7]:
            i = rng.randrange(len(tags))
            tags[i] = "I-" + rng.choice(labels)
        pred = [Sample(s.tokens, tags_to_spans(t, "BIO").spans) for s, t in zip(data, pred_tags)]
        ours = evaluate(data, pred)
        assert 0.3 < ours.f1 < 0.95
        assert ours.precision == precision_score(gold_tags, pred_tags)
        assert ours.recall == recall_score(gold_tags, pred_tags)
        assert ours.f1 == f1_score(gold_tags, pred_tags)
        p, r, f, support = precision_recall_fscore_support(gold_tags, pred_tags)
        table = ours.per_label.loc[labels]
        assert table["precision"].tolist() == p.tolist()
        assert table["recall"].tolist() == r.tolist()
        assert table["f1"].tolist() == f.tolist()
        assert table["support"].tolist() == support.tolist()


def test_eval_cli_pairs_by_id(tmp_path, capsys):
    gold = [Sample(list("abc"), [Span(0, 1, "A")], "s0"), Sample(list("de"), [Span(0, 2, "B")], "s1")]
    pred = [Sample(list("de"), [Span(0, 2, "B")], "s1"), Sample(list("abc"), [Span(1, 2, "A")], "s0")]
    write(gold, tmp_path / "g.jsonl", "jsonl")
    write(pred, tmp_path / "p.jsonl", "jsonl")
    assert call(["eval", str(tmp_path / "g.jsonl"), str(tmp_path / "p.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "precision 0.5000  recall 0.5000  f1 0.5000  (tp 1, fp 1, fn 1)" in out
    assert out.splitlines()[-1].split()[0] == "B"
    write(pred[:1], tmp_path / "p1.jsonl", "jsonl")
    with pytest.raises(InputError, match="paired by id: 1 of the 2 ids of GOLD .* have no sentence in PRED"):
        call(["eval", str(tmp_path / "g.jsonl"), str(tmp_path / "p1.jsonl")])
