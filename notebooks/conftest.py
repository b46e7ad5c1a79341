"""nbval over the numbered notebooks: a notebook whose smoke datasets cannot be read offline
(no mirror, no cache, no package: e.g. notebook 05's Stockmark and KMOU without
$KNOWFREE_DATA_MIRROR) is skipped with the reason, as the tests that need the mirror are,
instead of reaching for the network."""
import json
from functools import lru_cache
from pathlib import Path

import pytest


@lru_cache(maxsize=None)
def _unreadable(path: str) -> str | None:
    from knowfree.data import registry

    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns: dict = {}
    exec("".join(cell["source"]), ns)  # plain assignments (tests/test_params.py keeps it so)
    names = ([ns["dataset"]] if ns.get("dataset") else []) + list(ns.get("datasets") or [])
    gaps = {n: registry.offline_missing(n) for n in names}
    gaps = {n: files for n, files in gaps.items() if files}
    if not gaps:
        return None
    return (f"{Path(path).name} reads {', '.join(gaps)}, whose files are on no offline source "
            f"({'; '.join(f'{n}: ' + ', '.join(f) for n, f in gaps.items())}); set "
            "KNOWFREE_DATA_MIRROR to the dataset mirror to run it")


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if path.endswith(".ipynb"):
            reason = _unreadable(path)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
