"""knowfree: KnowFREE (Lai et al., EMNLP 2025) for low-resource sequence labelling."""

__version__ = "0.1.0"
