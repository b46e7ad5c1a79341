"""The rule for tests that need the offline LLM extra (imported by name: a module, not conftest,
since notebooks/ has a conftest of its own)."""
import os

import pytest


def llm_unavailable(reason: str):
    """Skip a test that needs the offline LLM extra, saying how to install it; under
    KNOWFREE_REQUIRE_LLM=1 (CI, after .ci/install_llm.sh) a missing piece is a failure."""
    if os.environ.get("KNOWFREE_REQUIRE_LLM") == "1":
        pytest.fail(f"{reason}, but KNOWFREE_REQUIRE_LLM=1 requires the real LLM test (fix: bash .ci/install_llm.sh)")
    pytest.skip(f"{reason} (bash .ci/install_llm.sh installs it)")
