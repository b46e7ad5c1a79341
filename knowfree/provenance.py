"""What produced a result: git commit, hashes of params and data. Plus atomic writes.

Every file a long job writes goes through ``atomic_write_*`` so that a kill at any moment
leaves either the old file or the new one, never half of one.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Where converted encoders, assembled GGUF files and downloads live (never in git)."""
    root = Path(os.environ.get("KNOWFREE_CACHE", Path.home() / ".cache" / "knowfree"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; results and caches are meant to be read by others too.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_gzip(path: str | Path, data: bytes) -> None:
    """``data`` gzip-compressed, level 9, with no timestamp or file name inside: the same
    content always gives the same bytes, so committed .gz files change only with their content."""
    atomic_write_bytes(path, gzip.compress(data, 9, mtime=0))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_json(obj: Any) -> str:
    """Stable short hash of a JSON-able object (params, configs, sample lists)."""
    blob = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(blob.encode("utf-8"))[:16]


def hash_samples(samples) -> str:
    """Content hash of a list of Samples: tokens, spans and flags, in order."""
    return hash_json([s.to_dict() for s in samples])


def git_commit(short: bool = False) -> str:
    """The commit of the working tree, with '+dirty' when tracked files differ from it.

    ``KNOWFREE_GIT_COMMIT`` overrides it: a copy of the tree sent to another machine may
    carry no .git, or a stale one."""
    told = os.environ.get("KNOWFREE_GIT_COMMIT")
    if told:
        return f"{told} (KNOWFREE_GIT_COMMIT)"
    # set by `reproduce` for the notebooks it runs: the state when the whole run started
    run = os.environ.get("KNOWFREE_RUN_COMMIT")
    if run:
        return run
    try:
        rev = subprocess.run(["git", "rev-parse", "--short" if short else "HEAD"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
