"""The repository explains itself: no pointer to a file a clone does not have, and every
"fault N" in code and docs has its entry in docs/faults.md (whose paths and test names exist).

The dataset mirror's default location (``../shared/datasets``) is the one mention of the
folder beside the checkout that is allowed: a line naming it must also say ``datasets``."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ROOT / "docs" / "faults.md"
METHOD = ROOT / "docs" / "method.md"
N_FAULTS = 12
# generated run output, not prose of the repository
SKIP = ("results/sweeps/", "results/tables/", "results/runs/")

# Written as patterns so that this file does not match itself.
MISSING_FILE = re.compile(r"REFERENCE\.md|REFERENCE\s+section")
BESIDE = re.compile(r"\.\./shared")
FAULT_REF = re.compile(r"\bfaults?\s+(\d+(?:\s*(?:,|and|or|&)\s*\d+)*)", re.IGNORECASE)
HEADING = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def tracked_text_files() -> dict[str, str]:
    """Tracked, present, non-binary files outside SKIP, by repository path."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
                           ).stdout.decode().split("\0")
    out = {}
    for name in names:
        if not name or name.startswith(SKIP):
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            out[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return out


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return tracked_text_files()


def test_no_pointer_to_a_file_outside_the_repository(files):
    bad = []
    for name, text in files.items():
        for n, line in enumerate(text.splitlines(), 1):
            if MISSING_FILE.search(line) or (BESIDE.search(line) and "datasets" not in line):
                bad.append(f"{name}:{n}: {line.strip()[:120]}")
    assert bad == [], "point at docs/faults.md or docs/method.md instead:\n" + "\n".join(bad)


def test_faults_file_has_one_entry_per_fault_in_order():
    numbers = [int(n) for n in HEADING.findall(FAULTS.read_text(encoding="utf-8"))]
    assert numbers == list(range(1, N_FAULTS + 1))


def fault_references(files: dict[str, str]) -> dict[str, set[int]]:
    refs: dict[str, set[int]] = {}
    for name, text in files.items():
        for m in FAULT_REF.finditer(text):
            refs.setdefault(name, set()).update(int(n) for n in re.findall(r"\d+", m.group(1)))
    return refs


def test_every_fault_reference_has_an_entry(files):
    known = {int(n) for n in HEADING.findall(FAULTS.read_text(encoding="utf-8"))}
    refs = fault_references(files)
    assert refs, "no fault reference found at all: has the pattern stopped matching?"
    unknown = {name: sorted(ns - known) for name, ns in refs.items() if ns - known}
    assert unknown == {}, f"fault numbers without an entry in docs/faults.md: {unknown}"
    # a reader of the reference must be able to find the list
    unnamed = sorted(name for name in refs
                     if name != "docs/faults.md" and "docs/faults.md" not in files[name])
    assert unnamed == [], f"files that cite faults by number without naming docs/faults.md: {unnamed}"


def test_tests_named_in_the_faults_file_exist():
    defined = {m for p in (ROOT / "tests").glob("test_*.py")
               for m in re.findall(r"^def (test_\w+)", p.read_text(encoding="utf-8"), re.MULTILINE)}
    named = set(re.findall(r"`(?:tests/)?(?:test_\w+\.py::)?(test_\w+)`", FAULTS.read_text(encoding="utf-8")))
    assert named and named - defined == set()


@pytest.mark.parametrize("doc", [FAULTS, METHOD], ids=lambda p: p.name)
def test_paths_named_in_the_docs_exist(doc):
    paths = re.findall(r"`((?:knowfree|tests|benchmarks|configs|docs|data|results|params|scripts)/[^`\s]+)`",
                       doc.read_text(encoding="utf-8"))
    concrete = [p.split("::")[0] for p in paths if not re.search(r"[<*]", p)]
    missing = [p for p in concrete if not (ROOT / p).exists()]
    assert concrete and missing == []
