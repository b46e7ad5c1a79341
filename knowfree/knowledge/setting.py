"""The training sentences an augmentation adds knowledge to: a registry dataset or a file, cut
to its K-sentence subset, with the dev split the pseudo-label model is selected on."""
from __future__ import annotations

from dataclasses import dataclass

from knowfree.data.sample import Sample
from knowfree.errors import ConfigError
from knowfree.knowledge.augment_config import repo_path
from knowfree.provenance import hash_samples, sha256_file

@dataclass
class AugmentSetting:
    name: str
    lang: str
    gold: list[Sample]  # the K training sentences
    dev: list[Sample]
    targets: list[str]
    subset: dict  # k, seed, content_hash, method
    data: dict  # provenance of the data


def load_setting(cfg: dict) -> AugmentSetting:
    from knowfree.data import formats, sampling

    if cfg["dataset"] is not None:
        from knowfree.data.registry import open_dataset
        ds = open_dataset(cfg["dataset"])
        train, dev = ds.splits["train"], ds.splits.get("dev", [])
        targets, lang, data, name = list(ds.entry.labels), ds.entry.lang, ds.provenance(), ds.entry.name
    else:
        path = repo_path(cfg["train_file"])
        opts = {"lang": cfg["lang"]} if cfg["lang"] else {}
        train = formats.read(path, cfg["format"], **opts).samples
        dev = formats.read(repo_path(cfg["dev_file"]), cfg["format"], **opts).samples if cfg["dev_file"] else []
        targets = sorted({s.label for x in train + dev for s in x.targets()})
        lang = cfg["lang"] or (train[0].lang if train else "zh")
        name = path.stem
        data = {"train_file": str(path), "sha256": sha256_file(path),
                "content_hash": {"train": hash_samples(train), "dev": hash_samples(dev)}}
    if cfg["lang"] and cfg["lang"] != lang:
        raise ConfigError(f"lang {cfg['lang']!r} differs from the data's language {lang!r}")
    if cfg["k"] is not None or cfg["k_shot"] is not None:
        sub = (sampling.k_sentences(train, cfg["k"], seed=cfg["sample_seed"], dataset=name) if cfg["k"] is not None
               else sampling.k_shot(train, cfg["k_shot"], seed=cfg["sample_seed"], labels=targets, dataset=name))
        gold = sub.select(train)
        subset = {"method": sub.method, "k": sub.k, "seed": sub.seed, "content_hash": sub.content_hash}
    else:
        gold = list(train)
        subset = {"method": "all", "k": len(gold), "seed": None, "content_hash": hash_samples(gold)}
    # The extension spans must be ours: drop any a file brought along.
    gold = [s.with_spans(s.targets()) for s in gold]
    return AugmentSetting(name, lang, gold, list(dev), targets, subset, data)
