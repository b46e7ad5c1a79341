"""Data layer: the Sample model, format readers/writers, the dataset registry, sampling."""
from knowfree.data.formats import FORMATS, read, write
from knowfree.data.reports import ReadReport, ReadResult, WriteReport
from knowfree.data.tags import detect_scheme, spans_to_tags, tags_to_spans
from knowfree.data.registry import REGISTRY, Dataset, DatasetEntry, load_dataset, open_dataset
from knowfree.data.sample import EXT_PREFIX, Sample, Span, is_extension
from knowfree.data.schema import LabelInfo, LabelSchema
from knowfree.data.sampling import (Subset, k_sentences, k_shot, load_subset, nested_subsets,
                                    save_subset)

__all__ = [
    "EXT_PREFIX", "FORMATS", "REGISTRY", "Dataset", "DatasetEntry", "LabelInfo", "LabelSchema", "ReadReport", "ReadResult",
    "Sample", "Span", "Subset", "WriteReport", "detect_scheme", "is_extension", "k_sentences",
    "k_shot", "load_dataset", "load_subset", "nested_subsets", "open_dataset", "read", "save_subset",
    "spans_to_tags", "tags_to_spans", "write",
]
