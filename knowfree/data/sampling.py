"""Low-resource training sets that name exactly which sentences they hold.

K-sentence sets (``nested_subsets``, ``k_sentences``): the training split is shuffled once with
``random.Random(seed)`` (a permutation of sentence positions) and the set of size K is the
first K sentences of that permutation, so for one seed the 250-set is a prefix of the 500-set,
which is a prefix of the 1000-set, as in the paper's settings.

K-shot-per-label sets (``k_shot``), greedy and seeded: sentences are visited in the order of
the seeded permutation, sentences without target spans skipped; a sentence is taken when some
label it contains still has fewer than K mentions in the set. A second pass, in reverse order
of taking, removes every taken sentence whose removal leaves each label with at least K
mentions (or, for a label with fewer than K mentions in all of train, all of them). Counts are
mentions (spans), not sentences; labels short of K are listed in ``Subset.shortfall``.

Each set is a ``Subset``: dataset, split, method, k, seed, the sample ids in order, and the
content hash of those samples (``provenance.hash_samples``). ``save_subset`` / ``load_subset``
keep it as JSON; ``Subset.select(samples)`` gives the sentences back and refuses if their
content no longer matches the hash.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from knowfree.data.sample import Sample
from knowfree.errors import InputError
from knowfree.provenance import atomic_write_json, hash_samples

DEFAULT_KS = (250, 500, 1000)
DEFAULT_SEED = 42


@dataclass
class Subset:
    dataset: str
    split: str
    method: str  # "k-sentences" or "k-shot"
    k: int
    seed: int
    ids: list[str]
    content_hash: str
    label_counts: dict[str, int] = field(default_factory=dict)
    shortfall: dict[str, int] = field(default_factory=dict)  # k-shot: label -> mentions found (< k)

    def select(self, samples: Sequence[Sample]) -> list[Sample]:
        """The subset's samples, in subset order, taken from ``samples`` by id."""
        by_id = _index_by_id(samples)
        missing = [i for i in self.ids if i not in by_id]
        if missing:
            raise InputError(f"{len(missing)} ids of the {self.method} subset (k={self.k}) are not "
                             f"in the given samples, e.g. {missing[0]!r}",
                             fix=f"pass the {self.dataset} {self.split} split it was drawn from")
        chosen = [by_id[i] for i in self.ids]
        got = hash_samples(chosen)
        if got != self.content_hash:
            raise InputError(f"the selected samples hash to {got}, not the recorded "
                             f"{self.content_hash}: the data changed since the subset was drawn",
                             fix="re-draw the subset, or load the data version it was drawn from")
        return chosen

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Subset":
        return cls(**d)


def k_sentences(samples: Sequence[Sample], k: int, seed: int = DEFAULT_SEED,
                dataset: str = "", split: str = "train") -> Subset:
    """The first ``k`` sentences of the seeded permutation of ``samples``."""
    if not 0 < k <= len(samples):
        raise InputError(f"cannot draw {k} sentences from {len(samples)}",
                         fix=f"use 1 <= k <= {len(samples)}")
    _index_by_id(samples)
    order = _permutation(len(samples), seed)
    return _subset([samples[i] for i in order[:k]], "k-sentences", k, seed, dataset, split)


def nested_subsets(samples: Sequence[Sample], ks: Iterable[int] = DEFAULT_KS,
                   seed: int = DEFAULT_SEED, dataset: str = "", split: str = "train"
                   ) -> dict[int, Subset]:
    """``{k: Subset}``; for one seed each smaller set is a prefix of every larger one."""
    return {k: k_sentences(samples, k, seed, dataset, split) for k in sorted(set(ks))}


def k_shot(samples: Sequence[Sample], k: int, seed: int = DEFAULT_SEED,
           labels: Iterable[str] | None = None, dataset: str = "", split: str = "train") -> Subset:
    """Greedy seeded K-mentions-per-label set (see module doc)."""
    if k <= 0:
        raise InputError(f"k must be positive, got {k}")
    _index_by_id(samples)
    counts_of = [Counter(s.label for s in smp.targets()) for smp in samples]
    wanted = set(labels) if labels is not None else set().union(*counts_of)
    available = Counter()
    for c in counts_of:
        available.update({lab: n for lab, n in c.items() if lab in wanted})
    goal = {lab: min(k, available[lab]) for lab in wanted}

    have: Counter = Counter()
    taken: list[int] = []
    for i in _permutation(len(samples), seed):
        c = counts_of[i]
        if any(have[lab] < goal[lab] for lab in c if lab in wanted):
            taken.append(i)
            have.update({lab: n for lab, n in c.items() if lab in wanted})
    for i in reversed(list(taken)):
        c = counts_of[i]
        if all(have[lab] - c.get(lab, 0) >= goal[lab] for lab in c if lab in wanted):
            taken.remove(i)
            have.subtract({lab: n for lab, n in c.items() if lab in wanted})
    sub = _subset([samples[i] for i in taken], "k-shot", k, seed, dataset, split, wanted)
    sub.shortfall = {lab: available[lab] for lab in sorted(wanted) if available[lab] < k}
    return sub


def save_subset(subset: Subset, path: str | Path) -> None:
    atomic_write_json(path, subset.to_dict())


def load_subset(path: str | Path) -> Subset:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        return Subset.from_dict(d)
    except FileNotFoundError:
        raise InputError("subset file not found", str(path)) from None
    except (json.JSONDecodeError, TypeError) as e:
        raise InputError(f"not a subset file ({e})", str(path),
                         "subset files are written by knowfree.data.sampling.save_subset") from None


def _permutation(n: int, seed: int) -> list[int]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def _index_by_id(samples: Sequence[Sample]) -> dict[str, Sample]:
    by_id = {s.id: s for s in samples}
    if len(by_id) != len(samples) or "" in by_id:
        raise InputError("samples need unique, non-empty ids to be sampled reproducibly",
                         fix="load them through the registry or give each an id")
    return by_id


def _subset(chosen: list[Sample], method: str, k: int, seed: int, dataset: str, split: str,
            labels: set[str] | None = None) -> Subset:
    counts = Counter(s.label for smp in chosen for s in smp.targets()
                     if labels is None or s.label in labels)
    return Subset(dataset, split, method, k, seed, [s.id for s in chosen], hash_samples(chosen),
                  dict(sorted(counts.items())))
