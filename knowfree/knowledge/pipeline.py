"""`python -m knowfree augment CONFIG.yaml`: fusion and syn_fusion training sets.

Steps (docs/method.md): take the K-sentence training subset; add extension spans from
the configured knowledge source (``llm``: entity and POS answers, parsed, aligned and
normalised; ``taggers``: an offline segmenter/POS tagger; ``both``: the union); write
``fusion.jsonl`` and its label schema. With synthesis on: ask the LLM to continue and explain
each sentence, cut the answers into synthetic sentences, give them extension spans the same
way, pseudo-label their targets with a model trained on this same setting only, and write
``syn_fusion.jsonl``.

Output folder (every file written atomically; ``stats.json`` last, so its presence marks a
finished run)::

    fusion.jsonl        gold targets + extension spans of the K training sentences
    schema.json         LabelSchema.from_samples(fusion, dataset targets, weight rule)
    dev.jsonl           gold dev split (synthesis with a pseudo-label model trained here)
    pseudo_label_run/   that model's run folder (synthesis.pseudo_label.train)
    syn_fusion.jsonl    fusion + pseudo-labelled synthetic samples (synthesis on)
    syn_schema.json     its label schema
    stats.json          counts, rates, timings and provenance; llm_cache: the cache lines
                        skipped (partial, corrupt) and segments that differ from its provenance

``python -m knowfree augment pack RUN_DIR`` copies a finished run's sets (gzip), schemas and
stats into results/augment/NAME, the compact form that is committed behind a result.

Resuming: LLM answers come from the response cache (a rerun asks only for what is missing,
and failed requests are asked again); the pseudo-label trainer resumes its own run folder;
everything else is recomputed, which is cheap. Relative paths in a config are relative to the
repository root, so the command gives the same result from any working directory.

Rooms: ``augment_config`` (the config and its checks), ``setting`` (the K sentences),
``sources`` (taggers and LLM), ``synth`` (explanation synthesis and pseudo-labels), ``report``
(span statistics, the knowledge-source table), ``pack`` (the committed form of a run); this
module runs them in order and writes the output folder.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from knowfree import __version__
from knowfree.data.sample import Sample
from knowfree.data.schema import LabelSchema
from knowfree.errors import ConfigError, path_given
from knowfree.knowledge.augment_config import load_augment_config, repo_path, validate_augment_config
from knowfree.knowledge.pack import pack, portable_paths
from knowfree.knowledge.report import span_stats, write_knowledge_source_table
from knowfree.knowledge.setting import load_setting
from knowfree.knowledge.sources import KnowledgeSources
from knowfree.knowledge.synth import explanation_sentences, synthesise
from knowfree.provenance import (REPO_ROOT, atomic_write_json, atomic_write_text, git_commit, guard_outputs,
                                 hash_json, hash_samples, sha256_file)


@dataclass
class AugmentResult:
    output: Path
    fusion: list[Sample]
    syn_fusion: list[Sample] | None
    schema: LabelSchema
    stats: dict

    @property
    def complete(self) -> bool:
        return self.stats["complete"]


def knowledge_code_hash() -> str:
    """sha256 over this package's code, alias tables and prompts: git_commit() ignores files
    that are not committed yet, this does not."""
    root = Path(__file__).resolve().parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".json", ".yaml"))
    return hash_json({str(p.relative_to(root)): sha256_file(p) for p in files})


def augment_config_hash(cfg: dict) -> str:
    """Hash of what can change an augment run's output: not where it goes, and not a key added
    later while it holds its neutral value (k_shot: null, synthesis.extension_labels: same,
    llm.reuse: []), so
    older runs keep their names."""
    kept = {k: v for k, v in cfg.items() if k != "output" and not (k == "k_shot" and v is None)}
    if not kept.get("llm", {}).get("reuse", True):
        kept["llm"] = {k: v for k, v in kept["llm"].items() if k != "reuse"}
    if kept.get("synthesis", {}).get("extension_labels") == "same":
        kept["synthesis"] = {k: v for k, v in kept["synthesis"].items() if k != "extension_labels"}
    return hash_json(kept)


def default_output(cfg: dict, setting_name: str) -> Path:
    size = f"k{cfg['k']}" if cfg["k"] else f"kshot{cfg['k_shot']}" if cfg["k_shot"] else "full"
    parts = [setting_name, size, f"s{cfg['sample_seed']}", cfg["knowledge"]]
    if cfg["knowledge"] != "llm" and cfg["tagger"]:
        parts.append(cfg["tagger"])
    if cfg["synthesis"]["enabled"]:
        parts.append("syn")
    chash = augment_config_hash(cfg)[:8]
    return REPO_ROOT / "results" / "runs" / "augment" / ("-".join(parts) + "-" + chash)


def _schema(samples: Sequence[Sample], targets: list[str], rule: dict) -> LabelSchema:
    args = {k: v for k, v in rule.items() if k != "rule"}
    return LabelSchema.from_samples(samples, targets=targets, rule=rule["rule"], **args)


def _write_jsonl(samples: Sequence[Sample], path: Path) -> None:
    from knowfree.data import formats
    formats.write(samples, path, "jsonl")


# Raw LLM answers of a run, one JSON object per line: sentence ``id``, prompt ``kind``, ``text``.
ANSWERS_FILE = "answers.jsonl"


# Files an augment run writes in its output folder (besides pseudo_label_run/, a train run).
OUTPUT_FILES = ("fusion.jsonl", "schema.json", "dev.jsonl", "syn_fusion.jsonl", "syn_schema.json",
                ANSWERS_FILE, "stats.json")


def _guard(cfg: dict, out_dir: Path, inputs) -> None:
    """Before anything is read: no output may be one of the run's inputs (a rerun on its own
    fusion.jsonl, an output folder that is the pseudo-label run)."""
    named = [*inputs, ("train_file", cfg["train_file"] and repo_path(cfg["train_file"])),
             ("dev_file", cfg["dev_file"] and repo_path(cfg["dev_file"]))]
    if isinstance(cfg["llm"]["prompts"], str):
        named.append(("llm.prompts", repo_path(cfg["llm"]["prompts"])))
    pl = cfg["synthesis"]["pseudo_label"]
    if isinstance(pl["train"], str):
        named.append(("synthesis.pseudo_label.train", repo_path(pl["train"])))
    if pl["run_dir"]:
        from knowfree.checkpoints import RUN_FILES
        named += [("synthesis.pseudo_label.run_dir file", repo_path(pl["run_dir"]) / n) for n in RUN_FILES]
    guard_outputs(named, files=[("output file", out_dir / n) for n in OUTPUT_FILES],
                  folders=[("output", out_dir)])


def ask_llm(config: dict, progress: bool = False) -> dict:
    """Ask (and cache) every LLM answer the configured augmentation needs, and build nothing:
    the label extension of the training sentences, the explanations, and with
    ``synthesis.extension_labels: same`` the labels of the explanation sentences. Needs no
    pseudo-label model, so a cache can be filled before (or without) the training hardware;
    the sets are built later from it. Returns the cache's counts; writes no output folder."""
    cfg = validate_augment_config(config)
    if cfg["knowledge"] not in ("llm", "both") and not cfg["synthesis"]["enabled"]:
        raise ConfigError(f"knowledge {cfg['knowledge']!r} without synthesis asks the LLM nothing "
                          "(fix: knowledge: llm or both, or synthesis.enabled: true)")
    t0 = time.perf_counter()
    setting = load_setting(cfg)
    knowledge = KnowledgeSources(cfg, setting.lang)
    try:
        knowledge.start()
        _, ext_stats = knowledge.annotate(setting.gold, progress)
        failed = sum(s.get("failed_requests", 0) for s in ext_stats.values())
        if cfg["synthesis"]["enabled"]:
            failed += explanation_sentences(cfg, setting, knowledge, progress)[1]["failed_requests"]
        cache, usage = knowledge.llm.cache, knowledge.llm.client.usage.to_dict()
        report = {"cache": str(cache.folder), "entries": len(cache), "reused": cache.reuse_report(),
                  "failed_requests": failed, "usage": usage,
                  "seconds": round(time.perf_counter() - t0, 3)}
    finally:
        knowledge.close()
    return report


def finished(cfg: dict, out_dir: Path) -> AugmentResult | None:
    """The output that a completed run of this same config, knowledge code and training file
    left in ``out_dir``, read back; None where there is none (a registry dataset is not
    checked: the mirror is immutable)."""
    try:
        stats = json.loads((out_dir / "stats.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    prov = stats.get("provenance") or {}
    if not (stats.get("complete") and prov.get("config_hash") == augment_config_hash(cfg)
            and prov.get("knowledge_code_hash") == knowledge_code_hash()):
        return None
    if cfg["train_file"] and (prov.get("data") or {}).get("sha256") != sha256_file(repo_path(cfg["train_file"])):
        return None
    from knowfree.data import formats
    syn = out_dir / "syn_fusion.jsonl"
    try:
        return AugmentResult(out_dir, formats.read(out_dir / "fusion.jsonl", "jsonl").samples,
                             formats.read(syn, "jsonl").samples if stats.get("synthesis") else None,
                             LabelSchema.load(out_dir / "schema.json"), stats)
    except FileNotFoundError:
        return None


def augment(config: dict, progress: bool = False, inputs=(), reuse: bool = False) -> AugmentResult:
    """Run the configured augmentation (module doc) and write its output folder. ``inputs``:
    further (name, path) pairs no output may overwrite (the CLI's config file). ``reuse``:
    return the ``finished`` output of an earlier run instead of building it again."""
    cfg = validate_augment_config(config)
    wall0 = time.perf_counter()
    timings: dict[str, float] = {}

    setting_name = cfg["dataset"] or repo_path(cfg["train_file"]).stem  # as load_setting names it
    out_dir = repo_path(cfg["output"]) if cfg["output"] else default_output(cfg, setting_name)
    if reuse and (done := finished(cfg, out_dir)) is not None:
        return done
    _guard(cfg, out_dir, inputs)
    t0 = time.perf_counter()
    setting = load_setting(cfg)
    timings["load"] = time.perf_counter() - t0

    knowledge = KnowledgeSources(cfg, setting.lang)
    try:
        knowledge.start()  # a dead server or a bad key fails here, before any work
        t0 = time.perf_counter()
        fusion, ext_stats = knowledge.annotate(setting.gold, progress)
        timings["knowledge"] = time.perf_counter() - t0
        fusion_schema = _schema(fusion, setting.targets, cfg["schema"])
        _write_jsonl(fusion, out_dir / "fusion.jsonl")
        fusion_schema.save(out_dir / "schema.json")

        syn_fusion, syn_stats, syn_schema = None, None, None
        if cfg["synthesis"]["enabled"]:
            t0 = time.perf_counter()
            synthetic, syn_stats = synthesise(cfg, setting, knowledge, fusion, out_dir, progress)
            syn_fusion = fusion + synthetic
            syn_schema = _schema(syn_fusion, setting.targets, cfg["schema"])
            _write_jsonl(syn_fusion, out_dir / "syn_fusion.jsonl")
            syn_schema.save(out_dir / "syn_schema.json")
            timings["synthesis"] = time.perf_counter() - t0
        usage = knowledge.llm.client.usage.to_dict() if knowledge.llm else None
        cache = knowledge.llm.cache.report if knowledge.llm else None
        reused = knowledge.llm.cache.reuse_report() if knowledge.llm else None
        if cache is not None and cache.changed_segments:
            print(f"warning: LLM cache {knowledge.llm.cache.folder}: {len(cache.changed_segments)} "
                  f"segments differ from its provenance.json ({', '.join(cache.changed_segments[:3])}); "
                  "this live run records them as they are now", file=sys.stderr)
        if knowledge.llm:
            atomic_write_text(out_dir / ANSWERS_FILE, "".join(
                json.dumps(a, ensure_ascii=False) + "\n" for a in knowledge.llm.answers))
        described = knowledge.describe()
    finally:
        knowledge.close()

    failed = sum(s.get("failed_requests", 0) for s in ext_stats.values())
    failed += (syn_stats or {}).get("failed_requests", 0)
    timings["total"] = time.perf_counter() - wall0
    stats = {
        "complete": failed == 0,
        "failed_requests": failed,
        "setting": {"name": setting.name, "lang": setting.lang, **setting.subset,
                    "sentences": len(setting.gold), "targets": setting.targets},
        "knowledge": cfg["knowledge"],
        "sources": ext_stats,
        "fusion": span_stats(fusion),
        "schema": {"extension_labels": len(fusion_schema.extensions), "weight_rule": fusion_schema.rule},
        "synthesis": None if syn_stats is None else {
            **syn_stats, "synthetic": span_stats(syn_fusion[len(fusion):]),
            "synthetic_per_source": syn_stats["split"]["synthetic_per_source"],
            "syn_fusion": span_stats(syn_fusion)},
        "llm_usage": usage,
        # what the response cache could not read: never a silent drop
        "llm_cache": None if cache is None else {
            "loaded_entries": cache.entries, "segments": cache.segments, "duplicates": cache.duplicates,
            "skipped": cache.skipped(), "changed_segments": cache.changed_segments,
            "unlisted_segments": cache.unlisted_segments, "summary": cache.summary(),
            **({"reused": reused} if reused else {})},
        "seconds": {k: round(v, 3) for k, v in timings.items()},
        "provenance": {
            "git_commit": git_commit(), "knowledge_code_hash": knowledge_code_hash(), "knowfree": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": _redacted(cfg), "config_hash": augment_config_hash(cfg),
            "data": setting.data, "subset": setting.subset,
            "gold_hash": hash_samples(setting.gold), "fusion_hash": hash_samples(fusion),
            "knowledge": described, "python": sys.version.split()[0],
        },
        "output": str(out_dir),
    }
    atomic_write_json(out_dir / "stats.json", stats)
    return AugmentResult(out_dir, fusion, syn_fusion, fusion_schema, stats)


def _redacted(cfg: dict) -> dict:
    """The config as stats.json records it: credentials in llm.base_url replaced by ***."""
    from knowfree.knowledge.llm import redact_url
    urls = cfg["llm"]["base_url"]
    urls = [redact_url(u) for u in urls] if isinstance(urls, list) else redact_url(urls)
    return {**cfg, "llm": {**cfg["llm"], "base_url": urls}}


def add_arguments(parser) -> None:
    """`augment CONFIG`, `augment pack RUN_DIR`, `augment table STATS...`."""
    parser.description = ("Build fusion / syn_fusion training sets with LLM or tagger knowledge "
                          "(`augment CONFIG`); pack a finished run to commit it, or compare runs.")
    sub = parser.add_subparsers(dest="action", required=True)
    parser.set_default_subcommand("build")
    # `augment CONFIG` is the command's main form, so its usage and errors say just that
    p = sub.add_parser("build", prog=parser.prog,
                       help="build the sets from an augment config (the default: `augment CONFIG` "
                            "is `augment build CONFIG`)",
                       description="Build fusion / syn_fusion training sets with LLM or tagger knowledge.")
    p.add_argument("config", help="augment YAML config (see configs/augment_*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set k=500 or --set llm.mode=replay")
    p.add_argument("--output", type=path_given, help="output folder (default: the config's output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--llm-only", action="store_true",
                   help="only ask (and cache) the LLM answers the config needs; build no set and "
                        "train no pseudo-label model (fill a cache now, build the sets later)")
    p = sub.add_parser("pack", help="copy a finished run's sets into a folder meant to be committed",
                       description="Copy a finished augment run's training sets (gzip), schemas "
                                   "and stats into a folder meant to be committed.")
    p.add_argument("run_dir", help="augment output folder (results/runs/augment/NAME)")
    p.add_argument("--dest", type=path_given, help="target folder (default results/augment/NAME)")
    p = sub.add_parser("table", help="compare knowledge sources from augment stats.json files",
                       description="Compare knowledge sources from augment stats.json files.")
    p.add_argument("stats", nargs="+", help="stats.json files of augment runs")
    p.add_argument("--out", type=path_given, default=str(REPO_ROOT / "results" / "tables" / "knowledge_sources"),
                   help="output path without suffix (.csv and .md are written)")


def run(args) -> int:
    if args.action == "pack":
        dest = args.dest or REPO_ROOT / "results" / "augment" / repo_path(args.run_dir).name
        packed = pack(args.run_dir, dest)
        print(f"packed {len(packed['files'])} files into {portable_paths(str(repo_path(dest)))}")
        return 0
    if args.action == "table":
        df = write_knowledge_source_table(args.stats, args.out)
        print(f"wrote {args.out}.csv / .md ({len(df)} rows)")
        return 0
    cfg = load_augment_config(args.config, args.overrides)
    if args.llm_only:
        if args.output:
            raise ConfigError("--output with --llm-only: --llm-only writes only the LLM cache")
        rep = ask_llm(cfg, progress=not args.no_progress)
        reused = "".join(f"; {r['used']} answers from {portable_paths(f)}" for f, r in rep["reused"].items())
        print(f"LLM cache {portable_paths(rep['cache'])}: {rep['entries']} answers; this run asked "
              f"{rep['usage']['answered']} and found {rep['usage']['cache_hits']} cached{reused}, "
              f"in {rep['seconds']:.1f} s")
        if rep["failed_requests"]:
            print(f"warning: {rep['failed_requests']} LLM requests failed after retries; rerun the "
                  "same command to ask for them again", file=sys.stderr)
            return 3
        return 0
    if args.output:
        cfg["output"] = args.output
    result = augment(cfg, progress=not args.no_progress, inputs=[("CONFIG", args.config)])
    st = result.stats
    fus = st["fusion"]
    print(f"{result.output}: {fus['sentences']} sentences, {fus['extension_spans']} extension spans "
          f"({fus['ext_spans_per_sentence']} per sentence, {fus['label_inventory_size']} labels) "
          f"in {st['seconds']['total']:.1f} s")
    if st["llm_cache"]:
        print(f"LLM cache: {st['llm_cache']['summary']}")
    if st["synthesis"]:
        print(f"synthetic: {st['synthesis']['split']['kept']} sentences "
              f"({st['synthesis']['synthetic_per_source']} per source sentence)")
    if not result.complete:
        print(f"warning: {st['failed_requests']} LLM requests failed after retries; the outputs lack "
              f"their answers. Rerun the same command to ask for them again (answers so far are cached).",
              file=sys.stderr)
        return 3
    return 0
