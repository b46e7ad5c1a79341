"""Low-resource training sets: nested, seeded, K-shot, saved with a content hash."""
import random
from collections import Counter

import pytest

from knowfree.data.sample import Sample, Span
from knowfree.data.sampling import (k_sentences, k_shot, load_subset, nested_subsets, save_subset)
from knowfree.errors import InputError

LABELS = ("PER", "LOC", "ORG", "RARE")


def corpus(n=1200, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        spans = []
        for j in range(rng.choice([0, 0, 1, 1, 2, 3])):
            label = "RARE" if rng.random() < 0.003 else rng.choice(LABELS[:3])
            spans.append(Span(2 * j, 2 * j + 1, label))
        out.append(Sample(list("abcdefgh"), spans, f"toy-train-{i}"))
    return out


def test_nested_sets_are_prefixes_and_deterministic():
    data = corpus()
    sets = nested_subsets(data, seed=1, dataset="toy")
    assert sorted(sets) == [250, 500, 1000]
    assert sets[250].ids == sets[500].ids[:250] == sets[1000].ids[:250]
    assert sets[500].ids == sets[1000].ids[:500]
    assert len(set(sets[1000].ids)) == 1000
    again = nested_subsets(data, seed=1, dataset="toy")
    assert {k: v.ids for k, v in again.items()} == {k: v.ids for k, v in sets.items()}
    other = nested_subsets(data, seed=2, dataset="toy")
    assert other[250].ids != sets[250].ids
    assert k_sentences(data, 37, seed=1).ids == sets[1000].ids[:37]  # any K


def test_k_out_of_range():
    with pytest.raises(InputError, match="cannot draw 5 sentences from 3"):
        k_sentences(corpus(3), 5)
    with pytest.raises(InputError, match="cannot draw 0"):
        k_sentences(corpus(3), 0)


def test_ids_must_be_unique():
    data = corpus(10)
    data[3].id = data[4].id
    with pytest.raises(InputError, match="unique"):
        k_sentences(data, 5)


def test_saved_subset_names_exactly_its_sentences(tmp_path):
    data = corpus()
    sub = k_sentences(data, 250, seed=3, dataset="toy")
    save_subset(sub, tmp_path / "k250.json")
    back = load_subset(tmp_path / "k250.json")
    assert back == sub and back.seed == 3 and back.method == "k-sentences" and back.dataset == "toy"
    chosen = back.select(list(reversed(data)))
    assert [s.id for s in chosen] == sub.ids
    assert sum(back.label_counts.values()) == sum(len(s.spans) for s in chosen)
    data[int(sub.ids[10].rsplit("-", 1)[1])].spans.append(Span(7, 8, "PER"))
    with pytest.raises(InputError, match="data changed"):
        back.select(data)
    with pytest.raises(InputError, match="not in the given samples"):
        back.select(data[:5])


def test_load_subset_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a subset file"):
        load_subset(tmp_path / "x.json")


@pytest.mark.parametrize("k", [1, 5, 20])
def test_k_shot_reaches_k_per_label_and_is_minimal(k):
    data = corpus()
    sub = k_shot(data, k, seed=4, dataset="toy")
    chosen = sub.select(data)
    counts = Counter(s.label for smp in chosen for s in smp.targets())
    available = Counter(s.label for smp in data for s in smp.targets())
    for label in available:
        assert counts[label] >= min(k, available[label])
    assert sub.shortfall == {lab: n for lab, n in available.items() if n < k}
    assert all(smp.spans for smp in chosen)
    # minimal: no sentence can be removed without some label falling below its goal
    for smp in chosen:
        c = Counter(s.label for s in smp.targets())
        assert any(counts[lab] - n < min(k, available[lab]) for lab, n in c.items())
    assert k_shot(data, k, seed=4).ids == sub.ids
    assert sub.method == "k-shot" and sub.label_counts == dict(sorted(counts.items()))


def test_k_shot_restricted_labels():
    data = corpus()
    sub = k_shot(data, 3, seed=0, labels=["LOC"])
    assert set(sub.label_counts) == {"LOC"} and sub.label_counts["LOC"] >= 3


def test_real_weibo_subsets(mirror):
    from knowfree.data.registry import load_dataset
    train = load_dataset("weibo")["train"]
    sets = nested_subsets(train, dataset="weibo")
    assert [len(sets[k].select(train)) for k in (250, 500, 1000)] == [250, 500, 1000]
    assert sets[250].ids == sets[1000].ids[:250]
