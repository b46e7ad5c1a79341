"""What an augmentation added, as numbers: span statistics of a sample set, a row label for a
run's knowledge, and the knowledge-source table built from runs' stats.json
(``python -m knowfree augment table``)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from knowfree.data.sample import Sample, is_extension
from knowfree.errors import InputError
from knowfree.provenance import atomic_write_text, guard_outputs, read_json_file

def span_stats(samples: Sequence[Sample]) -> dict:
    """Extension-span counts of a sample set (per label, per family, per sentence)."""
    ext = Counter(s.label for x in samples for s in x.spans if is_extension(s.label))
    tgt = Counter(s.label for x in samples for s in x.spans if not is_extension(s.label))
    fam = Counter()
    for label, n in ext.items():
        fam[label.split(".")[1]] += n
    n = len(samples)
    return {"sentences": n, "target_spans": sum(tgt.values()), "extension_spans": sum(ext.values()),
            "ext_spans_per_sentence": round(sum(ext.values()) / n, 4) if n else 0.0,
            "ext_spans_per_sentence_by_family": {f: round(c / n, 4) for f, c in sorted(fam.items())} if n else {},
            "label_inventory_size": len(ext),
            "extension_labels": dict(sorted(ext.items())),
            "target_labels": dict(sorted(tgt.items())),
            "sentences_without_extensions": sum(1 for x in samples if not x.extensions())}


def source_name(stats: dict, synthesis: bool | None = None) -> str:
    """A row label for a run's knowledge, e.g. 'taggers:lac + llm:qwen2.5-coder-1.5b'; ends in
    ' + synthesis' when the run made synthetic sentences (or as ``synthesis`` says, for a
    training set of such a run: its fusion.jsonl has none)."""
    src = stats["provenance"]["knowledge"]
    parts = []
    if src.get("tagger") and "taggers" in stats["sources"]:
        parts.append(f"taggers:{src['tagger']['tagger']}")
    if "llm" in stats["sources"]:
        parts.append(f"llm:{src['llm']['model']}")
    if bool(stats.get("synthesis")) if synthesis is None else synthesis:
        own = (stats.get("synthesis") or {}).get("extension") or {}
        # synthesis.extension_labels: taggers (the synthetic sentences' labels not from the LLM)
        parts.append("synthesis (extension labels: taggers)" if "llm" in stats["sources"] and set(own) == {"taggers"}
                     else "synthesis")
    return " + ".join(parts)


def _source_row(st: dict) -> dict:
    prov, src, fus = st["provenance"], st["sources"], st["fusion"]
    llm = src.get("llm")
    tag = src.get("taggers")
    syn = st.get("synthesis")
    versions = []
    if tag:
        versions.append(tag["version"])
    if llm:
        versions.append(f"{llm['model']} ({', '.join(t['version'] for t in prov['knowledge']['llm']['templates'].values())})")
    versions.append(f"aliases {prov['knowledge']['alias_tables']}")
    data_hash = (prov["data"].get("content_hash") or {}).get("train") or prov["data"].get("sha256")
    return {
        "knowledge_source": source_name(st),
        "dataset": st["setting"]["name"], "k": st["setting"]["k"], "sample_seed": st["setting"]["seed"],
        "sentences": fus["sentences"],
        "ext_spans_per_sentence": fus["ext_spans_per_sentence"],
        **{f"{fam}_per_sentence": v for fam, v in fus["ext_spans_per_sentence_by_family"].items()},
        "label_inventory_size": fus["label_inventory_size"],
        "parse_failure_rate": llm["parse_failure_rate"] if llm else "n/a",
        "hallucination_rate": llm["hallucination_rate"] if llm else "n/a",
        "pos_coverage": (llm or tag or {}).get("pos_coverage"),
        "synthetic_per_source": syn["synthetic_per_source"] if syn else "n/a",
        "synthetic_sentences": syn["synthetic"]["sentences"] if syn else "n/a",
        # what the pseudo-label model put on the synthetic sentences, and how good it was
        "synthetic_target_spans_per_sentence": (
            round(syn["synthetic"]["target_spans"] / syn["synthetic"]["sentences"], 4)
            if syn and syn["synthetic"]["sentences"] else "n/a"),
        "synthetic_ext_spans_per_sentence": syn["synthetic"]["ext_spans_per_sentence"] if syn else "n/a",
        "pseudo_label_model_dev_f1": ((syn["pseudo_label"].get("model_dev") or {}).get("f1", "n/a")
                                      if syn else "n/a"),
        "knowledge_seconds": st["seconds"].get("knowledge"),
        # a replayed run reads every answer from the cache: its seconds are not the LLM's cost
        "llm_mode": prov["config"]["llm"]["mode"] if llm else "n/a",
        "llm_http_requests": (st.get("llm_usage") or {}).get("http_requests", "n/a") if llm else "n/a",
        "git_commit": prov["git_commit"], "knowledge_code_hash": prov.get("knowledge_code_hash"),
        "data_hash": data_hash,
        "subset_hash": st["setting"]["content_hash"], "tool_versions": "; ".join(versions),
    }


def knowledge_source_table(stats_files: Iterable[str | Path]):
    """One row per augment run (its stats.json): what each knowledge source added."""
    import pandas as pd

    rows = []
    for f in stats_files:
        st = read_json_file(f, "augment stats", "name the stats.json of a finished augment run")
        try:
            rows.append(_source_row(st))
        except (KeyError, TypeError, AttributeError) as e:
            raise InputError(f"not the stats.json of an augment run ({type(e).__name__}: {e})", str(f),
                             "name the stats.json of a finished augment run") from None
    df = pd.DataFrame(rows)
    fam_cols = sorted(c for c in df.columns
                      if c.endswith("_per_sentence") and not c.startswith(("ext_spans_", "synthetic_")))
    order = ["knowledge_source", "dataset", "k", "sample_seed", "sentences", "ext_spans_per_sentence",
             *fam_cols, "label_inventory_size", "parse_failure_rate", "hallucination_rate", "pos_coverage",
             "synthetic_per_source", "synthetic_sentences", "synthetic_target_spans_per_sentence",
             "synthetic_ext_spans_per_sentence", "pseudo_label_model_dev_f1", "knowledge_seconds",
             "llm_mode", "llm_http_requests", "git_commit", "knowledge_code_hash", "data_hash",
             "subset_hash", "tool_versions"]
    return df[[c for c in order if c in df.columns]]


def write_knowledge_source_table(stats_files: Iterable[str | Path], stem: str | Path):
    """``<stem>.csv`` and ``<stem>.md`` from :func:`knowledge_source_table`."""
    from knowfree.results import to_markdown

    stats_files = list(stats_files)
    stem = Path(stem)
    guard_outputs([("STATS", f) for f in stats_files],
                  files=[("--out", stem.with_suffix(ext)) for ext in (".csv", ".md")])
    df = knowledge_source_table(stats_files)
    atomic_write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    note = ("What each knowledge source added to the same training setting. Rows come from the "
            "augment runs' stats.json (`knowfree.knowledge.report.knowledge_source_table`); "
            "parse and hallucination rates are n/a for taggers, which parse nothing and invent "
            "no strings; the synthetic_* columns need the LLM source with synthesis on "
            "(target spans of synthetic sentences are the pseudo-label model's predictions; "
            "pseudo_label_model_dev_f1 is that model's dev F1, trained on this setting's "
            "fusion set only).\n\n")
    atomic_write_text(stem.with_suffix(".md"), "# Knowledge sources\n\n" + note + to_markdown(df))
    return df
