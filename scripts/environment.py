"""Keep environment.yml generated from requirements.txt, so conda and pip users get the same pins.

    python scripts/environment.py --write   # regenerate environment.yml
    python scripts/environment.py --check   # exit 1 if they disagree (tests run this)
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "3.11"


def pins(path: Path = ROOT / "requirements.txt") -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if "==" not in line:
                raise SystemExit(f"{path.name}: '{line}' is not pinned with ==")
            out.append(line)
    return out


def render() -> str:
    lines = [
        "# Generated from requirements.txt by `python scripts/environment.py --write`; do not edit.",
        "# Everything comes through pip: conda is only asked for Python itself, so the file works",
        "# where conda channels are slow or unreachable once a Python 3.11 is present.",
        "name: knowfree",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
        *[f"      - {p}" for p in pins()],
        "      - -e .",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    target = ROOT / "environment.yml"
    if args.write:
        target.write_text(render(), encoding="utf-8")
        return 0
    if target.read_text(encoding="utf-8") != render():
        print("environment.yml disagrees with requirements.txt: run `python scripts/environment.py --write`",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
