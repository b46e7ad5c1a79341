"""Shared fixtures: an isolated cache per test session and the dataset mirror."""
import os
import tempfile
from pathlib import Path

import pytest

# Tests must never write into the user's cache: each test session gets a temp cache. The
# immutable, checksum-verified artefacts the user's cache already holds (converted encoders,
# assembled GGUF models, downloaded model wheels) are linked in read-only use, so they are not
# rebuilt per session; where the user's cache lacks one, tests build it inside the temp cache,
# and it goes with the session.
_real_cache = Path(os.environ.get("KNOWFREE_CACHE", Path.home() / ".cache" / "knowfree"))
_test_cache = Path(tempfile.mkdtemp(prefix="knowfree-test-cache-"))
for _shared in ("encoders", "gguf", "wheels"):
    if (_real_cache / _shared).is_dir():
        (_test_cache / _shared).symlink_to(_real_cache / _shared, target_is_directory=True)
os.environ["KNOWFREE_CACHE"] = str(_test_cache)

import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local dataset mirror named by KNOWFREE_DATA_MIRROR (CI sets it to ../shared/datasets)."""
    path = os.environ.get("KNOWFREE_DATA_MIRROR")
    if not path:
        pytest.skip("KNOWFREE_DATA_MIRROR is not set: tests on the real datasets need the mirror")
    p = Path(path)
    if not p.is_dir():
        pytest.skip(f"KNOWFREE_DATA_MIRROR={path} is not a folder")
    return p

