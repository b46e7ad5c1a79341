"""The pins users install (pip or conda) are one list, and torch stays on the pinned CPU-friendly build."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_requirements():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "environment.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_every_requirement_is_exactly_pinned_and_torch_is_pinned():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [l for l in lines if l]
    assert reqs and all("==" in r for r in reqs)
    assert "torch==2.13.0" in reqs


def test_installed_versions_match_pins():
    from importlib.metadata import PackageNotFoundError, version
    wrong = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, pin = line.split("==")
        try:
            got = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name}: not installed")
            continue
        if got.split("+")[0] != pin:
            wrong.append(f"{name}: {got} != {pin}")
    assert not wrong, wrong
