"""`python -m knowfree augment pack RUN_DIR`: the commit-sized part of a finished augment run
(its training sets gzipped, schemas, stats and the pseudo-label model's metrics), with every
path made portable, copied into results/augment/NAME."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from knowfree.errors import InputError
from knowfree.knowledge.augment_config import repo_path
from knowfree.provenance import (REPO_ROOT, atomic_write_gzip, atomic_write_json, cache_root, guard_outputs,
                                 read_json_file, sha256_bytes, sha256_file)

# What `augment pack` keeps of a run folder: the training sets (gzip), their schemas, the stats,
# and the pseudo-label model's metrics and learning curve (its weights are ~470 MB).
PACKED_SETS = ("fusion.jsonl", "syn_fusion.jsonl")
PACKED_FILES = ("schema.json", "syn_schema.json", "pseudo_label_run/metrics.json",
                "pseudo_label_run/epochs.csv")


def portable_paths(obj: Any) -> Any:
    """``obj`` with absolute paths under the repository or the knowfree cache written relative
    to them (``$KNOWFREE_CACHE`` defaults to ~/.cache/knowfree), so a committed file names no
    machine."""
    if isinstance(obj, dict):
        return {k: portable_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable_paths(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("/"):
        for root, shown in ((REPO_ROOT, None), (cache_root(), "$KNOWFREE_CACHE")):
            try:
                rel = Path(obj).relative_to(root)
            except ValueError:
                continue
            return str(rel) if shown is None else f"{shown}/{rel}"
    return obj


def _packed_name(name: str) -> str:
    """Where ``augment pack`` puts a run file: sets gzipped, the pseudo-label run's files flat."""
    return f"{name}.gz" if name in PACKED_SETS else name.replace("pseudo_label_run/", "pseudo_label_")


def pack(run_dir: str | Path, dest: str | Path) -> dict:
    """Copy the commit-sized part of a finished augment run into ``dest`` (see PACKED_*).

    The sets are written as ``.jsonl.gz`` (deterministic bytes) and the trainer reads them as
    they are; stats.json keeps its content with paths made portable and gains a ``packed``
    entry naming each file's source and the sha256 of its uncompressed bytes. Returns that
    entry.
    """
    import shutil

    run_dir, dest = repo_path(run_dir), repo_path(dest)
    names = ("stats.json", *PACKED_SETS, *PACKED_FILES)
    guard_outputs([("RUN_DIR file", run_dir / n) for n in names],
                  files=[("--dest file", dest / _packed_name(n)) for n in names], folders=[("--dest", dest)])
    stats_file = run_dir / "stats.json"
    if not stats_file.is_file():
        raise InputError("no stats.json: the augment run has not finished (stats.json is written last)",
                         str(run_dir), "rerun `python -m knowfree augment CONFIG` until it completes")
    stats = read_json_file(stats_file, "augment stats", "rerun the augment command; it writes stats.json last")
    if not isinstance(stats, dict):
        raise InputError("augment stats must be a JSON object", str(stats_file))
    if not stats.get("complete"):
        raise InputError(f"the augment run is incomplete ({stats.get('failed_requests')} failed LLM requests)",
                         str(run_dir), "rerun the same augment command; it asks only for the missing answers")
    packed = {"from": portable_paths(str(run_dir)), "files": {}}
    dest.mkdir(parents=True, exist_ok=True)
    for name in PACKED_SETS:
        src = run_dir / name
        if src.is_file():
            data = src.read_bytes()
            atomic_write_gzip(dest / _packed_name(name), data)
            packed["files"][_packed_name(name)] = {"sha256_uncompressed": sha256_bytes(data), "bytes": len(data)}
    for name in PACKED_FILES:
        src = run_dir / name
        if src.is_file():
            target = dest / _packed_name(name)
            if src.suffix == ".json":
                atomic_write_json(target, portable_paths(json.loads(src.read_text(encoding="utf-8"))))
            else:
                shutil.copyfile(src, target)
            packed["files"][target.name] = {"sha256": sha256_file(src)}
    atomic_write_json(dest / "stats.json", {**portable_paths(stats), "packed": packed})
    return packed
