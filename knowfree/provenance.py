"""What produced a result: git commit, hashes of params and data. Plus safe file handling.

Every file a long job writes goes through ``atomic_write_*`` so that a kill at any moment
leaves either the old file or the new one, never half of one; a file that is replaced keeps
its mode. Every command that writes files calls :func:`guard_outputs` before it reads
anything, so that no output can replace one of its own inputs. :func:`read_utf8` and
:func:`read_json_file` turn unreadable, non-UTF-8 or damaged files into errors naming the
file and line.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

from knowfree.errors import InputError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Where converted encoders, assembled GGUF files and downloads live (never in git)."""
    root = Path(os.environ.get("KNOWFREE_CACHE", Path.home() / ".cache" / "knowfree"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"cannot write the file: {e.strerror}", str(path),
                         "choose a path in a folder you can write to") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            # a replaced file keeps its mode (a user's 0600 file must not become world-readable)
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            # mkstemp creates 0600; results and caches are meant to be read by others too.
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise InputError(f"cannot write the file: {e.strerror}", str(path),
                             "name a file (not a folder) in a folder you can write to") from None
        raise


def install_folder(out: Path, fill, is_current, force: bool = False) -> Path:
    """Build a cache folder atomically: ``fill(tmp)`` writes it into a temporary sibling, which
    is then renamed to ``out``, so a crash or a concurrent build never leaves half a folder.
    ``is_current(folder)`` tells a finished build of the same source: another process that got
    there first wins and this build is dropped (unless ``force``)."""
    import shutil

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared
        fill(tmp)
        if not force and is_current(out):
            shutil.rmtree(tmp)  # another process finished the same build meanwhile
            return out
        if out.exists():
            # os.replace cannot swap non-empty folders: move the stale one aside first
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            os.replace(out, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not force and is_current(out):
            return out  # lost a race against an identical build
        raise
    return out


def atomic_write_gzip(path: str | Path, data: bytes) -> None:
    """``data`` gzip-compressed, level 9, with no timestamp or file name inside: the same
    content always gives the same bytes, so committed .gz files change only with their content."""
    atomic_write_bytes(path, gzip.compress(data, 9, mtime=0))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same inode when both exist (so symlinks and hard
    links count), else the same path once symlinks and ``..`` are resolved."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        try:
            return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
        except (OSError, RuntimeError):  # a symlink loop: it cannot be one of the inputs
            return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


Named = Iterable[tuple[str, "str | Path | None"]]


def guard_outputs(inputs: Named, files: Named = (), folders: Named = ()) -> None:
    """Refuse, before anything is read or written, outputs that would destroy an input or
    cannot be written: a file output that is one of ``inputs`` (same path, symlink or hard
    link), an existing folder, device or pipe; a folder output that is an existing file; any
    output under a file. Each item is (what the user typed it as, path), e.g. ("--output",
    "pred.jsonl"); None is skipped."""
    ins = [(name, p) for name, p in inputs if p is not None]
    for name, folder in folders:
        if folder is None:
            continue
        if Path(folder).exists() and not Path(folder).is_dir():
            raise InputError("is a file, but a folder is written there", f"{name} {folder}",
                             "name a folder (new or existing), not a file")
        _parents_are_folders(name, Path(folder))
    for name, out in files:
        if out is None:
            continue
        out = Path(out)
        if out.is_dir():
            raise InputError("is a folder, but a file is written there", f"{name} {out}",
                             "name a file path, e.g. inside that folder")
        if out.exists() and not out.is_file():
            # an atomic write replaces the path itself: a device or pipe would be swapped for a file
            raise InputError("is a device or pipe, not a file; writing would replace it", f"{name} {out}",
                             "name a regular file")
        _parents_are_folders(name, out)
        for in_name, src in ins:
            if same_file(out, src):
                raise InputError(f"the same file as {in_name} {src}; writing it would destroy "
                                 "the input", f"{name} {out}", "write the output to another path")


def _parents_are_folders(name: str, path: Path) -> None:
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{parent} is a file, not a folder", f"{name} {path}",
                         "name a path whose folders are folders")


def read_utf8(path: str | Path, what: str = "file") -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped); InputError naming the file,
    and for bytes that are not UTF-8 the line, otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found", str(path), "check the path") from None
    except OSError as e:
        raise InputError(f"cannot read the {what}: {e.strerror}", str(path)) from None
    return decode_utf8(data, str(path))


def decode_utf8(data: bytes, where: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark carries no content
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"bytes {data[e.start:e.end + 3]!r} are not UTF-8", f"{where}:{line}",
                         "re-encode the file as UTF-8 (e.g. `iconv -f GB18030 -t UTF-8 IN > OUT`)"
                         ) from None


def read_json_file(path: str | Path, what: str, fix: str) -> Any:
    """The JSON content of a file the project wrote itself (a run folder's config.json, a
    checkpoint pointer); a damaged one is an InputError naming it, with ``fix``."""
    text = read_utf8(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} is damaged: {e.msg} at line {e.lineno} column {e.colno}",
                         f"{path}:{e.lineno}", fix) from None


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
        changed = subprocess.run(["git", "diff", "HEAD", "--name-only", "-z"], cwd=REPO_ROOT,
                                 capture_output=True, text=True, check=True).stdout.split("\0")
        own = _own_outputs()
        dirty = any(path and path not in own and _counts_as_dirt(path) for path in changed)
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def notebook_sources(text: str) -> list[tuple[str, str]] | None:
    """(cell type, source) of every cell of a notebook's JSON; None if it is not one."""
    try:
        cells = json.loads(text)["cells"]
        return [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for c in cells]
    except (ValueError, KeyError, TypeError):
        return None


OWN_OUTPUTS_VAR = "KNOWFREE_OWN_OUTPUTS"


def _own_outputs() -> set[str]:
    """Tracked files the command that started this process writes itself (a sweep's
    summary.csv and tables), repository-relative: the sweep rewrites them after every stage,
    and a run it starts later must not read its own sweep's output as dirt. Paths outside the
    repository are dropped; nothing else is exempt."""
    told = os.environ.get(OWN_OUTPUTS_VAR, "")
    own = set()
    for item in filter(None, told.split(os.pathsep)):
        try:
            own.add(Path(item).resolve().relative_to(Path(REPO_ROOT).resolve()).as_posix())
        except ValueError:
            pass
    return own


def own_outputs_env(paths) -> dict:
    """The environment entry that exempts ``paths`` (the caller's own output files)."""
    return {OWN_OUTPUTS_VAR: os.pathsep.join(str(Path(p).resolve()) for p in paths)}


def _counts_as_dirt(path: str) -> bool:
    """Whether a tracked file that differs from HEAD makes results '+dirty'. Code, params,
    configs and data: yes. A notebook only when the text of a cell changed: outputs, execution
    counts and the metadata JupyterLab writes on open and autosave (every 120 s) do not change
    what runs."""
    if not path.endswith(".ipynb"):
        return True
    file = REPO_ROOT / path
    if not file.is_file():
        return True  # deleted
    try:
        head = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout
    except subprocess.CalledProcessError:
        return True
    ours = notebook_sources(file.read_text(encoding="utf-8", errors="replace"))
    return ours is None or ours != notebook_sources(head)


def machine() -> dict:
    """What a benchmark or result ran on: CPU model, usable cores, memory, Python and torch,
    torch's CPU kernel level and whether the CPU has bf16 hardware (bf16 is tens of times
    slower than fp32 without it, so every speed figure must say)."""
    import os
    import platform
    import subprocess

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    info = {"cpu": model, "cores": len(os.sched_getaffinity(0)), "mem_gib": round(mem, 1),
            "python": platform.python_version()}
    try:
        import torch

        from knowfree.precision import cpu_has_bf16
        info.update(torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(),
                    bf16_hardware=cpu_has_bf16())
    except ImportError:
        pass
    return info
