"""Your own data as a dataset every command knows by name: ``python -m knowfree init``.

    python -m knowfree init DATA --name my-domain [--labels A,B] [--lang zh] [--k 200]
        [--knowledge none|taggers|llm --llm-url URL --llm-model NAME --llm-key-env VAR]
        [--format auto|jsonl|conll|bio|bioes|bmes|stockmark] [--split 0.8,0.1,0.1 --seed 42]
        [--flat|--nested] [--out FOLDER]

DATA is one file (split here, seeded) or a folder with ``train``/``dev``/``test`` files (a missing
dev split is carved from train, seeded; a missing test split too). Each file is read in its
format (by extension unless ``--format``: ``.jsonl``/``.jsonl.gz`` knowfree JSONL, ``.json``
character-offset JSON, anything else CoNLL with the BIO/BIOES/BMES scheme detected), every
repair the reader makes is counted, and what cannot be repaired stops the command with the file
and line. Then:

- Chinese and Japanese are one token per character (what the predictor splits raw text into):
  word-level tokens are split into characters, spans kept on the same characters (counted);
- ``--labels`` keeps only those labels (spans of other labels are dropped and counted); without
  it, every label of the training split is kept;
- nested data (overlapping spans) is detected and decoded nested unless ``--flat`` says not;
- sentences of the test split whose text also occurs in train are counted (leakage, reported).

FOLDER (default ``data/local/NAME``, ignored by git) gets the three splits as JSONL, the
manifest ``dataset.json`` (sha256 of every file, counts, labels, the split rule and the input
files' sha256), ``report.md`` and three files the existing commands take unchanged:
``train.yaml`` (``python -m knowfree train``), ``augment.yaml`` (``python -m knowfree augment``)
and ``params.yaml`` (``make reproduce PARAMS=...``). The dataset is then known as NAME wherever a
registry name is taken (``knowfree.data.registry``: ``data/local/`` and ``$KNOWFREE_LOCAL_DATA``).
The input is only read, never written.
"""
from __future__ import annotations

import json
import random
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from knowfree.data import formats
from knowfree.data.registry import LOCAL_ENV, MANIFEST, MANIFEST_FORMAT, REGISTRY, local_roots
from knowfree.data.sample import LANGS, Sample, Span
from knowfree.errors import ConfigError, InputError, path_given
from knowfree.provenance import (REPO_ROOT, atomic_write_json, atomic_write_text, guard_outputs,
                                 install_folder, sha256_file)

SPLITS = ("train", "dev", "test")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# the encoder a language gets by default: m3e-small is Chinese (and English) only
ENCODERS = {"zh": "m3e-small-offline"}
DEFAULT_ENCODER = "e5-small-offline"
# file names a folder's splits may have (before the extension)
_SPLIT_NAMES = {"train": ("train", "training"), "dev": ("dev", "valid", "validation", "val"),
                "test": ("test", "testing")}


@dataclass
class InitResult:
    out: Path
    splits: dict[str, list[Sample]]
    labels: list[str]
    lang: str
    nested: bool
    repairs: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    readers: dict = field(default_factory=dict)


def write_sample(path: str | Path, n: int = 80, seed: int = 0) -> Path:
    """A small synthetic Chinese product-title set in BIO CoNLL (labels BRAND, PRODUCT), for the
    smoke run of notebook 06 and for trying the workflow: made-up titles, not real data."""
    r = random.Random(seed)
    brands = ["华为", "小米", "联想", "海尔", "格力", "美的", "李宁", "安踏"]
    products = ["手机", "笔记本电脑", "蓝牙耳机", "空调", "冰箱", "跑步鞋", "平板电脑", "电饭煲"]
    words = ["新款", "正品", "官方", "旗舰店", "包邮", "白色", "黑色", "大容量", "静音", "轻薄", "促销"]
    lines = []
    for _ in range(n):
        parts = [("O", r.choice(words))] if r.random() < 0.7 else []
        parts += [("BRAND", r.choice(brands)), ("O", r.choice(words)), ("PRODUCT", r.choice(products))]
        parts += [("O", r.choice(words)) for _ in range(r.randint(0, 2))]
        for label, word in parts:
            for i, ch in enumerate(word):
                lines.append(f"{ch} {'O' if label == 'O' else ('B-' if i == 0 else 'I-') + label}")
        lines.append("")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "stockmark"  # character-offset JSON: [{"text", "entities": [{"span", "type"}]}]
    return "conll"


def find_files(data: Path) -> dict[str, Path]:
    """{split: file} of a folder (by file name), or {"all": file} for one file."""
    if data.is_file():
        return {"all": data}
    if not data.is_dir():
        raise InputError("does not exist", f"DATA {data}", "name a data file or a folder of train/dev/test files")
    found: dict[str, Path] = {}
    for f in sorted(p for p in data.iterdir() if p.is_file() and not p.name.startswith(".")):
        stem = f.name.lower().split(".")[0]
        for split, names in _SPLIT_NAMES.items():
            if stem in names:
                if split in found:
                    raise InputError(f"two {split} files: {found[split].name} and {f.name}", f"DATA {data}",
                                     "keep one file per split in the folder")
                found[split] = f
    if "train" not in found:
        raise InputError("holds no train file (train.*, training.*)", f"DATA {data}",
                         "name the training file train.jsonl (or .conll, .txt, .json), or pass the file itself")
    return found


def guess_lang(samples: Sequence[Sample]) -> str:
    """zh, ja, ko or en from the scripts of the text: kana -> ja, hangul -> ko, han -> zh."""
    text = "".join("".join(s.tokens) for s in samples[:2000])
    count = Counter()
    for ch in text:
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF:
            count["ja"] += 1
        elif 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF:
            count["ko"] += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
            count["zh"] += 1
    if count["ja"] > 0.02 * max(1, len(text)):
        return "ja"
    if count["ko"] > count["zh"]:
        return "ko"
    return "zh" if count["zh"] > 0.1 * max(1, len(text)) else "en"


def to_characters(sample: Sample) -> tuple[Sample, bool]:
    """One token per non-space character, spans on the same characters; and whether it changed."""
    if all(len(t) == 1 and not t.isspace() for t in sample.tokens):
        return sample, False
    start_of, tokens = [], []
    for tok in sample.tokens:
        start_of.append(len(tokens))
        tokens += [ch for ch in tok if not ch.isspace()]
    start_of.append(len(tokens))
    spans = [Span(start_of[s.start], start_of[s.end], s.label) for s in sample.spans
             if start_of[s.end] > start_of[s.start]]
    return Sample(tokens, spans, sample.id, sample.lang, sample.synthetic, sample.source_id,
                  sample.weight, dict(sample.meta)), True


def _read(path: Path, fmt: str, lang: str | None, result: InitResult, key: str) -> list[Sample]:
    fmt = detect_format(path) if fmt == "auto" else fmt
    opts = {"lang": lang} if lang else {}
    read = formats.read(path, fmt, **opts)
    result.readers[key] = {"file": str(path), "format": fmt, "sha256": sha256_file(path),
                           "report": read.report.to_dict()}
    return list(read.samples)


def _cut(samples: list[Sample], fractions: Sequence[float], seed: int) -> list[list[Sample]]:
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    cuts, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        cuts.append(round(acc * len(samples)))
    bounds = [0, *cuts, len(samples)]
    return [[samples[i] for i in sorted(order[a:b])] for a, b in zip(bounds, bounds[1:])]


def _nested(samples: Sequence[Sample]) -> int:
    """Sentences in which two spans overlap."""
    n = 0
    for s in samples:
        spans = sorted((sp.start, sp.end) for sp in s.spans)
        if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
            n += 1
    return n


def init_project(data: str | Path, name: str, out: str | Path | None = None, fmt: str = "auto",
                 labels: Sequence[str] | None = None, lang: str | None = None,
                 split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 42, k: int | None = None,
                 knowledge: str = "none", llm_url: str | None = None, llm_model: str | None = None,
                 llm_key_env: str = "OPENAI_API_KEY", nested: bool | None = None,
                 licence: str = "not stated", reuse: bool = False, k_shot: int | None = None) -> InitResult:
    """Read, check and write a local dataset and its configs; see the module docstring.
    ``reuse``: a folder that init already wrote from the same input files with the same options
    is returned as it is (a notebook run again); any difference is an error, never a rewrite."""
    if not NAME_RE.fullmatch(name or ""):
        raise ConfigError(f"--name {name!r}: use lower-case letters, digits, '-' and '_' (at most 64), "
                          "e.g. --name clinical-notes")
    if name in REGISTRY:
        raise ConfigError(f"--name {name!r} is a registered dataset; choose another name")
    if fmt != "auto" and fmt not in formats.FORMATS:
        raise ConfigError(f"--format {fmt!r}: one of auto, {', '.join(formats.FORMATS)}")
    if lang is not None and lang not in LANGS:
        raise ConfigError(f"--lang {lang!r}: one of {', '.join(LANGS)}")
    if len(split) != 3 or any(f <= 0 for f in split) or abs(sum(split) - 1) > 1e-6:
        raise ConfigError(f"--split {','.join(map(str, split))}: three positive fractions that sum to 1")
    if k is not None and k_shot is not None:
        raise ConfigError(f"--k {k} and --k-shot {k_shot}: two ways to draw the training subset; give one")
    if k_shot is not None and k_shot < 1:
        raise ConfigError(f"--k-shot {k_shot}: at least 1 (mentions per label)")
    if knowledge not in ("none", "taggers", "llm"):
        raise ConfigError(f"--knowledge {knowledge!r}: one of none, taggers, llm")
    if knowledge == "llm" and not (llm_url and llm_model):
        raise ConfigError("--knowledge llm needs --llm-url (an OpenAI-compatible server) and --llm-model")
    data = Path(data)
    out = Path(out) if out is not None else REPO_ROOT / "data" / "local" / name
    files = find_files(data)
    options = {"name": name, "format": fmt, "labels": list(labels) if labels else None, "lang": lang,
               "split": list(split), "seed": seed, "k": k, "knowledge": knowledge, "llm_url": llm_url,
               "llm_model": llm_model, "llm_key_env": llm_key_env, "nested": nested, "licence": licence,
               "inputs": {key: sha256_file(f) for key, f in files.items()}}
    if k_shot is not None:  # only when given, so folders written before the flag existed still match
        options["k_shot"] = k_shot
    if reuse and (out / MANIFEST).is_file():
        return _reused(out, options)
    # a new or empty folder: so no input (which would be inside it) can be overwritten
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not empty; init never replaces files", f"--out {out}",
                         "name a new folder, or remove this one")
    guard_outputs([("DATA", f) for f in files.values()], folders=[("--out", out)])

    result = InitResult(out, {}, [], lang or "", False)
    parts = {key: _read(path, fmt, lang, result, key) for key, path in files.items()}
    lang = lang or guess_lang(next(iter(parts.values())))
    result.lang = lang
    # the splits
    if "all" in parts:
        parts = dict(zip(SPLITS, _cut(parts["all"], split, seed)))
        result.notes.append(f"one file, split {split[0]:g}/{split[1]:g}/{split[2]:g} into train/dev/test "
                            f"by sentence, shuffled with seed {seed}")
    else:
        if "dev" not in parts:
            keep, dev = _cut(parts["train"], (0.9, 0.1), seed)
            parts["train"], parts["dev"] = keep, dev
            result.notes.append(f"no dev file: dev is 10 % of the train file's sentences (seed {seed}); "
                                "checkpoints are selected on it")
        if "test" not in parts:
            keep, test = _cut(parts["train"], (0.9, 0.1), seed + 1)
            parts["train"], parts["test"] = keep, test
            result.notes.append(f"no test file: test is 10 % of the remaining train sentences (seed {seed + 1})")
    parts = {s: parts[s] for s in SPLITS}  # train, dev, test, whatever order the files came in
    # tokens, languages, labels
    wanted = set(labels) if labels else None
    for split_name, samples in parts.items():
        clean = []
        for s in samples:
            s.lang = lang
            if not s.tokens:
                result.repairs["empty sentences dropped"] += 1
                continue
            if lang in ("zh", "ja"):
                s, changed = to_characters(s)
                result.repairs["sentences split into characters"] += changed
            if wanted is not None:
                dropped = [sp for sp in s.spans if sp.label not in wanted]
                result.repairs["spans of labels outside --labels dropped"] += len(dropped)
                s = s.with_spans([sp for sp in s.spans if sp.label in wanted])
            clean.append(s)
        parts[split_name] = clean
    for split_name in SPLITS:
        if not parts.get(split_name):
            raise InputError(f"the {split_name} split has no sentence left", f"DATA {data}",
                             "check the file and --labels / --format")
        for i, s in enumerate(parts[split_name]):
            s.id = f"{name}-{split_name}-{i}"
    train_labels = Counter(sp.label for s in parts["train"] for sp in s.spans)
    if not train_labels:
        raise InputError("the training split has no labelled span", f"DATA {data}",
                         "check the file's format (--format) and --labels")
    result.labels = sorted(wanted) if wanted else sorted(train_labels, key=lambda l: (-train_labels[l], l))
    unseen = [l for l in result.labels if l not in train_labels]
    if unseen:
        result.notes.append(f"labels never seen in train: {', '.join(unseen)} (the model cannot learn them)")
    for split_name in ("dev", "test"):
        extra = Counter(sp.label for s in parts[split_name] for sp in s.spans if sp.label not in result.labels)
        if extra:
            raise InputError(f"the {split_name} split has labels the training split lacks: "
                             f"{dict(extra)}", f"DATA {data}",
                             "pass --labels to keep the ones to learn, or add training examples")
    n_nested = sum(_nested(v) for v in parts.values())
    result.nested = n_nested > 0 if nested is None else nested
    result.notes.append(f"{n_nested} sentences hold overlapping spans: decoding is "
                        f"{'nested' if result.nested else 'flat'}"
                        + (" (as chosen)" if nested is not None else " (detected; --flat or --nested to choose)"))
    train_texts = {"".join(s.tokens) for s in parts["train"]}
    leak = sum("".join(s.tokens) in train_texts for s in parts["test"])
    if leak:
        result.notes.append(f"{leak} test sentences also occur in train (their scores flatter the model)")
    result.splits = parts
    _write(result, data, name, k, knowledge, llm_url, llm_model, llm_key_env, licence, seed, options)
    return result


def _reused(out: Path, options: dict) -> InitResult:
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("options") != options:
        changed = sorted(k for k in set(options) | set(manifest.get("options") or {})
                         if options.get(k) != (manifest.get("options") or {}).get(k))
        raise InputError(f"was written by init from other input or options (differing: {', '.join(changed)})",
                         f"--out {out}", "remove the folder to write it again, or name another one")
    splits = {}
    for split_name in SPLITS:
        path = out / manifest["files"][split_name]
        if sha256_file(path) != manifest["sha256"][manifest["files"][split_name]]:
            raise InputError("changed after init wrote it", str(path), "remove the folder and run init again")
        splits[split_name] = list(formats.read(path, "jsonl", lang=manifest["lang"]).samples)
    return InitResult(out, splits, manifest["labels"], manifest["lang"], manifest["nested"],
                      Counter(manifest["repairs"]), manifest["notes"], manifest["source"])


def _span_width(result: InitResult) -> int | None:
    """Widest span cell for the configs: the longest training span rounded up to a multiple of
    8; None (every width) above 64."""
    longest = max(sp.end - sp.start for s in result.splits["train"] for sp in s.spans)
    return None if longest > 64 else 8 * -(-longest // 8)


def _write(result: InitResult, data: Path, name: str, k, knowledge, llm_url, llm_model,
           llm_key_env, licence, seed, options: dict) -> None:
    out = result.out
    k_shot = options.get("k_shot")

    def fill(tmp: Path) -> None:
        for split_name, samples in result.splits.items():
            formats.write(samples, tmp / f"{split_name}.jsonl", "jsonl")
        width = _span_width(result)
        manifest = {
            "format": MANIFEST_FORMAT, "name": name, "lang": result.lang, "labels": result.labels,
            "description": f"local dataset {name} (python -m knowfree init {data.as_posix()})",
            "licence": licence, "files": {s: f"{s}.jsonl" for s in SPLITS},
            "sha256": {f"{s}.jsonl": sha256_file(tmp / f"{s}.jsonl") for s in SPLITS},
            "counts": {s: len(v) for s, v in result.splits.items()},
            "split_rule": "; ".join(n for n in result.notes if "split" in n or "dev is" in n or "test is" in n)
                          or "the splits of the input files",
            "nested": result.nested, "repairs": dict(result.repairs), "notes": result.notes,
            "source": result.readers, "options": options,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        train_cfg = {
            "data": {"dataset": name, "k": k, **({"k_shot": k_shot} if k_shot else {}), "sample_seed": seed},
            "model": {"head": "knowfree", "encoder": ENCODERS.get(result.lang, DEFAULT_ENCODER),
                      "freeze_embeddings": True, "max_span_length": width, "flat": not result.nested},
            # the project's small-data recipe (configs/sweeps/backbones_weibo.yaml, K=250)
            "train": {"epochs": 60, "batch_size": 8, "encoder_lr": 5.0e-5, "head_lr": 1.0e-3,
                      "eval_every": 2, "precision": "auto", "seed": 0},
            "output": {"run_dir": f"results/runs/{name}-knowfree-s0"},
        }
        import yaml
        dump = lambda obj: yaml.safe_dump(obj, allow_unicode=True, sort_keys=False)  # noqa: E731
        source = "taggers" if knowledge == "none" else knowledge
        augmented = f"results/runs/augment/{name}-{source}"
        shown = _shown(out)
        atomic_write_text(tmp / "train.yaml", f"# python -m knowfree train {shown}/train.yaml\n"
                          "# written by `python -m knowfree init`; edit freely. On the knowledge of\n"
                          f"# augment.yaml: --set data.train_file={augmented}/fusion.jsonl --set data.k=null"
                          + (" --set data.k_shot=null" if k_shot else "") + "\n"
                          + dump(train_cfg))
        augment = {"dataset": name, "k": k, **({"k_shot": k_shot} if k_shot else {}), "sample_seed": seed,
                   "knowledge": source, "output": augmented}
        size = f"kshot{k_shot}" if k_shot else f"k{k or 'all'}"
        if knowledge == "llm":
            augment["llm"] = {"base_url": llm_url, "model": llm_model, "api_key_env": llm_key_env,
                              "mode": "live", "cache": f"data/cache/llm/{name}-{size}-s{seed}"}
        atomic_write_text(tmp / "augment.yaml", f"# python -m knowfree augment {shown}/augment.yaml\n"
                                                "# knowledge for the training set (taggers: offline; llm: "
                                                "your endpoint, answers cached and replayable)\n" + dump(augment))
        shared = {"dataset": name, "k": k or len(result.splits["train"]), "sample_seed": seed,
                  "encoder": train_cfg["model"]["encoder"], "results_dir": f"results/runs/{name}",
                  "knowledge": "none" if knowledge == "none" else knowledge, "epochs": 60,
                  "encoder_lr": 5.0e-5, "head_lr": 1.0e-3, "eval_every": 2, "precision": "auto",
                  "freeze_embeddings": True, "max_span_length": width or 0}
        if knowledge == "llm":
            shared.update(llm=llm_model, llm_base_url=llm_url,
                          llm_cache=f"data/cache/llm/{name}-k{shared['k']}-s{seed}")
        params = {"run_name": name, "shared": shared,
                  "notebooks": {"01_data_exploration": {}, "03_training": {}}}
        if knowledge != "none":
            params["notebooks"]["02_llm_augmentation"] = {}
            params["notebooks"] = dict(sorted(params["notebooks"].items()))
        atomic_write_text(tmp / "params.yaml", f"# make reproduce PARAMS={shown}/params.yaml\n"
                                               "# notebooks 01-03 on this dataset; results in results/runs/"
                                               f"{name}/\n"
                                               + (f"# --k-shot {k_shot} is in train.yaml and augment.yaml; these notebooks "
                                                  "train on k sentences (notebook 06 takes k_shot)\n" if k_shot else "")
                                               + dump(params))
        atomic_write_text(tmp / "report.md", report(result, width))

    # written into a temporary sibling and renamed: --out is the whole dataset or nothing
    install_folder(out, fill, is_current=lambda folder: False)


def _shown(path: Path) -> str:
    """A path as the user would type it from here: relative to the working folder when inside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def report(result: InitResult, width: int | None) -> str:
    lines = [f"# {result.out.name}: what `knowfree init` read and wrote", "",
             f"Language {result.lang}; labels {', '.join(result.labels)}; decoding "
             f"{'nested' if result.nested else 'flat'}; span cells up to "
             f"{width if width else 'any'} tokens.", "", "## Files read", ""]
    for key, r in result.readers.items():
        rep = r["report"]
        repairs = {k: v for k, v in (rep.get("repairs") or {}).items() if v}
        dropped = rep.get("dropped") or []
        lines.append(f"- {key}: `{r['file']}` ({r['format']}, sha256 {r['sha256'][:16]}), repairs "
                     f"{repairs or 'none'}, sentences refused {len(dropped)}")
    lines += ["", "## Repairs and notes", ""]
    lines += [f"- {k}: {v}" for k, v in result.repairs.items() if v] or ["- no repair"]
    lines += [f"- {n}" for n in result.notes]
    lines += ["", "## Splits", "", "| split | sentences | spans | " + " | ".join(result.labels)
              + " | span length (mean / max) |", "|---" * (4 + len(result.labels)) + "|"]
    for split_name, samples in result.splits.items():
        counts = Counter(sp.label for s in samples for sp in s.spans)
        lengths = [sp.end - sp.start for s in samples for sp in s.spans] or [0]
        lines.append(f"| {split_name} | {len(samples)} | {sum(counts.values())} | "
                     + " | ".join(str(counts[l]) for l in result.labels)
                     + f" | {statistics.mean(lengths):.1f} / {max(lengths)} |")
    if width:
        longer = sum(sp.end - sp.start > width for s in result.splits["test"] for sp in s.spans)
        lines += ["", f"Test spans longer than {width} tokens (the configs' max_span_length, which "
                      f"they cannot find): {longer}."]
    return "\n".join(lines) + "\n"


def add_arguments(p) -> None:
    p.description = "Turn your labelled data into a local dataset and configs."
    p.add_argument("data", type=path_given, metavar="DATA", help="a data file, or a folder of train/dev/test files")
    p.add_argument("--name", required=True, help="the dataset's name in configs and notebooks (e.g. clinical-notes)")
    p.add_argument("--out", type=path_given, default=None,
                   help="folder to write (default data/local/NAME, where every command finds it)")
    p.add_argument("--format", default="auto", help=f"auto (by extension) or one of {', '.join(formats.FORMATS)}")
    p.add_argument("--labels", default=None, help="comma-separated labels to keep (default: all of train)")
    p.add_argument("--lang", default=None, help=f"one of {', '.join(LANGS)} (default: guessed from the script)")
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,dev,test fractions for one file (default 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=42, help="seed of every split and of the K-sentence subset")
    p.add_argument("--k", type=int, default=None, help="train on a K-sentence subset (default: all of train)")
    p.add_argument("--k-shot", type=int, default=None, metavar="N",
                   help="train on the sentences that hold N mentions of every label (the K-shot sampler), not with --k")
    p.add_argument("--knowledge", default="none", help="none, taggers (offline) or llm (needs --llm-url, --llm-model)")
    p.add_argument("--llm-url", default=None, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--llm-model", default=None, help="model name the endpoint serves")
    p.add_argument("--llm-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--licence", default="not stated", help="the data's licence, recorded in dataset.json")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--flat", dest="nested", action="store_false", default=None, help="decode flat spans")
    mode.add_argument("--nested", dest="nested", action="store_true", help="decode nested spans")


def run(args) -> int:
    try:
        split = [float(x) for x in args.split.split(",")]
    except ValueError:
        raise ConfigError(f"--split {args.split!r}: three fractions separated by commas, e.g. 0.8,0.1,0.1") from None
    if args.k is not None and args.k < 1:
        raise ConfigError(f"--k {args.k}: at least 1")
    labels = [l.strip() for l in args.labels.split(",") if l.strip()] if args.labels else None
    r = init_project(args.data, args.name, args.out, args.format, labels, args.lang, split, args.seed,
                     args.k, args.knowledge, args.llm_url, args.llm_model, args.llm_key_env, args.nested,
                     args.licence, k_shot=args.k_shot)
    counts = ", ".join(f"{s} {len(v)}" for s, v in r.splits.items())
    shown = _shown(r.out)
    print(f"{shown}: dataset {args.name!r} ({r.lang}, {counts} sentences, labels {', '.join(r.labels)}); "
          f"see {shown}/report.md")
    # the registry finds ROOT/NAME/dataset.json, or ROOT/dataset.json naming NAME
    root = r.out.resolve().parent if r.out.name == args.name else r.out.resolve()
    if root not in [x.resolve() for x in local_roots()]:
        print(f"  commands find it by name with: export {LOCAL_ENV}={root}")
    print(f"  python -m knowfree train {shown}/train.yaml\n  python -m knowfree augment {shown}/augment.yaml\n"
          f"  make reproduce PARAMS={shown}/params.yaml")
    return 0
