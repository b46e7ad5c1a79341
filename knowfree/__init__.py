"""knowfree: KnowFREE (Lai et al., EMNLP 2025) for low-resource sequence labelling."""

__version__ = "0.1.0"

import os as _os

# OpenMP threads that spin while waiting cost 2-3x when the cores are shared (notebooks, a
# local LLM server, other jobs): results/benchmarks/inference.md. libgomp reads this once, when
# torch is first imported, so it only takes effect when knowfree is imported before torch; a
# value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
