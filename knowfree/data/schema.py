"""Label schema: every label's index, kind, count and loss weight, saved as one JSON file.

Target labels come first (indices 0..T-1), extension labels after them, so a model can
mask extensions at inference by slicing. Extension weights follow a configurable rule of
their count, because extension spans (POS, segmentation, LLM entity types) can outnumber
target spans a hundred to one and would otherwise drown the target signal.

Weight rules (``rule`` in ``from_samples``):
- ``"count"`` (default; the rule of the authors' code): weight = min(scale / count,
  n_targets / n_labels), scale = 10. Frequent extension labels weigh little.
- ``"flat"``: every extension label weighs ``value`` (the authors' notes mention 0.13).
- ``"zero_below"``: weight 0 when the training set has fewer than ``min_train`` sentences
  (the authors' notes: 500), otherwise the rule named by ``above``: ``"count"`` (default) or
  ``"flat"`` (the notes: 0.13 from 500 sentences on).
Target labels always weigh 1.

``WEIGHT_PRESETS`` names the authors' schedules (extension rule plus the loss weight of a
synthetic sample) so that a run can say which one it followed: ``train.weight_preset``.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from knowfree.data.sample import Sample, is_extension
from knowfree.errors import ConfigError, InputError
from knowfree.provenance import atomic_write_json, read_json_file

WEIGHT_RULES = ("count", "flat", "zero_below")

# name -> extension weight rule, loss weight of every synthetic sample, where it comes from
WEIGHT_PRESETS: dict[str, tuple[dict, float, str]] = {
    "authors_code": ({"rule": "count"}, 1.0,
                     "the released code: 10/count capped at #targets/#labels; its synthetic-sample "
                     "weight never took effect (docs/faults.md #3), so synthetic samples weigh 1"),
    "authors_notes_flat": ({"rule": "flat", "value": 0.13}, 1.0,
                           "the authors' experiment notes: every extension label 0.13"),
    "authors_notes_small_data": ({"rule": "zero_below", "min_train": 500, "above": "flat", "value": 0.13}, 1.0,
                                 "the authors' notes: extension labels 0 below 500 training "
                                 "sentences, 0.13 from 500"),
    "authors_notes_resume_0.4": ({"rule": "count"}, 0.4, "the authors' notes for Resume: synthetic samples 0.4"),
    "authors_notes_resume_0.15": ({"rule": "count"}, 0.15, "the authors' notes for Resume: synthetic samples 0.15"),
    "project": ({"rule": "count"}, 0.5,
                "this project's default: the count rule and synthesis.weight 0.5"),
}


@dataclass(frozen=True)
class LabelInfo:
    name: str
    index: int
    kind: str  # "target" | "extension"
    count: int
    weight: float


def extension_weight(count: int, n_targets: int, n_labels: int, n_train: int,
                     rule: str = "count", scale: float = 10.0, value: float = 0.13,
                     min_train: int = 500, above: str = "count") -> float:
    """Loss weight of one extension label; see the module docstring for the rules."""
    if rule not in WEIGHT_RULES:
        raise InputError(f"unknown extension weight rule {rule!r}", fix=f"use one of {WEIGHT_RULES}")
    if rule == "zero_below":
        if above not in ("count", "flat"):
            raise InputError(f"zero_below's `above` must be 'count' or 'flat', not {above!r}")
        if n_train < min_train:
            return 0.0
        rule = above
    if rule == "flat":
        return float(value)
    return float(min(scale / max(count, 1), n_targets / max(n_labels, 1)))


def check_rule(rule: str | dict, where: str) -> None:
    """ConfigError naming ``where`` (the config key) for a rule, or an argument of it, that
    :func:`extension_weight` would refuse or, worse, never look at (an argument of another rule,
    a misspelt one): checked when the config is read, not when the first extension label is."""
    spec = dict(rule) if isinstance(rule, dict) else {"rule": rule}
    name = spec.pop("rule", "count")
    if name not in WEIGHT_RULES:
        raise ConfigError(f"{where}{'.rule' if isinstance(rule, dict) else ''}: unknown extension "
                          f"weight rule {name!r} (fix: use one of {WEIGHT_RULES})")
    takes = {"count": ("scale",), "flat": ("value",), "zero_below": ("min_train", "above", "scale", "value")}[name]
    for key, value in spec.items():
        if key not in takes:
            raise ConfigError(f"{where}.{key}: rule {name!r} takes no argument {key!r} "
                              f"(it takes {', '.join(takes)})")
        if key == "above":
            ok = value in ("count", "flat")
        elif key == "min_train":
            ok = type(value) is int and value >= 0
        else:
            ok = type(value) in (int, float) and math.isfinite(value) and value >= 0
        if not ok:
            raise ConfigError(f"{where}.{key}: {value!r} is not valid for rule {name!r} (above: count or "
                              "flat; min_train: an integer >= 0; scale, value: a number >= 0)")


class LabelSchema:
    def __init__(self, labels: list[LabelInfo], rule: dict | None = None):
        kinds = [l.kind for l in labels]
        if any(k not in ("target", "extension") for k in kinds):
            raise InputError(f"label kinds must be 'target' or 'extension', got {sorted(set(kinds))}")
        if kinds != sorted(kinds, key=lambda k: k != "target"):
            raise InputError("target labels must come before extension labels in a schema")
        if [l.index for l in labels] != list(range(len(labels))):
            raise InputError("label indices must be 0..N-1 in order")
        if len({l.name for l in labels}) != len(labels):
            raise InputError("duplicate label names in schema")
        self.labels = labels
        self.rule = dict(rule or {"rule": "count"})
        self._index = {l.name: l.index for l in labels}

    @property
    def names(self) -> list[str]:
        return [l.name for l in self.labels]

    @property
    def targets(self) -> list[str]:
        return [l.name for l in self.labels if l.kind == "target"]

    @property
    def extensions(self) -> list[str]:
        return [l.name for l in self.labels if l.kind == "extension"]

    @property
    def n_targets(self) -> int:
        return len(self.targets)

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise InputError(f"label {name!r} is not in the label schema",
                             fix=f"known labels: {', '.join(self.names[:20])}"
                                 f"{' ...' if len(self) > 20 else ''}") from None

    def weights(self) -> list[float]:
        return [l.weight for l in self.labels]

    def without_extensions(self) -> "LabelSchema":
        return LabelSchema([l for l in self.labels if l.kind == "target"], self.rule)

    @classmethod
    def from_samples(cls, samples: Iterable[Sample], targets: list[str] | None = None,
                     rule: str = "count", **rule_args) -> "LabelSchema":
        """Count labels in ``samples``; ``targets`` fixes the target inventory and order.

        Target labels listed in ``targets`` but absent from the samples are kept with count 0
        (a small training set may miss a rare type that dev and test still contain)."""
        samples = list(samples)
        counts = Counter(s.label for x in samples for s in x.spans)
        n_train = sum(1 for x in samples if not x.synthetic)
        if targets is None:
            targets = sorted(l for l in counts if not is_extension(l))
        bad = [t for t in targets if is_extension(t)]
        if bad:
            raise InputError(f"extension labels given as targets: {bad}")
        stray = sorted(l for l in counts if not is_extension(l) and l not in targets)
        if stray:
            raise InputError(f"samples carry target labels outside the given inventory: {stray}",
                             fix="add them to `targets` or remove them from the data")
        exts = sorted(l for l in counts if is_extension(l))
        n_labels = len(targets) + len(exts)
        labels = [LabelInfo(t, i, "target", counts.get(t, 0), 1.0) for i, t in enumerate(targets)]
        labels += [LabelInfo(e, len(targets) + i, "extension", counts[e],
                             extension_weight(counts[e], len(targets), n_labels, n_train, rule, **rule_args))
                   for i, e in enumerate(exts)]
        return cls(labels, {"rule": rule, **rule_args, "n_train": n_train})

    def to_dict(self) -> dict:
        return {"labels": [asdict(l) for l in self.labels], "weight_rule": self.rule}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSchema":
        try:
            labels = [LabelInfo(str(l["name"]), int(l["index"]), str(l["kind"]), int(l["count"]),
                                float(l["weight"])) for l in d["labels"]]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed label schema: {e}",
                             fix="each label needs name, index, kind, count, weight") from None
        return cls(labels, d.get("weight_rule"))

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LabelSchema":
        d = read_json_file(path, "label schema", "name a schema.json written by knowfree "
                           "(train or augment), or restore it")
        if not isinstance(d, dict):
            raise InputError("a label schema is a JSON object with \"labels\"", str(path))
        try:
            return cls.from_dict(d)
        except InputError as e:
            raise InputError(e.what, str(path), e.fix) from None

    def __repr__(self) -> str:
        return f"LabelSchema({self.n_targets} targets, {len(self.extensions)} extensions)"
